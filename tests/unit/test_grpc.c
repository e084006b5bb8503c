/* kiln's gRPC clients against kiln's gRPC server, in one process, over a unix
 * socket and over 127.0.0.1: every method and client operation, the
 * verification of what a server sends (with a lying store behind the
 * server), build cancellation and timeouts, and the status mapping. */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include <kiln/store/backend.h>
#include <kiln/build/action_cache.h>
#include <kiln/build/service.h>
#include <kiln/rpc/rpc.h>
#include <kiln/store/store.h>

#include "server.h"

#define MiB (1024 * 1024)

/* --- a blob store behind the server that can chunk and lie --- */

/* Wraps memory://. chunks(BIG) lists BIG's four parts (each stored as a blob
 * of its own); chunks(BAD) lists parts that do not add up to BAD; reading
 * LIE gives the bytes of another blob. */
struct fake_blobs {
        struct kiln_blob_service base;
        struct kiln_blob_service *inner;
        struct kiln_digest big, bad, lie, lie_src;
        struct kiln_chunk parts[4];
};

static struct fake_blobs *fake;

static int fake_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                    struct kiln_error **err)
{
        struct fake_blobs *f = (struct fake_blobs *)s;
        if (kiln_digest_eq(d, &f->lie) || kiln_digest_eq(d, &f->bad))
                return 1;
        return kiln_blob_has(f->inner, d, err);
}

static int fake_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                          struct kiln_blob_reader **ret, struct kiln_error **err)
{
        struct fake_blobs *f = (struct fake_blobs *)s;
        if (kiln_digest_eq(d, &f->lie))
                d = &f->lie_src;
        return kiln_blob_open_read(f->inner, d, ret, err);
}

/* Set: every Put fails at once, as a full disk would. */
static atomic_int writes_fail;

static int fake_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                           struct kiln_error **err)
{
        if (atomic_load(&writes_fail))
                return kiln_error_set(err, ENOSPC, "write object: No space left on device");
        return kiln_blob_open_write(((struct fake_blobs *)s)->inner, ret, err);
}

static int fake_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                       struct kiln_chunk **ret, size_t *ret_n, struct kiln_error **err)
{
        struct fake_blobs *f = (struct fake_blobs *)s;
        if (kiln_digest_eq(d, &f->lie)) {
                *ret = NULL;
                *ret_n = 0;
                return 1;
        }
        if (kiln_digest_eq(d, &f->big) || kiln_digest_eq(d, &f->bad)) {
                *ret = kiln_memdup(f->parts, sizeof(f->parts));
                *ret_n = kiln_digest_eq(d, &f->big) ? 4 : 3;
                return 1;
        }
        return kiln_blob_chunks(f->inner, d, ret, ret_n, err);
}

static void fake_free(struct kiln_blob_service *s)
{
        struct fake_blobs *f = (struct fake_blobs *)s;
        kiln_blob_service_free(f->inner);
        free(f);
}

static const struct kiln_blob_service_ops fake_ops = {
        .name = "fake",
        .has = fake_has,
        .open_read = fake_open_read,
        .open_write = fake_open_write,
        .chunks = fake_chunks,
        .free = fake_free,
};

/* --- a build service that waits for its cancel --- */

static atomic_int builds_cancelled;

static int slow_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                      const struct kiln_build_call *call, struct kiln_build *ret,
                      struct kiln_error **err)
{
        (void)s, (void)ret;
        if (req->n_env == 0)
                return kiln_error_set(err, ENOEXEC, "constraint not met: no environment");
        struct pollfd p = {.fd = kiln_cancel_fd(call->cancel), .events = POLLIN};
        if (poll(&p, 1, 10000) == 1) {
                atomic_fetch_add(&builds_cancelled, 1);
                return kiln_error_set(err, ECANCELED, "build cancelled");
        }
        return kiln_error_set(err, EIO, "never cancelled");
}

static void slow_free(struct kiln_build_service *s)
{
        free(s);
}

static const struct kiln_build_service_ops slow_ops = {
        .name = "slow",
        .build = slow_build,
        .free = slow_free,
};

/* --- the server --- */

static struct kiln_server *server;
static pthread_t server_thread;
static struct kiln_directory_service *server_dirs;
static struct kiln_build_service *server_builds;
static char tmpdir[64];
static char *urls[2];

