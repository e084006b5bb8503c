/* Starting a helper program (the OCI runtime, kiln's sandbox) from the
 * daemon like posix_spawn does, with CLONE_VM | CLONE_VFORK: a fork of the
 * daemon would copy its page tables and take copy-on-write faults,
 * milliseconds on these machines, for every build. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>

#include "runner.h"

struct child_args {
        const struct runner_spawn *sp;
        int in_fd, null_fd;
};

/* The child, sharing our memory until it execs: only system calls, nothing
 * that allocates or writes shared state. */
static int spawn_child(void *p)
{
        const struct child_args *a = p;
        const struct runner_spawn *sp = a->sp;
        /* No handler of ours may run here; the program starts with default
         * dispositions and an empty mask. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int sig = 1; sig < NSIG; sig++)
                (void)sigaction(sig, &dfl, NULL);
        if (sp->private_unified) {
                if (unshare(CLONE_NEWNS) < 0 ||
                    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(126);
                (void)umount2("/sys/fs/cgroup/unified", MNT_DETACH);
        }
        /* Extra fds first move out of the way of 0..4, then into place. */
        int extra[2] = {-1, -1};
        for (int i = 0; i < 2; i++)
                if (sp->extra_fds[i] >= 0 &&
                    (extra[i] = fcntl(sp->extra_fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
                        _exit(126);
        if (dup2(a->in_fd, 0) < 0 || dup2(sp->out_fd >= 0 ? sp->out_fd : a->null_fd, 1) < 0 ||
            dup2(sp->err_fd >= 0 ? sp->err_fd : a->null_fd, 2) < 0)
                _exit(126);
        for (int i = 0; i < 2; i++)
                if (extra[i] >= 0 && dup2(extra[i], 3 + i) < 0)
                        _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (strchr(sp->argv[0], '/'))
                execv(sp->argv[0], sp->argv);
        else
                execvp(sp->argv[0], sp->argv);
        _exit(127);
}

pid_t runner_spawn(const struct runner_spawn *sp, struct kiln_error **err)
{
        enum { STACK_SIZE = 64 * 1024 };
        struct child_args a = {.sp = sp};
        int in[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return kiln_error_errno(err, errno, "pipe");
        close(in[1]);
        a.in_fd = in[0];
        /* Output nobody reads goes to a memfd: never hand the host's
         * /dev/null to a runtime, which may chown its streams. */
        a.null_fd = memfd_create("kiln-discard", MFD_CLOEXEC);
        if (a.null_fd < 0) {
                close(in[0]);
                return kiln_error_errno(err, errno, "memfd_create");
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
                return kiln_error_errno(err, e, "start %s", sp->argv[0]);
        return pid;
}

#ifndef KILN_SANDBOX_HELPER
#define KILN_SANDBOX_HELPER "/usr/local/libexec/kiln/kiln-sandbox"
#endif

char *runner_find_helper(void)
{
        const char *env = getenv("KILN_SANDBOX_HELPER");
        if (env && *env)
                return kiln_strdup(env);
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        const char *const beside[] = {"%s/kiln-sandbox",
                                                      "%s/../libexec/kiln/kiln-sandbox"};
                        for (size_t i = 0; i < KILN_ARRAY_SIZE(beside); i++) {
                                char *p = kiln_asprintf(beside[i], self);
                                if (access(p, X_OK) == 0)
                                        return p;
                                free(p);
                        }
                }
        }
        return kiln_strdup(KILN_SANDBOX_HELPER);
}
