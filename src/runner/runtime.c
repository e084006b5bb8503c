/* Driving the OCI runtime (runc, or crun) as a child process. crun refuses
 * this machine's hybrid cgroup layout unless it runs in a private mount
 * namespace without /sys/fs/cgroup/unified (PLATFORM), so every runtime
 * command goes through one spawn path that can set that up. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "runner.h"

struct spawn_args {
        char *const *argv;
        int in_fd, null_fd, out_fd, err_fd;
        bool crun;
};

/* The child, sharing our memory until it execs (vfork semantics): only
 * system calls, nothing that allocates or writes shared state. */
static int spawn_child(void *p)
{
        const struct spawn_args *a = p;
        /* No handler of ours may run here; the runtime starts with default
         * dispositions and an empty mask. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int sig = 1; sig < NSIG; sig++)
                (void)sigaction(sig, &dfl, NULL);
        if (a->crun) {
                if (unshare(CLONE_NEWNS) < 0 ||
                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(126);
                (void)umount2("/sys/fs/cgroup/unified", MNT_DETACH);
        }
        if (dup2(a->in_fd, 0) < 0 || dup2(a->out_fd >= 0 ? a->out_fd : a->null_fd, 1) < 0 ||
            dup2(a->err_fd >= 0 ? a->err_fd : a->null_fd, 2) < 0)
                _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(a->argv[0], a->argv);
        _exit(127);
}

/* Starts the runtime like posix_spawn does (CLONE_VM | CLONE_VFORK): a fork
 * of the daemon would copy its page tables and take copy-on-write faults,
 * milliseconds on these machines, for every build. Its stdin is an empty
 * pipe, never the host's /dev/null: crun chowns the container's standard
 * streams to the build user. */
static pid_t spawn(const struct runner_config *cfg, char *const argv[], int out_fd, int err_fd,
                   struct kiln_error **err)
{
        enum { STACK_SIZE = 64 * 1024 };
        struct spawn_args a = {
                .argv = argv,
                .out_fd = out_fd,
                .err_fd = err_fd,
                .crun = !strcmp(cfg->runtime, "crun"),
        };
        int in[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return kiln_error_errno(err, errno, "pipe");
        close(in[1]);
        a.in_fd = in[0];
        a.null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (a.null_fd < 0) {
                close(in[0]);
                return kiln_error_errno(err, errno, "open /dev/null");
        }
        _cleanup_free_ uint8_t *stack = kiln_malloc(STACK_SIZE);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        pid_t pid = clone(spawn_child, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(a.in_fd);
        close(a.null_fd);
        if (pid < 0)
                return kiln_error_errno(err, e, "start %s", argv[0]);
        return pid;
}

/* Runs a short runtime command to completion; returns its wait status. */
static int run_sync(const struct runner_config *cfg, char *const argv[])
{
        pid_t pid = spawn(cfg, argv, -1, -1, NULL);
        if (pid < 0)
                return pid;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return status;
}

int runtime_start(const struct runner_config *cfg, const char *bundle, const char *id,
                  int out_fd, int err_fd, struct runtime_run *ret, struct kiln_error **err)
{
        /* The runtime's own messages go to a log of their own, so a failure
         * to start the container is told apart from the build's output. */
        _cleanup_free_ char *log = kiln_asprintf("%s/runtime.log", bundle);
        char *argv[] = {cfg->runtime, "--root", cfg->state_dir, "--log", log, "--log-format",
                        "json", "run", "--bundle", (char *)bundle, (char *)id, NULL};
        pid_t pid = spawn(cfg, argv, out_fd, err_fd, err);
        if (pid < 0)
                return kiln_error_prefix(err, pid, "runtime: start %s", cfg->runtime);
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return kiln_error_errno(err, e, "runtime: pidfd_open");
        }
        *ret = (struct runtime_run){.pid = pid, .pidfd = pidfd, .id = kiln_strdup(id)};
        return 0;
}

static bool exited(struct runtime_run *run, int timeout_ms)
{
        struct pollfd p = {.fd = run->pidfd, .events = POLLIN};
        return poll(&p, 1, timeout_ms) == 1;
}

void runtime_kill(const struct runner_config *cfg, struct runtime_run *run)
{
        if (run->pid <= 0)
                return;
        char *argv[] = {cfg->runtime, "--root", cfg->state_dir, "kill", run->id, "KILL", NULL};
        /* The container may not exist yet (still being created), so retry
         * for a while; then kill the runtime process itself. */
        for (int attempt = 0; attempt < 50 && !exited(run, 0); attempt++) {
                (void)run_sync(cfg, argv);
                if (exited(run, 100))
                        break;
        }
        if (!exited(run, 0))
                kill(run->pid, SIGKILL);
        while (waitpid(run->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        run->pid = 0;
}

void runtime_delete(const struct runner_config *cfg, const char *id)
{
        /* `run` removes the container when it exits by itself; only a killed
         * run leaves state behind. Starting the runtime costs milliseconds. */
        _cleanup_free_ char *state = kiln_asprintf("%s/%s", cfg->state_dir, id);
        if (access(state, F_OK) < 0 && errno == ENOENT)
                return;
        char *argv[] = {cfg->runtime, "--root", cfg->state_dir, "delete", "--force",
                        (char *)id, NULL};
        (void)run_sync(cfg, argv);
}

void runtime_run_done(struct runtime_run *run)
{
        if (run->pid > 0) {
                kill(run->pid, SIGKILL);
                while (waitpid(run->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        if (run->pidfd >= 0)
                close(run->pidfd);
        free(run->id);
        *run = (struct runtime_run){.pidfd = -1};
}