static void *run_server(void *arg)
{
        kiln_server_run(arg);
        return NULL;
}

static void put_blob_direct(struct kiln_blob_service *s, const void *p, size_t n,
                            struct kiln_digest *ret)
{
        struct kiln_error *err = NULL;
        assert_ok(kiln_blob_put(s, p, n, ret, &err), err);
}

static uint8_t *big_data;
#define BIG_SIZE (3 * MiB + 12345)

static int setup(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        strcpy(tmpdir, "/tmp/kiln-grpc-test.XXXXXX");
        assert_non_null(mkdtemp(tmpdir));

        fake = kiln_calloc(1, sizeof(*fake));
        fake->base.ops = &fake_ops;
        assert_ok(kiln_blob_service_open("memory://", &fake->inner, &err), err);
        big_data = malloc(BIG_SIZE);
        for (size_t i = 0; i < BIG_SIZE; i++)
                big_data[i] = (uint8_t)(i * 7 + i / 1000);
        put_blob_direct(fake->inner, big_data, BIG_SIZE, &fake->big);
        size_t cuts[5] = {0, 1000, MiB + 3, 3 * MiB, BIG_SIZE};
        for (int i = 0; i < 4; i++) {
                put_blob_direct(fake->inner, big_data + cuts[i], cuts[i + 1] - cuts[i],
                                &fake->parts[i].digest);
                fake->parts[i].size = cuts[i + 1] - cuts[i];
        }
        memset(fake->bad.b, 0xbb, KILN_DIGEST_LEN);
        memset(fake->lie.b, 0x11, KILN_DIGEST_LEN);
        put_blob_direct(fake->inner, "the truth", 9, &fake->lie_src);

        assert_ok(kiln_directory_service_open("memory://", &server_dirs, &err), err);
        server_builds = kiln_calloc(1, sizeof(*server_builds));
        server_builds->ops = &slow_ops;

        struct kiln_server_config cfg = {.blobs = &fake->base,
                                         .dirs = server_dirs,
                                         .builds = server_builds,
                                         .grace_ms = 500};
        assert_ok(kiln_server_new(&cfg, &server, &err), err);
        _cleanup_free_ char *sock = kiln_asprintf("%s/kiln.sock", tmpdir);
        char *desc = NULL;
        assert_ok(kiln_server_listen(server, sock, &desc, &err), err);
        free(desc);
        assert_ok(kiln_server_listen(server, "127.0.0.1:0", &desc, &err), err);
        urls[0] = kiln_asprintf("grpc+unix://%s", sock);
        urls[1] = kiln_asprintf("grpc+http://%s?wait-connect=1", desc);
        free(desc);
        assert_ok(kiln_server_start(server, &err), err);
        assert_int_equal(pthread_create(&server_thread, NULL, run_server, server), 0);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        kiln_server_stop(server);
        pthread_join(server_thread, NULL);
        kiln_server_free(server);
        kiln_blob_service_free(&fake->base);
        kiln_directory_service_free(server_dirs);
        kiln_build_service_free(server_builds);
        free(big_data);
        free(urls[0]);
        free(urls[1]);
        rmdir(tmpdir);
        return 0;
}

/* Reads a whole reader. */
static ssize_t slurp(struct kiln_blob_reader *rd, struct kiln_buf *out, size_t step,
                     struct kiln_error **err)
{
        kiln_buf_clear(out);
        for (;;) {
                kiln_buf_reserve(out, step);
                ssize_t n = kiln_blob_reader_read(rd, out->data + out->len, step, err);
                if (n <= 0)
                        return n < 0 ? n : (ssize_t)out->len;
                out->len += (size_t)n;
        }
}

