/* oci:///abs/bundle/root: hermetic builds with an OCI runtime (SPEC §10).
 *
 * One build: wait for a slot (FIFO), create the bundle (rootfs with
 * passwd/group/hosts, scratch directories owned by the build user,
 * additional files, config.json), mount the inputs through FUSE, run the
 * runtime with stdout and stderr captured apart, then ingest the outputs with
 * reference scanning. Whatever happens, the container is killed and deleted,
 * the FUSE mount unmounted and the bundle removed (unless keep-failed). */
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#include <kiln/fsutil.h>
#include <kiln/fuse.h>
#include <kiln/import.h>
#include <kiln/refscan.h>
#include <kiln/runner.h>
#include <kiln/url.h>

#include "runner.h"

#ifndef KILN_SANDBOX_SHELL
#define KILN_SANDBOX_SHELL "/bin/busybox"
#endif

#define LOG_TAIL_LINES 20
/* Default cap of a build's stdout + stderr. */
#define DEFAULT_MAX_LOG (64ULL << 20)
/* Default bound of a build's processes and threads. */
#define DEFAULT_PIDS_MAX 8192

struct waiter {
        struct waiter *next;
};

struct oci_service {
        struct kiln_build_service base;
        struct runner_config cfg;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned running;
        struct waiter *head, *tail;
        char systems[2][80];
        uint64_t mem_total;
        /* Removing a bundle takes milliseconds of unlinks: a finished
         * build's bundle is renamed into .state/trash at once and removed by
         * this thread, so the answer need not wait. Freeing the service
         * waits for the trash to be empty. */
        pthread_t cleaner;
        bool cleaner_running, cleaner_stop;
        pthread_cond_t trash_cond;
        char **trash;
        size_t n_trash;
        char *trash_dir;
        char *notice;
};

