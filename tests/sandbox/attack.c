/* attack: one attack on the build sandbox per subcommand, run from inside a
 * build by tests/integration/sandbox_attacks.sh.
 *
 *     /inputs/attack [-o FILE] CASE [ARGS...]
 *
 * Each case tries one thing the sandbox must not allow, with raw system calls
 * where glibc has no wrapper, and prints exactly one verdict line:
 *
 *     CASE: blocked REASON      the attempt failed (REASON: errno name, or a
 *                               word such as "clean" for inspections)
 *     CASE: ESCAPED DETAIL      the attempt worked, or the state it inspects
 *                               is not what the sandbox promises
 *
 * Cases that try several system calls with the same aim report "blocked E"
 * when every call failed with E, and "blocked mixed: call=E ..." otherwise, so
 * the test can insist on the errno the policy names. The verdict goes to
 * stdout and, with -o, to FILE, which is opened only after the attack (the
 * fds case must see the descriptors the build started with). The program
 * always exits 0: the shell test judges, together with what it sees on the
 * host. Linked statically, so it needs nothing in the sandbox but itself. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/magic.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* System calls newer than Debian 12's headers (x86_64 numbers). */
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_setxattrat
#define SYS_setxattrat    463
#define SYS_getxattrat    464
#define SYS_listxattrat   465
#define SYS_removexattrat 466
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct kiln_xattr_args { /* struct xattr_args of Linux 6.13 */
        uint64_t value;
        uint32_t size;
        uint32_t flags;
};

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *case_name;
static char verdict[8192];

static const char *errname(int e)
{
        static char buf[32];
        const char *n = strerrorname_np(e);
        if (n)
                return n;
        snprintf(buf, sizeof(buf), "E%d", e);
        return buf;
}

static void blocked_why(const char *why)
{
        snprintf(verdict, sizeof(verdict), "%s: blocked %s", case_name, why);
}

static void blocked(int e)
{
        blocked_why(errname(e));
}

__attribute__((format(printf, 1, 2))) static void escaped(const char *fmt, ...)
{
        int n = snprintf(verdict, sizeof(verdict), "%s: ESCAPED ", case_name);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(verdict + n, sizeof(verdict) - (size_t)n, fmt, ap);
        va_end(ap);
        /* one line, whatever the detail contains */
        for (char *p = verdict; *p; p++)
                if (*p == '\n')
                        *p = ' ';
}

/* Prints the verdict now, for cases the sandbox may kill before they end. */
static void say_now(void)
{
        printf("%s\n", verdict);
        fflush(stdout);
}

/* --- several calls with one aim: every one must fail --- */

static struct note {
        const char *what;
        long r;
        int e;
} notes[32];
static size_t n_notes;

static void note(const char *what, long r)
{
        if (n_notes < ARRAY_SIZE(notes))
                notes[n_notes++] = (struct note){what, r, r < 0 ? errno : 0};
}

/* One verdict from the notes: ESCAPED at the first call that worked, else
 * "blocked E" when all failed alike, else "blocked mixed: ...". */
static void verdict_from_notes(void)
{
        for (size_t i = 0; i < n_notes; i++)
                if (notes[i].r >= 0) {
                        escaped("%s succeeded (returned %ld)", notes[i].what, notes[i].r);
                        return;
                }
        bool same = true;
        for (size_t i = 1; i < n_notes; i++)
                same = same && notes[i].e == notes[0].e;
        if (n_notes && same) {
                blocked(notes[0].e);
                return;
        }
        char buf[4096] = "mixed:";
        for (size_t i = 0; i < n_notes; i++) {
                size_t l = strlen(buf);
                snprintf(buf + l, sizeof(buf) - l, " %s=%s", notes[i].what, errname(notes[i].e));
        }
        blocked_why(buf);
}

/* A single call that must fail. */
static void one(const char *what, long r)
{
        note(what, r);
        verdict_from_notes();
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Leaves PATH.ready, then waits until PATH.done appears or SECONDS pass:
 * the test looks at the host's side of the scratch space meanwhile. */
static void hold(const char *path, double seconds)
{
        char name[256];
        snprintf(name, sizeof(name), "%s.ready", path);
        int fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
                close(fd);
        snprintf(name, sizeof(name), "%s.done", path);
        double deadline = now_s() + seconds;
        while (now_s() < deadline && access(name, F_OK) < 0) {
                struct timespec ts = {0, 20 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}

/* Runs fn in a child process and returns its result as fn would have
 * (-1 with errno set, or 0): for attacks that, when they work, would leave
 * this process unable to write its verdict (a new root, a new user
 * namespace). */
static long in_child(long (*fn)(void))
{
        pid_t pid = fork();
        if (pid == 0)
                _exit(fn() < 0 ? (errno & 0xff ? errno : 255) : 0);
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) < 0)
                return -1;
        if (!WIFEXITED(status)) {
                errno = EINTR;
                return -1;
        }
        if (WEXITSTATUS(status) == 0)
                return 0;
        errno = WEXITSTATUS(status);
        return -1;
}

/* A fresh regular file in the scratch space to play with. */
static const char *scratch_file(const char *name)
{
        static char path[256];
        snprintf(path, sizeof(path), "/build/%s", name);
        unlink(path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        if (fd < 0) {
                fprintf(stderr, "attack: create %s: %m\n", path);
                exit(0);
        }
        close(fd);
        return path;
}

static int need_args(int argc, int n, const char *usage)
{
        if (argc >= n)
                return 0;
        escaped("bad arguments; usage: %s", usage); /* a test bug, never a pass */
        return -1;
}

/* --- reading the host's files --- */

/* read PATH...: open and read each path; a host file must not be visible
 * under any of the names the test passes. */
static void case_read(int argc, char **argv)
{
        if (need_args(argc, 2, "read PATH...") < 0)
                return;
        for (int i = 1; i < argc; i++) {
                int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        note(argv[i], -1);
                        continue;
                }
                char buf[64];
                ssize_t n = read(fd, buf, sizeof(buf));
                close(fd);
                escaped("opened %s and read %zd bytes", argv[i], n);
                return;
        }
        verdict_from_notes();
}

/* list DIR...: a host directory must not be listable. */
static void case_list(int argc, char **argv)
{
        if (need_args(argc, 2, "list DIR...") < 0)
                return;
        for (int i = 1; i < argc; i++) {
                DIR *d = opendir(argv[i]);
                if (!d) {
                        note(argv[i], -1);
                        continue;
                }
                char names[512] = "";
                struct dirent *e;
                while ((e = readdir(d)))
                        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                            strlen(names) + strlen(e->d_name) + 2 < sizeof(names)) {
                                strcat(names, " ");
                                strcat(names, e->d_name);
                        }
                closedir(d);
                escaped("listed %s:%s", argv[i], names);
                return;
        }
        verdict_from_notes();
}