static void blob_ops(const char *url)
{
        struct kiln_error *err = NULL;
        struct kiln_blob_service *bs = NULL;
        assert_ok(kiln_blob_service_open(url, &bs, &err), err);
        assert_string_equal(kiln_blob_service_name(bs), "grpc");

        struct kiln_digest absent;
        memset(absent.b, 0x42, sizeof(absent.b));
        assert_int_equal(kiln_blob_has(bs, &absent, &err), 0);
        struct kiln_blob_reader *rd = NULL;
        assert_int_equal(kiln_blob_open_read(bs, &absent, &rd, &err), 0);
        struct kiln_chunk *chunks = NULL;
        size_t n = 0;
        assert_int_equal(kiln_blob_chunks(bs, &absent, &chunks, &n, &err), 0);
        assert_null(err);

        /* write in pieces, one over 1 MiB */
        size_t size = 2 * MiB + 777;
        uint8_t *data = malloc(size);
        for (size_t i = 0; i < size; i++)
                data[i] = (uint8_t)(i ^ (i >> 9));
        struct kiln_blob_writer *w = NULL;
        assert_ok(kiln_blob_open_write(bs, &w, &err), err);
        assert_ok(kiln_blob_writer_write(w, data, 1, &err), err);
        assert_ok(kiln_blob_writer_write(w, data + 1, 1500 * 1024, &err), err);
        assert_ok(kiln_blob_writer_write(w, data + 1 + 1500 * 1024, size - 1 - 1500 * 1024, &err),
                  err);
        struct kiln_digest d, want, again;
        assert_ok(kiln_blob_writer_close(w, &d, &err), err);
        assert_ok(kiln_blob_writer_close(w, &again, &err), err);
        kiln_blob_writer_free(w);
        kiln_digest_of(data, size, &want);
        assert_true(kiln_digest_eq(&d, &want));
        assert_true(kiln_digest_eq(&again, &want));
        assert_int_equal(kiln_blob_has(bs, &d, &err), 1);
        assert_int_equal(kiln_blob_chunks(bs, &d, &chunks, &n, &err), 1);
        assert_int_equal(n, 0);
        free(chunks);

        /* streamed read, size known from the server */
        struct kiln_buf out = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_open_read(bs, &d, &rd, &err), 1);
        assert_int_equal(kiln_blob_reader_size(rd), size);
        assert_int_equal(slurp(rd, &out, 100000, &err), (ssize_t)size);
        assert_memory_equal(out.data, data, size);
        /* seek back (re-opens the Read), forward, from the end */
        uint64_t pos;
        assert_ok(kiln_blob_reader_seek(rd, 5, SEEK_SET, &pos, &err), err);
        assert_int_equal(pos, 5);
        uint8_t small[16];
        assert_int_equal(kiln_blob_reader_read(rd, small, 16, &err), 16);
        assert_memory_equal(small, data + 5, 16);
        assert_ok(kiln_blob_reader_seek(rd, MiB + 100, SEEK_CUR, &pos, &err), err);
        assert_int_equal(kiln_blob_reader_read(rd, small, 16, &err), 16);
        assert_memory_equal(small, data + 21 + MiB + 100, 16);
        assert_ok(kiln_blob_reader_seek(rd, -10, SEEK_END, &pos, &err), err);
        assert_int_equal(kiln_blob_reader_read(rd, small, 16, &err), 10);
        assert_memory_equal(small, data + size - 10, 10);
        assert_int_equal(kiln_blob_reader_read(rd, small, 16, &err), 0);
        assert_error(kiln_blob_reader_seek(rd, 1, SEEK_END, NULL, &err), err, EINVAL,
                     "seeked beyond EOF");
        kiln_blob_reader_free(rd);

        /* the same without copies: views into the received messages, none
         * longer than asked, the last piece only once the digest matched */
        assert_int_equal(kiln_blob_open_read(bs, &d, &rd, &err), 1);
        uint8_t unused[8];
        size_t got = 0;
        for (;;) {
                const void *p;
                ssize_t k = kiln_blob_reader_read_view(rd, unused, 300000, &p, &err);
                assert_true(k >= 0);
                if (k == 0)
                        break;
                assert_true(k <= 300000);
                assert_true(p != unused);
                assert_memory_equal(p, data + got, (size_t)k);
                got += (size_t)k;
        }
        assert_int_equal(got, size);
        kiln_blob_reader_free(rd);

        /* the empty blob */
        assert_ok(kiln_blob_put(bs, "", 0, &d, &err), err);
        assert_true(kiln_digest_eq(&d, &kiln_digest_empty));
        kiln_buf_done(&out); /* kiln_blob_get fills a new buffer */
        assert_int_equal(kiln_blob_get(bs, &d, &out, &err), 1);
        assert_int_equal(out.len, 0);
        kiln_buf_done(&out);

        /* an abandoned writer stores nothing */
        assert_ok(kiln_blob_open_write(bs, &w, &err), err);
        assert_ok(kiln_blob_writer_write(w, "partial", 7, &err), err);
        kiln_blob_writer_free(w);
        kiln_digest_of("partial", 7, &d);
        assert_int_equal(kiln_blob_has(bs, &d, &err), 0);

        free(data);
        kiln_blob_service_free(bs);
}

