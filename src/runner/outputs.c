/* The outputs of a build: each one ingested from the scratch space
 * as an untrusted tree (no setuid/setgid bits, nothing from another
 * filesystem, no special files), never following a symlink the build
 * planted, with reference scanning over the request's needles. */
#include <fcntl.h>
#include <sys/stat.h>

#include <kiln/ingest/import.h>
#include <kiln/ingest/refscan.h>

#include "runner.h"

/* The basename of a clean relative path. */
static const char *basename_of(const char *p)
{
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

int runner_ingest_outputs(struct runner_build *b, struct kiln_build *ret, struct kiln_error **err)
{
        const struct kiln_build_request *req = b->req;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        if (req->needles.n) {
                const uint8_t **needles = kiln_calloc(req->needles.n, sizeof(*needles));
                size_t *lens = kiln_calloc(req->needles.n, sizeof(*lens));
                for (size_t i = 0; i < req->needles.n; i++) {
                        needles[i] = (const uint8_t *)req->needles.v[i];
                        lens[i] = strlen(req->needles.v[i]);
                }
                int r = kiln_refscan_set_new(needles, lens, req->needles.n, &set, err);
                free(needles);
                free(lens);
                if (r < 0)
                        return kiln_error_prefix(err, r, "refscan_needles");
        }
        ret->outputs = kiln_calloc(req->outputs.n, sizeof(*ret->outputs));
        for (size_t i = 0; i < req->outputs.n; i++) {
                const char *out = req->outputs.v[i], *rest;
                const char *prefix = runner_scratch_prefix(req, out, &rest);
                _cleanup_close_ int base = runner_scratch_fd(b, prefix);
                if (base < 0)
                        return kiln_error_errno(err, -base, "ingest: open scratch %s", prefix);
                /* Walk to the output's parent without following symlinks the
                 * build may have planted; the output itself is never followed. */
                _cleanup_free_ char *parent = kiln_strdup(rest);
                char *slash = strrchr(parent, '/');
                /* An output that is a scratch path itself is that directory. */
                const char *leaf = slash ? slash + 1 : *parent ? parent : ".";
                if (slash)
                        *slash = '\0';
                _cleanup_close_ int pfd = slash ? runner_open_beneath(base, parent, O_RDONLY |
                                                               O_DIRECTORY)
                                                : dup(base);
                struct stat st;
                if (pfd < 0 || fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return kiln_error_set(err, EIO, "output %s was not produced", out);

                _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *found =
                        set ? kiln_refscan_result_new(set) : NULL;
                struct kiln_import_options o = {
                        .blobs = b->svc->blobs,
                        .dirs = b->svc->dirs,
                        .needles = set,
                        .found = found,
                        .scan_names = true,
                        .untrusted = true,
                };
                struct kiln_build_output *bo = &ret->outputs[ret->n_outputs];
                int r = kiln_import_path(&o, pfd, leaf, &bo->node, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "ingest output %s", out);
                ret->n_outputs++;
                const char *name = basename_of(out);
                kiln_node_set_name(&bo->node, name, strlen(name));
                if (found)
                        bo->n_needles = kiln_refscan_result_list(found, &bo->needles);
        }
        return 0;
}
