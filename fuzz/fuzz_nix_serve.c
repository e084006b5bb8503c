/* Nix's serve protocol as a client may speak it (kiln nix serve's session,
 * kiln_nixbuild_serve): any bytes on the session's input, over in-memory
 * castore, a PathInfo store of its own for each input (on /dev/shm) and a
 * build service whose builds all fail (dummy://). The session ends, with an
 * error message when it fails, and leaves the PathInfo store consistent:
 * every record's contents dump from castore to the NAR hash and size it
 * records, and every reference it names is recorded too (nothing is recorded
 * for a NAR that is not the one claimed). */
#include <fcntl.h>
#include <unistd.h>

#include <kiln/build/service.h>
#include <kiln/nix/nar.h>
#include <kiln/nix/pathinfo.h>
#include <kiln/nixbuild/serve.h>
#include <kiln/store/store.h>

#include "fuzz.h"

static struct kiln_blob_service *blobs;
static struct kiln_directory_service *dirs;
static struct kiln_build_service *builds;
static int null_fd = -1;

struct sized_sink {
        uint64_t size;
};

static int count_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        (void)p, (void)err;
        ((struct sized_sink *)ctx)->size += n;
        return 0;
}

struct check_ctx {
        struct kiln_nix_pathinfo_store *pi;
};

static int check_record(void *ctx, const struct kiln_nix_pathinfo *p, struct kiln_error **err)
{
        struct check_ctx *c = ctx;
        struct sized_sink counted = {0};
        struct kiln_nix_nar_sink sink = {count_write, &counted};
        struct kiln_nix_nar_info info;
        FUZZ_CHECK(kiln_nix_nar_dump_node(blobs, dirs, &p->node, &sink, &info, err) == 0);
        FUZZ_CHECK(info.size == p->nar_size && counted.size == p->nar_size);
        FUZZ_CHECK(kiln_nix_hash_eq(&info.hash, &p->nar_hash));
        for (size_t i = 0; i < p->references.n; i++) {
                if (!strcmp(p->references.v[i], p->path))
                        continue;
                struct kiln_nix_pathinfo ref;
                int r = kiln_nix_pathinfo_get(c->pi, p->references.v[i], &ref, err);
                FUZZ_CHECK(r == 1);
                kiln_nix_pathinfo_done(&ref);
        }
        return 0;
}

static void rm_store(const char *dir)
{
        char path[256];
        const char *files[] = {"data.mdb", "lock.mdb"};
        for (size_t i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
                unlink(path);
        }
        rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct kiln_error *err = NULL;
        if (null_fd < 0) {
                null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
                FUZZ_CHECK(null_fd >= 0);
        }
        if (size > 1024 * 1024)
                return 0;
        /* A castore of its own per input, as the PathInfo store: a session's
         * outcome never depends on earlier inputs, and memory stays that of
         * one session. */
        FUZZ_CHECK(kiln_blob_service_open("memory://", &blobs, &err) == 0);
        FUZZ_CHECK(kiln_directory_service_open("memory://", &dirs, &err) == 0);
        FUZZ_CHECK(kiln_build_service_open("dummy://", blobs, dirs, &builds, &err) == 0);
        /* The whole input in a pipe whose writer is closed: the session
         * reads it and then sees the client's end of input. */
        int in[2];
        FUZZ_CHECK(pipe2(in, O_CLOEXEC) == 0);
        if (size > 65536)
                FUZZ_CHECK(fcntl(in[1], F_SETPIPE_SZ, 1024 * 1024) >= 0);
        for (size_t off = 0; off < size;) {
                ssize_t n = write(in[1], data + off, size - off);
                FUZZ_CHECK(n > 0);
                off += (size_t)n;
        }
        close(in[1]);

        char dir[] = "/dev/shm/fuzz-nix-serve.XXXXXX";
        FUZZ_CHECK(mkdtemp(dir));
        struct kiln_nix_pathinfo_store *pi = NULL;
        FUZZ_CHECK(kiln_nix_pathinfo_store_open(dir, &pi, &err) == 0);
        struct kiln_nixbuild_serve_options o = {
            .build = {.blobs = blobs, .dirs = dirs, .builds = builds, .pathinfo = pi,
                      .request = {.cores = 1}},
            .write = true,
            .ignore_hangup = true,
        };
        int r = kiln_nixbuild_serve(&o, in[0], null_fd, &err);
        if (r < 0) {
                FUZZ_CHECK(err && err->msg && *err->msg);
                kiln_error_free(err);
                err = NULL;
        } else {
                FUZZ_CHECK(r == 0 && !err);
        }
        close(in[0]);
        struct check_ctx c = {pi};
        FUZZ_CHECK(kiln_nix_pathinfo_list(pi, check_record, &c, &err) == 0);
        kiln_nix_pathinfo_store_close(pi);
        rm_store(dir);
        kiln_build_service_free(builds);
        kiln_directory_service_free(dirs);
        kiln_blob_service_free(blobs);
        return 0;
}