/* find NAME: walks everything the build can see except /proc and /dev,
 * looking for a file of that name planted on the host or by another build. */
static const char *find_name;
static char found_path[4096];

static int find_visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        if (!strcmp(path, "/proc") || !strcmp(path, "/dev") || !strcmp(path, "/sys"))
                return FTW_SKIP_SUBTREE;
        if (!strcmp(path + ftw->base, find_name)) {
                snprintf(found_path, sizeof(found_path), "%s", path);
                return FTW_STOP;
        }
        return FTW_CONTINUE;
}

static void case_find(int argc, char **argv)
{
        if (need_args(argc, 2, "find NAME") < 0)
                return;
        find_name = argv[1];
        nftw("/", find_visit, 32, FTW_PHYS | FTW_ACTIONRETVAL);
        if (found_path[0])
                escaped("found %s", found_path);
        else
                blocked(ENOENT);
}

/* write_input PATH: an input must be read-only, whatever call tries. */
static void case_write_input(int argc, char **argv)
{
        if (need_args(argc, 2, "write_input PATH") < 0)
                return;
        const char *p = argv[1];
        note("open(O_WRONLY)", open(p, O_WRONLY | O_CLOEXEC));
        note("truncate", truncate(p, 0));
        note("chmod", chmod(p, 0777));
        note("utimensat", utimensat(AT_FDCWD, p, NULL, 0));
        note("unlink", unlink(p));
        verdict_from_notes();
}

/* --- setuid and setgid bits --- */

static void mode_change(const char *what, const char *path, long r)
{
        struct stat st;
        if (r == 0 && stat(path, &st) == 0) {
                escaped("%s returned 0, mode now %04o", what, (unsigned)(st.st_mode & 07777));
                return;
        }
        one(what, r);
}

/* setuid_chmod: a setuid file is a way out once it leaves the sandbox. */
static void case_setuid_chmod(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("suid");
        mode_change("chmod(04755)", p, chmod(p, 04755));
}

static void case_setgid_chmod(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("sgid");
        mode_change("chmod(02755)", p, chmod(p, 02755));
}

static void case_setuid_fchmod(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("suid");
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        mode_change("fchmod(04755)", p, fchmod(fd, 04755));
}

/* fchmodat as a raw system call: glibc's wrapper may route around it. */
static void case_setuid_fchmodat(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("suid");
        mode_change("fchmodat(04755)", p, syscall(SYS_fchmodat, AT_FDCWD, p, 04755));
}

/* fchmodat2 (Linux 6.6) is easily forgotten by a seccomp filter. */
static void case_setuid_fchmodat2(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("suid");
        mode_change("fchmodat2(04755)", p, syscall(SYS_fchmodat2, AT_FDCWD, p, 04755, 0));
}

/* Creating with the bits set, no chmod at all, at PATH (an output, so that
 * the output check is the last line of defence when the kernel keeps the
 * bits). The sandbox holds when the call fails, the bits are gone, or the
 * service refuses the output (the test's part). */
static void created_with(const char *what, const char *path, long r)
{
        struct stat st;
        if (r < 0) {
                one(what, r);
                return;
        }
        if (stat(path, &st) < 0) {
                escaped("%s returned %ld but stat failed: %m", what, r);
                return;
        }
        if (st.st_mode & (S_ISUID | S_ISGID))
                escaped("%s created mode %04o at %s", what, (unsigned)(st.st_mode & 07777), path);
        else
                blocked_why("stripped");
}

/* The parent directory of path, created (one level) if missing. */
static void make_parent(const char *path)
{
        char dir[256];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                mkdir(dir, 0755);
        }
}

static void case_setuid_open(int argc, char **argv)
{
        if (need_args(argc, 2, "setuid_open PATH") < 0)
                return;
        make_parent(argv[1]);
        created_with("open(O_CREAT, 06755)", argv[1],
                     open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 06755));
}

static void case_setgid_mkdir(int argc, char **argv)
{
        if (need_args(argc, 2, "setgid_mkdir PATH") < 0)
                return;
        make_parent(argv[1]);
        created_with("mkdir(06755)", argv[1], mkdir(argv[1], 06755));
}

static void case_setuid_mknod(int argc, char **argv)
{
        if (need_args(argc, 2, "setuid_mknod PATH") < 0)
                return;
        make_parent(argv[1]);
        created_with("mknod(S_IFREG|06755)", argv[1], mknod(argv[1], S_IFREG | 06755, 0));
}

/* suid_root PATH SECONDS: a file owned by root with the setuid bit, in the
 * scratch space, which lives on the host: any host user who can reach it
 * could run it as root. Held for the test to look (see hold). */
static void case_suid_root(int argc, char **argv)
{
        if (need_args(argc, 3, "suid_root PATH SECONDS") < 0)
                return;
        const char *p = argv[1];
        unlink(p);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        if (fd < 0) {
                blocked(errno);
                return;
        }
        close(fd);
        note("chown(0:0)", chown(p, 0, 0));
        note("chmod(04755)", chmod(p, 04755));
        struct stat st;
        if (stat(p, &st) == 0 && st.st_uid == 0 && (st.st_mode & S_ISUID))
                escaped("made %s owned by uid 0 with mode %04o", p,
                        (unsigned)(st.st_mode & 07777));
        else
                verdict_from_notes();
        hold(p, atof(argv[2]));
}

/* make_suid PATH MODE [dir]: leaves a file (or directory) with MODE's
 * setuid/setgid bits at PATH by any means that works, for the output check. */
static void case_make_suid(int argc, char **argv)
{
        if (need_args(argc, 3, "make_suid PATH MODE [dir]") < 0)
                return;
        const char *p = argv[1];
        mode_t mode = (mode_t)strtoul(argv[2], NULL, 8);
        bool dir = argc > 3 && !strcmp(argv[3], "dir");
        struct stat st;
        if (dir) {
                note("mkdir", mkdir(p, mode));
                note("chmod", chmod(p, mode));
        } else {
                note("open(O_CREAT)", open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
                if (stat(p, &st) < 0 || !(st.st_mode & (S_ISUID | S_ISGID))) {
                        unlink(p);
                        note("mknod", mknod(p, S_IFREG | mode, 0));
                }
                if (stat(p, &st) < 0 || !(st.st_mode & (S_ISUID | S_ISGID)))
                        note("chmod", chmod(p, mode));
        }
        if (stat(p, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID))) {
                escaped("left mode %04o at %s", (unsigned)(st.st_mode & 07777), p);
                return;
        }
        /* the file may exist without the bits: that is a block too */
        for (size_t i = 0; i < n_notes; i++)
                if (notes[i].r >= 0) {
                        notes[i].r = -1;
                        notes[i].e = EPERM; /* the bits did not stick */
                }
        verdict_from_notes();
}