static void chunked_reads(const char *url)
{
        struct kiln_error *err = NULL;
        struct kiln_blob_service *bs = NULL;
        assert_ok(kiln_blob_service_open(url, &bs, &err), err);
        struct kiln_chunk *chunks = NULL;
        size_t n = 0;
        assert_int_equal(kiln_blob_chunks(bs, &fake->big, &chunks, &n, &err), 1);
        assert_int_equal(n, 4);
        assert_int_equal(chunks[1].size, MiB + 3 - 1000);
        free(chunks);

        struct kiln_blob_reader *rd = NULL;
        struct kiln_buf out = KILN_BUF_INIT;
        assert_int_equal(kiln_blob_open_read(bs, &fake->big, &rd, &err), 1);
        assert_int_equal(kiln_blob_reader_size(rd), BIG_SIZE);
        assert_int_equal(slurp(rd, &out, 300000, &err), BIG_SIZE);
        assert_memory_equal(out.data, big_data, BIG_SIZE);
        /* seek into the middle of a chunk */
        uint8_t buf[64];
        assert_ok(kiln_blob_reader_seek(rd, 3 * MiB - 10, SEEK_SET, NULL, &err), err);
        assert_int_equal(kiln_blob_reader_read(rd, buf, 64, &err), 10); /* to the chunk's end */
        assert_memory_equal(buf, big_data + 3 * MiB - 10, 10);
        assert_int_equal(kiln_blob_reader_read(rd, buf, 64, &err), 64);
        assert_memory_equal(buf, big_data + 3 * MiB, 64);
        assert_ok(kiln_blob_reader_seek(rd, 999, SEEK_SET, NULL, &err), err);
        assert_int_equal(kiln_blob_reader_read(rd, buf, 64, &err), 1);
        assert_memory_equal(buf, big_data + 999, 1);
        kiln_blob_reader_free(rd);

        /* chunks that do not add up to the blob: the last read fails */
        assert_int_equal(kiln_blob_open_read(bs, &fake->bad, &rd, &err), 1);
        ssize_t r = slurp(rd, &out, 1 << 20, &err);
        assert_int_equal(r, -EBADMSG);
        assert_non_null(strstr(err->msg, "do not add up"));
        kiln_error_clear(&err);
        kiln_blob_reader_free(rd);

        /* a server whose bytes do not match the digest: withheld, -EBADMSG */
        assert_int_equal(kiln_blob_open_read(bs, &fake->lie, &rd, &err), 1);
        assert_int_equal(kiln_blob_reader_read(rd, buf, sizeof(buf), &err), -EBADMSG);
        assert_non_null(strstr(err->msg, "does not match the digest"));
        kiln_error_clear(&err);
        kiln_blob_reader_free(rd);
        const void *view;
        assert_int_equal(kiln_blob_open_read(bs, &fake->lie, &rd, &err), 1);
        assert_int_equal(kiln_blob_reader_read_view(rd, buf, sizeof(buf), &view, &err), -EBADMSG);
        assert_non_null(strstr(err->msg, "does not match the digest"));
        kiln_error_clear(&err);
        kiln_blob_reader_free(rd);
        kiln_buf_done(&out);
        kiln_blob_service_free(bs);
}

static struct kiln_node named(enum kiln_node_kind kind, const char *name,
                              const struct kiln_digest *d, uint64_t size)
{
        struct kiln_node n = {.kind = kind, .size = size};
        if (d)
                n.digest = *d;
        kiln_node_set_name(&n, name, strlen(name));
        return n;
}