static void *cleaner_main(void *arg)
{
        struct oci_service *s = arg;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->n_trash && !s->cleaner_stop)
                        pthread_cond_wait(&s->trash_cond, &s->lock);
                if (!s->n_trash)
                        break;
                char *name = s->trash[--s->n_trash];
                pthread_mutex_unlock(&s->lock);
                _cleanup_free_ char *path = kiln_asprintf("%s/%s", s->trash_dir, name);
                (void)kiln_rm_rf_at(AT_FDCWD, path);
                free(name);
                pthread_mutex_lock(&s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

/* Moves a bundle to the trash (or removes it here if that fails). */
static void discard_bundle(struct oci_service *s, const char *dir, const char *id)
{
        _cleanup_free_ char *dest = kiln_asprintf("%s/%s", s->trash_dir, id);
        if (rename(dir, dest) < 0) {
                (void)kiln_rm_rf_at(AT_FDCWD, dir);
                return;
        }
        pthread_mutex_lock(&s->lock);
        if (!s->cleaner_running)
                s->cleaner_running = pthread_create(&s->cleaner, NULL, cleaner_main, s) == 0;
        if (!s->cleaner_running) {
                pthread_mutex_unlock(&s->lock);
                (void)kiln_rm_rf_at(AT_FDCWD, dest);
                return;
        }
        s->trash = kiln_reallocarray(s->trash, s->n_trash + 1, sizeof(*s->trash));
        s->trash[s->n_trash++] = kiln_strdup(id);
        pthread_cond_signal(&s->trash_cond);
        pthread_mutex_unlock(&s->lock);
}

/* --- constraints --- */

static int cmp_strp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int check_constraints(struct oci_service *s, const struct kiln_build_request *r,
                             struct kiln_error **err)
{
        const struct kiln_build_constraints *c = &r->constraints;
        if (!c->present)
                return 0;
        if (strcmp(c->system, s->systems[0]) && strcmp(c->system, s->systems[1]))
                return kiln_error_set(err, ENOEXEC,
                                      "unmet constraint: system '%s' cannot be built here "
                                      "(this host builds %s%s%s)",
                                      c->system, s->systems[0], s->systems[1][0] ? ", " : "",
                                      s->systems[1]);
        if (s->cfg.memory_max && c->min_memory > s->cfg.memory_max)
                return kiln_error_set(err, ENOEXEC,
                                      "unmet constraint: min_memory %llu bytes exceeds this "
                                      "build service's memory-max of %llu bytes",
                                      (unsigned long long)c->min_memory,
                                      (unsigned long long)s->cfg.memory_max);
        if (c->min_memory > s->mem_total)
                return kiln_error_set(err, ENOEXEC,
                                      "unmet constraint: min_memory %llu bytes exceeds this "
                                      "host's %llu bytes",
                                      (unsigned long long)c->min_memory,
                                      (unsigned long long)s->mem_total);
        for (size_t i = 0; i < c->ro_paths.n; i++) {
                /* Only what the operator allowed: a request must not name
                 * host files for the build to read. */
                if (!bsearch(&c->ro_paths.v[i], s->cfg.ro_paths.v, s->cfg.ro_paths.n,
                             sizeof(char *), cmp_strp))
                        return kiln_error_set(err, ENOEXEC,
                                              "unmet constraint: available_ro_path %s is not "
                                              "allowed by this build service (ro-paths)",
                                              c->ro_paths.v[i]);
                struct stat st;
                if (stat(c->ro_paths.v[i], &st) < 0)
                        return kiln_error_set(err, ENOEXEC,
                                              "unmet constraint: available_ro_path %s does not "
                                              "exist on this host",
                                              c->ro_paths.v[i]);
        }
        if (c->provide_bin_sh && access(s->cfg.sandbox_shell, X_OK) < 0)
                return kiln_error_set(err, ENOEXEC,
                                      "unmet constraint: provide_bin_sh, but the sandbox shell %s "
                                      "is missing",
                                      s->cfg.sandbox_shell);
        return 0;
}

/* --- slots: at most `concurrency` builds run, the others wait in order --- */

static int slot_acquire(struct oci_service *s, const struct kiln_build_call *call,
                        struct kiln_error **err)
{
        struct waiter w = {NULL};
        pthread_mutex_lock(&s->lock);
        if (s->tail)
                s->tail->next = &w;
        else
                s->head = &w;
        s->tail = &w;
        bool reported = false;
        while (s->head != &w || s->running >= s->cfg.concurrency) {
                if (!reported && call->progress) {
                        reported = true;
                        pthread_mutex_unlock(&s->lock);
                        call->progress(call->userdata, "queued");
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                if (call->cancel && kiln_cancel_is_set(call->cancel)) {
                        /* leave the queue */
                        struct waiter **pp = &s->head, *prev = NULL;
                        while (*pp != &w) {
                                prev = *pp;
                                pp = &(*pp)->next;
                        }
                        *pp = w.next;
                        if (s->tail == &w)
                                s->tail = prev;
                        pthread_cond_broadcast(&s->cond);
                        pthread_mutex_unlock(&s->lock);
                        return kiln_error_set(err, ECANCELED, "build cancelled while queued");
                }
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        s->head = w.next;
        if (!s->head)
                s->tail = NULL;
        s->running++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

/* Builds of other processes sharing the bundle root (several `kiln run`)
 * count too: a slot is also an flock on one of `concurrency` files, and its
 * number chooses the build's host ids, so builds running at the same time
 * never share a host uid. */
static int file_slot_acquire(struct oci_service *s, const struct kiln_build_call *call,
                             int *ret_fd, unsigned *ret_slot, struct kiln_error **err)
{
        for (;;) {
                for (unsigned i = 0; i < s->cfg.concurrency; i++) {
                        _cleanup_free_ char *path = kiln_asprintf("%s/.state/slot-%u",
                                                                  s->cfg.bundle_root, i);
                        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                        if (fd < 0)
                                return kiln_error_errno(err, errno, "open %s", path);
                        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                                *ret_fd = fd;
                                *ret_slot = i;
                                return 0;
                        }
                        int e = errno;
                        close(fd);
                        if (e != EWOULDBLOCK)
                                return kiln_error_errno(err, e, "lock %s", path);
                }
                if (call->cancel && kiln_cancel_is_set(call->cancel))
                        return kiln_error_set(err, ECANCELED, "build cancelled while queued");
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}

static void slot_release(struct oci_service *s)
{
        pthread_mutex_lock(&s->lock);
        s->running--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* --- one build --- */

struct build {
        struct oci_service *svc;
        const struct kiln_build_request *req;
        const struct kiln_build_call *call;
        struct runner_ids ids;
        struct runner_cgroup cgroup;
        char id[37];
        char *dir;     /* <bundle root>/<id> */
        int dir_fd;
        bool scratch_mounted;
        struct kiln_fuse *fuse;
        struct runtime_run run;
        bool run_started;
        int out_log, err_log; /* stdout.log, stderr.log in the bundle */
        struct runner_watch watch;
};

static void progress(struct build *b, const char *phase)
{
        if (b->call->progress)
                b->call->progress(b->call->userdata, phase);
}

static void make_uuid(char out[37])
{
        uint8_t u[16];
        if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u))
                abort();
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
                 u[13], u[14], u[15]);
}

static int write_file_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         struct kiln_error **err)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
                                        O_NOFOLLOW, mode);
        if (fd < 0)
                return kiln_error_errno(err, errno, "create %s", name);
        int r = kiln_write_all(fd, data, len);
        if (r < 0)
                return kiln_error_errno(err, -r, "write %s", name);
        return 0;
}