/* --- extended attributes: security.capability is a setuid in disguise --- */

static void case_xattr_user(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("x");
        one("setxattr(user.kiln)", setxattr(p, "user.kiln", "x", 1, 0));
}

/* A file capability (VFS v2: permitted+effective CAP_SETUID) that would make
 * the file a privileged program wherever its owner's id is root; the
 * scratch space is on the host. [PATH SECONDS]: on that file, held for the
 * test to look (see hold). */
static void case_xattr_capability(int argc, char **argv)
{
        const char *p = argc >= 3 ? argv[1] : scratch_file("x");
        if (argc >= 3) {
                unlink(p);
                int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
                if (fd >= 0)
                        close(fd);
        }
        struct vfs_cap_data cap = {
                .magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
                .data = {{.permitted = 1u << CAP_SETUID}},
        };
        one("setxattr(security.capability)",
            setxattr(p, "security.capability", &cap, XATTR_CAPS_SZ_2, 0));
        if (argc >= 3)
                hold(p, atof(argv[2]));
}

static void case_xattr_trusted(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("x");
        one("setxattr(trusted.kiln)", setxattr(p, "trusted.kiln", "x", 1, 0));
}

/* Every other *xattr system call, including the *xattrat family of 6.13. */
static void case_xattr_variants(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = scratch_file("x");
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        char buf[256];
        struct kiln_xattr_args a = {.value = (uintptr_t) "x", .size = 1};
        struct kiln_xattr_args g = {.value = (uintptr_t)buf, .size = sizeof(buf)};
        note("lsetxattr", lsetxattr(p, "user.kiln", "x", 1, 0));
        note("fsetxattr", fsetxattr(fd, "user.kiln", "x", 1, 0));
        note("getxattr", getxattr(p, "user.kiln", buf, sizeof(buf)));
        note("lgetxattr", lgetxattr(p, "user.kiln", buf, sizeof(buf)));
        note("fgetxattr", fgetxattr(fd, "user.kiln", buf, sizeof(buf)));
        note("listxattr", listxattr(p, buf, sizeof(buf)));
        note("llistxattr", llistxattr(p, buf, sizeof(buf)));
        note("flistxattr", flistxattr(fd, buf, sizeof(buf)));
        note("removexattr", removexattr(p, "user.kiln"));
        note("lremovexattr", lremovexattr(p, "user.kiln"));
        note("fremovexattr", fremovexattr(fd, "user.kiln"));
        note("setxattrat", syscall(SYS_setxattrat, AT_FDCWD, p, 0, "user.kiln", &a, sizeof(a)));
        note("getxattrat", syscall(SYS_getxattrat, AT_FDCWD, p, 0, "user.kiln", &g, sizeof(g)));
        note("listxattrat", syscall(SYS_listxattrat, AT_FDCWD, p, 0, buf, sizeof(buf)));
        note("removexattrat", syscall(SYS_removexattrat, AT_FDCWD, p, 0, "user.kiln"));
        verdict_from_notes();
}

/* --- devices, mounts, namespaces --- */

/* A character device node is raw access to whatever it names. */
static void case_mknod_char(int argc, char **argv)
{
        (void)argc, (void)argv;
        unlink("/build/mem");
        one("mknod(c 1:1 /dev/mem)", mknod("/build/mem", S_IFCHR | 0666, makedev(1, 1)));
}

/* A mount could cover or reveal anything; the new mount API as well. */
static void case_mount(int argc, char **argv)
{
        (void)argc, (void)argv;
        mkdir("/build/m", 0755);
        note("mount(tmpfs)", mount("none", "/build/m", "tmpfs", 0, NULL));
        note("mount(MS_REMOUNT /inputs)",
             mount(NULL, "/inputs", NULL, MS_REMOUNT | MS_BIND, NULL));
        note("fsopen(tmpfs)", syscall(SYS_fsopen, "tmpfs", 0));
        note("open_tree(OPEN_TREE_CLONE)",
             syscall(SYS_open_tree, AT_FDCWD, "/build", 1 /* OPEN_TREE_CLONE */));
        verdict_from_notes();
}

/* Unmounting a mask reveals what it hides (/proc/timer_list under /dev/null,
 * the writable /proc/sys under its read-only bind). */
static void case_umount(int argc, char **argv)
{
        (void)argc, (void)argv;
        note("umount2(/proc/timer_list)", umount2("/proc/timer_list", MNT_DETACH));
        note("umount2(/proc/sys)", umount2("/proc/sys", MNT_DETACH));
        note("umount2(/proc)", umount2("/proc", MNT_DETACH));
        verdict_from_notes();
}

/* A nested user namespace gives back every capability and is the usual
 * first step of kernel exploits. */
static long do_unshare_user(void)
{
        return unshare(CLONE_NEWUSER);
}

static void case_userns_unshare(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("unshare(CLONE_NEWUSER)", in_child(do_unshare_user));
}

static void case_userns_clone(int argc, char **argv)
{
        (void)argc, (void)argv;
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
                _exit(0);
        if (pid > 0)
                waitpid((pid_t)pid, NULL, 0);
        one("clone(CLONE_NEWUSER)", pid);
}

/* clone3 takes its flags in memory, where seccomp cannot look: it must be
 * ENOSYS so that libc falls back to clone, whose flags seccomp can check. */
static void case_clone3(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct clone_args a = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
        long pid = syscall(SYS_clone3, &a, sizeof(a));
        if (pid == 0)
                _exit(0);
        if (pid > 0)
                waitpid((pid_t)pid, NULL, 0);
        one("clone3(CLONE_NEWUSER)", pid);
}

/* --- other processes --- */

/* ptrace_host PID: a host process must not even be visible. */
static void case_ptrace_host(int argc, char **argv)
{
        if (need_args(argc, 2, "ptrace_host PID") < 0)
                return;
        pid_t pid = (pid_t)atoi(argv[1]);
        long r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
        if (r == 0) {
                waitpid(pid, NULL, __WALL);
                ptrace(PTRACE_DETACH, pid, NULL, NULL);
        }
        note("ptrace(PTRACE_ATTACH)", r);
        note("pidfd_open", syscall(SYS_pidfd_open, pid, 0));
        verdict_from_notes();
}