static void directory_ops(const char *url)
{
        struct kiln_error *err = NULL;
        struct kiln_directory_service *ds = NULL;
        assert_ok(kiln_directory_service_open(url, &ds, &err), err);

        /* A = empty, B = {a: A}, D = {a: A, b: B} */
        struct kiln_directory a = KILN_DIRECTORY_INIT, b = KILN_DIRECTORY_INIT,
                              dd = KILN_DIRECTORY_INIT;
        struct kiln_digest da, db, ddd;
        kiln_directory_digest(&a, NULL, &da);
        struct kiln_node n = named(KILN_NODE_DIRECTORY, "a", &da, 0);
        kiln_directory_add(&b, &n);
        assert_ok(kiln_directory_seal(&b, &err), err);
        kiln_directory_digest(&b, NULL, &db);
        n = named(KILN_NODE_DIRECTORY, "a", &da, 0);
        kiln_directory_add(&dd, &n);
        n = named(KILN_NODE_DIRECTORY, "b", &db, kiln_directory_size(&b));
        kiln_directory_add(&dd, &n);
        assert_ok(kiln_directory_seal(&dd, &err), err);
        kiln_directory_digest(&dd, NULL, &ddd);
        _cleanup_free_ char *hex = test_hex(ddd.b, 32);
        assert_string_equal(hex, "76cd8b55b37333961c1778ba997e57df92e219926ae5a66c414b810331a77603");

        struct kiln_directory got;
        struct kiln_digest absent;
        memset(absent.b, 0x33, 32);
        assert_int_equal(kiln_directory_get(ds, &absent, &got, &err), 0);
        assert_null(err);

        struct kiln_directory_putter *p = NULL;
        assert_ok(kiln_directory_put_multiple_start(ds, &p, &err), err);
        assert_ok(kiln_directory_putter_put(p, &a, &err), err);
        assert_ok(kiln_directory_putter_put(p, &b, &err), err);
        assert_ok(kiln_directory_putter_put(p, &dd, &err), err);
        struct kiln_digest root;
        assert_ok(kiln_directory_putter_close(p, &root, &err), err);
        assert_true(kiln_digest_eq(&root, &ddd));
        kiln_directory_putter_free(p);

        assert_int_equal(kiln_directory_get(ds, &db, &got, &err), 1);
        assert_int_equal(got.n, 1);
        kiln_directory_done(&got);

        struct kiln_directory_stream *st = NULL;
        assert_ok(kiln_directory_get_recursive(ds, &ddd, &st, &err), err);
        struct kiln_digest seen[4];
        int count = 0, r;
        while ((r = kiln_directory_stream_next(st, &got, &seen[count], &err)) == 1) {
                kiln_directory_done(&got);
                assert_true(++count <= 3);
        }
        assert_int_equal(r, 0);
        assert_int_equal(count, 3);
        assert_true(kiln_digest_eq(&seen[0], &ddd));
        kiln_directory_stream_free(st);

        assert_ok(kiln_directory_get_recursive(ds, &absent, &st, &err), err);
        assert_int_equal(kiln_directory_stream_next(st, &got, NULL, &err), 0);
        kiln_directory_stream_free(st);

        /* one Directory; a closure with an unknown child; an empty putter */
        struct kiln_digest single;
        assert_ok(kiln_directory_put(ds, &a, &single, &err), err);
        assert_true(kiln_digest_eq(&single, &da));
        struct kiln_directory orphan = KILN_DIRECTORY_INIT;
        n = named(KILN_NODE_DIRECTORY, "x", &absent, 0);
        kiln_directory_add(&orphan, &n);
        assert_ok(kiln_directory_seal(&orphan, &err), err);
        assert_ok(kiln_directory_put_multiple_start(ds, &p, &err), err);
        int rr = kiln_directory_putter_put(p, &orphan, &err);
        if (rr == 0) /* the server may only answer at close */
                rr = kiln_directory_putter_close(p, &root, &err);
        assert_int_equal(rr, -EINVAL);
        assert_non_null(strstr(err->msg, "unknown directory was referenced"));
        kiln_error_clear(&err);
        kiln_directory_putter_free(p);
        assert_ok(kiln_directory_put_multiple_start(ds, &p, &err), err);
        assert_error(kiln_directory_putter_close(p, &root, &err), err, EINVAL,
                     "got no directories");
        kiln_directory_putter_free(p);

        kiln_directory_done(&orphan);
        kiln_directory_done(&a);
        kiln_directory_done(&b);
        kiln_directory_done(&dd);
        kiln_directory_service_free(ds);
}

struct canceller {
        struct kiln_cancel *c;
        unsigned ms;
};

static void *cancel_later(void *arg)
{
        struct canceller *cl = arg;
        poll(NULL, 0, (int)cl->ms);
        kiln_cancel_trigger(cl->c);
        return NULL;
}

