/* Exporting a node back to the filesystem. The tree is built under a
 * temporary sibling of the destination and renamed into place at the end
 * (without replacing anything), so a failure leaves nothing at dest. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <kiln/castore/digest_map.h>
#include <kiln/util/fsutil.h>
#include <kiln/ingest/import.h>

#define COPY_BUF_SIZE (1024 * 1024)

struct exporter {
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_digest_map closure; /* digest -> struct kiln_directory * */
        uint8_t *buf;
};

static int write_file(struct exporter *ex, int dirfd, const char *name,
                      const struct kiln_node *n, struct kiln_error **err)
{
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        int r = kiln_blob_open_read(ex->blobs, &n->digest, &rd, err);
        if (r < 0)
                return r;
        if (r == 0)
                return kiln_error_set(err, ENOENT, "blob %s not found", KILN_DIGEST_B64(&n->digest));
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                                        O_NOFOLLOW, n->executable ? 0755 : 0644);
        if (fd < 0)
                return kiln_error_errno(err, errno, "unable to create file");
        uint64_t total = 0;
        for (;;) {
                ssize_t got = kiln_blob_reader_read(rd, ex->buf, COPY_BUF_SIZE, err);
                if (got < 0)
                        return (int)got;
                if (got == 0)
                        break;
                r = kiln_write_all(fd, ex->buf, (size_t)got);
                if (r < 0)
                        return kiln_error_errno(err, -r, "unable to write file");
                total += (uint64_t)got;
        }
        if (total != n->size)
                return kiln_error_set(err, EBADMSG, "blob %s has %llu bytes, the node says %llu",
                                      KILN_DIGEST_B64(&n->digest), (unsigned long long)total,
                                      (unsigned long long)n->size);
        return 0;
}

static int write_symlink(int dirfd, const char *name, const struct kiln_node *n,
                         struct kiln_error **err)
{
        _cleanup_free_ char *target = kiln_malloc(n->target.len + 1);
        memcpy(target, n->target.data, n->target.len);
        target[n->target.len] = '\0';
        if (symlinkat(target, dirfd, name) < 0)
                return kiln_error_errno(err, errno, "unable to create symlink");
        return 0;
}

static int write_node(struct exporter *ex, int dirfd, const char *name,
                      const struct kiln_node *n, const char *path, struct kiln_error **err);

static int write_dir(struct exporter *ex, int dirfd, const char *name, const struct kiln_node *n,
                     const char *path, bool exists, struct kiln_error **err)
{
        const struct kiln_directory *d = kiln_digest_map_get(&ex->closure, &n->digest);
        if (!d)
                return kiln_error_set(err, ENOENT, "directory %s not found",
                                      KILN_DIGEST_B64(&n->digest));
        if (!exists && mkdirat(dirfd, name, 0755) < 0)
                return kiln_error_errno(err, errno, "unable to create directory");
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                        O_CLOEXEC);
        if (fd < 0)
                return kiln_error_errno(err, errno, "unable to open directory");
        for (size_t i = 0; i < d->n; i++) {
                const struct kiln_node *c = &d->nodes[i];
                /* Names are validated components: no '/', no NUL, not . or .. */
                _cleanup_free_ char *cname = kiln_malloc(c->name.len + 1);
                memcpy(cname, c->name.data, c->name.len);
                cname[c->name.len] = '\0';
                _cleanup_free_ char *cpath = kiln_asprintf("%s/%s", path, cname);
                int r = write_node(ex, fd, cname, c, cpath, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int write_node(struct exporter *ex, int dirfd, const char *name,
                      const struct kiln_node *n, const char *path, struct kiln_error **err)
{
        int r;
        switch (n->kind) {
        case KILN_NODE_FILE:
                r = write_file(ex, dirfd, name, n, err);
                break;
        case KILN_NODE_SYMLINK:
                r = write_symlink(dirfd, name, n, err);
                break;
        case KILN_NODE_DIRECTORY:
                return write_dir(ex, dirfd, name, n, path, false, err);
        default:
                return kiln_error_set(err, EINVAL, "%s: unknown node kind", path);
        }
        return r < 0 ? kiln_error_prefix(err, r, "%s", path) : 0;
}

/* Loads the whole closure of a Directory into ex->closure. */
static int load_closure(struct exporter *ex, const struct kiln_digest *root,
                        struct kiln_error **err)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = kiln_directory_get_recursive(ex->dirs, root, &st, err);
        if (r < 0)
                return r;
        for (;;) {
                struct kiln_directory *d = kiln_directory_new();
                struct kiln_digest dg;
                r = kiln_directory_stream_next(st, d, &dg, err);
                if (r <= 0) {
                        kiln_directory_free(d);
                        break;
                }
                kiln_directory_free(kiln_digest_map_put(&ex->closure, &dg, d));
        }
        if (r < 0)
                return r;
        if (!kiln_digest_map_get(&ex->closure, root))
                return kiln_error_set(err, ENOENT, "directory %s not found", KILN_DIGEST_B64(root));
        return 0;
}

/* The umask without changing it (umask(2) cannot read it atomically). */
static mode_t current_umask(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        unsigned m = 022;
        char line[256];
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "Umask: %o", &m) == 1)
                        break;
        if (f)
                fclose(f);
        return (mode_t)m;
}