static void case_kill_host(int argc, char **argv)
{
        if (need_args(argc, 2, "kill_host PID") < 0)
                return;
        one("kill(SIGKILL)", kill((pid_t)atoi(argv[1]), SIGKILL));
}

/* --- /proc --- */

/* proc_sys_write: writes back the current value (no harm if it works), then
 * checks the mount itself: uid 1000 lacks permission anyway, so only the
 * read-only flag shows whether /proc/sys is read-only. */
static void case_proc_sys_write(int argc, char **argv)
{
        (void)argc, (void)argv;
        const char *p = "/proc/sys/kernel/core_pattern";
        char cur[256] = "";
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, cur, sizeof(cur) - 1) : -1;
        if (fd >= 0)
                close(fd);
        fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                ssize_t w = n > 0 ? write(fd, cur, (size_t)n) : 0;
                close(fd);
                escaped("opened %s for writing (wrote back %zd bytes)", p, w);
                return;
        }
        int e = errno;
        struct statvfs sv;
        if (statvfs("/proc/sys", &sv) == 0 && !(sv.f_flag & ST_RDONLY)) {
                escaped("/proc/sys is mounted read-write (the write failed with %s only)",
                        errname(e));
                return;
        }
        blocked(e);
}

/* Opening it for writing is all it takes; nothing is written. */
static void case_sysrq_trigger(int argc, char **argv)
{
        (void)argc, (void)argv;
        int fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                close(fd);
                escaped("opened /proc/sysrq-trigger for writing");
                return;
        }
        blocked(errno);
}

/* Root-only kernel files: masked (not a proc file any more) or unreadable. */
static void case_proc_kernel_files(int argc, char **argv)
{
        (void)argc, (void)argv;
        static const char *const files[] = {
                "/proc/kcore",     "/proc/keys",           "/proc/slabinfo",
                "/proc/kpageflags", "/proc/kpagecount",    "/proc/sysrq-trigger",
                "/proc/timer_list", "/proc/sched_debug",
        };
        char bad[1024] = "";
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                int fd = open(files[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                struct statfs sf;
                char c;
                bool proc = fstatfs(fd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
                ssize_t n = read(fd, &c, 1);
                close(fd);
                if (proc || n > 0) {
                        size_t l = strlen(bad);
                        snprintf(bad + l, sizeof(bad) - l, " %s(%s)", files[i],
                                 n > 0 ? "read" : "opened");
                }
        }
        if (bad[0])
                escaped("readable:%s", bad);
        else
                blocked_why("clean");
}

/* --- kernel interfaces that have no business in a build --- */

static void case_keyring(int argc, char **argv)
{
        (void)argc, (void)argv;
        note("keyctl(GET_KEYRING_ID)", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */,
                                               -3 /* KEY_SPEC_SESSION_KEYRING */, 0));
        note("add_key", syscall(SYS_add_key, "user", "kiln-attack", "x", 1,
                                -2 /* KEY_SPEC_PROCESS_KEYRING */));
        note("request_key", syscall(SYS_request_key, "user", "kiln-attack-none", NULL, 0));
        verdict_from_notes();
}

static void case_bpf(int argc, char **argv)
{
        (void)argc, (void)argv;
        union bpf_attr a;
        memset(&a, 0, sizeof(a));
        a.map_type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 4;
        a.max_entries = 1;
        one("bpf(BPF_MAP_CREATE)", syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a)));
}

/* Even self-monitoring is a side channel and a large kernel surface. */
static void case_perf_event(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct perf_event_attr a = {
                .type = PERF_TYPE_SOFTWARE,
                .size = sizeof(a),
                .config = PERF_COUNT_SW_CPU_CLOCK,
                .disabled = 1,
                .exclude_kernel = 1,
                .exclude_hv = 1,
        };
        one("perf_event_open(self)", syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
}

static void case_kernel_modules(int argc, char **argv)
{
        (void)argc, (void)argv;
        int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        note("init_module", syscall(SYS_init_module, NULL, 0, ""));
        note("finit_module", syscall(SYS_finit_module, fd, "", 0));
        note("delete_module", syscall(SYS_delete_module, "kiln_attack_none", O_NONBLOCK));
        verdict_from_notes();
}

/* Bad magic: the kernel checks CAP_SYS_BOOT first, so EINVAL means the call
 * got past the capability check (and nothing happens either way). */
static void case_reboot(int argc, char **argv)
{
        (void)argc, (void)argv;
        long r = syscall(SYS_reboot, 0, 0, LINUX_REBOOT_CMD_CAD_OFF, NULL);
        if (r < 0 && errno == EINVAL) {
                escaped("reboot passed the CAP_SYS_BOOT check (EINVAL for bad magic)");
                return;
        }
        one("reboot", r);
}

/* Undefined flags: EINVAL only after the permission check. */
static void case_kexec(int argc, char **argv)
{
        (void)argc, (void)argv;
        long r1 = syscall(SYS_kexec_load, 0, 0, NULL, 0x8000UL);
        int e1 = errno;
        long r2 = syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x8000UL);
        int e2 = errno;
        if ((r1 < 0 && e1 == EINVAL) || (r2 < 0 && e2 == EINVAL)) {
                escaped("kexec passed the CAP_SYS_BOOT check (kexec_load %s, kexec_file_load %s)",
                        errname(e1), errname(e2));
                return;
        }
        errno = e1;
        note("kexec_load", r1);
        errno = e2;
        note("kexec_file_load", r2);
        verdict_from_notes();
}

/* A missing file: ENOENT only after the CAP_SYS_ADMIN check. */
static void case_swap(int argc, char **argv)
{
        (void)argc, (void)argv;
        note("swapon", swapon("/kiln-attack-no-such-swap", 0));
        note("swapoff", swapoff("/kiln-attack-no-such-swap"));
        for (size_t i = 0; i < n_notes; i++)
                if (notes[i].r < 0 && notes[i].e == ENOENT) {
                        escaped("%s passed the CAP_SYS_ADMIN check (ENOENT)", notes[i].what);
                        return;
                }
        verdict_from_notes();
}

/* Sets the clock and timezone to what they are: harmless if it works. */
static void case_clock(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct timezone tz;
        struct timeval tv;
        struct timespec ts;
        gettimeofday(&tv, &tz);
        note("settimeofday(tz only)", settimeofday(NULL, &tz));
        clock_gettime(CLOCK_REALTIME, &ts);
        note("clock_settime(CLOCK_REALTIME, now)", clock_settime(CLOCK_REALTIME, &ts));
        struct timex tx = {.modes = 0};
        adjtimex(&tx);
        struct timex set = {.modes = ADJ_TICK, .tick = tx.tick};
        note("adjtimex(ADJ_TICK, same)", adjtimex(&set));
        verdict_from_notes();
}

