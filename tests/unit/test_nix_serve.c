/* The serve protocol session (kiln_nixbuild_serve) on pipes, over in-memory
 * castore, a PathInfo store of its own and a build service of the test's:
 * a NAR whose hash is the one claimed is recorded and served back, another
 * is refused with Nix's words and recorded nowhere, and the build settings
 * a client sends with BuildDerivation reach the build (timeout,
 * max-silent-time, max-log-size), a timed-out build answering TimedOut.
 * Real Nix against kiln nix serve is tests/integration/nix_serve.sh. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kiln/build/service.h>
#include <kiln/nix/pathinfo.h>
#include <kiln/nixbuild/serve.h>
#include <kiln/store/store.h>
#include <kiln/util/util.h>

/* A build service that remembers the call's limits and times out. */
struct fake_builds {
        struct kiln_build_service base;
        int calls;
        unsigned timeout, max_silent;
        uint64_t max_log;
};

static int fake_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                      const struct kiln_build_call *call, struct kiln_build *ret,
                      struct kiln_error **err)
{
        (void)req, (void)ret;
        struct fake_builds *f = (struct fake_builds *)s;
        f->calls++;
        f->timeout = call ? call->timeout : 0;
        f->max_silent = call ? call->max_silent : 0;
        f->max_log = call ? call->max_log : 0;
        return kiln_error_set(err, ETIMEDOUT, "build timed out after %u seconds and was killed",
                              f->timeout);
}

static void fake_free(struct kiln_build_service *s)
{
        (void)s;
}

static const struct kiln_build_service_ops fake_ops = {
    .name = "fake", .build = fake_build, .free = fake_free};

static void u64(struct kiln_buf *b, uint64_t v)
{
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)(v >> (8 * i));
        kiln_buf_append(b, le, 8);
}

static void str(struct kiln_buf *b, const void *p, size_t n)
{
        static const uint8_t zero[8];
        u64(b, n);
        kiln_buf_append(b, p, n);
        kiln_buf_append(b, zero, -n & 7);
}

static void cstr(struct kiln_buf *b, const char *s)
{
        str(b, s, strlen(s));
}

/* The NAR of a regular file holding "hello\n". */
static void nar(struct kiln_buf *b)
{
        const char *t[] = {"nix-archive-1", "(", "type", "regular", "contents", "hello\n", ")"};
        for (size_t i = 0; i < 7; i++)
                cstr(b, t[i]);
}

static const char *path = "/nix/store/0rz4g4znpzjwh1xymhjpm42vipw92pr7-hello";

struct session {
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_nix_pathinfo_store *pi;
        struct fake_builds builds;
        char dir[64];
        /* the replies */
        uint8_t *out;
        size_t out_len, pos;
};

