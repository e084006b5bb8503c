/* The system call policy of every build, one table for both backends,
 * compiled to BPF here with libseccomp once per service: the native sandbox
 * installs it before the exec, and under an OCI runtime kiln-sandbox
 * oci-exec does, as the build's first program. The runtime is given no
 * filter of its own: its libseccomp is as old as ours and cannot name the
 * newest calls, and compiling a policy for every build costs it 4% of a
 * trivial build.
 *
 * Everything is allowed but what a build never needs and what would let it
 * leave a mark on the host or lift its own limits:
 * - setuid/setgid bits, by chmod and by creating a file with them: EPERM
 *   (Nix filters the chmod family; kiln also the creating calls);
 * - extended attributes, which a NAR cannot carry: ENOTSUP, as in Nix;
 * - kernel keyrings, BPF, perf events, modules, kexec, reboot, swap, mounts
 *   and the new mount API, namespaces of a new user (which would bring back
 *   capabilities, and a cgroup namespace in which to lift limits), io_uring
 *   (whose operations bypass this filter), userfaultfd, clocks, host names,
 *   accounting and quotas, handles that open files by inode: EPERM;
 * - clone3, whose flags live in memory a filter cannot read: ENOSYS, so the
 *   C library falls back to clone, whose flags it can; openat2 likewise.
 * Most of these fail anyway for lack of capabilities; the filter makes the
 * answer certain whatever the kernel's rules for user namespaces.
 * Architectures: x86-64 with its i386 and x32 ABIs (a 32-bit entry would
 * otherwise escape the filter); any other is killed. */
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "runner.h"

struct arg_mask {
        uint8_t index;
        uint64_t mask; /* the call matches when (arg & mask) == mask */
};

struct rule {
        int errno_ret;
        uint8_t n_args;
        struct arg_mask args[2];
        const char *const *names;
};

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

static const struct rule rules[] = {
    /* setuid and setgid bits */
    {EPERM, 1, {{1, S_ISUID}}, NAMES("chmod", "fchmod", "creat", "mknod")},
    {EPERM, 1, {{1, S_ISGID}}, NAMES("chmod", "fchmod", "creat", "mknod")},
    {EPERM, 1, {{2, S_ISUID}}, NAMES("fchmodat", "fchmodat2", "mknodat")},
    {EPERM, 1, {{2, S_ISGID}}, NAMES("fchmodat", "fchmodat2", "mknodat")},
    {EPERM, 2, {{1, O_CREAT}, {2, S_ISUID}}, NAMES("open")},
    {EPERM, 2, {{1, O_CREAT}, {2, S_ISGID}}, NAMES("open")},
    {EPERM, 2, {{1, __O_TMPFILE}, {2, S_ISUID}}, NAMES("open")},
    {EPERM, 2, {{1, __O_TMPFILE}, {2, S_ISGID}}, NAMES("open")},
    {EPERM, 2, {{2, O_CREAT}, {3, S_ISUID}}, NAMES("openat")},
    {EPERM, 2, {{2, O_CREAT}, {3, S_ISGID}}, NAMES("openat")},
    {EPERM, 2, {{2, __O_TMPFILE}, {3, S_ISUID}}, NAMES("openat")},
    {EPERM, 2, {{2, __O_TMPFILE}, {3, S_ISGID}}, NAMES("openat")},
    /* extended attributes */
    {ENOTSUP,
     0,
     {{0}},
     NAMES("setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
           "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "setxattrat",
           "getxattrat", "listxattrat", "removexattrat")},
    /* new user namespaces */
    {EPERM, 1, {{0, CLONE_NEWUSER}}, NAMES("clone", "unshare")},
    {ENOSYS, 0, {{0}}, NAMES("clone3", "openat2")},
    /* the kernel's own business */
    {EPERM,
     0,
     {{0}},
     NAMES("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load",
           "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
           "swapoff", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
           "fspick", "move_mount", "open_tree", "mount_setattr", "setns", "userfaultfd",
           "io_uring_setup", "io_uring_enter", "io_uring_register", "settimeofday", "clock_settime",
           "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "acct", "quotactl",
           "quotactl_fd", "open_by_handle_at", "lookup_dcookie", "syslog", "vhangup", "iopl",
           "ioperm", "fanotify_init", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
           "create_module", "get_kernel_syms", "query_module")},
};