static void case_hostname(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct utsname u;
        if (uname(&u) == 0 && strcmp(u.nodename, "localhost")) {
                escaped("hostname is '%s', not localhost", u.nodename);
                return;
        }
        static const char name[] = "kiln-attack-pwned";
        note("sethostname", sethostname(name, sizeof(name) - 1));
        note("setdomainname", setdomainname(name, sizeof(name) - 1));
        verdict_from_notes();
}

static long do_pivot_root(void)
{
        return syscall(SYS_pivot_root, "/build", "/build/old");
}

static void case_pivot_root(int argc, char **argv)
{
        (void)argc, (void)argv;
        mkdir("/build/old", 0755);
        one("pivot_root", in_child(do_pivot_root));
}

static long do_chroot(void)
{
        return chroot("/build");
}

static void case_chroot(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("chroot(/build)", in_child(do_chroot));
}

static void case_acct(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("acct(NULL)", acct(NULL));
}

/* Q_SYNC needs no privilege in the kernel: only seccomp can refuse it. */
static void case_quotactl(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("quotactl(Q_SYNC)", quotactl(QCMD(Q_SYNC, USRQUOTA), NULL, 0, NULL));
}

/* User-mode-only userfaultfd needs no privilege: only seccomp can refuse it. */
static void case_userfaultfd(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("userfaultfd(UFFD_USER_MODE_ONLY)",
            syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
}

static void case_io_uring(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        note("io_uring_setup", syscall(SYS_io_uring_setup, 1, &p));
        note("io_uring_enter", syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
        note("io_uring_register", syscall(SYS_io_uring_register, -1, 0, NULL, 0));
        verdict_from_notes();
}

/* --- network --- */

static void case_raw_socket(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("socket(AF_INET, SOCK_RAW)", socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
}

static void case_packet_socket(int argc, char **argv)
{
        (void)argc, (void)argv;
        one("socket(AF_PACKET, SOCK_RAW)",
            socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
}

/* netns: the only interface is lo. */
static void case_netns(int argc, char **argv)
{
        (void)argc, (void)argv;
        FILE *f = fopen("/proc/net/dev", "re");
        if (!f) {
                escaped("cannot read /proc/net/dev: %m");
                return;
        }
        char line[512], extra[1024] = "";
        for (int i = 0; fgets(line, sizeof(line), f); i++) {
                char *colon = strchr(line, ':');
                if (i < 2 || !colon)
                        continue;
                *colon = '\0';
                char *name = line + strspn(line, " ");
                if (strcmp(name, "lo") && strlen(extra) + strlen(name) + 2 < sizeof(extra)) {
                        strcat(extra, " ");
                        strcat(extra, name);
                }
        }
        fclose(f);
        if (extra[0])
                escaped("interfaces besides lo:%s", extra);
        else
                blocked_why("lo-only");
}

/* tcp_connect PORT: the host's 127.0.0.1:PORT, where the test listens. */
static void case_tcp_connect(int argc, char **argv)
{
        if (need_args(argc, 2, "tcp_connect PORT") < 0)
                return;
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
                (void)!write(s, "kiln-attack\n", 12);
                escaped("connected to 127.0.0.1:%s", argv[1]);
                return;
        }
        blocked(errno);
}

static int connect_abstract(const char *name)
{
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        size_t n = strlen(name);
        if (n + 1 > sizeof(a.sun_path))
                n = sizeof(a.sun_path) - 1;
        memcpy(a.sun_path + 1, name, n);
        if (connect(s, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                                          1 + n)) < 0) {
                int e = errno;
                close(s);
                errno = e;
                return -1;
        }
        return s;
}

/* unix_connect NAME: a host abstract socket (they live in the network
 * namespace, so a build without network must not reach them). */
static void case_unix_connect(int argc, char **argv)
{
        if (need_args(argc, 2, "unix_connect NAME") < 0)
                return;
        int s = connect_abstract(argv[1]);
        if (s >= 0) {
                (void)!write(s, "kiln-attack\n", 12);
                escaped("connected to @%s", argv[1]);
                return;
        }
        blocked(errno);
}

/* peer_root NAME: become root, then talk to a host service that trusts
 * SO_PEERCRED (with --network, so the socket is reachable). */
static void case_peer_root(int argc, char **argv)
{
        if (need_args(argc, 2, "peer_root NAME") < 0)
                return;
        long r = setuid(0);
        int e = errno;
        int s = connect_abstract(argv[1]);
        if (s >= 0)
                (void)!write(s, "kiln-attack\n", 12);
        if (r == 0)
                escaped("setuid(0) succeeded (uid now %u); connect: %s", (unsigned)getuid(),
                        s >= 0 ? "connected" : errname(errno));
        else
                blocked(e);
}

/* --- what the build starts with --- */

/* fds: nothing but 0, 1 and 2 may be open when the build starts. */
static void case_fds(int argc, char **argv)
{
        (void)argc, (void)argv;
        int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                escaped("cannot open /proc/self/fd: %m");
                return;
        }
        char buf[4096], extra[2048] = "";
        long n;
        while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
                for (long off = 0; off < n;) {
                        struct {
                                uint64_t ino;
                                int64_t off;
                                unsigned short reclen;
                                unsigned char type;
                                char name[];
                        } *d = (void *)(buf + off);
                        off += d->reclen;
                        int fd = atoi(d->name);
                        if (d->name[0] == '.' || fd <= 2 || fd == dfd)
                                continue;
                        char path[64], target[256] = "?";
                        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                        ssize_t l = readlink(path, target, sizeof(target) - 1);
                        if (l >= 0)
                                target[l] = '\0';
                        size_t el = strlen(extra);
                        snprintf(extra + el, sizeof(extra) - el, " %d->%s", fd, target);
                }
        }
        close(dfd);
        if (extra[0])
                escaped("open descriptors:%s", extra);
        else
                blocked_why("clean");
}

