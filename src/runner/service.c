/* The build service behind oci:///abs/bundle/root and sandbox:///abs/root
 * (docs/SANDBOX.md). One build: wait for a slot (FIFO across the
 * service's threads, and across processes sharing the bundle root), create
 * the bundle (bundle.c), mount the inputs through FUSE, start the sandbox
 * through the backend (an OCI runtime, or kiln's own), watch its output and
 * limits (watch.c), then ingest the outputs (outputs.c). Whatever happens,
 * the build's processes are killed, the FUSE mount unmounted and the bundle
 * removed (unless keep-failed). */
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#include <kiln/util/fsutil.h>
#include <kiln/fuse/fuse.h>
#include <kiln/ingest/import.h>
#include <kiln/ingest/refscan.h>
#include <kiln/runner/runner.h>
#include <kiln/util/url.h>

#include "runner.h"

#ifndef KILN_SANDBOX_SHELL
#define KILN_SANDBOX_SHELL "/bin/busybox"
#endif

#define LOG_TAIL_LINES 20
/* Default cap of a build's stdout + stderr. */
#define DEFAULT_MAX_LOG (64ULL << 20)
/* Bundles kept at builds' request at most at once (keep-failed-max). */
#define DEFAULT_KEEP_FAILED_MAX 8
/* Default bound of a build's processes and threads. */
#define DEFAULT_PIDS_MAX 8192

