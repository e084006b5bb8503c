/* Driving the OCI runtime (runc, or crun) as a child process. crun refuses
 * a hybrid cgroup layout unless it runs in a private mount namespace without
 * /sys/fs/cgroup/unified (docs/ARCHITECTURE.md, host facts), so every
 * runtime command goes through one spawn path that can set that up. */
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "runner.h"

static pid_t spawn(const struct oci_config *oc, char *const argv[], int out_fd, int err_fd, int fd3,
                   int fd4, struct kiln_error **err)
{
        struct runner_spawn sp = {
            .argv = argv,
            .out_fd = out_fd,
            .err_fd = err_fd,
            .extra_fds = {fd3, fd4},
            .private_unified = !strcmp(oc->runtime, "crun"),
        };
        return runner_spawn(&sp, err);
}

/* Runs a short runtime command to completion; returns its wait status. */
static int run_sync(const struct oci_config *oc, char *const argv[])
{
        pid_t pid = spawn(oc, argv, -1, -1, -1, -1, NULL);
        if (pid < 0)
                return pid;
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return status;
}

int runtime_start(const struct oci_config *oc, const char *bundle, const char *id, int out_fd,
                  int err_fd, pid_t *ret_pid, int *ret_pidfd, struct kiln_error **err)
{
        /* The runtime's own messages go to a log of their own, so a failure
         * to start the container is told apart from the build's output. */
        _cleanup_free_ char *log = kiln_asprintf("%s/runtime.log", bundle);
        /* fds 3 and 4 (the sealed kiln-sandbox and its seccomp programs)
         * reach the container: the spec's process is /proc/self/fd/3
         * oci-exec (oci_spec.c). */
        char *argv[] = {
            oc->runtime, "--root", oc->state_dir,    "--log", log,        "--log-format",
            "json",      "run",    "--preserve-fds", "2",     "--bundle", (char *)bundle,
            (char *)id,  NULL};
        pid_t pid = spawn(oc, argv, out_fd, err_fd, oc->exec_fd, oc->seccomp_fd, err);
        if (pid < 0)
                return kiln_error_prefix(err, pid, "runtime: start %s", oc->runtime);
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                int e = errno;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return kiln_error_errno(err, e, "runtime: pidfd_open");
        }
        *ret_pid = pid;
        *ret_pidfd = pidfd;
        return 0;
}

static bool exited(int pidfd, int timeout_ms)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        return poll(&p, 1, timeout_ms) == 1;
}

void runtime_kill(const struct oci_config *oc, const char *id, pid_t pid, int pidfd)
{
        if (pid <= 0)
                return;
        char *argv[] = {oc->runtime, "--root", oc->state_dir, "kill", (char *)id, "KILL", NULL};
        /* The container may not exist yet (still being created), so retry
         * for a while; then kill the runtime process itself. */
        for (int attempt = 0; attempt < 50 && !exited(pidfd, 0); attempt++) {
                (void)run_sync(oc, argv);
                if (exited(pidfd, 100))
                        break;
        }
        if (!exited(pidfd, 0))
                kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}

void runtime_delete(const struct oci_config *oc, const char *id)
{
        /* `run` removes the container when it exits by itself; only a killed
         * run leaves state behind. Starting the runtime costs milliseconds. */
        _cleanup_free_ char *state = kiln_asprintf("%s/%s", oc->state_dir, id);
        if (access(state, F_OK) < 0 && errno == ENOENT)
                return;
        char *argv[] = {oc->runtime, "--root",   oc->state_dir, "delete",
                        "--force",   (char *)id, NULL};
        (void)run_sync(oc, argv);
}