/* env KEY=VALUE...: the environment is exactly these variables. */
extern char **environ;
static void case_env(int argc, char **argv)
{
        char bad[4096] = "";
        for (char **e = environ; *e; e++) {
                bool want = false;
                for (int i = 1; i < argc; i++)
                        want = want || !strcmp(*e, argv[i]);
                if (!want) {
                        size_t l = strlen(bad);
                        snprintf(bad + l, sizeof(bad) - l, " unexpected '%s'", *e);
                }
        }
        for (int i = 1; i < argc; i++) {
                bool have = false;
                for (char **e = environ; *e; e++)
                        have = have || !strcmp(*e, argv[i]);
                if (!have) {
                        size_t l = strlen(bad);
                        snprintf(bad + l, sizeof(bad) - l, " missing '%s'", argv[i]);
                }
        }
        if (bad[0])
                escaped("environment:%s", bad);
        else
                blocked_why("exact");
}

/* caps: no capability in any set, no_new_privs, a seccomp filter. */
static void case_caps(int argc, char **argv)
{
        (void)argc, (void)argv;
        static const struct {
                const char *field, *want;
        } want[] = {
                {"CapInh", "0000000000000000"}, {"CapPrm", "0000000000000000"},
                {"CapEff", "0000000000000000"}, {"CapBnd", "0000000000000000"},
                {"CapAmb", "0000000000000000"}, {"NoNewPrivs", "1"},
                {"Seccomp", "2"},
        };
        FILE *f = fopen("/proc/self/status", "re");
        if (!f) {
                escaped("cannot read /proc/self/status: %m");
                return;
        }
        char line[256], bad[1024] = "";
        bool seen[ARRAY_SIZE(want)] = {false};
        while (fgets(line, sizeof(line), f)) {
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                char *v = colon + 1 + strspn(colon + 1, " \t");
                v[strcspn(v, "\n")] = '\0';
                for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                        if (!strcmp(line, want[i].field)) {
                                seen[i] = true;
                                if (strcmp(v, want[i].want)) {
                                        size_t l = strlen(bad);
                                        snprintf(bad + l, sizeof(bad) - l, " %s=%s", line, v);
                                }
                        }
        }
        fclose(f);
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                if (!seen[i]) {
                        size_t l = strlen(bad);
                        snprintf(bad + l, sizeof(bad) - l, " %s missing", want[i].field);
                }
        if (bad[0])
                escaped("%s", bad + 1);
        else
                blocked_why("clean");
}

/* ids: uid 1000 and gid 100 in every slot, no other group. */
static void case_ids(int argc, char **argv)
{
        (void)argc, (void)argv;
        uid_t r, e, s;
        gid_t gr, ge, gs, groups[64];
        getresuid(&r, &e, &s);
        getresgid(&gr, &ge, &gs);
        int n = getgroups(64, groups);
        char bad[512] = "";
        if (r != 1000 || e != 1000 || s != 1000)
                snprintf(bad, sizeof(bad), " uids %u/%u/%u", r, e, s);
        if (gr != 100 || ge != 100 || gs != 100) {
                size_t l = strlen(bad);
                snprintf(bad + l, sizeof(bad) - l, " gids %u/%u/%u", gr, ge, gs);
        }
        for (int i = 0; i < n; i++)
                if (groups[i] != 100) {
                        size_t l = strlen(bad);
                        snprintf(bad + l, sizeof(bad) - l, " group %u", groups[i]);
                }
        if (bad[0])
                escaped("%s", bad + 1);
        else
                blocked_why("clean");
}

/* idmap: host id 0 must not be mapped into the build's user namespace. */
static void case_idmap(int argc, char **argv)
{
        (void)argc, (void)argv;
        static const char *const maps[] = {"/proc/self/uid_map", "/proc/self/gid_map"};
        char bad[512] = "";
        for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
                FILE *f = fopen(maps[i], "re");
                if (!f) {
                        escaped("cannot read %s: %m", maps[i]);
                        return;
                }
                unsigned long inside, outside, count;
                while (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3)
                        if (outside == 0) {
                                size_t l = strlen(bad);
                                snprintf(bad + l, sizeof(bad) - l, " %s maps %lu to host 0",
                                         maps[i] + 11, inside);
                        }
                fclose(f);
        }
        if (bad[0])
                escaped("%s", bad + 1);
        else
                blocked_why("clean");
}

/* no_sys: /sys exposes the host's devices and kernel; it must be absent. */
static void case_no_sys(int argc, char **argv)
{
        (void)argc, (void)argv;
        struct stat st;
        if (lstat("/sys", &st) == 0) {
                DIR *d = opendir("/sys");
                int n = 0;
                if (d) {
                        while (readdir(d))
                                n++;
                        closedir(d);
                }
                escaped("/sys exists (%d entries)", n > 2 ? n - 2 : 0);
                return;
        }
        blocked(errno);
}

/* /dev/kvm may be there as Nix's sandbox has it: the KVM device, which the
 * build can open only if its mode lets everyone (the host's choice). */
static bool kvm_as_nix(void)
{
        struct stat st;
        if (lstat("/dev/kvm", &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(10, 232))
                return false;
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return true;
        close(fd);
        return (st.st_mode & 0006) == 0006;
}

/* dev_list: /dev holds only the standard nodes (and kvm as Nix has it). */
static void case_dev_list(int argc, char **argv)
{
        (void)argc, (void)argv;
        static const char *const allowed[] = {"null",   "zero", "full", "random", "urandom",
                                              "tty",    "shm",  "pts",  "ptmx",   "fd",
                                              "stdin",  "stdout", "stderr"};
        DIR *d = opendir("/dev");
        if (!d) {
                escaped("cannot list /dev: %m");
                return;
        }
        char extra[1024] = "";
        struct dirent *e;
        while ((e = readdir(d))) {
                bool ok = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
                for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
                        ok = ok || !strcmp(e->d_name, allowed[i]);
                ok = ok || (!strcmp(e->d_name, "kvm") && kvm_as_nix());
                if (!ok && strlen(extra) + strlen(e->d_name) + 2 < sizeof(extra)) {
                        strcat(extra, " ");
                        strcat(extra, e->d_name);
                }
        }
        closedir(d);
        if (extra[0])
                escaped("unexpected entries in /dev:%s", extra);
        else
                blocked_why("clean");
}

/* --- /dev nodes: a change must never reach the host's nodes. These report
 * whether the call worked; the test judges by the host's node. --- */

static void case_dev_chmod(int argc, char **argv)
{
        if (need_args(argc, 2, "dev_chmod PATH") < 0)
                return;
        one("chmod(000)", chmod(argv[1], 0));
}

static void case_dev_chown(int argc, char **argv)
{
        if (need_args(argc, 2, "dev_chown PATH") < 0)
                return;
        one("chown(1000:100)", chown(argv[1], 1000, 100));
}

/* An explicit time needs ownership; "now" only write permission, which
 * everybody has on /dev/full. */
static void case_dev_touch(int argc, char **argv)
{
        if (need_args(argc, 2, "dev_touch PATH") < 0)
                return;
        struct timespec epoch[2] = {{0, 0}, {0, 0}};
        note("utimensat(1970)", utimensat(AT_FDCWD, argv[1], epoch, 0));
        note("utimensat(now)", utimensat(AT_FDCWD, argv[1], NULL, 0));
        verdict_from_notes();
}

static void case_dev_rm(int argc, char **argv)
{
        if (need_args(argc, 2, "dev_rm PATH") < 0)
                return;
        one("unlink", unlink(argv[1]));
}

/* --- outputs: what the build leaves for the service to ingest --- */

/* make_special PATH fifo|socket: a node the output check must refuse. */
static void case_make_special(int argc, char **argv)
{
        if (need_args(argc, 3, "make_special PATH fifo|socket") < 0)
                return;
        if (!strcmp(argv[2], "fifo")) {
                if (mkfifo(argv[1], 0644) < 0) {
                        blocked(errno);
                        return;
                }
        } else {
                int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_un a = {.sun_family = AF_UNIX};
                snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
                if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
                        blocked(errno);
                        return;
                }
        }
        escaped("left a %s at %s", argv[2], argv[1]);
}

