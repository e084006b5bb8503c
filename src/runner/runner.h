/* Internals of the build runner: one service (slots, bundles, inputs,
 * limits, outputs) and two backends that start the sandbox, the OCI runtime
 * (oci://) and kiln's own (sandbox://). */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <sys/types.h>

#include <kiln/build/service.h>

/* One id mapping entry of the runtime spec. */
struct idmap {
        uint32_t container_id, host_id, size;
};

/* The host ids of one build slot. Container root and the build user (uid
 * 1000, gid 100) map to two unprivileged ids of kiln's subordinate range, a
 * pair of its own per slot; no privileged host id is ever mapped, so nothing
 * a build creates or touches is owned by a host user who matters. */
struct runner_ids {
        uint32_t root_uid, root_gid;   /* container 0 */
        uint32_t build_uid, build_gid; /* container 1000 / 100 */
};

struct runner_cgroup;

/* How builds are limited on this host (cgroup.c). */
enum runner_cgroup_mode { RUNNER_CG_NONE, RUNNER_CG_V1, RUNNER_CG_V2 };
struct runner_cgroups {
        enum runner_cgroup_mode mode;
        char *v2;       /* the unified hierarchy's mount point (v2) */
        char *why_none; /* why no cgroups can be used (none) */
        char *parent;   /* the builds' cgroups are <root>/<parent>/<build id> */
};

/* Service-wide settings, from the oci:// URL. */
struct runner_config {
        char *bundle_root;   /* absolute */
        char *sandbox_shell; /* static shell bind-mounted at /bin/sh */
        unsigned concurrency;
        unsigned timeout;    /* seconds, 0 = none */
        unsigned max_silent; /* seconds without output, 0 = no limit */
        uint64_t max_log;    /* bytes of stdout + stderr, 0 = no limit */
        uint64_t memory_max; /* bytes per build, 0 = no limit */
        uint64_t pids_max;   /* processes per build, 0 = no limit */
        bool keep_failed;
        /* Bundles kept at a call's request (kiln_build_call.keep_failed) at
         * most at once: each holds its scratch tmpfs until removed. */
        uint64_t keep_failed_max;
        bool kvm; /* the host's /dev/kvm node in builds' /dev, as Nix's sandbox has it */
        uint32_t fallback_subid;   /* start of kiln's range when /etc/sub[ug]id has none */
        uint64_t scratch_size;     /* bytes of the scratch tmpfs, 0 = bind of the bundle's fs */
        struct kiln_strv ro_paths; /* the allow-list for available_ro_paths, sorted */
        struct runner_cgroups cgroups;
        /* Subordinate id ranges (start, count) of the running user. */
        uint32_t subuid, subuid_count, subgid, subgid_count;
};

/* The limits the watcher enforces; see watch.c. */
struct runner_cgroup {
        const struct runner_cgroups *cg;
        char *name;
        char *dirs[2]; /* v2: the one directory; v1: memory, pids */
        size_t n_dirs;
};

/* --- idmap.c --- */

/* Finds the first subordinate id range of (uid, name) in a /etc/subuid-format
 * file. 1 found (*ret_start, *ret_count), 0 no entry, < 0 on a
 * parse error of a matching line or an unreadable existing file. */
int runner_subid_lookup(const char *file, uid_t uid, const char *name, uint32_t *ret_start,
                        uint32_t *ret_count, struct kiln_error **err);
/* Fills cfg's subordinate ranges for the running user (or the fallback) and
 * checks that they hold two ids for each of cfg->concurrency slots. */
int runner_idmaps_init(struct runner_config *cfg, struct kiln_error **err);
/* The host ids of slot `slot` (< cfg->concurrency). */
void runner_slot_ids(const struct runner_config *cfg, unsigned slot, struct runner_ids *ret);

/* --- oci_spec.c --- */

/* The runtime spec (config.json) for a request (docs/SANDBOX.md), with
 * input i bound from input_src[i] (unused for symlinks). */
json_t *runner_spec(const struct runner_config *cfg, const struct runner_ids *ids,
                    const struct runner_cgroup *cgroup, const struct kiln_build_request *r,
                    char *const *input_src);
