/* Mounting, serving and unmounting.
 *
 * Serving uses our own fixed pool of worker threads, each looping over
 * fuse_session_receive_buf()/fuse_session_process_buf() on the session's
 * descriptor, rather than fuse_session_loop_mt(): the pool has a known size
 * from the start (no thread churn, per-thread read buffers live as long as
 * the mount), and it can be stopped without signals. libfuse's loop waits
 * on a semaphore that only a signal or a worker's exit wakes; ours is ended
 * by the kernel (unmount → ENODEV in every worker) or, when the mount is
 * busy, by cancelling the workers while they wait in read() (cancellation
 * is only enabled there, as libfuse does) and closing the device, which
 * aborts the connection. (libfuse's clone_fd needs its internal channel API,
 * so all workers share one descriptor; the kernel hands each request to one
 * reader.)
 *
 * Mount options: ro,nosuid,nodev,default_permissions, fsname and subtype
 * "kiln" (type fuse.kiln), max_read of 1 MiB, allow_other on request. After
 * the kernel's INIT the mount's readahead is raised through
 * /sys/class/bdi/<dev>/read_ahead_kb (FUSE INIT can only lower it). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "fuse_int.h"

#define KFUSE_INIT_TIMEOUT_S   30
#define KFUSE_DRAIN_TIMEOUT_MS 1000

struct kfuse_worker {
        struct kiln_fuse *f;
        struct fuse_buf fbuf;
};

const char *kiln_fuse_mountpoint(const struct kiln_fuse *f)
{
        return f->mountpoint;
}

/* --- workers --- */

static void eventfd_signal(int fd)
{
        uint64_t one = 1;
        (void)!write(fd, &one, sizeof(one));
}

static void worker_cleanup(void *arg)
{
        struct kfuse_worker *w = arg;
        kfuse_thread_buf_free();
        if (atomic_fetch_sub(&w->f->running, 1) == 1)
                eventfd_signal(w->f->done_fd);
}

static void *worker_main(void *arg)
{
        struct kfuse_worker *w = arg;
        struct kiln_fuse *f = w->f;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_cleanup_push(worker_cleanup, w);
        while (!fuse_session_exited(f->se)) {
                /* Only a worker idle in read() may be cancelled; one that is
                 * answering a request finishes it. */
                pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
                int res = fuse_session_receive_buf(f->se, &w->fbuf);
                pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
                if (res == -EINTR || res == -EAGAIN)
                        continue;
                if (res <= 0) {
                        /* 0: unmounted (ENODEV); libfuse marked the session exited */
                        if (res < 0) {
                                /* The device failed: have kiln_fuse_wait()
                                 * take the mount down and report it. */
                                f->loop_error = res;
                                fuse_session_exit(f->se);
                                eventfd_signal(f->stop_fd);
                        }
                        break;
                }
                fuse_session_process_buf(f->se, &w->fbuf);
        }
        pthread_cleanup_pop(1);
        return NULL;
}

