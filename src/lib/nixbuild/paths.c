/* Store paths between the local Nix store and castore: input closures read
 * from Nix's database (through its daemon) and imported once, remembered by
 * store path in the PathInfo store; build outputs checked as Nix checks
 * them, then registered in the Nix store with their full metadata. */
#include <fcntl.h>
#include <time.h>

#include <kiln/ingest/import.h>
#include <kiln/nix/nixbase32.h>

#include "nixbuild_int.h"

/* --- inputs --- */

int nixbuild_closure(struct nixbuild *nb, const struct kiln_strv *roots, struct kiln_strv *ret,
                     struct kiln_error **err)
{
        if (!nb->daemon) /* inputs come from the PathInfo store alone */
                return kiln_nix_pathinfo_closure(nb->o->pathinfo, roots, ret, err);
        struct kiln_strv todo = {0}, seen = {0};
        int r = 0;
        for (size_t i = 0; i < roots->n; i++)
                kiln_strv_push(&todo, roots->v[i]);
        for (size_t i = 0; r == 0 && i < todo.n; i++) {
                bool dup = false;
                for (size_t k = 0; k < seen.n && !dup; k++)
                        dup = !strcmp(seen.v[k], todo.v[i]);
                if (dup)
                        continue;
                kiln_strv_push(&seen, todo.v[i]);
                struct kiln_nix_path_info info;
                pthread_mutex_lock(&nb->daemon_lock);
                r = kiln_nix_daemon_query_path_info(nb->daemon, todo.v[i], &info, err);
                pthread_mutex_unlock(&nb->daemon_lock);
                if (r == 0)
                        r = kiln_error_set(err, ENOENT, "path '%s' is not valid", todo.v[i]);
                if (r < 0)
                        break;
                r = 0;
                for (size_t k = 0; k < info.references.n; k++)
                        kiln_strv_push(&todo, info.references.v[k]);
                kiln_nix_path_info_done(&info);
        }
        kiln_strv_done(&todo);
        if (r < 0) {
                kiln_strv_done(&seen);
                return r;
        }
        *ret = seen;
        return 0;
}

/* Whether the stores still hold a remembered node's root object. */
static bool node_present(struct nixbuild *nb, const struct kiln_node *n)
{
        if (n->kind == KILN_NODE_SYMLINK)
                return true;
        if (n->kind == KILN_NODE_FILE)
                return kiln_blob_has(nb->o->blobs, &n->digest, NULL) > 0;
        struct kiln_directory d = {0};
        int r = kiln_directory_get(nb->o->dirs, &n->digest, &d, NULL);
        kiln_directory_done(&d);
        return r > 0;
}

/* The castore node of a valid store path, imported unless remembered. */
static int input_node(struct nixbuild *nb, const char *path, struct kiln_node *ret,
                      struct kiln_error **err)
{
        struct kiln_nix_pathinfo pi;
        int r = kiln_nix_pathinfo_get(nb->o->pathinfo, path, &pi, err);
        if (r < 0)
                return r;
        if (r > 0 && node_present(nb, &pi.node)) {
                kiln_node_copy(ret, &pi.node);
                kiln_nix_pathinfo_done(&pi);
                return 0;
        }
        if (r > 0)
                kiln_nix_pathinfo_done(&pi);
        if (!nb->daemon)
                return kiln_error_set(err, ENOENT, "path '%s' is not valid%s", path,
                                      r > 0 ? " (its contents are missing from castore)" : "");

        struct kiln_nix_path_info info;
        pthread_mutex_lock(&nb->daemon_lock);
        r = kiln_nix_daemon_query_path_info(nb->daemon, path, &info, err);
        pthread_mutex_unlock(&nb->daemon_lock);
        if (r == 0)
                return kiln_error_set(err, ENOENT, "path '%s' is not valid", path);
        if (r < 0)
                return r;
        if (nb->o->log) {
                _cleanup_free_ char *line = kiln_asprintf("importing '%s' into kiln's store", path);
                nb->o->log(nb->o->userdata, line);
        }
        struct kiln_import_options io = {.blobs = nb->o->blobs, .dirs = nb->o->dirs};
        struct kiln_node node = {0};
        r = kiln_import_path(&io, AT_FDCWD, path, &node, err);
        if (r < 0) {
                kiln_nix_path_info_done(&info);
                return kiln_error_prefix(err, r, "import %s", path);
        }
        const char *base = strrchr(path, '/') + 1;
        kiln_node_set_name(&node, base, strlen(base));
        struct kiln_nix_pathinfo rec = {
                .path = kiln_strdup(path),
                .node = node,
                .nar_hash = info.nar_hash,
                .nar_size = info.nar_size,
                .references = info.references,
                .deriver = info.deriver,
                .ca = info.ca,
        };
        info.references = (struct kiln_strv){0};
        info.deriver = info.ca = NULL;
        kiln_nix_path_info_done(&info);
        r = kiln_nix_pathinfo_put(nb->o->pathinfo, &rec, err);
        if (r == 0)
                kiln_node_copy(ret, &rec.node);
        kiln_nix_pathinfo_done(&rec);
        return r;
}

int nixbuild_input_node(struct nixbuild *nb, const char *path, struct kiln_node *ret,
                        struct kiln_error **err)
{
        pthread_mutex_lock(&nb->import_lock);
        int r = input_node(nb, path, ret, err);
        pthread_mutex_unlock(&nb->import_lock);
        return r;
}

/* --- outputs --- */

struct hash_sink {
        struct kiln_nix_hasher h;
};

static int hash_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        (void)err;
        kiln_nix_hasher_update(&((struct hash_sink *)ctx)->h, p, n);
        return 0;
}