/* Names the installed libseccomp does not know (it predates them) are
 * skipped; the ones that matter get raw numbers (below). */
static int resolve(const char *name)
{
        return seccomp_syscall_resolve_name(name);
}

static int add_rules(scmp_filter_ctx ctx, struct kiln_error **err)
{
        for (size_t i = 0; i < KILN_ARRAY_SIZE(rules); i++) {
                const struct rule *r = &rules[i];
                struct scmp_arg_cmp cmp[2];
                for (unsigned a = 0; a < r->n_args; a++)
                        cmp[a] = (struct scmp_arg_cmp){r->args[a].index, SCMP_CMP_MASKED_EQ,
                                                       r->args[a].mask, r->args[a].mask};
                for (const char *const *n = r->names; *n; n++) {
                        int nr = resolve(*n);
                        if (nr == __NR_SCMP_ERROR)
                                continue;
                        int e = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO((uint32_t)r->errno_ret),
                                                       nr, r->n_args, cmp);
                        if (e < 0)
                                return kiln_error_errno(err, -e, "seccomp: rule for %s", *n);
                }
        }
        return 0;
}

/* The *xattrat calls (Linux 6.13) on all three ABIs, which this
 * libseccomp cannot name: a second, stacked filter (the stricter answer of
 * stacked filters wins). */
#define NR_SETXATTRAT    463
#define NR_REMOVEXATTRAT 466
#define X32_BIT          0x40000000u

static const struct sock_filter xattrat_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 5),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~X32_BIT),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, NR_SETXATTRAT, 0, 2),
    BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, NR_REMOVEXATTRAT, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTSUP),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

/* Appends one program to *out as a u32 instruction count and the
 * instructions. */
static void append_program(struct kiln_buf *out, const void *insns, size_t n)
{
        uint32_t count = (uint32_t)n;
        kiln_buf_append(out, &count, sizeof(count));
        kiln_buf_append(out, insns, n * sizeof(struct sock_filter));
}

/* libseccomp 2.5 writes programs only to a file descriptor. */
static int export_program(scmp_filter_ctx ctx, struct kiln_buf *out, struct kiln_error **err)
{
        _cleanup_close_ int fd = memfd_create("kiln-seccomp", MFD_CLOEXEC);
        if (fd < 0)
                return kiln_error_errno(err, errno, "seccomp: memfd_create");
        int e = seccomp_export_bpf(ctx, fd);
        off_t size = lseek(fd, 0, SEEK_END);
        if (e < 0 || size <= 0 || size % (off_t)sizeof(struct sock_filter))
                return kiln_error_errno(err, e < 0 ? -e : EIO, "seccomp: export");
        _cleanup_free_ uint8_t *prog = kiln_malloc((size_t)size);
        ssize_t n = pread(fd, prog, (size_t)size, 0);
        if (n != size)
                return kiln_error_errno(err, n < 0 ? errno : EIO, "seccomp: read the program");
        append_program(out, prog, (size_t)size / sizeof(struct sock_filter));
        return 0;
}

int runner_seccomp_bpf(struct kiln_buf *out, struct kiln_error **err)
{
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return kiln_error_set(err, ENOMEM, "seccomp: init");
        int r, e;
        if ((e = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
            (e = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
            (e = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 ||
            (e = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0)
                r = kiln_error_errno(err, -e, "seccomp: architectures");
        else if ((r = add_rules(ctx, err)) >= 0 && (r = export_program(ctx, out, err)) >= 0)
                append_program(out, xattrat_filter, KILN_ARRAY_SIZE(xattrat_filter));
        seccomp_release(ctx);
        return r;
}