/* The user database Nix provides in its sandbox, plus localhost. */
static int write_etc(struct build *b, struct kiln_error **err)
{
        static const char passwd[] = "root:x:0:0:Nix build user:/build:/noshell\n"
                                     "nixbld:x:1000:100:Nix build user:/build:/noshell\n"
                                     "nobody:x:65534:65534:Nobody:/:/noshell\n";
        static const char group[] = "root:x:0:\n"
                                    "nixbld:!:100:\n"
                                    "nogroup:x:65534:\n";
        static const char hosts[] = "127.0.0.1 localhost\n"
                                    "::1 localhost\n";
        /* The runtime creates mount points in root/ as container root. */
        if (mkdirat(b->dir_fd, "root", 0755) < 0 ||
            fchownat(b->dir_fd, "root", b->ids.root_uid, b->ids.root_gid, 0) < 0 ||
            mkdirat(b->dir_fd, "root/etc", 0755) < 0 ||
            fchownat(b->dir_fd, "root/etc", b->ids.root_uid, b->ids.root_gid, 0) < 0)
                return kiln_error_errno(err, errno, "create the root filesystem");
        _cleanup_close_ int etc = openat(b->dir_fd, "root/etc", O_RDONLY | O_DIRECTORY |
                                         O_CLOEXEC);
        if (etc < 0)
                return kiln_error_errno(err, errno, "open root/etc");
        int r;
        if ((r = write_file_at(etc, "passwd", passwd, sizeof(passwd) - 1, 0644, err)) < 0 ||
            (r = write_file_at(etc, "group", group, sizeof(group) - 1, 0644, err)) < 0 ||
            (r = write_file_at(etc, "hosts", hosts, sizeof(hosts) - 1, 0644, err)) < 0)
                return r;
        return 0;
}

/* Opens a directory below dirfd without following any symlink on the way:
 * the build controls everything under scratch. */
