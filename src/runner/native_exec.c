/* kiln-sandbox: sets up one native sandbox from its plan (native_plan.h)
 * and runs the build command in it. The daemon starts it as root for every
 * build; it links nothing but libc, so starting it is cheap, and it decides
 * nothing: every path, mount, id and limit comes from the plan.
 *
 *   kiln-sandbox (host root)               the sandbox (pid 1 of new namespaces)
 *   read the plan (fd 3)
 *   join the build's cgroup
 *   clone(user, mount, pid, ipc, uts ──────► wait until the id maps are written
 *         [, net, cgroup])
 *   write uid_map and gid_map, release ────► become root of the user namespace
 *                                            host name, loopback, a tmpfs root with
 *                                            the plan's mounts and files, masks
 *                                            pivot_root, the root read-only, cwd
 *                                            rlimits, personality
 *                                            the build user, no capabilities at all,
 *                                            no_new_privs, seccomp, no stray fds
 *   wait, pass the exit status on          exec the build command
 *
 * A failure before the exec is reported as one line on fd 4, and the exit
 * status is then PLAN_EXIT_SETUP.
 *
 * `kiln-sandbox oci-exec` is the other mode: the first program of a build
 * under an OCI runtime (oci_exec_main). */
#include <errno.h>
#include <grp.h>
#include <linux/close_range.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "native_plan.h"

#define PLAN_FD   3
#define REPORT_FD 4

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
        char line[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        if ((size_t)n > sizeof(line) - 2)
                n = (int)sizeof(line) - 2;
        line[n++] = '\n';
        (void)!write(REPORT_FD, line, (size_t)n);
}