static void session_open(struct session *s)
{
        struct kiln_error *err = NULL;
        memset(s, 0, sizeof(*s));
        s->builds.base.ops = &fake_ops;
        assert_int_equal(kiln_blob_service_open("memory://", &s->blobs, &err), 0);
        assert_int_equal(kiln_directory_service_open("memory://", &s->dirs, &err), 0);
        strcpy(s->dir, "/tmp/test-nix-serve.XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        assert_int_equal(kiln_nix_pathinfo_store_open(s->dir, &s->pi, &err), 0);
}

static void session_close(struct session *s)
{
        char p[128];
        kiln_nix_pathinfo_store_close(s->pi);
        snprintf(p, sizeof(p), "%s/data.mdb", s->dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/lock.mdb", s->dir);
        unlink(p);
        rmdir(s->dir);
        kiln_directory_service_free(s->dirs);
        kiln_blob_service_free(s->blobs);
        free(s->out);
}

/* Runs one session on `in` (handshake prepended); its return value. */
static int run(struct session *s, const struct kiln_buf *in, struct kiln_error **err)
{
        struct kiln_buf all = KILN_BUF_INIT;
        u64(&all, 0x390c9deb);
        u64(&all, 0x207);
        kiln_buf_append(&all, in->data, in->len);
        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_true(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= (int)all.len);
        assert_int_equal(write(p[1], all.data, all.len), (ssize_t)all.len);
        close(p[1]);
        kiln_buf_done(&all);
        int out = memfd_create("replies", MFD_CLOEXEC);
        assert_true(out >= 0);
        struct kiln_nixbuild_serve_options o = {
            .build = {.blobs = s->blobs, .dirs = s->dirs, .builds = &s->builds.base,
                      .pathinfo = s->pi, .request = {.cores = 1}},
            .write = true,
            .ignore_hangup = true,
        };
        int r = kiln_nixbuild_serve(&o, p[0], out, err);
        close(p[0]);
        off_t n = lseek(out, 0, SEEK_END);
        free(s->out);
        s->out = malloc((size_t)n + 1);
        assert_int_equal(pread(out, s->out, (size_t)n, 0), n);
        close(out);
        s->out_len = (size_t)n;
        s->pos = 16; /* the server's magic and version */
        return r;
}

static uint64_t reply_u64(struct session *s)
{
        assert_true(s->pos + 8 <= s->out_len);
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | s->out[s->pos + (size_t)i];
        s->pos += 8;
        return v;
}

static char *reply_str(struct session *s)
{
        uint64_t n = reply_u64(s);
        assert_true(s->pos + n <= s->out_len);
        char *v = strndup((const char *)s->out + s->pos, (size_t)n);
        s->pos += (size_t)(n + (-n & 7));
        return v;
}

static void add_nar(struct kiln_buf *b, const char *p, const char *hash)
{
        struct kiln_buf n = KILN_BUF_INIT;
        nar(&n);
        u64(b, 9);
        cstr(b, p);
        cstr(b, "");
        cstr(b, hash);
        u64(b, 0); /* references */
        u64(b, 0); /* registration time */
        u64(b, n.len);
        u64(b, 1); /* ultimate */
        u64(b, 0); /* signatures */
        cstr(b, "");
        kiln_buf_append(b, n.data, n.len);
        kiln_buf_done(&n);
}

/* SHA-256 of that NAR, in base16 as Nix sends it. */
static const char *good_hash = "1c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13";

static void test_add_and_dump(void **state)
{
        (void)state;
        struct session s;
        session_open(&s);
        struct kiln_buf in = KILN_BUF_INIT;
        add_nar(&in, path, good_hash);
        u64(&in, 3); /* DumpStorePath */
        cstr(&in, path);
        struct kiln_error *err = NULL;
        int r = run(&s, &in, &err);
        if (r < 0)
                fail_msg("session: %s", kiln_error_msg(err));
        assert_int_equal(reply_u64(&s), 1);
        struct kiln_buf want = KILN_BUF_INIT;
        nar(&want);
        assert_int_equal(s.out_len - s.pos, want.len);
        assert_memory_equal(s.out + s.pos, want.data, want.len);
        struct kiln_nix_pathinfo pi;
        assert_int_equal(kiln_nix_pathinfo_get(s.pi, path, &pi, &err), 1);
        assert_int_equal(pi.nar_size, want.len);
        kiln_nix_pathinfo_done(&pi);
        kiln_buf_done(&want);
        kiln_buf_done(&in);
        session_close(&s);
}

static void test_wrong_hash(void **state)
{
        (void)state;
        struct session s;
        session_open(&s);
        struct kiln_buf in = KILN_BUF_INIT;
        add_nar(&in, path, "2c37d01af40be2e80691de3cc3df44377a699afbb17c68f080964b2fd071fc13");
        struct kiln_error *err = NULL;
        assert_error(run(&s, &in, &err), err, EINVAL, "hash mismatch importing path");
        struct kiln_nix_pathinfo pi;
        assert_int_equal(kiln_nix_pathinfo_get(s.pi, path, &pi, &err), 0);
        kiln_buf_done(&in);
        session_close(&s);
}

/* BuildDerivation with maxSilentTime 7, buildTimeout 9, maxLogSize 4096. */
static void test_build_settings(void **state)
{
        (void)state;
        struct session s;
        session_open(&s);
        const char *out = "/nix/store/1rz4g4znpzjwh1xymhjpm42vipw92pr7-built";
        struct kiln_buf in = KILN_BUF_INIT;
        add_nar(&in, path, good_hash);
        u64(&in, 8);
        cstr(&in, "/nix/store/2rz4g4znpzjwh1xymhjpm42vipw92pr7-built.drv");
        u64(&in, 1);
        cstr(&in, "out");
        cstr(&in, out);
        cstr(&in, "");
        cstr(&in, "");
        u64(&in, 1);
        cstr(&in, path); /* inputSrcs */
        cstr(&in, "x86_64-linux");
        cstr(&in, path); /* builder */
        u64(&in, 0);     /* args */
        u64(&in, 2);
        cstr(&in, "name");
        cstr(&in, "built");
        cstr(&in, "out");
        cstr(&in, out);
        u64(&in, 7);    /* maxSilentTime */
        u64(&in, 9);    /* buildTimeout */
        u64(&in, 4096); /* maxLogSize */
        u64(&in, 0);    /* buildRepeat */
        u64(&in, 0);    /* enforceDeterminism */
        u64(&in, 0);    /* keepFailed */
        struct kiln_error *err = NULL;
        int r = run(&s, &in, &err);
        if (r < 0)
                fail_msg("session: %s", kiln_error_msg(err));
        assert_int_equal(s.builds.calls, 1);
        assert_int_equal(s.builds.max_silent, 7);
        assert_int_equal(s.builds.timeout, 9);
        assert_int_equal(s.builds.max_log, 4096);
        assert_int_equal(reply_u64(&s), 1);  /* the add */
        assert_int_equal(reply_u64(&s), 8);  /* TimedOut */
        char *msg = reply_str(&s);
        assert_non_null(strstr(msg, "timed out after 9 seconds"));
        free(msg);
        struct kiln_nix_pathinfo pi;
        assert_int_equal(kiln_nix_pathinfo_get(s.pi, out, &pi, &err), 0);
        kiln_buf_done(&in);
        session_close(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_add_and_dump),
            cmocka_unit_test(test_wrong_hash),
            cmocka_unit_test(test_build_settings),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