static int open_beneath(int dirfd, const char *path, int flags)
{
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

static int scratch_fd(struct build *b, const char *scratch_path)
{
        char name[57];
        _cleanup_free_ char *rel = kiln_asprintf("scratch/%s",
                                                 runner_scratch_name(scratch_path, name));
        return open_beneath(b->dir_fd, rel, O_RDONLY | O_DIRECTORY);
}

/* The build's /dev: fresh nodes of the harmless devices (never the host's,
 * so nothing done to them reaches the host), the mount points of pts and shm,
 * and the usual symlinks. Mounted read-only; owned by host root, which is
 * not mapped into the build. */
static int make_dev(struct build *b, struct kiln_error **err)
{
        static const struct {
                const char *name;
                unsigned major, minor;
        } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
                     {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
        static const struct {
                const char *name, *target;
        } links[] = {{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
                     {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
                     {"ptmx", "pts/ptmx"}};
        if (mkdirat(b->dir_fd, "dev", 0755) < 0)
                return kiln_error_errno(err, errno, "create dev");
        _cleanup_close_ int dev = openat(b->dir_fd, "dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dev < 0)
                return kiln_error_errno(err, errno, "open dev");
        for (size_t i = 0; i < KILN_ARRAY_SIZE(nodes); i++)
                if (mknodat(dev, nodes[i].name, S_IFCHR | 0666,
                            makedev(nodes[i].major, nodes[i].minor)) < 0 ||
                    fchmodat(dev, nodes[i].name, 0666, 0) < 0)
                        return kiln_error_errno(err, errno, "create dev/%s", nodes[i].name);
        for (size_t i = 0; i < KILN_ARRAY_SIZE(links); i++)
                if (symlinkat(links[i].target, dev, links[i].name) < 0)
                        return kiln_error_errno(err, errno, "create dev/%s", links[i].name);
        /* runc gives a tmpfs the mode of the directory it covers */
        if (mkdirat(dev, "pts", 0755) < 0 || mkdirat(dev, "shm", 01777) < 0 ||
            fchmodat(dev, "shm", 01777, 0) < 0)
                return kiln_error_errno(err, errno, "create dev mount points");
        return 0;
}

/* The scratch space: a tmpfs of scratch-size bytes (or, with scratch-size=0,
 * the bundle's own filesystem bound onto itself), always nosuid and nodev on
 * the host, so nothing a build leaves there is a setuid program or a device
 * for a host user. It holds one directory per scratch path and the /tmp of
 * the build, all owned by the build user. */
static int make_scratch(struct build *b, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        if (mkdirat(b->dir_fd, "scratch", 0755) < 0)
                return kiln_error_errno(err, errno, "create scratch");
        _cleanup_free_ char *where = kiln_asprintf("%s/scratch", b->dir);
        int r;
        if (cfg->scratch_size) {
                _cleanup_free_ char *opts = kiln_asprintf("size=%llu,mode=0755",
                                                          (unsigned long long)cfg->scratch_size);
                r = mount("kiln-scratch", where, "tmpfs", MS_NOSUID | MS_NODEV, opts);
        } else {
                r = mount(where, where, NULL, MS_BIND, NULL);
                if (r == 0) {
                        b->scratch_mounted = true;
                        r = mount(NULL, where, NULL,
                                  MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL);
                }
        }
        if (r < 0)
                return kiln_error_errno(err, errno, "mount scratch");
        b->scratch_mounted = true;
        if (mkdirat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, 01777) < 0 ||
            fchownat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, b->ids.build_uid,
                     b->ids.build_gid, 0) < 0 ||
            fchmodat(b->dir_fd, "scratch/" RUNNER_SCRATCH_TMP, 01777, 0) < 0)
                return kiln_error_errno(err, errno, "create scratch tmp");
        for (size_t i = 0; i < b->req->scratch_paths.n; i++) {
                char name[57];
                _cleanup_free_ char *rel = kiln_asprintf(
                        "scratch/%s", runner_scratch_name(b->req->scratch_paths.v[i], name));
                /* sorted, so duplicates are adjacent */
                if (mkdirat(b->dir_fd, rel, 0755) < 0 && errno != EEXIST)
                        return kiln_error_errno(err, errno, "create scratch directory");
                if (fchownat(b->dir_fd, rel, b->ids.build_uid, b->ids.build_gid, 0) < 0)
                        return kiln_error_errno(err, errno, "chown scratch directory");
        }
        return 0;
}

/* kiln: every additional file lands at /<path> in the container, through
 * the scratch path it lives under (SPEC §10.8). */
static int write_additional_files(struct build *b, struct kiln_error **err)
{
        for (size_t i = 0; i < b->req->n_files; i++) {
                const struct kiln_additional_file *f = &b->req->files[i];
                const char *rest;
                const char *prefix = runner_scratch_prefix(b->req, f->path, &rest);
                if (!prefix || !*rest)
                        return kiln_error_set(err, EINVAL,
                                              "additional file %s is not below a scratch path",
                                              f->path);
                _cleanup_close_ int base = scratch_fd(b, prefix);
                if (base < 0)
                        return kiln_error_errno(err, -base, "open scratch %s", prefix);
                /* create parent directories, owned by the build user */
                _cleanup_free_ char *dirs = kiln_strdup(rest);
                char *slash = strrchr(dirs, '/');
                const char *leaf = rest;
                if (slash) {
                        *slash = '\0';
                        leaf = rest + (slash - dirs) + 1;
                        for (char *p = dirs;; p++) {
                                if (*p == '/' || *p == '\0') {
                                        char c = *p;
                                        *p = '\0';
                                        if (mkdirat(base, dirs, 0755) == 0)
                                                (void)fchownat(base, dirs, b->ids.build_uid,
                                                               b->ids.build_gid, 0);
                                        else if (errno != EEXIST)
                                                return kiln_error_errno(err, errno,
                                                                        "additional file %s",
                                                                        f->path);
                                        *p = c;
                                        if (!c)
                                                break;
                                }
                        }
                }
                _cleanup_close_ int parent = slash ? open_beneath(base, dirs, O_RDONLY |
                                                                  O_DIRECTORY)
                                                   : dup(base);
                if (parent < 0)
                        return kiln_error_errno(err, parent == -1 ? errno : -parent,
                                                "additional file %s", f->path);
                int r = write_file_at(parent, leaf, f->contents, f->len, 0644, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "additional file %s", f->path);
                (void)fchownat(parent, leaf, b->ids.build_uid, b->ids.build_gid,
                               AT_SYMLINK_NOFOLLOW);
        }
        return 0;
}

static int write_config(struct build *b, struct kiln_error **err)
{
        json_t *spec = runner_spec(&b->svc->cfg, &b->ids, &b->cgroup, b->req);
        char *text = json_dumps(spec, JSON_INDENT(2));
        json_decref(spec);
        if (!text)
                return kiln_error_set(err, ENOMEM, "serialise config.json");
        int r = write_file_at(b->dir_fd, "config.json", text, strlen(text), 0600, err);
        free(text);
        return r;
}

static int make_bundle(struct build *b, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        b->dir = kiln_asprintf("%s/%s", cfg->bundle_root, b->id);
        /* 0700 and owned by the build's container root, who must reach
         * root/, dev/ and scratch/ while the runtime sets the build up: no
         * host user (but root) can enter it. */
        if (mkdir(b->dir, 0700) < 0)
                return kiln_error_errno(err, errno, "create %s", b->dir);
        b->dir_fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->dir_fd < 0)
                return kiln_error_errno(err, errno, "open %s", b->dir);
        if (fchown(b->dir_fd, b->ids.root_uid, b->ids.root_gid) < 0)
                return kiln_error_errno(err, errno, "chown %s", b->dir);
        int r = runner_cgroup_create(&cfg->cgroups, b->id, cfg->memory_max, cfg->pids_max, false,
                                     &b->cgroup, err);
        if (r < 0)
                return r;
        if ((r = write_etc(b, err)) < 0 || (r = make_dev(b, err)) < 0 ||
            (r = make_scratch(b, err)) < 0 || (r = write_additional_files(b, err)) < 0 ||
            (r = write_config(b, err)) < 0)
                return r;
        if (mkdirat(b->dir_fd, "inputs", 0755) < 0)
                return kiln_error_errno(err, errno, "create inputs");
        b->out_log = openat(b->dir_fd, "stdout.log", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                            0600);
        b->err_log = openat(b->dir_fd, "stderr.log", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                            0600);
        if (b->out_log < 0 || b->err_log < 0)
                return kiln_error_errno(err, errno, "create the build log");
        return 0;
}

static int mount_inputs(struct build *b, struct kiln_error **err)
{
        if (b->req->n_inputs == 0)
                return 0;
        struct kiln_fuse_options o = {
                .threads = 4,
                .allow_other = true, /* bind-mounted into a user namespace (PLATFORM) */
                .list_root = true,
                .show_xattr = false,
        };
        _cleanup_free_ char *where = kiln_asprintf("%s/inputs", b->dir);
        return kiln_fuse_mount(b->svc->blobs, b->svc->dirs, b->req->inputs, b->req->n_inputs,
                               where, &o, &b->fuse, err);
}

/* The last lines of the runtime's own log, for error messages. */
static char *runtime_log_tail(int dirfd)
{
        _cleanup_close_ int fd = openat(dirfd, "runtime.log", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size == 0)
                return NULL;
        struct runner_tail t = {.len = (size_t)KILN_MIN(st.st_size, (off_t)RUNNER_TAIL_SIZE)};
        ssize_t n = pread(fd, t.buf, t.len, st.st_size - (off_t)t.len);
        if (n <= 0)
                return NULL;
        t.len = (size_t)n;
        return runner_tail_text(&t, LOG_TAIL_LINES);
}

/* "; last lines of its stdout:\n…\nlast lines of its stderr:\n…", or
 * " (no output)". */
static char *output_tails(struct build *b)
{
        _cleanup_free_ char *out = runner_tail_text(&b->watch.out_tail, LOG_TAIL_LINES);
        _cleanup_free_ char *errs = runner_tail_text(&b->watch.err_tail, LOG_TAIL_LINES);
        if (!out && !errs)
                return kiln_strdup(" (no output)");
        return kiln_asprintf("%s%s%s%s", out ? "; last lines of its stdout:\n" : "",
                             out ? out : "",
                             errs ? (out ? "\nlast lines of its stderr:\n"
                                         : "; last lines of its stderr:\n")
                                  : "",
                             errs ? errs : "");
}

static int build_failed(struct build *b, int status, struct kiln_error **err)
{
        _cleanup_free_ char *rt_tail = runtime_log_tail(b->dir_fd);
        char what[64];
        if (WIFSIGNALED(status))
                snprintf(what, sizeof(what), "was killed by signal %d", WTERMSIG(status));
        else if (WEXITSTATUS(status) > 128 && WEXITSTATUS(status) < 128 + 65)
                /* the runtime passes on the death of the build's init by a
                 * signal as 128 + signal */
                snprintf(what, sizeof(what), "exited with status %d (signal %d)",
                         WEXITSTATUS(status), WEXITSTATUS(status) - 128);
        else
                snprintf(what, sizeof(what), "exited with status %d", WEXITSTATUS(status));
        /* The runtime logs its own failures apart from the build's output. */
        if (rt_tail && strstr(rt_tail, "\"level\":\"error\""))
                return kiln_error_set(err, EIO, "runtime: %s %s: %s", b->svc->cfg.runtime, what,
                                      rt_tail);
        _cleanup_free_ char *tails = output_tails(b);
        bool killed = WIFSIGNALED(status) ? WTERMSIG(status) == SIGKILL
                                          : WEXITSTATUS(status) == 128 + SIGKILL;
        if (b->svc->cfg.pids_max && runner_cgroup_pids_hit(&b->cgroup))
                return kiln_error_set(err, EIO,
                                      "build reached its process limit (pids-max %llu): the "
                                      "build command %s%s",
                                      (unsigned long long)b->svc->cfg.pids_max, what, tails);
        if (runner_cgroup_oom(&b->cgroup) && (killed || b->cgroup.cg->mode == RUNNER_CG_V2))
                return kiln_error_set(err, EIO,
                                      "build ran out of memory (memory-max %llu bytes) and a "
                                      "process of it was killed: the build command %s%s",
                                      (unsigned long long)b->svc->cfg.memory_max, what, tails);
        return kiln_error_set(err, EIO, "build command %s%s", what, tails);
}

/* A limit ended the build: it is killed, and the message names the limit. */
static int build_stopped(struct build *b, enum runner_stop why, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        runner_cgroup_kill(&b->cgroup);
        runtime_kill(cfg, &b->run);
        _cleanup_free_ char *tails = output_tails(b);
        switch (why) {
        case RUNNER_TIMEOUT:
                return kiln_error_set(err, ETIMEDOUT,
                                      "build timed out after %u seconds and was killed%s",
                                      b->watch.timeout, tails);
        case RUNNER_SILENT:
                return kiln_error_set(err, ETIMEDOUT,
                                      "build was silent for %u seconds and was killed "
                                      "(max-silent-time)%s",
                                      b->watch.max_silent, tails);
        case RUNNER_LOG_FULL:
                return kiln_error_set(err, EIO,
                                      "build log exceeded %llu bytes and the build was killed "
                                      "(max-log-size)%s",
                                      (unsigned long long)b->watch.max_log, tails);
        case RUNNER_CANCELLED:
                return kiln_error_set(err, ECANCELED, "build cancelled and killed");
        case RUNNER_PIDS:
                return kiln_error_set(err, EIO,
                                      "build reached its process limit (pids-max %llu) and was "
                                      "killed%s",
                                      (unsigned long long)cfg->pids_max, tails);
        case RUNNER_EXITED:
                break;
        }
        return kiln_error_set(err, EIO, "build stopped for an unknown reason");
}

static int run_container(struct build *b, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        int out[2] = {-1, -1}, errp[2] = {-1, -1};
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
                int e = errno;
                if (out[0] >= 0) {
                        close(out[0]);
                        close(out[1]);
                }
                return kiln_error_errno(err, e, "pipe");
        }
        b->watch.out_fd = out[0];
        b->watch.err_fd = errp[0];
        int r = runtime_start(cfg, b->dir, b->id, out[1], errp[1], &b->run, err);
        close(out[1]);
        close(errp[1]);
        if (r < 0)
                return r;
        b->run_started = true;
        b->watch.pidfd = b->run.pidfd;
        b->watch.out_log = b->out_log;
        b->watch.err_log = b->err_log;
        b->watch.cancel_fd = b->call->cancel ? kiln_cancel_fd(b->call->cancel) : -1;
        b->watch.timeout = b->call->timeout ? b->call->timeout : cfg->timeout;
        b->watch.max_silent = cfg->max_silent;
        b->watch.max_log = cfg->max_log;
        if (b->cgroup.n_dirs && cfg->pids_max) {
                b->watch.pids_hit = runner_cgroup_pids_hit;
                b->watch.cgroup = &b->cgroup;
        }
        r = runner_watch_run(&b->watch, err);
        if (r < 0)
                return r;
        if (r != RUNNER_EXITED)
                return build_stopped(b, (enum runner_stop)r, err);
        int status;
        while (waitpid(b->run.pid, &status, 0) < 0)
                if (errno != EINTR)
                        return kiln_error_errno(err, errno, "waitpid");
        b->run.pid = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return build_failed(b, status, err);
        return 0;
}

/* The basename of a clean relative path. */
static const char *basename_of(const char *p)
{
        const char *s = strrchr(p, '/');
        return s ? s + 1 : p;
}

static int ingest_outputs(struct build *b, struct kiln_build *ret, struct kiln_error **err)
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
                _cleanup_close_ int base = scratch_fd(b, prefix);
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
                _cleanup_close_ int pfd = slash ? open_beneath(base, parent, O_RDONLY |
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

static void build_cleanup(struct build *b, bool failed)
{
        const struct runner_config *cfg = &b->svc->cfg;
        if (b->run_started) {
                runner_cgroup_kill(&b->cgroup);
                runtime_kill(cfg, &b->run);
                runtime_delete(cfg, b->id);
                runtime_run_done(&b->run);
        }
        runner_cgroup_done(&b->cgroup);
        kiln_fuse_free(b->fuse);
        b->fuse = NULL;
        if (b->out_log >= 0)
                close(b->out_log);
        if (b->err_log >= 0)
                close(b->err_log);
        if (b->watch.out_fd >= 0)
                close(b->watch.out_fd);
        if (b->watch.err_fd >= 0)
                close(b->watch.err_fd);
        if (b->dir_fd >= 0)
                close(b->dir_fd);
        if (b->dir && !(failed && cfg->keep_failed)) {
                if (b->scratch_mounted) {
                        _cleanup_free_ char *where = kiln_asprintf("%s/scratch", b->dir);
                        (void)umount2(where, MNT_DETACH);
                }
                discard_bundle(b->svc, b->dir, b->id);
        }
        free(b->dir);
}

static int oci_build(struct kiln_build_service *base, const struct kiln_build_request *req,
                     const struct kiln_build_call *call, struct kiln_build *ret,
                     struct kiln_error **err)
{
        struct oci_service *s = (struct oci_service *)base;
        int r = check_constraints(s, req, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < req->outputs.n; i++) {
                const char *rest;
                if (!runner_scratch_prefix(req, req->outputs.v[i], &rest))
                        return kiln_error_set(err, EINVAL,
                                              "output %s is not below a scratch path",
                                              req->outputs.v[i]);
        }
        r = slot_acquire(s, call, err);
        if (r < 0)
                return r;
        int slot_fd = -1;
        unsigned slot = 0;
        r = file_slot_acquire(s, call, &slot_fd, &slot, err);
        if (r < 0) {
                slot_release(s);
                return r;
        }

        struct build b = {.svc = s, .req = req, .call = call, .dir_fd = -1, .out_log = -1,
                          .cgroup = {.cg = &s->cfg.cgroups},
                          .err_log = -1, .run = {.pidfd = -1},
                          .watch = {.pidfd = -1, .out_fd = -1, .err_fd = -1, .cancel_fd = -1}};
        runner_slot_ids(&s->cfg, slot, &b.ids);
        make_uuid(b.id);
        struct kiln_build result = {0};
        progress(&b, "bundle");
        r = make_bundle(&b, err);
        if (r < 0) {
                kiln_error_prefix(err, r, "bundle");
                goto out;
        }
        progress(&b, "mount");
        r = mount_inputs(&b, err);
        if (r < 0) {
                kiln_error_prefix(err, r, "mount inputs");
                goto out;
        }
        progress(&b, "run");
        r = run_container(&b, err);
        if (r < 0)
                goto out;
        /* The container is gone: release the runtime state and inputs now. */
        runtime_delete(&s->cfg, b.id);
        runtime_run_done(&b.run);
        b.run_started = false;
        kiln_fuse_free(b.fuse);
        b.fuse = NULL;
        progress(&b, "ingest");
        r = ingest_outputs(&b, &result, err);
        if (r < 0)
                goto out;
        kiln_build_request_copy(&result.request, req);
        *ret = result;
        result = (struct kiln_build){0};
out:
        kiln_build_done(&result);
        build_cleanup(&b, r < 0);
        close(slot_fd);
        slot_release(s);
        return r;
}

static void oci_free(struct kiln_build_service *base)
{
        struct oci_service *s = (struct oci_service *)base;
        if (s->cleaner_running) {
                pthread_mutex_lock(&s->lock);
                s->cleaner_stop = true;
                pthread_cond_signal(&s->trash_cond);
                pthread_mutex_unlock(&s->lock);
                pthread_join(s->cleaner, NULL);
        }
        free(s->trash);
        free(s->trash_dir);
        free(s->notice);
        pthread_cond_destroy(&s->trash_cond);
        free(s->cfg.bundle_root);
        free(s->cfg.runtime);
        free(s->cfg.sandbox_shell);
        free(s->cfg.state_dir);
        kiln_strv_done(&s->cfg.ro_paths);
        json_decref(s->cfg.seccomp);
        runner_cgroups_done(&s->cfg.cgroups);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
}

static const char *oci_notice(struct kiln_build_service *base)
{
        struct oci_service *s = (struct oci_service *)base;
        return s->notice;
}

static const struct kiln_build_service_ops oci_ops = {
        .name = "oci",
        .build = oci_build,
        .free = oci_free,
        .notice = oci_notice,
};

static int parse_uint(const char *url, const char *key, const char *v, uint64_t max,
                      uint64_t *ret, struct kiln_error **err)
{
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!*v || *end || errno || n > max)
                return kiln_error_set(err, EINVAL, "invalid build service URL '%s': bad %s=%s",
                                      url, key, v);
        *ret = n;
        return 0;
}

static void host_systems(struct oci_service *s)
{
        struct utsname u;
        uname(&u);
        if (!strcmp(u.machine, "x86_64")) {
                strcpy(s->systems[0], "x86_64-linux");
                strcpy(s->systems[1], "i686-linux");
        } else {
                snprintf(s->systems[0], sizeof(s->systems[0]), "%s-linux", u.machine);
        }
        struct sysinfo si;
        if (sysinfo(&si) == 0)
                s->mem_total = (uint64_t)si.totalram * si.mem_unit;
}

/* ro-paths=/a,/b: absolute clean paths, kept sorted for lookups. */
static int parse_ro_paths(const char *url, const char *v, struct kiln_strv *ret,
                          struct kiln_error **err)
{
        _cleanup_free_ char *copy = kiln_strdup(v);
        char *save = NULL;
        for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
                if (!kiln_path_is_clean_absolute(p) || !strcmp(p, "/"))
                        return kiln_error_set(err, EINVAL,
                                              "invalid build service URL '%s': ro-paths entry "
                                              "'%s' is not a clean absolute path",
                                              url, p);
                kiln_strv_push(ret, p);
        }
        qsort(ret->v, ret->n, sizeof(char *), cmp_strp);
        return 0;
}

