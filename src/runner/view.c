/* The inputs view: one FUSE mount of the castore per build service, shared
 * by its builds, each of which binds only its own inputs from it.
 *
 * A mount per build read every input afresh through FUSE (decompressed and
 * verified again) and paid for the mount itself; the shared view keeps the
 * kernel's page cache and the listings across builds, which is what a
 * builder running the same toolchain many times lives on. Its content is
 * addressed by digest and never changes, so sharing it lets no build see
 * another's data: a build's sandbox holds bind mounts of its own input
 * roots only (d-<digest>, f-/x-<digest>-<size>; kiln_fuse_root_add), and the
 * view's root cannot be listed.
 *
 * Lifetime. The view is mounted at the first build that needs it, at
 * <bundle root>/.view-<uuid>, and stays while the service lives. Its inodes
 * are never freed (fuse.h), so once it holds RUNNER_VIEW_MAX_INODES the next
 * build starts a new one and the old one is unmounted when its last build
 * is done. Each view holds an flock on .state/view-<uuid>.lock: a view
 * whose lock nobody holds was left by a killed service and is removed by
 * runner_views_recover. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kiln/fuse/fuse.h>

#include "runner.h"

/* About 100 bytes an inode, and their listings: tens of MiB at most. */
#define RUNNER_VIEW_MAX_INODES (1u << 18)

struct runner_view {
        struct kiln_fuse *fuse;
        char *dir;
        char *lock_path;
        int lock_fd;
        unsigned refs; /* builds using it, under svc->view_lock */
};

static void view_free(struct runner_view *v)
{
        if (!v)
                return;
        kiln_fuse_free(v->fuse);
        if (v->dir)
                (void)rmdir(v->dir);
        if (v->lock_fd >= 0) {
                (void)unlink(v->lock_path);
                close(v->lock_fd);
        }
        free(v->dir);
        free(v->lock_path);
        free(v);
}

static int view_new(struct runner_service *s, struct runner_view **ret, struct kiln_error **err)
{
        char id[37];
        runner_make_uuid(id);
        struct runner_view *v = kiln_calloc(1, sizeof(*v));
        v->lock_path = kiln_asprintf("%s/.state/view-%s.lock", s->cfg.bundle_root, id);
        /* locked before it has its name, so that recovery never sees it
         * unlocked */
        _cleanup_free_ char *tmp = kiln_asprintf("%s.new", v->lock_path);
        v->lock_fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (v->lock_fd < 0 || flock(v->lock_fd, LOCK_EX | LOCK_NB) < 0 ||
            rename(tmp, v->lock_path) < 0) {
                int r = kiln_error_errno(err, errno, "create %s", v->lock_path);
                if (v->lock_fd >= 0)
                        (void)unlink(tmp);
                if (v->lock_fd >= 0)
                        close(v->lock_fd);
                v->lock_fd = -1;
                view_free(v);
                return r;
        }
        v->dir = kiln_asprintf("%s/.view-%s", s->cfg.bundle_root, id);
        if (mkdir(v->dir, 0755) < 0) {
                int r = kiln_error_errno(err, errno, "create %s", v->dir);
                free(v->dir);
                v->dir = NULL;
                view_free(v);
                return r;
        }
        unsigned threads = 2 * s->cfg.concurrency;
        struct kiln_fuse_options o = {
                .threads = KILN_MIN(KILN_MAX(threads, 4u), 16u),
                .allow_other = true, /* bound into a user namespace (docs/ARCHITECTURE.md) */
                .dynamic_roots = true,
        };
        int r = kiln_fuse_mount(s->blobs, s->dirs, NULL, 0, v->dir, &o, &v->fuse, err);
        if (r < 0) {
                view_free(v);
                return kiln_error_prefix(err, r, "mount the inputs view");
        }
        *ret = v;
        return 0;
}

int runner_view_acquire(struct runner_service *s, struct runner_view **ret,
                        struct kiln_error **err)
{
        pthread_mutex_lock(&s->view_lock);
        struct runner_view *v = s->view;
        if (v && kiln_fuse_inode_count(v->fuse) >= RUNNER_VIEW_MAX_INODES) {
                /* full: builds still using it keep it until they are done */
                s->view = NULL;
                if (--v->refs == 0)
                        view_free(v);
                v = NULL;
        }
        if (!v) {
                int r = view_new(s, &v, err);
                if (r < 0) {
                        pthread_mutex_unlock(&s->view_lock);
                        return r;
                }
                v->refs = 1; /* the service's */
                s->view = v;
        }
        v->refs++;
        pthread_mutex_unlock(&s->view_lock);
        *ret = v;
        return 0;
}

void runner_view_release(struct runner_service *s, struct runner_view *v)
{
        if (!v)
                return;
        pthread_mutex_lock(&s->view_lock);
        bool last = --v->refs == 0;
        pthread_mutex_unlock(&s->view_lock);
        if (last)
                view_free(v);
}

void runner_view_done(struct runner_service *s)
{
        runner_view_release(s, s->view);
        s->view = NULL;
}

int runner_view_source(struct runner_view *v, const struct kiln_node *n, char **ret,
                       struct kiln_error **err)
{
        _cleanup_free_ char *name = NULL;
        int r = kiln_fuse_root_add(v->fuse, n, &name, err);
        if (r < 0)
                return r;
        *ret = kiln_asprintf("%s/%s", v->dir, name);
        return 0;
}

void runner_views_recover(const char *bundle_root)
{
        DIR *d = opendir(bundle_root);
        if (!d)
                return;
        struct dirent *de;
        size_t n = 0;
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, ".view-", 6))
                        continue;
                _cleanup_free_ char *lock =
                        kiln_asprintf("%s/.state/view-%s.lock", bundle_root, de->d_name + 6);
                _cleanup_close_ int fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
                if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
                        continue; /* a live service's */
                _cleanup_free_ char *dir = kiln_asprintf("%s/%s", bundle_root, de->d_name);
                (void)umount2(dir, MNT_DETACH);
                if (rmdir(dir) == 0)
                        n++;
                if (fd >= 0)
                        (void)unlink(lock);
        }
        closedir(d);
        if (n)
                fprintf(stderr, "kiln: note: removed %zu inputs view(s) that a killed build "
                                "service left in %s\n",
                        n, bundle_root);
}