/* What a fixed output's hash covers: the file's bytes (flat) or its NAR. */
static int content_hash(struct nixbuild *nb, const struct kiln_nix_drv_output *o,
                        const struct kiln_node *node, const char *drv_path,
                        struct kiln_nix_hash *ret, struct kiln_error **err)
{
        struct hash_sink hs;
        kiln_nix_hasher_init(&hs.h, o->hash.algo);
        int r;
        if (o->method == KILN_NIX_FLAT) {
                if (node->kind != KILN_NODE_FILE || node->executable) {
                        kiln_nix_hasher_done(&hs.h);
                        return kiln_error_set(err, EINVAL,
                                              "output of fixed-output derivation '%s' is not a "
                                              "regular non-executable file, as flat hashing "
                                              "needs",
                                              drv_path);
                }
                struct kiln_blob_reader *rd;
                r = kiln_blob_open_read(nb->o->blobs, &node->digest, &rd, err);
                if (r == 0)
                        r = kiln_error_set(err, ENOENT, "blob %s not found",
                                           KILN_DIGEST_B64(&node->digest));
                if (r > 0) {
                        uint8_t *buf = kiln_malloc(256 * 1024);
                        ssize_t k;
                        while ((k = kiln_blob_reader_read(rd, buf, 256 * 1024, err)) > 0)
                                kiln_nix_hasher_update(&hs.h, buf, (size_t)k);
                        r = k < 0 ? (int)k : 0;
                        free(buf);
                        kiln_blob_reader_free(rd);
                }
        } else {
                struct kiln_nix_nar_sink sink = {.write = hash_write, .ctx = &hs};
                r = kiln_nix_nar_dump_node(nb->o->blobs, nb->o->dirs, node, &sink, NULL, err);
        }
        if (r == 0)
                kiln_nix_hasher_final(&hs.h, ret);
        kiln_nix_hasher_done(&hs.h);
        return r;
}

struct nar_ctx {
        struct nixbuild *nb;
        const struct kiln_node *node;
};

static int produce_nar(void *ctx, const struct kiln_nix_nar_sink *sink, struct kiln_error **err)
{
        struct nar_ctx *c = ctx;
        return kiln_nix_nar_dump_node(c->nb->o->blobs, c->nb->o->dirs, c->node, sink, NULL, err);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks, registers and remembers one output of a finished build. */
int nixbuild_register_output(struct nixbuild *nb, const struct kiln_nix_derivation *d,
                             const char *drv_path, const char *out_name,
                             const struct kiln_nixbuild_plan *plan,
                             const struct kiln_build_output *bo, struct kiln_error **err)
{
        const struct kiln_nix_drv_output *o = kiln_nix_derivation_output(d, out_name);
        _cleanup_free_ char *path = kiln_nix_store_path_to_string(&o->path);
        struct kiln_nix_path_info info = {.path = kiln_strdup(path),
                                          .deriver = kiln_strdup(drv_path),
                                          .ultimate = true,
                                          .registration_time = (uint64_t)time(NULL)};
        int r = 0;
        for (size_t i = 0; i < bo->n_needles; i++)
                kiln_strv_push(&info.references, plan->needle_paths.v[bo->needles[i]]);
        if (info.references.n)
                qsort(info.references.v, info.references.n, sizeof(char *), cmp_str);

        if (o->kind == KILN_NIX_OUTPUT_FIXED) {
                struct kiln_nix_hash got;
                r = content_hash(nb, o, &bo->node, drv_path, &got, err);
                if (r == 0 && !kiln_nix_hash_eq(&got, &o->hash))
                        r = kiln_error_set_lines(err, EBADMSG,
                                           "hash mismatch in fixed-output derivation '%s':\n"
                                           "  specified: %s\n     got:    %s",
                                           drv_path, KILN_NIX_HASH_STR(&o->hash, KILN_NIX_SRI, true),
                                           KILN_NIX_HASH_STR(&got, KILN_NIX_SRI, true));
                if (r == 0 && info.references.n)
                        r = kiln_error_set(err, EINVAL,
                                           "fixed-output derivation '%s' refers to store paths "
                                           "(%s), which kiln does not support",
                                           drv_path, info.references.v[0]);
                if (r == 0)
                        info.ca = kiln_asprintf(
                                "fixed:%s%s",
                                o->method == KILN_NIX_RECURSIVE ? "r:" : "",
                                KILN_NIX_HASH_STR(&got, KILN_NIX_NIXBASE32, true));
        }
        struct kiln_nix_nar_info nar;
        if (r == 0)
                r = kiln_nix_nar_dump_node(nb->o->blobs, nb->o->dirs, &bo->node, NULL, &nar, err);
        if (r == 0) {
                info.nar_hash = nar.hash;
                info.nar_size = nar.size;
        }
        if (r == 0 && nb->daemon) {
                struct nar_ctx nc = {.nb = nb, .node = &bo->node};
                pthread_mutex_lock(&nb->daemon_lock);
                r = kiln_nix_daemon_add_nar(nb->daemon, &info, produce_nar, &nc, err);
                pthread_mutex_unlock(&nb->daemon_lock);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "cannot register %s", path);
        }
        if (r == 0) {
                const char *base = strrchr(path, '/') + 1;
                struct kiln_nix_pathinfo rec = {
                        .path = path,
                        .nar_hash = info.nar_hash,
                        .nar_size = info.nar_size,
                        .references = info.references,
                        .deriver = info.deriver,
                        .ca = info.ca,
                };
                kiln_node_copy(&rec.node, &bo->node);
                kiln_node_set_name(&rec.node, base, strlen(base));
                r = kiln_nix_pathinfo_put(nb->o->pathinfo, &rec, err);
                kiln_node_done(&rec.node);
        }
        kiln_nix_path_info_done(&info);
        return r;
}