/* Paths of /proc a build may not read, and those it may only read. */
extern const char *const runner_masked_paths[];
extern const size_t runner_n_masked_paths;
extern const char *const runner_readonly_paths[];
extern const size_t runner_n_readonly_paths;

/* --- cgroup.c --- */

/* One build's cgroup (struct runner_cgroup): kiln/<name> in each hierarchy
 * used, with the limits, and the leaf kiln/<name>/c where its processes go. *//* Chooses v2, v1 or none for this host (never fails; none sets why_none). */
void runner_cgroups_detect(struct runner_cgroups *cg);
void runner_cgroups_done(struct runner_cgroups *cg);
/* Creates the build's cgroup with its limits (0 = none), and the leaf if
 * make_leaf (the OCI runtime makes its own). Without cgroups, does nothing.
 * *ret is to be released with runner_cgroup_done whatever the outcome. */
int runner_cgroup_create(const struct runner_cgroups *cg, const char *name, uint64_t memory_max,
                         uint64_t pids_max, bool make_leaf, struct runner_cgroup *ret,
                         struct kiln_error **err);
/* The leaf as an OCI cgroupsPath, or NULL without cgroups. */
char *runner_cgroup_runtime_path(const struct runner_cgroup *c);
/* The cgroup.procs files of the leaf, to which a process adds itself. */
size_t runner_cgroup_procs(const struct runner_cgroup *c, char *ret[2]);
/* Whether the build hit its process limit, and whether it ran out of
 * memory (in v1: reached its limit; the caller checks it was killed). */
bool runner_cgroup_pids_hit(const struct runner_cgroup *c);
bool runner_cgroup_oom(const struct runner_cgroup *c);
/* Kills every process of the build. */
void runner_cgroup_kill(const struct runner_cgroup *c);
/* Kills what is left and removes the cgroup from every hierarchy. */
void runner_cgroup_done(struct runner_cgroup *c);

/* --- seccomp.c --- */

/* The policy as BPF for seccomp(2): appended to *out as programs to install
 * in order, each a u32 instruction count and its struct sock_filter array. */
int runner_seccomp_bpf(struct kiln_buf *out, struct kiln_error **err);

/* --- spawn.c --- */

/* A program to start: stdin is an empty pipe (never the host's /dev/null,
 * which crun would chown to the build user), stdout and stderr the given fds
 * or (-1) a memfd nobody reads, extra_fds become fds 3 and 4 (-1 = none). */
struct runner_spawn {
        char *const *argv;
        int out_fd, err_fd;
        int extra_fds[2];
        /* in a private mount namespace without /sys/fs/cgroup/unified, which
         * crun needs on a hybrid layout (docs/ARCHITECTURE.md) */
        bool private_unified;
};
/* Returns the pid (> 0) or -errno. */
pid_t runner_spawn(const struct runner_spawn *sp, struct kiln_error **err);
/* The kiln-sandbox program: $KILN_SANDBOX_HELPER, else beside the running
 * program (the build tree, or an installed bin/ next to libexec/kiln/),
 * else the configured libexec path. Both backends need it. */
char *runner_find_helper(void);
#define RUNNER_HELPER_MISSING "the kiln-sandbox program %s is missing (set KILN_SANDBOX_HELPER)"

/* --- oci_runtime.c --- */

/* The OCI backend's settings (the service's backend_data). */
struct oci_config {
        char *runtime;   /* "runc" or "crun" */
        char *state_dir; /* the runtime's --root */
        int exec_fd;     /* kiln-sandbox in a sealed memfd: the build's first program */
        int seccomp_fd;  /* its seccomp programs (runner_seccomp_bpf), sealed */
};
/* Starts `<runtime> --root <state> run --bundle <bundle> <id>` with stdout
 * and stderr into the given fds; *ret_pidfd is a pidfd of the runtime. */
int runtime_start(const struct oci_config *oc, const char *bundle, const char *id, int out_fd,
                  int err_fd, pid_t *ret_pid, int *ret_pidfd, struct kiln_error **err);
/* Kills the container, then the runtime process, and reaps it. */
void runtime_kill(const struct oci_config *oc, const char *id, pid_t pid, int pidfd);
/* Removes the runtime's state of the container (delete --force). */
void runtime_delete(const struct oci_config *oc, const char *id);

/* --- watch.c --- */