/* The numeric options of the URL, with their bounds and where they go. */
static int parse_options(struct runner_config *cfg, const struct kiln_url *u, const char *url,
                         struct kiln_error **err)
{
        uint64_t concurrency = cfg->concurrency, timeout = 0, silent = 0, keep = 0,
                 subid = cfg->fallback_subid;
        const struct {
                const char *key;
                uint64_t min, max, *dst;
        } nums[] = {
                {"concurrency", 1, 1024, &concurrency},
                {"timeout", 0, 7 * 24 * 3600, &timeout},
                {"max-silent-time", 0, 7 * 24 * 3600, &silent},
                {"max-log-size", 0, UINT64_MAX, &cfg->max_log},
                {"keep-failed", 0, 1, &keep},
                {"subid", 1, UINT32_MAX - 1, &subid},
                {"scratch-size", 0, UINT64_MAX, &cfg->scratch_size},
                {"memory-max", 0, UINT64_MAX, &cfg->memory_max},
                {"pids-max", 0, UINT32_MAX, &cfg->pids_max},
        };
        for (size_t i = 0; i < KILN_ARRAY_SIZE(nums); i++) {
                _cleanup_free_ char *v = kiln_url_query_get(u, nums[i].key);
                if (!v)
                        continue;
                int r = parse_uint(url, nums[i].key, v, nums[i].max, nums[i].dst, err);
                if (r < 0)
                        return r;
                if (*nums[i].dst < nums[i].min)
                        return kiln_error_set(err, EINVAL,
                                              "invalid build service URL '%s': %s must be at "
                                              "least %llu",
                                              url, nums[i].key, (unsigned long long)nums[i].min);
        }
        cfg->concurrency = (unsigned)concurrency;
        cfg->timeout = (unsigned)timeout;
        cfg->max_silent = (unsigned)silent;
        cfg->keep_failed = keep != 0;
        cfg->fallback_subid = (uint32_t)subid;

