/* The *xattrat calls (Linux 6.13) on all three x86 ABIs, which the
 * installed libseccomp cannot name: a filter of their own, stacked on the
 * policy's (the stricter answer of stacked filters wins). The native
 * sandbox installs it with the policy; under an OCI runtime, whose
 * libseccomp cannot name them either, kiln-sandbox's oci-exec mode
 * installs it just before the build command runs. */
#pragma once

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>

#define KILN_NR_SETXATTRAT 463
#define KILN_NR_REMOVEXATTRAT 466
#define KILN_X32_BIT 0x40000000u

static const struct sock_filter kiln_xattrat_filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~KILN_X32_BIT),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, KILN_NR_SETXATTRAT, 0, 2),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, KILN_NR_REMOVEXATTRAT, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTSUP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};