static void *cleaner_main(void *arg)
{
        struct runner_service *s = arg;
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
static void discard_bundle(struct runner_service *s, const char *dir, const char *id)
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

static int check_constraints(struct runner_service *s, const struct kiln_build_request *r,
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

static int slot_acquire(struct runner_service *s, const struct kiln_build_call *call,
                        struct kiln_error **err)
{
        struct runner_waiter w = {NULL};
        pthread_mutex_lock(&s->lock);
        if (s->tail)
                s->tail->next = &w;
        else
                s->head = &w;
        s->tail = &w;
        bool reported = false;
        size_t told = SIZE_MAX; /* the position last reported */
        while (s->head != &w || s->running >= s->cfg.concurrency) {
                size_t ahead = 0;
                for (const struct runner_waiter *p = s->head; p != &w; p = p->next)
                        ahead++;
                bool phase = !reported && call->progress;
                bool position = call->queue_position && ahead != told;
                if (phase || position) {
                        reported = reported || phase;
                        told = ahead;
                        pthread_mutex_unlock(&s->lock);
                        if (phase)
                                call->progress(call->userdata, "queued");
                        if (position)
                                call->queue_position(call->userdata, ahead);
                        pthread_mutex_lock(&s->lock);
                        continue;
                }
                if (call->cancel && kiln_cancel_is_set(call->cancel)) {
                        /* leave the queue */
                        struct runner_waiter **pp = &s->head, *prev = NULL;
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
static int file_slot_acquire(struct runner_service *s, const struct kiln_build_call *call,
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

static void slot_release(struct runner_service *s)
{
        pthread_mutex_lock(&s->lock);
        s->running--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* --- one build --- */

static void progress(struct runner_build *b, const char *phase)
{
        if (b->call->progress)
                b->call->progress(b->call->userdata, phase);
}

void runner_make_uuid(char out[37])
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

/* "; last lines of its stdout:\n…\nlast lines of its stderr:\n…", or
 * " (no output)". */
static char *output_tails(struct runner_build *b)
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

/* Whether the scratch space (where /tmp and every scratch path live) has
 * no room left: the likely cause of a failure. */
static bool scratch_full(struct runner_build *b)
{
        struct statvfs sv;
        _cleanup_close_ int fd = openat(b->dir_fd, "scratch", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fstatvfs(fd, &sv) < 0)
                return false;
        return sv.f_bavail == 0 || sv.f_favail == 0;
}

static int build_failed(struct runner_build *b, int status, struct kiln_error **err)
{
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
        /* The sandbox reports its own failures apart from the build's output. */
        _cleanup_free_ char *setup = b->svc->backend->setup_failure(b, what);
        if (setup)
                return kiln_error_set_lines(err, EIO, "%s", setup);
        _cleanup_free_ char *tails = output_tails(b);
        bool killed = WIFSIGNALED(status) ? WTERMSIG(status) == SIGKILL
                                          : WEXITSTATUS(status) == 128 + SIGKILL;
        if (b->svc->cfg.pids_max && runner_cgroup_pids_hit(&b->cgroup))
                return kiln_error_set_lines(err, EIO,
                                      "build reached its process limit (pids-max %llu): the "
                                      "build command %s%s",
                                      (unsigned long long)b->svc->cfg.pids_max, what, tails);
        if (runner_cgroup_oom(&b->cgroup) && (killed || b->cgroup.cg->mode == RUNNER_CG_V2))
                return kiln_error_set_lines(err, EIO,
                                      "build ran out of memory (memory-max %llu bytes) and a "
                                      "process of it was killed: the build command %s%s",
                                      (unsigned long long)b->svc->cfg.memory_max, what, tails);
        if (scratch_full(b))
                return kiln_error_set_lines(err, EIO,
                                      "build failed with its scratch space full (scratch-size "
                                      "%llu bytes): the build command %s%s",
                                      (unsigned long long)b->svc->cfg.scratch_size, what, tails);
        return kiln_error_set_lines(err, EIO, "build command %s%s", what, tails);
}

/* A limit ended the build: it is killed, and the message names the limit. */
static int build_stopped(struct runner_build *b, enum runner_stop why, struct kiln_error **err)
{
        const struct runner_config *cfg = &b->svc->cfg;
        runner_cgroup_kill(&b->cgroup);
        b->svc->backend->kill(b);
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
                return kiln_error_set_lines(err, EIO,
                                      "build log exceeded %llu bytes and the build was killed "
                                      "(max-log-size)%s",
                                      (unsigned long long)b->watch.max_log, tails);
        case RUNNER_CANCELLED:
                return kiln_error_set(err, ECANCELED, "build cancelled and killed");
        case RUNNER_PIDS:
                return kiln_error_set_lines(err, EIO,
                                      "build reached its process limit (pids-max %llu) and was "
                                      "killed%s",
                                      (unsigned long long)cfg->pids_max, tails);
        case RUNNER_EXITED:
                break;
        }
        return kiln_error_set(err, EIO, "build stopped for an unknown reason");
}

static int run_build(struct runner_build *b, struct kiln_error **err)
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
        b->started = true;
        int r = b->svc->backend->start(b, out[1], errp[1], err);
        close(out[1]);
        close(errp[1]);
        if (r < 0)
                return r;
        b->watch.pidfd = b->pidfd;
        b->watch.out_log = b->out_log;
        b->watch.err_log = b->err_log;
        b->watch.cancel_fd = b->call->cancel ? kiln_cancel_fd(b->call->cancel) : -1;
        b->watch.timeout = b->call->timeout ? b->call->timeout : cfg->timeout;
        b->watch.max_silent = b->call->max_silent ? b->call->max_silent : cfg->max_silent;
        b->watch.max_log = b->call->max_log ? b->call->max_log : cfg->max_log;
        b->watch.on_output = b->call->output;
        b->watch.on_output_userdata = b->call->userdata;
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
        while (waitpid(b->pid, &status, 0) < 0)
                if (errno != EINTR)
                        return kiln_error_errno(err, errno, "waitpid");
        b->pid = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return build_failed(b, status, err);
        return 0;
}

/* Kills whatever of the build still runs and lets the backend go. */
static void release_sandbox(struct runner_build *b)
{
        if (b->started) {
                runner_cgroup_kill(&b->cgroup);
                if (b->pid > 0)
                        b->svc->backend->kill(b);
                b->svc->backend->release(b);
                b->started = false;
        }
        if (b->pidfd >= 0)
                close(b->pidfd);
        b->pidfd = -1;
        runner_cgroup_done(&b->cgroup);
}

/* Whether a failed build's bundle stays, marked as kept: always with
 * keep-failed=1; at the call's request while fewer than keep-failed-max are
 * kept (counted and marked under the lock, so concurrent failures cannot
 * both take the last place). The failure ends with a note saying which. */
static bool keep_bundle(struct runner_build *b, struct kiln_error **err)
{
        struct runner_service *s = b->svc;
        if (!runner_keeps_failed(b))
                return false;
        size_t n = 0;
        bool keep = s->cfg.keep_failed;
        if (!keep) {
                pthread_mutex_lock(&s->lock);
                n = runner_count_kept(s->cfg.bundle_root);
                keep = n < s->cfg.keep_failed_max;
                if (keep)
                        runner_mark_kept(b->dir);
                pthread_mutex_unlock(&s->lock);
        } else {
                runner_mark_kept(b->dir);
        }
        if (!err || !*err)
                return keep;
        if (keep)
                kiln_error_set_lines(err, (*err)->code, "%s\nnote: keeping build directory '%s'",
                                     (*err)->msg, b->dir);
        else
                kiln_error_set_lines(err, (*err)->code,
                                     "%s\nnote: not keeping the build directory: %zu failed "
                                     "builds are kept already (keep-failed-max)",
                                     (*err)->msg, n);
        return keep;
}

static void build_cleanup(struct runner_build *b, int r, struct kiln_error **err)
{
        release_sandbox(b);
        runner_bundle_release_inputs(b);
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
        if (b->dir && !(r < 0 && keep_bundle(b, err))) {
                if (b->scratch_mounted) {
                        _cleanup_free_ char *where = kiln_asprintf("%s/scratch", b->dir);
                        (void)umount2(where, MNT_DETACH);
                }
                discard_bundle(b->svc, b->dir, b->id);
        }
        free(b->dir);
}

static int runner_build(struct kiln_build_service *base, const struct kiln_build_request *req,
                        const struct kiln_build_call *call, struct kiln_build *ret,
                        struct kiln_error **err)
{
        struct runner_service *s = (struct runner_service *)base;
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

        struct runner_build b = {
                .svc = s,
                .req = req,
                .call = call,
                .cgroup = {.cg = &s->cfg.cgroups},
                .dir_fd = -1,
                .pidfd = -1,
                .out_log = -1,
                .err_log = -1,
                .watch = {.pidfd = -1, .out_fd = -1, .err_fd = -1, .cancel_fd = -1},
        };
        runner_slot_ids(&s->cfg, slot, &b.ids);
        runner_make_uuid(b.id);
        struct kiln_build result = {0};
        progress(&b, "bundle");
        r = runner_bundle_make(&b, err);
        if (r < 0) {
                kiln_error_prefix(err, r, "bundle");
                goto out;
        }
        progress(&b, "mount");
        r = runner_bundle_mount_inputs(&b, err);
        if (r < 0) {
                kiln_error_prefix(err, r, "mount inputs");
                goto out;
        }
        progress(&b, "run");
        r = run_build(&b, err);
        if (r < 0)
                goto out;
        /* The sandbox is gone: release its state and the inputs now. */
        release_sandbox(&b);
        runner_bundle_release_inputs(&b);
        progress(&b, "ingest");
        r = runner_ingest_outputs(&b, &result, err);
        if (r < 0)
                goto out;
        kiln_build_request_copy(&result.request, req);
        *ret = result;
        result = (struct kiln_build){0};
out:
        kiln_build_done(&result);
        build_cleanup(&b, r, err);
        close(slot_fd);
        slot_release(s);
        return r;
}

static void runner_free(struct kiln_build_service *base)
{
        struct runner_service *s = (struct runner_service *)base;
        if (s->backend && s->backend->done)
                s->backend->done(s);
        runner_view_done(s);
        pthread_mutex_destroy(&s->view_lock);
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
        free(s->cfg.sandbox_shell);
        kiln_strv_done(&s->cfg.ro_paths);
        runner_cgroups_done(&s->cfg.cgroups);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s);
}

static const char *runner_notice(struct kiln_build_service *base)
{
        struct runner_service *s = (struct runner_service *)base;
        return s->notice;
}

static const struct kiln_build_service_ops oci_ops = {
        .name = "oci",
        .build = runner_build,
        .free = runner_free,
        .notice = runner_notice,
};

static const struct kiln_build_service_ops sandbox_ops = {
        .name = "sandbox",
        .build = runner_build,
        .free = runner_free,
        .notice = runner_notice,
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

static void host_systems(struct runner_service *s)
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
        /* Nix's default: the kvm system feature, and so /dev/kvm in the
         * sandbox, wherever /dev/kvm can be opened for reading and writing */
        uint64_t concurrency = cfg->concurrency, timeout = 0, silent = 0, keep = 0,
                 subid = cfg->fallback_subid, kvm = access("/dev/kvm", R_OK | W_OK) == 0;
        const struct {
                const char *key;
                uint64_t min, max, *dst;
        } nums[] = {
                {"concurrency", 1, 1024, &concurrency},
                {"timeout", 0, 7 * 24 * 3600, &timeout},
                {"max-silent-time", 0, 7 * 24 * 3600, &silent},
                {"max-log-size", 0, UINT64_MAX, &cfg->max_log},
                {"keep-failed", 0, 1, &keep},
                {"keep-failed-max", 0, 1024, &cfg->keep_failed_max},
                {"kvm", 0, 1, &kvm},
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
        cfg->kvm = kvm != 0;
        cfg->fallback_subid = (uint32_t)subid;

        cfg->sandbox_shell = kiln_url_query_get(u, "sandbox-shell");
        if (!cfg->sandbox_shell)
                cfg->sandbox_shell = kiln_strdup(KILN_SANDBOX_SHELL);
        if (cfg->sandbox_shell[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': sandbox-shell must be an "
                                      "absolute path",
                                      url);
        /* one name, so two services on a host keep their builds apart */
        cfg->cgroups.parent = kiln_url_query_get(u, "cgroup");
        if (!cfg->cgroups.parent)
                cfg->cgroups.parent = kiln_strdup("kiln");
        const char *cg = cfg->cgroups.parent;
        if (!*cg || strspn(cg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
                            strlen(cg) ||
            cg[0] == '.')
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': cgroup must be one name "
                                      "of letters, digits, '_', '-' and '.', not starting with "
                                      "'.'",
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

/* The bundle root and, in its hidden .state directory, the slot locks, the
 * trash and a backend's state: one look shows whether anything was left
 * behind. */
static int prepare_dirs(struct runner_service *s, struct kiln_error **err)
{
        struct runner_config *cfg = &s->cfg;
        int r = kiln_mkdir_p(cfg->bundle_root, 0711);
        if (r < 0)
                return kiln_error_errno(err, -r, "create bundle root %s", cfg->bundle_root);
        r = check_searchable(cfg->bundle_root, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *state = kiln_asprintf("%s/.state", cfg->bundle_root);
        if (mkdir(state, 0700) < 0 && errno != EEXIST)
                return kiln_error_errno(err, errno, "create %s", state);
        /* Bundles left in the trash by a daemon that died are removed now. */
        s->trash_dir = kiln_asprintf("%s/.state/trash", cfg->bundle_root);
        (void)kiln_rm_rf_at(AT_FDCWD, s->trash_dir);
        if (mkdir(s->trash_dir, 0700) < 0 && errno != EEXIST)
                return kiln_error_errno(err, errno, "create %s", s->trash_dir);
        return 0;
}

static int runner_new(const struct runner_backend *backend, const struct kiln_url *u,
                      const char *url, struct kiln_blob_service *blobs,
                      struct kiln_directory_service *dirs, struct kiln_build_service **ret,
                      struct kiln_error **err)
{
        if (u->path[0] != '/')
                return kiln_error_set(err, EINVAL,
                                      "invalid build service URL '%s': %s needs a bundle dir as "
                                      "path",
                                      url, backend->scheme);
        const char *allowed[] = {
                "concurrency",  "timeout",     "max-silent-time", "max-log-size",
                "keep-failed",  "sandbox-shell", "subid",         "scratch-size",
                "ro-paths",     "memory-max",  "pids-max",        "cgroup",
                "kvm",          "keep-failed-max",
                backend == &runner_oci_backend ? "runtime" : NULL,
                NULL};
        int r = kiln_url_query_check(u, allowed, url, err);
        if (r < 0)
                return r;

        struct runner_service *s = kiln_calloc(1, sizeof(*s));
        s->base.ops = backend == &runner_oci_backend ? &oci_ops : &sandbox_ops;
        s->backend = backend;
        s->blobs = blobs;
        s->dirs = dirs;
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->view_lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_cond_init(&s->trash_cond, NULL);
        host_systems(s);
        struct runner_config *cfg = &s->cfg;
        cfg->bundle_root = kiln_strdup(u->path);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->concurrency = ncpu > 0 ? (unsigned)ncpu : 1;
        cfg->fallback_subid = 100000;
        cfg->max_log = DEFAULT_MAX_LOG;
        cfg->keep_failed_max = DEFAULT_KEEP_FAILED_MAX;
        /* Half the memory: a tmpfs only takes what is written to it. */
        cfg->scratch_size = s->mem_total / 2;
        /* Room for the host: a build may take three quarters of it. */
        cfg->memory_max = s->mem_total / 4 * 3;
        cfg->pids_max = DEFAULT_PIDS_MAX;
        runner_cgroups_detect(&cfg->cgroups);
        if (cfg->cgroups.mode == RUNNER_CG_NONE)
                s->notice = kiln_asprintf("builds run without cgroups (%s): a build's processes "
                                          "are bounded by RLIMIT_NPROC, its memory is not",
                                          cfg->cgroups.why_none);
        if ((r = parse_options(cfg, u, url, err)) < 0 || (r = runner_idmaps_init(cfg, err)) < 0 ||
            (r = prepare_dirs(s, err)) < 0 ||
            (backend->init && (r = backend->init(s, u, url, err)) < 0)) {
                runner_free(&s->base);
                return r;
        }
        runner_recover(s);
        *ret = &s->base;
        return 0;
}

static int oci_new(const struct kiln_url *u, const char *url, struct kiln_blob_service *blobs,
                   struct kiln_directory_service *dirs, struct kiln_build_service **ret,
                   struct kiln_error **err)
{
        return runner_new(&runner_oci_backend, u, url, blobs, dirs, ret, err);
}

static int sandbox_new(const struct kiln_url *u, const char *url,
                       struct kiln_blob_service *blobs, struct kiln_directory_service *dirs,
                       struct kiln_build_service **ret, struct kiln_error **err)
{
        return runner_new(&runner_native_backend, u, url, blobs, dirs, ret, err);
}

void kiln_runner_register(void)
{
        kiln_build_service_register("oci", oci_new);
        kiln_build_service_register("sandbox", sandbox_new);
}