        cfg->runtime = kiln_url_query_get(u, "runtime");
        if (!cfg->runtime)
                cfg->runtime = kiln_strdup("runc");
        if (strcmp(cfg->runtime, "runc") && strcmp(cfg->runtime, "crun"))
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': runtime must be runc or crun",
                                      url);
        cfg->sandbox_shell = kiln_url_query_get(u, "sandbox-shell");
        if (!cfg->sandbox_shell)
                cfg->sandbox_shell = kiln_strdup(KILN_SANDBOX_SHELL);
        if (cfg->sandbox_shell[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': sandbox-shell must be an "
                                      "absolute path",
                                      url);
        _cleanup_free_ char *ro = kiln_url_query_get(u, "ro-paths");
        return ro ? parse_ro_paths(url, ro, &cfg->ro_paths, err) : 0;
}

/* The runtime sets a build up as the build's container root, an
 * unprivileged host id, so it must be able to walk down to the bundle. */
static int check_searchable(const char *path, struct kiln_error **err)
{
        _cleanup_free_ char *p = kiln_strdup(path);
        for (;;) {
                struct stat st;
                if (stat(*p ? p : "/", &st) < 0)
                        return kiln_error_errno(err, errno, "stat %s", *p ? p : "/");
                if (!(st.st_mode & S_IXOTH))
                        return kiln_error_set(err, EACCES,
                                              "bundle root %s: %s (mode %04o) is not searchable "
                                              "by other users, and builds are set up as an "
                                              "unprivileged user: chmod o+x %s",
                                              path, *p ? p : "/", (unsigned)(st.st_mode & 07777),
                                              *p ? p : "/");
                char *slash = strrchr(p, '/');
                if (!slash || !*p)
                        return 0;
                *slash = '\0';
        }
}