/* Reports "step: strerror(e)" and gives up. */
static void __attribute__((noreturn)) fail(int e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(int e, const char *fmt, ...)
{
        char step[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(step, sizeof(step), fmt, ap);
        va_end(ap);
        report("%s: %s", step, strerror(e));
        _exit(PLAN_EXIT_SETUP);
}

/* --- the plan --- */

struct plan {
        uint8_t *data;
        size_t len;
};

struct record {
        uint32_t type, len;
        const uint8_t *p;
};

/* Steps through the records: *off starts after the header. */
static bool next_record(const struct plan *pl, size_t *off, struct record *r)
{
        if (*off >= pl->len)
                return false;
        if (pl->len - *off < 8)
                fail(EINVAL, "plan: truncated record header");
        memcpy(&r->type, pl->data + *off, 4);
        memcpy(&r->len, pl->data + *off + 4, 4);
        if (r->len > pl->len - *off - 8)
                fail(EINVAL, "plan: record %u overruns the plan", r->type);
        r->p = pl->data + *off + 8;
        *off += 8 + (size_t)r->len;
        return true;
}

/* The next NUL-terminated string of a record, from *pos on. */
static const char *record_string(const struct record *r, size_t *pos)
{
        if (*pos >= r->len)
                fail(EINVAL, "plan: record %u lacks a string", r->type);
        const char *s = (const char *)r->p + *pos;
        const char *nul = memchr(s, 0, r->len - *pos);
        if (!nul)
                fail(EINVAL, "plan: unterminated string in record %u", r->type);
        *pos += (size_t)(nul - s) + 1;
        return s;
}

static void record_fixed(const struct record *r, void *out, size_t n)
{
        if (r->len < n)
                fail(EINVAL, "plan: record %u is too short", r->type);
        memcpy(out, r->p, n);
}

static void read_plan(struct plan *pl)
{
        struct stat st;
        if (fstat(PLAN_FD, &st) < 0)
                fail(errno, "plan: fstat");
        if (st.st_size < (off_t)sizeof(struct plan_header) || st.st_size > (1 << 30))
                fail(EINVAL, "plan: bad size %lld", (long long)st.st_size);
        pl->len = (size_t)st.st_size;
        pl->data = malloc(pl->len);
        if (!pl->data)
                fail(ENOMEM, "plan: allocate");
        size_t got = 0;
        while (got < pl->len) {
                ssize_t n = pread(PLAN_FD, pl->data + got, pl->len - got, (off_t)got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        fail(n < 0 ? errno : EIO, "plan: read");
                got += (size_t)n;
        }
        struct plan_header h;
        memcpy(&h, pl->data, sizeof(h));
        if (h.magic != PLAN_MAGIC || h.version != PLAN_VERSION)
                fail(EINVAL, "plan: not a version %u plan", PLAN_VERSION);
        close(PLAN_FD);
}

/* --- in the sandbox, before the exec --- */

static char root[4096];

static const char *in_root(const char *path, char buf[4096])
{
        if (path[0] != '/' || (size_t)snprintf(buf, 4096, "%s%s", root, path) >= 4096)
                fail(ENAMETOOLONG, "path %s", path);
        return buf;
}

/* Creates the directories of full (a path below root) that are missing. */
static void mkdir_parents(char *full, bool last)
{
        size_t skip = strlen(root);
        for (char *p = full + skip + 1;; p++) {
                if (*p != '/' && *p)
                        continue;
                if (!*p && !last)
                        return;
                char c = *p;
                *p = '\0';
                if (mkdir(full, 0755) < 0 && errno != EEXIST)
                        fail(errno, "create %s", full + skip);
                *p = c;
                if (!c)
                        return;
        }
}

/* A mount point of the kind the source is: a directory or an empty file. */
static void make_mount_point(const char *full, bool dir)
{
        struct stat st;
        if (lstat(full, &st) == 0)
                return;
        char buf[4096];
        strcpy(buf, full);
        mkdir_parents(buf, dir);
        if (!dir) {
                int fd = open(full, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (fd < 0)
                        fail(errno, "create %s", full + strlen(root));
                close(fd);
        }
}

static unsigned long ms_flags(uint32_t f)
{
        return (f & PLAN_RDONLY ? MS_RDONLY : 0) | (f & PLAN_NOSUID ? MS_NOSUID : 0) |
               (f & PLAN_NODEV ? MS_NODEV : 0) | (f & PLAN_NOEXEC ? MS_NOEXEC : 0);
}

/* Flags a remount inside a user namespace must keep: the kernel locks
 * those of a mount that came from a more privileged namespace. */
static unsigned long kept_flags(const char *full)
{
        struct statvfs sv;
        if (statvfs(full, &sv) < 0)
                fail(errno, "statvfs %s", full + strlen(root));
        unsigned long f = 0;
        const struct {
                unsigned long st, ms;
        } map[] = {{ST_RDONLY, MS_RDONLY},    {ST_NOSUID, MS_NOSUID},
                   {ST_NODEV, MS_NODEV},      {ST_NOEXEC, MS_NOEXEC},
                   {ST_NOATIME, MS_NOATIME},  {ST_NODIRATIME, MS_NODIRATIME},
                   {ST_RELATIME, MS_RELATIME}};
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (sv.f_flag & map[i].st)
                        f |= map[i].ms;
        return f;
}

static void bind_mount(const char *source, const char *full, uint32_t flags)
{
        if (mount(source, full, NULL, MS_BIND | MS_REC, NULL) < 0)
                fail(errno, "bind %s on %s", source, full + strlen(root));
        if (!flags)
                return;
        unsigned long f = MS_REMOUNT | MS_BIND | ms_flags(flags) | kept_flags(full);
        if (mount(NULL, full, NULL, f, NULL) < 0)
                fail(errno, "remount %s", full + strlen(root));
}

static void do_mount(const struct record *r)
{
        struct plan_mount m;
        record_fixed(r, &m, sizeof(m));
        size_t pos = sizeof(m);
        const char *source = record_string(r, &pos), *dest = record_string(r, &pos),
                   *data = record_string(r, &pos);
        char buf[4096];
        const char *full = in_root(dest, buf);
        unsigned long flags = ms_flags(m.flags);
        switch (m.kind) {
        case PLAN_BIND: {
                struct stat st;
                if ((m.flags & PLAN_NOFOLLOW ? lstat : stat)(source, &st) < 0)
                        fail(errno, "bind %s", source);
                if (S_ISLNK(st.st_mode))
                        fail(ELOOP, "bind %s: a symlink", source);
                make_mount_point(full, S_ISDIR(st.st_mode));
                bind_mount(source, full, m.flags);
                return;
        }
        case PLAN_TMPFS:
        case PLAN_PROC:
        case PLAN_DEVPTS: {
                const char *fs = m.kind == PLAN_TMPFS  ? "tmpfs"
                                 : m.kind == PLAN_PROC ? "proc"
                                                       : "devpts";
                make_mount_point(full, true);
                if (mount(fs, full, fs, flags, *data ? data : NULL) < 0)
                        fail(errno, "mount %s on %s", fs, dest);
                return;
        }
        }
        fail(EINVAL, "plan: unknown mount kind %u", m.kind);
}

static void do_file(const struct record *r)
{
        uint32_t mode;
        record_fixed(r, &mode, sizeof(mode));
        size_t pos = sizeof(mode);
        const char *path = record_string(r, &pos);
        char buf[4096], full[4096];
        strcpy(full, in_root(path, buf));
        mkdir_parents(full, false);
        int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
        if (fd < 0)
                fail(errno, "create %s", path);
        for (size_t off = pos; off < r->len;) {
                ssize_t n = write(fd, r->p + off, r->len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        fail(n < 0 ? errno : EIO, "write %s", path);
                off += (size_t)n;
        }
        close(fd);
}

static void do_symlink(const struct record *r)
{
        size_t pos = 0;
        const char *target = record_string(r, &pos), *path = record_string(r, &pos);
        char buf[4096], full[4096];
        strcpy(full, in_root(path, buf));
        mkdir_parents(full, false);
        if (symlink(target, full) < 0)
                fail(errno, "symlink %s", path);
}

/* Masked: a file behind /dev/null, a directory behind an empty read-only
 * tmpfs; read-only: bound onto itself read-only. Missing paths are fine
 * (kernels differ). */
static void do_mask(const struct record *r, bool readonly)
{
        size_t pos = 0;
        const char *path = record_string(r, &pos);
        char buf[4096], null[4096];
        const char *full = in_root(path, buf);
        struct stat st;
        if (lstat(full, &st) < 0) {
                if (errno == ENOENT)
                        return;
                fail(errno, "stat %s", path);
        }
        if (readonly)
                bind_mount(full, full, PLAN_RDONLY | PLAN_NOSUID | PLAN_NODEV | PLAN_NOEXEC);
        else if (S_ISDIR(st.st_mode)) {
                if (mount("tmpfs", full, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "size=0k,nr_inodes=1,mode=0") < 0)
                        fail(errno, "mask %s", path);
        } else
                bind_mount(in_root("/dev/null", null), full, PLAN_RDONLY);
}

static void loopback_up(void)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                fail(errno, "loopback: socket");
        struct ifreq ifr = {.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING};
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                fail(errno, "loopback: up");
        close(fd);
}

/* Whom the command runs as, and with what: collected from the plan. */
struct exec_spec {
        struct plan_creds creds;
        const char *cwd;
        char **argv, **envp;
        size_t argc, envc;
        const struct record *seccomp[4];
        size_t n_seccomp;
};

static void push(char ***v, size_t *n, const char *s)
{
        char **nv = realloc(*v, (*n + 2) * sizeof(char *));
        if (!nv)
                fail(ENOMEM, "plan: allocate");
        *v = nv;
        nv[(*n)++] = (char *)s;
        nv[*n] = NULL;
}

/* Gives up every privilege: no capability in any set, the build user's
 * ids and no supplementary group. */
static void drop_privileges(const struct plan_creds *c)
{
        for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                        fail(errno, "drop capability %d", cap);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                fail(errno, "clear ambient capabilities");
        if (setgroups(0, NULL) < 0)
                fail(errno, "setgroups");
        if (setresgid(c->gid, c->gid, c->gid) < 0)
                fail(errno, "setresgid %u", c->gid);
        if (setresuid(c->uid, c->uid, c->uid) < 0)
                fail(errno, "setresuid %u", c->uid);
        /* setresuid cleared the permitted and effective sets; inheritable
         * is left, so clear everything explicitly. */
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2] = {{0}};
        if (syscall(SYS_capset, &h, d) < 0)
                fail(errno, "capset");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                fail(errno, "no_new_privs");
}

/* Installs one program: a u32 instruction count, then the instructions
 * (unaligned: they start 4 bytes in). Returns 0 or an errno. */
static int install_program(const uint8_t *p, size_t len)
{
        uint32_t count;
        if (len < sizeof(count))
                return EINVAL;
        memcpy(&count, p, sizeof(count));
        if ((uint64_t)count * sizeof(struct sock_filter) != len - sizeof(count) || count == 0 ||
            count > 0xffff)
                return EINVAL;
        struct sock_filter *insns = malloc(count * sizeof(*insns));
        if (!insns)
                return ENOMEM;
        memcpy(insns, p + sizeof(count), count * sizeof(*insns));
        struct sock_fprog prog = {.len = (unsigned short)count, .filter = insns};
        int e = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? errno : 0;
        free(insns);
        return e;
}

static void install_seccomp(const struct exec_spec *x)
{
        for (size_t i = 0; i < x->n_seccomp; i++) {
                int e = install_program(x->seccomp[i]->p, x->seccomp[i]->len);
                if (e)
                        fail(e, e == EINVAL ? "plan: bad seccomp program" : "seccomp");
        }
}

static void do_root(const struct record *r)
{
        size_t pos = 0;
        const char *p = record_string(r, &pos);
        if (strlen(p) >= sizeof(root) - 1024)
                fail(ENAMETOOLONG, "root %s", p);
        strcpy(root, p);
        if (mount("kiln-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") < 0)
                fail(errno, "mount the root tmpfs");
}

static void do_hostname(const struct record *r)
{
        size_t pos = 0;
        const char *h = record_string(r, &pos);
        if (sethostname(h, strlen(h)) < 0 || setdomainname("(none)", 6) < 0)
                fail(errno, "set the host name");
}

static void do_rlimit(const struct record *r)
{
        struct plan_rlimit l;
        record_fixed(r, &l, sizeof(l));
        struct rlimit rl = {.rlim_cur = l.soft, .rlim_max = l.hard};
        if (setrlimit((int)l.resource, &rl) < 0)
                fail(errno, "setrlimit %u", l.resource);
}

/* Filters are installed last, just before the exec (they would block the
 * setup's own calls). */
static void keep_seccomp(struct exec_spec *x, const struct record *r)
{
        if (x->n_seccomp == sizeof(x->seccomp) / sizeof(x->seccomp[0]))
                fail(EINVAL, "plan: too many seccomp programs");
        x->seccomp[x->n_seccomp] = malloc(sizeof(*r));
        if (!x->seccomp[x->n_seccomp])
                fail(ENOMEM, "plan: allocate");
        memcpy((void *)x->seccomp[x->n_seccomp++], r, sizeof(*r));
}

/* Carries out the plan's records in order: the root and its mounts, files
 * and masks, host name, limits; what the exec needs goes into x. */
static void apply_plan(const struct plan *pl, struct exec_spec *x)
{
        struct record r;
        size_t off = sizeof(struct plan_header);
        while (next_record(pl, &off, &r)) {
                size_t pos = 0;
                switch (r.type) {
                case PLAN_ROOT:
                        do_root(&r);
                        break;
                case PLAN_MOUNT:
                        do_mount(&r);
                        break;
                case PLAN_FILE:
                        do_file(&r);
                        break;
                case PLAN_SYMLINK:
                        do_symlink(&r);
                        break;
                case PLAN_MASK:
                        do_mask(&r, false);
                        break;
                case PLAN_READONLY:
                        do_mask(&r, true);
                        break;
                case PLAN_HOSTNAME:
                        do_hostname(&r);
                        break;
                case PLAN_LOOPBACK:
                        loopback_up();
                        break;
                case PLAN_RLIMIT:
                        do_rlimit(&r);
                        break;
                case PLAN_PERSONALITY: {
                        uint32_t p;
                        record_fixed(&r, &p, sizeof(p));
                        if (personality(p) < 0)
                                fail(errno, "personality");
                        break;
                }
                case PLAN_SECCOMP:
                        keep_seccomp(x, &r);
                        break;
                case PLAN_CREDS:
                        record_fixed(&r, &x->creds, sizeof(x->creds));
                        break;
                case PLAN_CWD:
                        x->cwd = record_string(&r, &pos);
                        break;
                case PLAN_ARG:
                        push(&x->argv, &x->argc, record_string(&r, &pos));
                        break;
                case PLAN_ENV:
                        push(&x->envp, &x->envc, record_string(&r, &pos));
                        break;
                case PLAN_NAMESPACES:
                case PLAN_UID_MAP:
                case PLAN_GID_MAP:
                case PLAN_CGROUP:
                        break; /* kiln-sandbox's */
                default:
                        fail(EINVAL, "plan: unknown record %u", r.type);
                }
        }
        if (!root[0] || !x->argc || !x->cwd || !x->creds.uid)
                fail(EINVAL, "plan: no root, command, working directory or user");
}

/* The root becomes /, read-only; the host's tree is gone from this
 * namespace. Then the build's working directory and user. */
static void enter_root(const struct exec_spec *x)
{
        if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
            umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
                fail(errno, "pivot_root");
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
            0)
                fail(errno, "make / read-only");
        if (chdir(x->cwd) < 0)
                fail(errno, "chdir %s", x->cwd);
        drop_privileges(&x->creds);
        /* Only stdin, stdout, stderr reach the command (and the report fd
         * until the exec succeeds). */
        if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                fail(errno, "close_range");
}

static int sandbox_main(const struct plan *pl, int sync_fd)
{
        /* The sandbox dies with kiln-sandbox, and kiln-sandbox with the
         * daemon: nothing of a build outlives them. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                fail(errno, "prctl");
        char go;
        if (read(sync_fd, &go, 1) != 1)
                _exit(PLAN_EXIT_SETUP); /* kiln-sandbox failed and said why */
        close(sync_fd);
        /* Root of the new user namespace (an unprivileged host id): files
         * made now are owned by a user the build is not. */
        if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                fail(errno, "become root of the user namespace");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                fail(errno, "make / private");

        struct exec_spec x = {0};
        apply_plan(pl, &x);
        enter_root(&x);
        install_seccomp(&x);
        if (!x.envp)
                push(&x.envp, &x.envc, "PATH=/path-not-set");
        /* execvp looks argv[0] up in the command's own PATH */
        extern char **environ;
        environ = x.envp;
        execvp(x.argv[0], x.argv);
        fail(errno, "exec %s", x.argv[0]);
}

/* --- kiln-sandbox, on the host --- */

static void write_file(const char *path, const char *data)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                fail(errno, "open %s", path);
        size_t n = strlen(data);
        if (write(fd, data, n) != (ssize_t)n)
                fail(errno, "write %s", path);
        close(fd);
}

/* Dies the way the command died, so the daemon sees its wait status. */
static void __attribute__((noreturn)) pass_on(int status)
{
        if (WIFEXITED(status))
                _exit(WEXITSTATUS(status));
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        kill(getpid(), sig);
        _exit(128 + sig);
}

/* kiln-sandbox oci-exec [-u NAME]... -- COMMAND [ARG]...
 * The OCI runtime runs this from a sealed memfd on fd 3, as the build's
 * process, after its own setup: it closes that fd, removes the variables
 * the runtime added to the build's environment (HOME, from the bundle's
 * /etc/passwd), installs the seccomp programs the daemon compiled (fd 4:
 * u32 instruction count and instructions, one after another) and becomes
 * the build command. */
static int oci_exec_main(int argc, char **argv)
{
        close(PLAN_FD);
        int i = 2;
        for (; i < argc && strcmp(argv[i], "--"); i++) {
                if (strcmp(argv[i], "-u") || i + 1 >= argc)
                        goto usage;
                unsetenv(argv[++i]);
        }
        if (i + 1 >= argc)
                goto usage;
        struct stat st;
        uint8_t *progs = NULL;
        if (fstat(REPORT_FD, &st) < 0 || st.st_size <= 0 || st.st_size > (1 << 20) ||
            !(progs = malloc((size_t)st.st_size)) ||
            pread(REPORT_FD, progs, (size_t)st.st_size, 0) != st.st_size) {
                fprintf(stderr, "kiln-sandbox: no seccomp programs on fd 4\n");
                return PLAN_EXIT_SETUP;
        }
        close(REPORT_FD);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                fprintf(stderr, "kiln-sandbox: no_new_privs: %s\n", strerror(errno));
                return PLAN_EXIT_SETUP;
        }
        for (size_t off = 0; off < (size_t)st.st_size;) {
                uint32_t count = 0;
                if ((size_t)st.st_size - off >= sizeof(count))
                        memcpy(&count, progs + off, sizeof(count));
                size_t len = sizeof(count) + (size_t)count * sizeof(struct sock_filter);
                int e =
                    len <= (size_t)st.st_size - off ? install_program(progs + off, len) : EINVAL;
                if (e) {
                        fprintf(stderr, "kiln-sandbox: seccomp: %s\n", strerror(e));
                        return PLAN_EXIT_SETUP;
                }
                off += len;
        }
        free(progs);
        execvp(argv[i + 1], argv + i + 1);
        fprintf(stderr, "kiln-sandbox: exec %s: %s\n", argv[i + 1], strerror(errno));
        return 127;
usage:
        fputs("usage: kiln-sandbox oci-exec [-u NAME]... -- COMMAND [ARG]...\n", stderr);
        return PLAN_EXIT_SETUP;
}

