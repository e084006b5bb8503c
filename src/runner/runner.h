/* Internals of the OCI runner shared by its files. */
#pragma once

#include <jansson.h>
#include <sys/types.h>

#include <kiln/build.h>

/* One id mapping entry of the runtime spec. */
struct idmap {
        uint32_t container_id, host_id, size;
};

/* Service-wide settings, from the oci:// URL. */
struct runner_config {
        char *bundle_root;   /* absolute */
        char *runtime;       /* "runc" or "crun" */
        char *sandbox_shell; /* static shell bind-mounted at /bin/sh */
        unsigned concurrency;
        unsigned timeout;    /* seconds, 0 = none */
        bool keep_failed;
        uint32_t fallback_subid; /* build user's host id when /etc/sub[ug]id has none */
        uint64_t scratch_size;   /* bytes of a tmpfs for scratch space, 0 = bundle's fs */
        char *state_dir;     /* the runtime's --root */
        struct idmap uid_map[2], gid_map[2];
};

/* --- idmap.c --- */

/* Finds the first subordinate id range start for (uid, name) in a
 * /etc/subuid-format file (SPEC §10.6). 1 found, 0 no entry, < 0 on a parse
 * error of a matching line or an unreadable existing file. */
int runner_subid_lookup(const char *file, uid_t uid, const char *name, uint32_t *ret,
                        struct kiln_error **err);
/* Fills cfg's uid/gid maps for the running user: container 0 → euid/egid,
 * container 1000/100 → the subordinate id (or the fallback). */
int runner_idmaps_init(struct runner_config *cfg, struct kiln_error **err);

/* --- spec.c --- */

/* The name of a scratch directory: RFC 4648 base32 of BLAKE3(path) (§10.3).
 * buf must hold 57 bytes. */
char *runner_scratch_name(const char *path, char buf[57]);
/* The longest scratch path that is a component-wise prefix of path (§10.5),
 * or NULL; *rest gets the remainder (without a leading '/'). */
const char *runner_scratch_prefix(const struct kiln_build_request *r, const char *path,
                                  const char **rest);
/* The runtime spec (config.json) for a request (§10.4 with kiln's fixes). */
json_t *runner_spec(const struct runner_config *cfg, const struct kiln_build_request *r);

/* --- runtime.c --- */

struct runtime_run {
        pid_t pid;   /* the runtime process */
        int pidfd;
        char *id;
};
/* Starts `<runtime> --root <state> run --bundle <bundle> <id>` with stdin
 * from /dev/null and stdout/stderr into the given fds. */
int runtime_start(const struct runner_config *cfg, const char *bundle, const char *id,
                  int out_fd, int err_fd, struct runtime_run *ret, struct kiln_error **err);
/* Waits for the runtime to exit, or for cancel_fd to become readable, or for
 * the deadline (CLOCK_MONOTONIC seconds, 0 = none). Returns the wait status
 * (>= 0), -ECANCELED or -ETIMEDOUT (the container then still runs). */
int runtime_wait(struct runtime_run *run, int cancel_fd, double deadline,
                 struct kiln_error **err);
/* Kills the container and waits for the runtime to exit. */
void runtime_kill(const struct runner_config *cfg, struct runtime_run *run);
/* Removes the runtime's state of the container (delete --force). */
void runtime_delete(const struct runner_config *cfg, const char *id);
void runtime_run_done(struct runtime_run *run);