/* symlink TARGET PATH */
static void case_symlink(int argc, char **argv)
{
        if (need_args(argc, 3, "symlink TARGET PATH") < 0)
                return;
        if (symlink(argv[1], argv[2]) < 0) {
                blocked(errno);
                return;
        }
        escaped("left a symlink %s -> %s", argv[2], argv[1]);
}

/* hardlink_input SRC DST: a hard link shares the inode, so ingesting DST
 * would read (or a write to it would change) what SRC names. */
static void case_hardlink_input(int argc, char **argv)
{
        if (need_args(argc, 3, "hardlink_input SRC DST") < 0)
                return;
        note("link", link(argv[1], argv[2]));
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
        char via[64];
        snprintf(via, sizeof(via), "/proc/self/fd/%d", fd);
        unlink(argv[2]);
        note("linkat(/proc/self/fd/N, AT_SYMLINK_FOLLOW)",
             linkat(AT_FDCWD, via, AT_FDCWD, argv[2], AT_SYMLINK_FOLLOW));
        verdict_from_notes();
}

/* hardlink_proc DIR: proc files and the magic links to them. */
static void case_hardlink_proc(int argc, char **argv)
{
        if (need_args(argc, 2, "hardlink_proc DIR") < 0)
                return;
        char a[256], b[256], c[256];
        snprintf(a, sizeof(a), "%s/status", argv[1]);
        snprintf(b, sizeof(b), "%s/exe", argv[1]);
        snprintf(c, sizeof(c), "%s/environ", argv[1]);
        note("link(/proc/self/status)", link("/proc/self/status", a));
        note("linkat(/proc/self/exe, AT_SYMLINK_FOLLOW)",
             linkat(AT_FDCWD, "/proc/self/exe", AT_FDCWD, b, AT_SYMLINK_FOLLOW));
        note("linkat(/proc/1/environ, AT_SYMLINK_FOLLOW)",
             linkat(AT_FDCWD, "/proc/1/environ", AT_FDCWD, c, AT_SYMLINK_FOLLOW));
        /* any errno will do: every one must fail */
        for (size_t i = 0; i < n_notes; i++)
                if (notes[i].r >= 0) {
                        verdict_from_notes();
                        return;
                }
        blocked(notes[0].e);
}

/* proc_exe_write: the runtime's binary (CVE-2019-5736) or the build's own
 * executable, opened for writing through /proc. */
static void case_proc_exe_write(int argc, char **argv)
{
        (void)argc, (void)argv;
        char via[64];
        note("open(/proc/self/exe, O_WRONLY)", open("/proc/self/exe", O_WRONLY | O_CLOEXEC));
        note("open(/proc/1/exe, O_WRONLY)", open("/proc/1/exe", O_WRONLY | O_CLOEXEC));
        int fd = open("/proc/1/exe", O_PATH | O_CLOEXEC);
        snprintf(via, sizeof(via), "/proc/self/fd/%d", fd);
        note("reopen(O_PATH of /proc/1/exe, O_WRONLY)", open(via, O_WRONLY | O_CLOEXEC));
        for (size_t i = 0; i < n_notes; i++)
                if (notes[i].r >= 0) {
                        verdict_from_notes();
                        return;
                }
        blocked(notes[0].e);
}

/* --- load: each stops by itself --- */

/* fork_bomb MAX SECONDS: every process forks as fast as it can, until MAX
 * processes were made in all (a shared counter) or SECONDS passed. */