static void wait_cancelled(int want)
{
        for (int i = 0; i < 200 && atomic_load(&builds_cancelled) < want; i++)
                poll(NULL, 0, 10);
        assert_int_equal(atomic_load(&builds_cancelled), want);
}

static void build_ops(const char *url)
{
        struct kiln_error *err = NULL;
        struct kiln_build_service *bs = NULL;
        assert_ok(kiln_build_service_open(url, NULL, NULL, &bs, &err), err);
        struct kiln_build_request req = {0};
        struct kiln_build build;
        /* the server's error comes back with its code and message */
        assert_error(kiln_build_service_build(bs, &req, NULL, &build, &err), err, ENOEXEC,
                     "constraint not met: no environment");

        struct kiln_env_var env = {.key = (char *)"K", .value = (uint8_t *)"v", .value_len = 1};
        req.env = &env;
        req.n_env = 1;
        int before = atomic_load(&builds_cancelled);
        /* cancelled by the client: the server's build sees its cancel */
        struct canceller cl = {.c = kiln_cancel_new(), .ms = 200};
        pthread_t t;
        pthread_create(&t, NULL, cancel_later, &cl);
        struct kiln_build_call call = {.cancel = cl.c};
        assert_error(kiln_build_service_build(bs, &req, &call, &build, &err), err, ECANCELED, "");
        pthread_join(t, NULL);
        kiln_cancel_free(cl.c);
        wait_cancelled(before + 1);
        /* a deadline */
        call = (struct kiln_build_call){.timeout = 1};
        assert_error(kiln_build_service_build(bs, &req, &call, &build, &err), err, ETIMEDOUT, "");
        wait_cancelled(before + 2);
        kiln_build_service_free(bs);
}

static void test_unix(void **state)
{
        (void)state;
        blob_ops(urls[0]);
        chunked_reads(urls[0]);
        directory_ops(urls[0]);
        build_ops(urls[0]);
}

static void test_tcp(void **state)
{
        (void)state;
        blob_ops(urls[1]);
        chunked_reads(urls[1]);
        directory_ops(urls[1]);
        build_ops(urls[1]);
}

/* A server that fails an upload before reading it (a full disk) is
 * noticed by the client at its next send, which then gets the status: the
 * call used to wait forever for a status gRPC core holds back until the
 * initial metadata is asked for. */
static void test_put_failed_early(void **state)
{
        (void)state;
        for (int u = 0; u < 2; u++) {
                struct kiln_error *err = NULL;
                struct kiln_blob_service *bs = NULL;
                assert_ok(kiln_blob_service_open(urls[u], &bs, &err), err);
                atomic_store(&writes_fail, 1);
                alarm(60); /* a hang fails the test instead of stalling it */
                struct kiln_blob_writer *w = NULL;
                int r = kiln_blob_open_write(bs, &w, &err);
                for (int i = 0; r >= 0 && i < 64; i++)
                        r = kiln_blob_writer_write(w, big_data, 1 << 20, &err);
                struct kiln_digest d;
                if (r >= 0)
                        r = kiln_blob_writer_close(w, &d, &err);
                alarm(0);
                atomic_store(&writes_fail, 0);
                assert_true(r < 0);
                assert_non_null(strstr(kiln_error_msg(err), "No space left on device"));
                kiln_error_free(err);
                kiln_blob_writer_free(w);
                kiln_blob_service_free(bs);
        }
}

/* A server for cfg on 127.0.0.1, running on *t; *url (heap) reaches it. */
static struct kiln_server *serve_tcp(const struct kiln_server_config *cfg, pthread_t *t,
                                     char **url)
{
        struct kiln_error *err = NULL;
        struct kiln_server *s = NULL;
        assert_ok(kiln_server_new(cfg, &s, &err), err);
        char *desc = NULL;
        assert_ok(kiln_server_listen(s, "127.0.0.1:0", &desc, &err), err);
        *url = kiln_asprintf("grpc+http://%s", desc);
        free(desc);
        assert_ok(kiln_server_start(s, &err), err);
        pthread_create(t, NULL, run_server, s);
        return s;
}

static void stop_server(struct kiln_server *s, pthread_t t)
{
        kiln_server_stop(s);
        pthread_join(t, NULL);
        kiln_server_free(s);
}