static int start_workers(struct kiln_fuse *f, unsigned n, struct kiln_error **err)
{
        f->workers = kiln_calloc(n, sizeof(*f->workers));
        f->worker_state = kiln_calloc(n, sizeof(*f->worker_state));
        /* Workers take no signals: the application's threads handle them. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = 0;
        for (unsigned i = 0; i < n; i++) {
                f->worker_state[i].f = f;
                atomic_fetch_add(&f->running, 1);
                r = pthread_create(&f->workers[i], NULL, worker_main, &f->worker_state[i]);
                if (r != 0) {
                        atomic_fetch_sub(&f->running, 1);
                        break;
                }
                f->n_workers++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r != 0)
                return kiln_error_errno(err, r, "start fuse worker thread");
        return 0;
}

/* Waits up to timeout_ms (-1: forever) for the last worker to leave. */
static bool wait_done(struct kiln_fuse *f, int timeout_ms)
{
        if (atomic_load(&f->running) == 0)
                return true;
        struct pollfd p = {.fd = f->done_fd, .events = POLLIN};
        int r;
        do
                r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        return r > 0 || atomic_load(&f->running) == 0;
}

/* Ends the workers: those idle in read() are cancelled, a busy one finishes
 * its request first. Then joins them all. */
static void stop_workers(struct kiln_fuse *f, bool force)
{
        if (!f->workers)
                return;
        if (force) {
                fuse_session_exit(f->se);
                for (unsigned i = 0; i < f->n_workers; i++)
                        pthread_cancel(f->workers[i]);
        }
        for (unsigned i = 0; i < f->n_workers; i++) {
                pthread_join(f->workers[i], NULL);
                free(f->worker_state[i].fbuf.mem);
        }
        free(f->workers);
        free(f->worker_state);
        f->workers = NULL;
        f->worker_state = NULL;
        f->n_workers = 0;
}

/* --- unmounting --- */

/* Unmounts our mount and stops the workers. A plain unmount ends the
 * connection and with it the workers. A busy mount is not waited for: the
 * workers are stopped, then fuse_session_unmount() closes the device, which
 * aborts the connection (whoever still has files open gets ENOTCONN), and
 * detaches the mount. Only what is still our filesystem at the mount point
 * is unmounted: someone may have unmounted it and mounted something else
 * there. */
static void unmount_and_stop(struct kiln_fuse *f)
{
        bool force = false, foreign = false;
        if (f->mounted && atomic_load(&f->running) > 0) {
                struct stat st;
                int r = stat(f->mountpoint, &st);
                if (r == 0 && st.st_dev == f->dev) {
                        if (umount2(f->mountpoint, UMOUNT_NOFOLLOW) < 0)
                                force = true; /* busy */
                } else if (r < 0 && (errno == ENOTCONN || errno == ECONNABORTED)) {
                        /* aborted from outside (fusectl): detach what is left */
                        umount2(f->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
                } else {
                        /* detached from outside while busy, or covered */
                        foreign = force = true;
                }
        }
        if (!force && !wait_done(f, KFUSE_DRAIN_TIMEOUT_MS))
                force = true;
        stop_workers(f, force);
        /* Once the connection has ended this only closes the device. */
        if (f->mounted && !foreign)
                fuse_session_unmount(f->se);
        f->mounted = false;
}

/* --- mounting --- */

/* A server that died leaves its mount behind, failing every request with
 * ENOTCONN; detach it (and any others stacked there) so the mount point can
 * be used again. statfs always reaches the server, where stat may be
 * answered from attributes the kernel still caches. */
static int check_mountpoint(struct kiln_fuse *f, const char *mp, struct kiln_error **err)
{
        struct statfs sfs;
        for (int i = 0;
             i < 16 && statfs(mp, &sfs) < 0 && (errno == ENOTCONN || errno == ECONNABORTED); i++) {
                if (umount2(mp, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
                        return kiln_error_errno(err, errno,
                                                "mount point %s: detach dead FUSE mount", mp);
                kfuse_log(f, "detached a dead FUSE mount at %s", mp);
        }
        struct stat st;
        if (stat(mp, &st) < 0)
                return kiln_error_errno(err, errno, "mount point %s", mp);
        if (!S_ISDIR(st.st_mode))
                return kiln_error_set(err, ENOTDIR, "mount point %s: not a directory", mp);
        return 0;
}

static int wait_init(struct kiln_fuse *f, struct kiln_error **err)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += KFUSE_INIT_TIMEOUT_S;
        int r = 0;
        pthread_mutex_lock(&f->init_lock);
        while (!f->init_done && r == 0 && atomic_load(&f->running) > 0)
                r = pthread_cond_timedwait(&f->init_cond, &f->init_lock, &deadline);
        bool done = f->init_done;
        pthread_mutex_unlock(&f->init_lock);
        if (!done)
                return kiln_error_set(err, r == ETIMEDOUT ? ETIMEDOUT : EIO,
                                      "mount %s: the kernel did not initialise the filesystem",
                                      f->mountpoint);
        return 0;
}

static void set_readahead(struct kiln_fuse *f)
{
        char path[96], val[32];
        snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(f->dev),
                 minor(f->dev));
        int n = snprintf(val, sizeof(val), "%u",
                         f->opts.readahead_kb ? f->opts.readahead_kb : KFUSE_DEFAULT_READAHEAD_KB);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, val, (size_t)n) != n)
                kfuse_log(f, "cannot raise readahead (%s): %s", path, strerror(errno));
        if (fd >= 0)
                close(fd);
}

static unsigned default_threads(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (unsigned)KILN_MIN(n, 64) : 4;
}

static void fs_free(struct kiln_fuse *f)
{
        if (f->se)
                fuse_session_destroy(f->se); /* closes the device: aborts the connection */
        if (f->stop_fd >= 0)
                close(f->stop_fd);
        if (f->done_fd >= 0)
                close(f->done_fd);
        kfuse_readers_free_all(f);
        kfuse_table_done(f);
        pthread_mutex_destroy(&f->lock);
        pthread_mutex_destroy(&f->fetch_lock);
        pthread_cond_destroy(&f->fetch_cond);
        pthread_mutex_destroy(&f->closure_lock);
        pthread_mutex_destroy(&f->readers_lock);
        pthread_mutex_destroy(&f->init_lock);
        pthread_cond_destroy(&f->init_cond);
        free(f->mountpoint);
        free(f);
}