static void case_fork_bomb(int argc, char **argv)
{
        if (need_args(argc, 3, "fork_bomb MAX SECONDS") < 0)
                return;
        long max = atol(argv[1]);
        double deadline = now_s() + atof(argv[2]);
        struct shared {
                long made;
                int first_errno;
        } *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        pid_t top = getpid();
        while (now_s() < deadline) {
                if (__atomic_load_n(&sh->made, __ATOMIC_RELAXED) >= max) {
                        struct timespec ts = {0, 50 * 1000 * 1000};
                        nanosleep(&ts, NULL);
                        continue;
                }
                pid_t p = fork();
                if (p == 0)
                        continue; /* the child joins in */
                if (p > 0) {
                        __atomic_add_fetch(&sh->made, 1, __ATOMIC_RELAXED);
                        continue;
                }
                int zero = 0;
                if (__atomic_compare_exchange_n(&sh->first_errno, &zero, errno, false,
                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                        blocked(errno);
                        say_now();
                }
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        if (getpid() != top)
                _exit(0);
        while (wait(NULL) > 0 || errno == EINTR)
                ;
        if (sh->first_errno)
                blocked(sh->first_errno);
        else
                escaped("made %ld processes in %s s without a limit", sh->made, argv[2]);
}

/* memory_hog MIB: allocates and touches MIB mebibytes. */
static void case_memory_hog(int argc, char **argv)
{
        if (need_args(argc, 2, "memory_hog MIB") < 0)
                return;
        long mib = atol(argv[1]);
        for (long i = 0; i < mib; i += 16) {
                char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) {
                        blocked(errno);
                        return;
                }
                for (size_t o = 0; o < (16 << 20); o += 4096)
                        p[o] = 1;
        }
        escaped("allocated and touched %ld MiB", mib);
}

/* silence SECONDS: one line, then nothing for SECONDS. */
static void case_silence(int argc, char **argv)
{
        if (need_args(argc, 2, "silence SECONDS") < 0)
                return;
        printf("silence: going quiet\n");
        fflush(stdout);
        sleep((unsigned)atoi(argv[1]));
        escaped("still running after %s silent seconds", argv[1]);
}

/* log_flood BYTES SECONDS: numbered lines until BYTES or SECONDS. */
static void case_log_flood(int argc, char **argv)
{
        if (need_args(argc, 3, "log_flood BYTES SECONDS") < 0)
                return;
        long max = atol(argv[1]);
        double deadline = now_s() + atof(argv[2]);
        long written = 0, line = 0;
        char buf[128];
        while (written < max && now_s() < deadline) {
                int n = snprintf(buf, sizeof(buf), "flood line %09ld %s\n", line++,
                                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
                if (write(1, buf, (size_t)n) != n) {
                        blocked(errno);
                        return;
                }
                written += n;
        }
        escaped("wrote %ld bytes (%ld lines) of log", written, line);
}

/* fill DIR MIB: writes DIR/fill until the space is full or MIB were written. */
static void case_fill(int argc, char **argv)
{
        if (need_args(argc, 3, "fill DIR MIB") < 0)
                return;
        char path[256];
        snprintf(path, sizeof(path), "%s/fill", argv[1]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                blocked(errno);
                return;
        }
        static char chunk[1 << 20];
        memset(chunk, 'f', sizeof(chunk));
        long mib = atol(argv[2]);
        for (long i = 0; i < mib; i++) {
                ssize_t n = write(fd, chunk, sizeof(chunk));
                if (n < (ssize_t)sizeof(chunk)) {
                        int e = n < 0 ? errno : ENOSPC;
                        if (n >= 0 && write(fd, chunk, sizeof(chunk)) < 0)
                                e = errno;
                        close(fd);
                        blocked(e);
                        return;
                }
        }
        close(fd);
        escaped("wrote %ld MiB to %s", mib, argv[1]);
}

/* marker PATH SECONDS: leaves PATH, then stays alive until PATH.done
 * appears (the test makes it from the host) or SECONDS passed: the other
 * half of the scratch isolation case. */
static void case_marker(int argc, char **argv)
{
        if (need_args(argc, 3, "marker PATH SECONDS") < 0)
                return;
        int fd = open(argv[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
                blocked(errno);
                return;
        }
        (void)!write(fd, "kiln-marker\n", 12);
        close(fd);
        char done[256];
        snprintf(done, sizeof(done), "%s.done", argv[1]);
        double deadline = now_s() + atof(argv[2]);
        while (now_s() < deadline && access(done, F_OK) < 0) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        blocked_why("done");
}

static const struct {
        const char *name;
        void (*fn)(int argc, char **argv);
} cases[] = {
        {"read", case_read},
        {"list", case_list},
        {"find", case_find},
        {"write_input", case_write_input},
        {"setuid_chmod", case_setuid_chmod},
        {"setgid_chmod", case_setgid_chmod},
        {"setuid_fchmod", case_setuid_fchmod},
        {"setuid_fchmodat", case_setuid_fchmodat},
        {"setuid_fchmodat2", case_setuid_fchmodat2},
        {"setuid_open", case_setuid_open},
        {"setgid_mkdir", case_setgid_mkdir},
        {"setuid_mknod", case_setuid_mknod},
        {"make_suid", case_make_suid},
        {"suid_root", case_suid_root},
        {"xattr_user", case_xattr_user},
        {"xattr_capability", case_xattr_capability},
        {"xattr_trusted", case_xattr_trusted},
        {"xattr_variants", case_xattr_variants},
        {"mknod_char", case_mknod_char},
        {"mount", case_mount},
        {"umount", case_umount},
        {"userns_unshare", case_userns_unshare},
        {"userns_clone", case_userns_clone},
        {"clone3", case_clone3},
        {"ptrace_host", case_ptrace_host},
        {"kill_host", case_kill_host},
        {"proc_sys_write", case_proc_sys_write},
        {"sysrq_trigger", case_sysrq_trigger},
        {"proc_kernel_files", case_proc_kernel_files},
        {"keyring", case_keyring},
        {"bpf", case_bpf},
        {"perf_event", case_perf_event},
        {"kernel_modules", case_kernel_modules},
        {"reboot", case_reboot},
        {"kexec", case_kexec},
        {"swap", case_swap},
        {"clock", case_clock},
        {"hostname", case_hostname},
        {"pivot_root", case_pivot_root},
        {"chroot", case_chroot},
        {"acct", case_acct},
        {"quotactl", case_quotactl},
        {"userfaultfd", case_userfaultfd},
        {"io_uring", case_io_uring},
        {"raw_socket", case_raw_socket},
        {"packet_socket", case_packet_socket},
        {"netns", case_netns},
        {"tcp_connect", case_tcp_connect},
        {"unix_connect", case_unix_connect},
        {"peer_root", case_peer_root},
        {"fds", case_fds},
        {"env", case_env},
        {"caps", case_caps},
        {"ids", case_ids},
        {"idmap", case_idmap},
        {"no_sys", case_no_sys},
        {"dev_list", case_dev_list},
        {"dev_chmod", case_dev_chmod},
        {"dev_chown", case_dev_chown},
        {"dev_touch", case_dev_touch},
        {"dev_rm", case_dev_rm},
        {"make_special", case_make_special},
        {"symlink", case_symlink},
        {"hardlink_input", case_hardlink_input},
        {"hardlink_proc", case_hardlink_proc},
        {"proc_exe_write", case_proc_exe_write},
        {"fork_bomb", case_fork_bomb},
        {"memory_hog", case_memory_hog},
        {"silence", case_silence},
        {"log_flood", case_log_flood},
        {"fill", case_fill},
        {"marker", case_marker},
};

int main(int argc, char **argv)
{
        const char *out = NULL;
        if (argc > 2 && !strcmp(argv[1], "-o")) {
                out = argv[2];
                argc -= 2;
                argv += 2;
        }
        if (argc < 2) {
                fprintf(stderr, "usage: attack [-o FILE] CASE [ARGS...]\n");
                return 2;
        }
        umask(022);
        case_name = argv[1];
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                if (!strcmp(cases[i].name, argv[1])) {
                        cases[i].fn(argc - 1, argv + 1);
                        break;
                }
        if (!verdict[0])
                escaped("unknown case or no verdict (a bug in the test)");
        printf("%s\n", verdict);
        fflush(stdout);
        if (out) {
                FILE *f = fopen(out, "we");
                if (!f || fprintf(f, "%s\n", verdict) < 0 || fclose(f) != 0)
                        fprintf(stderr, "attack: write %s: %m\n", out);
        }
        return 0;
}