/* Why runner_watch returned. */
enum runner_stop {
        RUNNER_EXITED,    /* the process exited: *ret_status is its wait status */
        RUNNER_TIMEOUT,   /* the wall-clock limit passed */
        RUNNER_SILENT,    /* no output for max_silent seconds */
        RUNNER_LOG_FULL,  /* more than max_log bytes of output */
        RUNNER_CANCELLED, /* the cancel fd became readable */
        RUNNER_PIDS,      /* the check found the process limit reached */
};

/* The last bytes a build wrote to one stream, for failure messages. */
#define RUNNER_TAIL_SIZE 4096
struct runner_tail {
        char buf[RUNNER_TAIL_SIZE];
        size_t start, len; /* a ring */
};
/* The tail as a string without trailing newlines, cut to its last `lines`
 * lines; NULL when empty. */
char *runner_tail_text(const struct runner_tail *t, int lines);

struct runner_watch {
        int pidfd;            /* the process to wait for */
        int out_fd, err_fd;   /* read ends of its stdout and stderr pipes (owned: closed) */
        int out_log, err_log; /* files receiving them, -1 = none (not owned) */
        int cancel_fd;        /* -1 = none */
        unsigned timeout, max_silent;
        uint64_t max_log;
        /* Called about every 250 ms while the build runs: true stops it
         * with RUNNER_PIDS. NULL = no check. */
        bool (*pids_hit)(const struct runner_cgroup *c);
        const struct runner_cgroup *cgroup;
        struct runner_tail out_tail, err_tail;
        uint64_t logged; /* bytes of output seen */
        /* The build's output as it comes (1 stdout, 2 stderr); NULL = none. */
        void (*on_output)(void *userdata, int stream, const void *p, size_t n);
        void *on_output_userdata;
};
/* Waits for w->pidfd to become readable (the process exited; the caller
 * reaps it) while copying both pipes into the logs and the tails, or for a
 * limit or the cancel fd. Returns the reason (>= 0) or a negative errno. */
int runner_watch_run(struct runner_watch *w, struct kiln_error **err);

/* --- the service (service.c) --- */

struct runner_service;
struct runner_build;
struct kiln_url;

/* What differs between the two ways of starting a sandbox. */
struct runner_backend {
        const char *scheme; /* "oci", "sandbox" */
        /* The sandbox makes the build's leaf cgroup itself (the OCI runtime
         * makes and removes its own). */
        bool own_cgroup_leaf;
        /* At service start, after the common options: its own options of u
         * and its state (NULL = nothing to do). */
        int (*init)(struct runner_service *s, const struct kiln_url *u, const char *url,
                    struct kiln_error **err);
        void (*done)(struct runner_service *s);
        /* Starts the build command with stdout and stderr into the given
         * fds (the caller closes its copies); sets b->pid and b->pidfd. */
        int (*start)(struct runner_build *b, int out_fd, int err_fd, struct kiln_error **err);
        /* Kills what runs and reaps b->pid (then 0). */
        void (*kill)(struct runner_build *b);
        /* Releases what the backend keeps of a build whose process was
         * reaped (runtime state); called once, whatever happened. */
        void (*release)(struct runner_build *b);
        /* When the build failed (`what`: "exited with status 1", …): the
         * message of a failure of the sandbox itself (not of the build
         * command), or NULL. */
        char *(*setup_failure)(struct runner_build *b, const char *what);
};

extern const struct runner_backend runner_oci_backend;
extern const struct runner_backend runner_native_backend;

struct runner_waiter {
        struct runner_waiter *next;
};

struct runner_service {
        struct kiln_build_service base;
        const struct runner_backend *backend;
        void *backend_data;
        struct runner_config cfg;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned running;
        struct runner_waiter *head, *tail;
        char systems[2][80];
        uint64_t mem_total;
        /* Removing a bundle takes milliseconds of unlinks: a finished
         * build's bundle is renamed into .state/trash at once and removed by
         * this thread, so the answer need not wait. Freeing the service
         * waits for the trash to be empty. */
        pthread_t cleaner;
        bool cleaner_running, cleaner_stop;
        pthread_cond_t trash_cond;
        char **trash;
        size_t n_trash;
        char *trash_dir;
        char *notice;
        /* the inputs view builds bind their inputs from (view.c) */
        pthread_mutex_t view_lock;
        struct runner_view *view;
};