static void test_dummy_build(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_build_service *dummy = NULL;
        assert_ok(kiln_build_service_open("dummy://", NULL, NULL, &dummy, &err), err);
        struct kiln_server_config cfg = {.blobs = &fake->base, .dirs = server_dirs,
                                         .builds = dummy};
        pthread_t t;
        _cleanup_free_ char *url = NULL;
        struct kiln_server *s = serve_tcp(&cfg, &t, &url);
        struct kiln_build_service *bs = NULL;
        assert_ok(kiln_build_service_open(url, NULL, NULL, &bs, &err), err);
        struct kiln_build_request req = {0};
        struct kiln_build build;
        assert_error(kiln_build_service_build(bs, &req, NULL, &build, &err), err, EIO,
                     "builds are not supported with DummyBuildService");
        kiln_build_service_free(bs);
        stop_server(s, t);
        kiln_build_service_free(dummy);
}

/* A daemon's action cache through kiln.build.v1.ActionCache: the grpc+…
 * action cache client against the server serving a memory:// one. */
static void test_action_cache(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_action_cache *mem = NULL;
        assert_ok(kiln_action_cache_open("memory://", &mem, &err), err);
        struct kiln_server_config cfg = {.blobs = &fake->base, .dirs = server_dirs,
                                         .action_cache = mem};
        pthread_t t;
        _cleanup_free_ char *url = NULL;
        struct kiln_server *s = serve_tcp(&cfg, &t, &url);

        struct kiln_action_cache *ac = NULL;
        assert_ok(kiln_action_cache_open(url, &ac, &err), err);
        struct kiln_digest key;
        kiln_digest_of("request", 7, &key);
        struct kiln_build b = {0};
        assert_int_equal(kiln_action_cache_lookup(ac, &key, &b, &err), 0);
        struct kiln_build_output out = {.node = {.kind = KILN_NODE_FILE, .size = 3}};
        out.node.name = (struct kiln_bytes){.data = (uint8_t *)"x-out", .len = 5};
        kiln_digest_of("abc", 3, &out.node.digest);
        struct kiln_build rec = {.outputs = &out, .n_outputs = 1};
        assert_ok(kiln_action_cache_store(ac, &key, &rec, &err), err);
        assert_int_equal(kiln_action_cache_lookup(ac, &key, &b, &err), 1);
        assert_int_equal(b.n_outputs, 1);
        assert_true(kiln_digest_eq(&b.outputs[0].node.digest, &out.node.digest));
        kiln_build_done(&b);
        /* what the client put is in the served cache itself */
        assert_int_equal(kiln_action_cache_lookup(mem, &key, &b, &err), 1);
        kiln_build_done(&b);
        uint64_t n = 0;
        assert_ok(kiln_action_cache_count(ac, &n, &err), err);
        assert_int_equal(n, 1);
        assert_int_equal(kiln_action_cache_remove(ac, &key, &err), 1);
        assert_int_equal(kiln_action_cache_remove(ac, &key, &err), 0);
        kiln_action_cache_free(ac);

        stop_server(s, t);
        kiln_action_cache_free(mem);
}

static void test_urls(void **state)
{
        (void)state;
        struct kiln_error *err = NULL;
        struct kiln_blob_service *bs = NULL;
        _cleanup_free_ char *nosock = kiln_asprintf("grpc+unix://%s/nope.sock?wait-connect=1",
                                                    tmpdir);
        assert_error(kiln_blob_service_open(nosock, &bs, &err), err, ECONNREFUSED,
                     "cannot connect");
        /* lazy: opening works, the first call fails with UNAVAILABLE → EAGAIN */
        nosock[strlen(nosock) - strlen("?wait-connect=1")] = '\0';
        assert_ok(kiln_blob_service_open(nosock, &bs, &err), err);
        struct kiln_digest d = {0};
        assert_error(kiln_blob_has(bs, &d, &err), err, EAGAIN, "BlobService/Stat on grpc+unix");
        kiln_blob_service_free(bs);
        assert_error(kiln_blob_service_open("grpc+unix://host/x", &bs, &err), err, EINVAL,
                     "host may not be set");
        assert_error(kiln_blob_service_open("grpc+http://localhost/x", &bs, &err), err, EINVAL,
                     "path may not be set");
        assert_error(kiln_blob_service_open("grpc+gopher://localhost", &bs, &err), err, EINVAL,
                     "unsupported transport");
        /* one channel per URL: two services on one URL share it */
        struct kiln_blob_service *b1 = NULL, *b2 = NULL;
        assert_ok(kiln_blob_service_open(urls[0], &b1, &err), err);
        assert_ok(kiln_blob_service_open(urls[0], &b2, &err), err);
        kiln_blob_service_free(b1);
        assert_int_equal(kiln_blob_has(b2, &fake->big, &err), 1);
        kiln_blob_service_free(b2);
}