int kiln_fuse_mount(struct kiln_blob_service *blobs, struct kiln_directory_service *dirs,
                    const struct kiln_node *roots, size_t n_roots, const char *mountpoint,
                    const struct kiln_fuse_options *o, struct kiln_fuse **ret,
                    struct kiln_error **err)
{
        struct kiln_fuse *f = kiln_calloc(1, sizeof(*f));
        f->blobs = blobs;
        f->dirs = dirs;
        if (o)
                f->opts = *o;
        /* Absolute, so unmounting later does not depend on the cwd then. */
        if (mountpoint[0] == '/') {
                f->mountpoint = kiln_strdup(mountpoint);
        } else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                f->mountpoint = cwd ? kiln_asprintf("%s/%s", cwd, mountpoint)
                                    : kiln_strdup(mountpoint);
        }
        f->stop_fd = f->done_fd = -1;
        pthread_mutex_init(&f->lock, NULL);
        pthread_mutex_init(&f->fetch_lock, NULL);
        pthread_cond_init(&f->fetch_cond, NULL);
        pthread_mutex_init(&f->closure_lock, NULL);
        pthread_mutex_init(&f->readers_lock, NULL);
        pthread_mutex_init(&f->init_lock, NULL);
        pthread_cond_init(&f->init_cond, NULL);
        kfuse_table_init(f);

        int r;
        if (f->opts.dynamic_roots && n_roots) {
                r = kiln_error_set(err, EINVAL, "a mount with dynamic roots starts with none");
                goto fail;
        }
        if (f->opts.dynamic_roots)
                f->opts.list_root = false;
        r = kfuse_roots_init(f, roots, n_roots, err);
        if (r < 0)
                goto fail;
        r = check_mountpoint(f, mountpoint, err);
        if (r < 0)
                goto fail;

        f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        f->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->stop_fd < 0 || f->done_fd < 0) {
                r = kiln_error_errno(err, errno, "eventfd");
                goto fail;
        }

        char opts[256];
        snprintf(opts, sizeof(opts),
                 "ro,nosuid,nodev,default_permissions,fsname=kiln,subtype=kiln,max_read=%u%s",
                 KFUSE_MAX_READ, f->opts.allow_other ? ",allow_other" : "");
        char *argv[] = {"kiln", "-o", opts, NULL};
        struct fuse_args args = FUSE_ARGS_INIT(3, argv);
        f->se = fuse_session_new(&args, &kfuse_ops, sizeof(kfuse_ops), f);
        fuse_opt_free_args(&args);
        if (!f->se) {
                r = kiln_error_set(err, EINVAL, "mount %s: cannot create FUSE session", mountpoint);
                goto fail;
        }
        errno = 0;
        if (fuse_session_mount(f->se, mountpoint) != 0) {
                r = kiln_error_errno(err, errno ? errno : EIO, "mount %s", mountpoint);
                goto fail;
        }
        f->mounted = true;

        unsigned threads = f->opts.threads ? f->opts.threads : default_threads();
        /* Enough idle readers for every worker's sequential stream and
         * then some; each may hold a decompressed chunk. */
        f->max_idle = KILN_MAX(8u, KILN_MIN(4 * threads, 64u));
        r = start_workers(f, threads, err);
        if (r >= 0)
                r = wait_init(f, err);
        struct stat st;
        if (r >= 0 && stat(mountpoint, &st) < 0)
                r = kiln_error_errno(err, errno, "mount %s: stat after mounting", mountpoint);
        if (r < 0) {
                /* The mount we just made is the one on top at mountpoint. */
                stop_workers(f, true);
                fuse_session_unmount(f->se);
                f->mounted = false;
                goto fail;
        }
        f->dev = st.st_dev;
        set_readahead(f);
        *ret = f;
        return 0;
fail:
        fs_free(f);
        return r;
}

int kiln_fuse_wait(struct kiln_fuse *f, struct kiln_error **err)
{
        struct pollfd p[2] = {
            {.fd = f->stop_fd, .events = POLLIN},
            {.fd = f->done_fd, .events = POLLIN},
        };
        while (atomic_load(&f->running) > 0) {
                int r = poll(p, 2, -1);
                if (r < 0 && errno != EINTR)
                        return kiln_error_errno(err, errno, "poll");
                if (r > 0 && (p[0].revents & POLLIN)) {
                        uint64_t v;
                        (void)!read(f->stop_fd, &v, sizeof(v));
                        break;
                }
        }
        unmount_and_stop(f);
        if (f->loop_error < 0)
                return kiln_error_errno(err, -f->loop_error, "serving %s", f->mountpoint);
        return 0;
}

void kiln_fuse_stop(struct kiln_fuse *f)
{
        eventfd_signal(f->stop_fd);
}

void kiln_fuse_free(struct kiln_fuse *f)
{
        if (!f)
                return;
        unmount_and_stop(f);
        fs_free(f);
}