/* The bundle root and, in its hidden .state directory, the runtime's state,
 * the slot locks and the trash: one look shows whether anything was left
 * behind. */
static int prepare_dirs(struct oci_service *s, struct kiln_error **err)
{
        struct runner_config *cfg = &s->cfg;
        int r = kiln_mkdir_p(cfg->bundle_root, 0711);
        if (r < 0)
                return kiln_error_errno(err, -r, "create bundle root %s", cfg->bundle_root);
        r = check_searchable(cfg->bundle_root, err);
        if (r < 0)
                return r;
        cfg->state_dir = kiln_asprintf("%s/.state/%s", cfg->bundle_root, cfg->runtime);
        r = kiln_mkdir_p(cfg->state_dir, 0700);
        if (r < 0)
                return kiln_error_errno(err, -r, "create %s", cfg->state_dir);
        /* Bundles left in the trash by a daemon that died are removed now. */
        s->trash_dir = kiln_asprintf("%s/.state/trash", cfg->bundle_root);
        (void)kiln_rm_rf_at(AT_FDCWD, s->trash_dir);
        if (mkdir(s->trash_dir, 0700) < 0 && errno != EEXIST)
                return kiln_error_errno(err, errno, "create %s", s->trash_dir);
        return 0;
}

static int oci_new(const struct kiln_url *u, const char *url, struct kiln_blob_service *blobs,
                   struct kiln_directory_service *dirs, struct kiln_build_service **ret,
                   struct kiln_error **err)
{
        if (u->path[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': oci needs a bundle dir as "
                                      "path",
                                      url);
        static const char *const allowed[] = {
                "runtime",      "concurrency", "timeout",      "max-silent-time",
                "max-log-size", "keep-failed", "sandbox-shell", "subid",
                "scratch-size", "ro-paths",    "memory-max",   "pids-max",
                NULL};
        int r = kiln_url_query_check(u, allowed, url, err);
        if (r < 0)
                return r;

        struct oci_service *s = kiln_calloc(1, sizeof(*s));
        s->base.ops = &oci_ops;
        s->blobs = blobs;
        s->dirs = dirs;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_cond_init(&s->trash_cond, NULL);
        host_systems(s);
        struct runner_config *cfg = &s->cfg;
        cfg->bundle_root = kiln_strdup(u->path);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->concurrency = ncpu > 0 ? (unsigned)ncpu : 1;
        cfg->fallback_subid = 100000;
        cfg->max_log = DEFAULT_MAX_LOG;
        /* Half the memory: a tmpfs only takes what is written to it. */
        cfg->scratch_size = s->mem_total / 2;
        /* Room for the host: a build may take three quarters of it. */
        cfg->memory_max = s->mem_total / 4 * 3;
        cfg->pids_max = DEFAULT_PIDS_MAX;
        cfg->seccomp = runner_seccomp_oci();
        runner_cgroups_detect(&cfg->cgroups);
        if (cfg->cgroups.mode == RUNNER_CG_NONE)
                s->notice = kiln_asprintf("builds run without cgroups (%s): a build's processes "
                                          "are bounded by RLIMIT_NPROC, its memory is not",
                                          cfg->cgroups.why_none);
        if ((r = parse_options(cfg, u, url, err)) < 0 || (r = runner_idmaps_init(cfg, err)) < 0 ||
            (r = prepare_dirs(s, err)) < 0) {
                oci_free(&s->base);
                return r;
        }
        *ret = &s->base;
        return 0;
}

void kiln_runner_register(void)
{
        kiln_build_service_register("oci", oci_new);
}