int main(int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "oci-exec"))
                return oci_exec_main(argc, argv);
        if (argc != 1 || fcntl(REPORT_FD, F_GETFD) < 0 || fcntl(PLAN_FD, F_GETFD) < 0) {
                fputs("kiln-sandbox: started by kiln only (plan on fd 3, report on fd 4)\n",
                      stderr);
                return PLAN_EXIT_SETUP;
        }
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() == 1)
                fail(errno ? errno : ESRCH, "the daemon is gone");
        fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
        syscall(SYS_close_range, REPORT_FD + 1, ~0U, 0);
        struct plan pl;
        read_plan(&pl);

        uint64_t extra = 0;
        const char *uid_map = NULL, *gid_map = NULL;
        struct record r;
        size_t off = sizeof(struct plan_header);
        while (next_record(&pl, &off, &r)) {
                size_t pos = 0;
                if (r.type == PLAN_NAMESPACES)
                        record_fixed(&r, &extra, sizeof(extra));
                else if (r.type == PLAN_UID_MAP)
                        uid_map = record_string(&r, &pos);
                else if (r.type == PLAN_GID_MAP)
                        gid_map = record_string(&r, &pos);
                else if (r.type == PLAN_CGROUP)
                        write_file(record_string(&r, &pos), "0");
        }
        if (!uid_map || !gid_map)
                fail(EINVAL, "plan: no id maps");
        extra &= CLONE_NEWNET | CLONE_NEWCGROUP;

        int sync[2];
        if (pipe2(sync, O_CLOEXEC) < 0)
                fail(errno, "pipe");
        /* fork semantics: kiln-sandbox is small and single-threaded */
        long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                     (long)extra | SIGCHLD;
        pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
        if (pid < 0)
                fail(errno, "clone the sandbox's namespaces");
        if (pid == 0) {
                close(sync[1]);
                sandbox_main(&pl, sync[0]);
        }
        close(sync[0]);
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        write_file(path, uid_map);
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        write_file(path, gid_map);
        if (write(sync[1], "1", 1) != 1)
                fail(errno, "start the sandbox");
        close(sync[1]);
        /* Nothing of ours is needed while the command runs. */
        free(pl.data);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        fail(errno, "waitpid");
        pass_on(status);
}
