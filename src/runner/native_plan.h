/* The plan of a native sandbox: what kiln-sandbox (native_exec.c) sets up,
 * written by the daemon (native.c). It is the whole interface between them,
 * so kiln-sandbox decides nothing itself.
 *
 * kiln-sandbox is started with fd 3 = a sealed memfd holding the plan and
 * fd 4 = the write end of a pipe on which it (or the sandbox, before it runs
 * the build command) reports a setup failure as one line. Its exit status
 * is the build command's (its death by a signal is passed on as the same
 * signal); 125 means the sandbox could not be set up.
 *
 * The plan is a header (magic, version) and records: u32 type, u32 length,
 * then `length` bytes. Strings in records are NUL-terminated; a record of
 * strings holds them one after another. Integers are native-endian: the
 * plan never leaves the machine. Paths of mount records are absolute paths
 * inside the sandbox. */
#pragma once

#include <stdint.h>

#define PLAN_MAGIC 0x316e6c6bu /* "kln1" */
#define PLAN_VERSION 1u

#define PLAN_EXIT_SETUP 125

enum plan_record {
        PLAN_NAMESPACES = 1, /* u64 extra clone flags (CLONE_NEWNET, CLONE_NEWCGROUP) */
        PLAN_UID_MAP,        /* string: the contents of uid_map */
        PLAN_GID_MAP,        /* string: the contents of gid_map */
        PLAN_CGROUP,         /* string: a cgroup.procs file to join before the clone */
        PLAN_ROOT,           /* string: a host directory on which the root tmpfs is built */
        PLAN_MOUNT,          /* struct plan_mount, then strings source, destination, data */
        PLAN_FILE,           /* u32 mode, string path, then the contents to the end */
        PLAN_SYMLINK,        /* strings target, path */
        PLAN_MASK,           /* string path: covered by /dev/null or an empty tmpfs */
        PLAN_READONLY,       /* string path: bound read-only onto itself */
        PLAN_HOSTNAME,       /* string */
        PLAN_LOOPBACK,       /* nothing: bring lo up (in a network namespace) */
        PLAN_RLIMIT,         /* struct plan_rlimit */
        PLAN_PERSONALITY,    /* u32 persona */
        PLAN_SECCOMP,        /* u32 count, then count struct sock_filter */
        PLAN_CREDS,          /* struct plan_creds: whom the command runs as */
        PLAN_CWD,            /* string */
        PLAN_ARG,            /* string, one per argument */
        PLAN_ENV,            /* string KEY=VALUE, one per variable */
};

enum plan_mount_kind {
        PLAN_BIND = 1,
        PLAN_TMPFS,
        PLAN_PROC,
        PLAN_DEVPTS,
};

/* Flags of a mount; a bind mount keeps the flags its source has too. */
enum {
        PLAN_RDONLY = 1 << 0,
        PLAN_NOSUID = 1 << 1,
        PLAN_NODEV = 1 << 2,
        PLAN_NOEXEC = 1 << 3,
        /* bind only: the source must not be a symlink (inputs, whose
         * symlinks are made in the sandbox instead) */
        PLAN_NOFOLLOW = 1 << 4,
};

struct plan_mount {
        uint32_t kind;
        uint32_t flags;
};

struct plan_rlimit {
        uint32_t resource;
        uint32_t pad;
        uint64_t soft, hard;
};

struct plan_creds {
        uint32_t uid, gid;
};

struct plan_header {
        uint32_t magic;
        uint32_t version;
};