/* One build, from its slot to its cleanup. */
struct runner_build {
        struct runner_service *svc;
        const struct kiln_build_request *req;
        const struct kiln_build_call *call;
        struct runner_ids ids;
        struct runner_cgroup cgroup;
        char id[37];
        char *dir; /* <bundle root>/<id> */
        int dir_fd;
        bool scratch_mounted;
        struct runner_view *view; /* while the sandbox runs */
        char **input_src;         /* per input: its path in the view (NULL: a symlink) */
        pid_t pid; /* what start() started, 0 once reaped */
        int pidfd;
        bool started;
        void *backend_state;
        int out_log, err_log; /* stdout.log, stderr.log in the bundle */
        struct runner_watch watch;
};

/* Whether the bundle of this build stays if it fails: keep-failed=1, or
 * the call asks (kiln_build_call.keep_failed). */
static inline bool runner_keeps_failed(const struct runner_build *b)
{
        return b->svc->cfg.keep_failed || (b->call && b->call->keep_failed);
}

/* --- bundle.c --- */

/* The directory of the scratch space that is the build's /tmp (scratch
 * directories themselves have 56-character base32 names). */
#define RUNNER_SCRATCH_TMP "tmp"

/* The name of a scratch directory: RFC 4648 base32 of BLAKE3(path).
 * buf must hold 57 bytes. */
char *runner_scratch_name(const char *path, char buf[57]);
/* The longest scratch path that is a component-wise prefix of path,
 * or NULL; *rest gets the remainder (without a leading '/'). */
const char *runner_scratch_prefix(const struct kiln_build_request *r, const char *path,
                                  const char **rest);
/* Opens a directory below dirfd without following any symlink on the way:
 * the build controls everything under scratch. Returns the fd or -errno. */
int runner_open_beneath(int dirfd, const char *path, int flags);
/* The host directory of a scratch path, opened (fd or -errno). */
int runner_scratch_fd(struct runner_build *b, const char *scratch_path);
/* Creates <bundle root>/<id> with root/etc, dev/, the scratch space, the
 * additional files and the logs; the cgroup too. */
int runner_bundle_make(struct runner_build *b, struct kiln_error **err);
/* Makes the symlinks among the inputs in the bundle (below root/ or in a
 * scratch directory), for backends that cannot make them in the sandbox: a
 * bind mount of one would follow it on the host. */
int runner_bundle_symlink_inputs(struct runner_build *b, struct kiln_error **err);
/* Takes the service's inputs view and finds each input in it
 * (b->input_src). */
int runner_bundle_mount_inputs(struct runner_build *b, struct kiln_error **err);
/* Lets the view go and frees b->input_src. */
void runner_bundle_release_inputs(struct runner_build *b);
/* Writes `data` to a new file name below dirfd. */
int runner_write_file_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                         struct kiln_error **err);

/* --- outputs.c --- */

/* Ingests every output of the build with reference scanning. */
int runner_ingest_outputs(struct runner_build *b, struct kiln_build *ret, struct kiln_error **err);

/* --- view.c --- */

struct runner_view;
/* The service's current view (mounted on first use), with a reference. */
int runner_view_acquire(struct runner_service *s, struct runner_view **ret,
                        struct kiln_error **err);
void runner_view_release(struct runner_service *s, struct runner_view *v);
/* Drops the service's own reference (at service free). */
void runner_view_done(struct runner_service *s);
/* The host path at which a directory or file node is in the view. */
int runner_view_source(struct runner_view *v, const struct kiln_node *n, char **ret,
                       struct kiln_error **err);
/* Removes the views of killed services from the bundle root. */
void runner_views_recover(const char *bundle_root);

/* --- service.c --- */

/* A random UUID (version 4) as text. */
void runner_make_uuid(char out[37]);

/* --- recover.c --- */

/* The file that marks a bundle kept on purpose (keep-failed=1). */
#define RUNNER_KEPT_MARK "kept-failed"
void runner_mark_kept(const char *bundle);
/* The bundles under root that carry the mark. */
size_t runner_count_kept(const char *root);
/* Removes what a killed service left in the bundle root (containers,
 * mounts, bundles, cgroups) unless another process builds there now. */
void runner_recover(struct runner_service *s);