static void test_status_mapping(void **state)
{
        (void)state;
        static const struct {
                int code;
                grpc_status_code st;
        } t[] = {
                {ENOENT, GRPC_STATUS_NOT_FOUND},
                {EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
                {EBADMSG, GRPC_STATUS_DATA_LOSS},
                {EEXIST, GRPC_STATUS_ALREADY_EXISTS},
                {ENOTSUP, GRPC_STATUS_UNIMPLEMENTED},
                {ENOSPC, GRPC_STATUS_RESOURCE_EXHAUSTED},
                {ETIMEDOUT, GRPC_STATUS_DEADLINE_EXCEEDED},
                {ECANCELED, GRPC_STATUS_CANCELLED},
                {EAGAIN, GRPC_STATUS_UNAVAILABLE},
                {ENOEXEC, GRPC_STATUS_FAILED_PRECONDITION},
                {EACCES, GRPC_STATUS_PERMISSION_DENIED},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(t); i++) {
                assert_int_equal(kiln_rpc_status_from_errno(t[i].code), t[i].st);
                assert_int_equal(kiln_rpc_status_from_errno(-t[i].code), t[i].st);
                assert_int_equal(kiln_rpc_errno_from_status(t[i].st), t[i].code);
        }
        assert_int_equal(kiln_rpc_status_from_errno(EPERM), GRPC_STATUS_PERMISSION_DENIED);
        assert_int_equal(kiln_rpc_status_from_errno(EIO), GRPC_STATUS_INTERNAL);
        assert_int_equal(kiln_rpc_status_from_errno(EOVERFLOW), GRPC_STATUS_INTERNAL);
        assert_int_equal(kiln_rpc_errno_from_status(GRPC_STATUS_INTERNAL), EIO);
        assert_int_equal(kiln_rpc_errno_from_status(GRPC_STATUS_UNKNOWN), EIO);
        assert_int_equal(kiln_rpc_errno_from_status(GRPC_STATUS_OK), 0);
        assert_string_equal(kiln_rpc_status_name(GRPC_STATUS_DATA_LOSS), "DATA_LOSS");
}

static void test_blob_chunk_codec(void **state)
{
        (void)state;
        const uint8_t *p;
        size_t n;
        struct kiln_error *err = NULL;
        /* unknown fields skipped, the last data wins, empty message */
        static const uint8_t m1[] = {0x0a, 0x01, 'a', 0x10, 0x05, 0x0a, 0x02, 'b', 'c'};
        assert_ok(kiln_rpc_blob_chunk_decode(m1, sizeof(m1), &p, &n, &err), err);
        assert_int_equal(n, 2);
        assert_memory_equal(p, "bc", 2);
        assert_ok(kiln_rpc_blob_chunk_decode(m1, 0, &p, &n, &err), err);
        assert_int_equal(n, 0);
        static const uint8_t bad1[] = {0x0a, 0x05, 'a'};
        static const uint8_t bad2[] = {0x08, 0x01}; /* field 1 as a varint */
        static const uint8_t bad3[] = {0x0a, 0x80};
        assert_error(kiln_rpc_blob_chunk_decode(bad1, sizeof(bad1), &p, &n, &err), err, EINVAL,
                     "malformed");
        assert_error(kiln_rpc_blob_chunk_decode(bad2, sizeof(bad2), &p, &n, &err), err, EINVAL,
                     "malformed");
        assert_error(kiln_rpc_blob_chunk_decode(bad3, sizeof(bad3), &p, &n, &err), err, EINVAL,
                     "malformed");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_mapping),
                cmocka_unit_test(test_blob_chunk_codec),
                cmocka_unit_test(test_unix),
                cmocka_unit_test(test_tcp),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_dummy_build),
                cmocka_unit_test(test_action_cache),
                cmocka_unit_test(test_put_failed_early),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