static void free_dir(void *p)
{
        kiln_directory_free(p);
}

int kiln_export_node(struct kiln_blob_service *blobs, struct kiln_directory_service *dirs,
                     const struct kiln_node *root, int dirfd, const char *dest,
                     struct kiln_error **err)
{
        struct stat st;
        if (fstatat(dirfd, dest, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return kiln_error_set(err, EEXIST, "refusing to overwrite existing %s", dest);
        if (errno != ENOENT)
                return kiln_error_errno(err, errno, "unable to stat %s", dest);

        struct exporter ex = {.blobs = blobs, .dirs = dirs};
        _cleanup_free_ char *tmp = NULL;
        int r;
        if (root->kind == KILN_NODE_DIRECTORY) {
                r = load_closure(&ex, &root->digest, err);
                if (r < 0)
                        goto out;
        }
        r = kiln_mkdtemp_beside(dirfd, dest, "kiln-export", &tmp);
        if (r < 0) {
                r = kiln_error_errno(err, -r, "unable to create a temporary directory beside %s",
                                     dest);
                goto out;
        }
        ex.buf = kiln_malloc(COPY_BUF_SIZE);
        if (root->kind == KILN_NODE_DIRECTORY) {
                r = write_dir(&ex, dirfd, tmp, root, dest, true, err);
                if (r == 0 && fchmodat(dirfd, tmp, 0755 & ~current_umask(), 0) < 0)
                        r = kiln_error_errno(err, errno, "unable to set the mode of %s", dest);
        } else {
                /* Non-directory roots are written inside the temporary directory
                 * and moved out of it. */
                _cleanup_free_ char *inner = kiln_asprintf("%s/node", tmp);
                r = write_node(&ex, dirfd, inner, root, dest, err);
                if (r == 0 && renameat2(dirfd, inner, dirfd, dest, RENAME_NOREPLACE) < 0)
                        r = kiln_error_errno(err, errno, "unable to move the result to %s", dest);
                goto cleanup;
        }
        if (r == 0 && renameat2(dirfd, tmp, dirfd, dest, RENAME_NOREPLACE) < 0)
                r = kiln_error_errno(err, errno, "unable to move the result to %s", dest);
        if (r == 0) {
                free(tmp);
                tmp = NULL;
        }
cleanup:
        if (tmp)
                (void)kiln_rm_rf_at(dirfd, tmp);
out:
        free(ex.buf);
        kiln_digest_map_done(&ex.closure, free_dir);
        return r;
}
