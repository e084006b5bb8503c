/* NAR import into in-memory stores: any bytes are rejected with one line or
 * accepted; an accepted NAR dumps back from castore to the same bytes, with
 * the same SHA-256 and size (only the canonical form is accepted). */
#include <kiln/castore/castore.h>
#include <kiln/nix/nar.h>
#include <kiln/store/store.h>

#include "fuzz.h"

struct mem_src {
        const uint8_t *p;
        size_t n, pos;
};

static ssize_t src_read(void *ctx, void *buf, size_t n, struct kiln_error **err)
{
        (void)err;
        struct mem_src *s = ctx;
        /* Small, uneven reads, so that every boundary in the reader is hit. */
        size_t k = KILN_MIN(n, KILN_MIN(s->n - s->pos, 1 + s->pos % 7));
        memcpy(buf, s->p + s->pos, k);
        s->pos += k;
        return (ssize_t)k;
}

static int sink_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        (void)err;
        kiln_buf_append(ctx, p, n);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Stores of its own per input: an input's outcome never depends on
         * what earlier ones stored, and memory stays that of one input. */
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_error *err = NULL;
        FUZZ_CHECK(kiln_blob_service_open("memory://", &blobs, &err) == 0);
        FUZZ_CHECK(kiln_directory_service_open("memory://", &dirs, &err) == 0);
        struct mem_src s = {data, size, 0};
        struct kiln_nix_nar_source src = {src_read, &s};
        struct kiln_node root = {0};
        struct kiln_nix_nar_info info, back_info;
        int r = kiln_nix_nar_import(blobs, dirs, &src, &root, &info, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                kiln_directory_service_free(dirs);
                kiln_blob_service_free(blobs);
                return 0;
        }
        FUZZ_CHECK(info.size == size);
        struct kiln_buf back = KILN_BUF_INIT;
        struct kiln_nix_nar_sink sink = {sink_write, &back};
        FUZZ_CHECK(kiln_nix_nar_dump_node(blobs, dirs, &root, &sink, &back_info, &err) == 0);
        FUZZ_CHECK(back.len == size && !memcmp(back.data, data, size));
        FUZZ_CHECK(back_info.size == info.size &&
                   !memcmp(&back_info.hash, &info.hash, sizeof(info.hash)));
        kiln_buf_done(&back);
        kiln_node_done(&root);
        kiln_directory_service_free(dirs);
        kiln_blob_service_free(blobs);
        return 0;
}
