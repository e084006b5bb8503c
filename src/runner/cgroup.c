/* Memory and process limits of builds through cgroups.
 *
 * Each build gets /kiln/<build id> at the root of the hierarchies (the
 * service's cgroup option names another parent than kiln), holding
 * the limits, and a leaf /kiln/<build id>/c holding the build's processes:
 * the OCI runtime is given the leaf as its cgroupsPath (it creates and
 * removes it), the native sandbox creates it itself. Limits on the parent
 * survive the leaf, so what happened can still be read after the runtime
 * has removed its cgroup.
 *
 * cgroup v2 is used where its root offers the memory and pids controllers;
 * otherwise the v1 memory and pids hierarchies (the hybrid layout of these
 * machines, whose v2 hierarchy holds only hugetlb); otherwise none, and the
 * service says once why, and falls back to RLIMIT_NPROC (per build user,
 * who is unique to the build's slot) with no memory limit. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include "runner.h"

#define V1_ROOT "/sys/fs/cgroup"

static int write_str(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return kiln_write_all(fd, s, strlen(s));
}

static int read_str(const char *path, char *buf, size_t size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = kiln_read_full(fd, buf, size - 1);
        if (n < 0)
                return (int)n;
        buf[n] = '\0';
        return 0;
}

/* The value of `key` in a flat-keyed file ("key value" lines), 0 if absent. */
static uint64_t read_key(const char *path, const char *key)
{
        char buf[1024];
        if (read_str(path, buf, sizeof(buf)) < 0)
                return 0;
        size_t n = strlen(key);
        for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1
                                                                         : NULL)
                if (!strncmp(line, key, n) && line[n] == ' ')
                        return strtoull(line + n + 1, NULL, 10);
        return 0;
}

static bool is_fs(const char *path, long magic)
{
        struct statfs sf;
        return statfs(path, &sf) == 0 && sf.f_type == magic;
}

/* v2: the unified hierarchy (at /sys/fs/cgroup, or /sys/fs/cgroup/unified
 * in the hybrid layout) with memory and pids available and enabled, or
 * enableable, for the children of its root. */
static char *v2_root(char **why)
{
        const char *const candidates[] = {V1_ROOT, V1_ROOT "/unified"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(candidates); i++) {
                if (!is_fs(candidates[i], CGROUP2_SUPER_MAGIC))
                        continue;
                char buf[512];
                _cleanup_free_ char *ctl = kiln_asprintf("%s/cgroup.controllers", candidates[i]);
                if (read_str(ctl, buf, sizeof(buf)) < 0 || !strstr(buf, "memory") ||
                    !strstr(buf, "pids")) {
                        free(*why);
                        *why = kiln_asprintf("the cgroup v2 hierarchy at %s lacks the memory and "
                                             "pids controllers",
                                             candidates[i]);
                        continue;
                }
                _cleanup_free_ char *sub = kiln_asprintf("%s/cgroup.subtree_control",
                                                         candidates[i]);
                int r = write_str(sub, "+memory +pids");
                if (r < 0) {
                        free(*why);
                        *why = kiln_asprintf("cannot enable memory and pids in %s: %s", sub,
                                             strerror(-r));
                        continue;
                }
                return kiln_strdup(candidates[i]);
        }
        return NULL;
}

void runner_cgroups_detect(struct runner_cgroups *cg)
{
        *cg = (struct runner_cgroups){0};
        char *why = NULL;
        cg->v2 = v2_root(&why);
        if (cg->v2) {
                free(why);
                cg->mode = RUNNER_CG_V2;
                return;
        }
        if (is_fs(V1_ROOT "/memory", CGROUP_SUPER_MAGIC) &&
            is_fs(V1_ROOT "/pids", CGROUP_SUPER_MAGIC) && access(V1_ROOT "/memory", W_OK) == 0 &&
            access(V1_ROOT "/pids", W_OK) == 0) {
                free(why);
                cg->mode = RUNNER_CG_V1;
                return;
        }
        cg->mode = RUNNER_CG_NONE;
        cg->why_none = why ? why
                           : kiln_strdup("neither a cgroup v2 hierarchy with memory and pids nor "
                                         "the v1 memory and pids hierarchies are writable");
}

void runner_cgroups_done(struct runner_cgroups *cg)
{
        free(cg->v2);
        free(cg->why_none);
        free(cg->parent);
        *cg = (struct runner_cgroups){0};
}

/* The directories a build's cgroup has: one per hierarchy used. */
static size_t hierarchies(const struct runner_cgroups *cg, const char *roots[2])
{
        if (cg->mode == RUNNER_CG_V2) {
                roots[0] = cg->v2;
                return 1;
        }
        if (cg->mode == RUNNER_CG_V1) {
                roots[0] = V1_ROOT "/memory";
                roots[1] = V1_ROOT "/pids";
                return 2;
        }
        return 0;
}

static int make_dir(const char *path, struct kiln_error **err)
{
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return kiln_error_errno(err, errno, "create cgroup %s", path);
        return 0;
}

static int set_limit(const char *dir, const char *file, uint64_t value, struct kiln_error **err)
{
        _cleanup_free_ char *path = kiln_asprintf("%s/%s", dir, file);
        char v[32];
        snprintf(v, sizeof(v), "%llu", (unsigned long long)value);
        int r = write_str(path, v);
        return r < 0 ? kiln_error_errno(err, -r, "set %s", path) : 0;
}

int runner_cgroup_create(const struct runner_cgroups *cg, const char *name, uint64_t memory_max,
                         uint64_t pids_max, bool make_leaf, struct runner_cgroup *ret,
                         struct kiln_error **err)
{
        *ret = (struct runner_cgroup){.cg = cg, .name = kiln_strdup(name)};
        const char *roots[2];
        size_t n = hierarchies(cg, roots);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *top = kiln_asprintf("%s/%s", roots[i], cg->parent);
                _cleanup_free_ char *dir = kiln_asprintf("%s/%s", top, name);
                int r = make_dir(top, err);
                if (r >= 0 && cg->mode == RUNNER_CG_V2) {
                        _cleanup_free_ char *sub = kiln_asprintf("%s/cgroup.subtree_control",
                                                                 top);
                        r = write_str(sub, "+memory +pids");
                        if (r < 0)
                                r = kiln_error_errno(err, -r, "set %s", sub);
                }
                if (r >= 0)
                        r = make_dir(dir, err);
                if (r < 0)
                        return r;
                ret->dirs[ret->n_dirs++] = TAKE_PTR(dir);
        }
        int r = 0;
        if (cg->mode == RUNNER_CG_V2) {
                _cleanup_free_ char *sub = kiln_asprintf("%s/cgroup.subtree_control",
                                                         ret->dirs[0]);
                if ((r = write_str(sub, "+memory +pids")) < 0)
                        return kiln_error_errno(err, -r, "set %s", sub);
                if (memory_max && (r = set_limit(ret->dirs[0], "memory.max", memory_max, err)) < 0)
                        return r;
                if (pids_max && (r = set_limit(ret->dirs[0], "pids.max", pids_max, err)) < 0)
                        return r;
        } else if (cg->mode == RUNNER_CG_V1) {
                if (memory_max &&
                    (r = set_limit(ret->dirs[0], "memory.limit_in_bytes", memory_max, err)) < 0)
                        return r;
                if (pids_max && (r = set_limit(ret->dirs[1], "pids.max", pids_max, err)) < 0)
                        return r;
        }
        for (size_t i = 0; make_leaf && i < ret->n_dirs; i++) {
                _cleanup_free_ char *leaf = kiln_asprintf("%s/c", ret->dirs[i]);
                if ((r = make_dir(leaf, err)) < 0)
                        return r;
        }
        return 0;
}

char *runner_cgroup_runtime_path(const struct runner_cgroup *c)
{
        return c->n_dirs ? kiln_asprintf("/%s/%s/c", c->cg->parent, c->name) : NULL;
}

size_t runner_cgroup_procs(const struct runner_cgroup *c, char *ret[2])
{
        for (size_t i = 0; i < c->n_dirs; i++)
                ret[i] = kiln_asprintf("%s/c/cgroup.procs", c->dirs[i]);
        return c->n_dirs;
}

bool runner_cgroup_pids_hit(const struct runner_cgroup *c)
{
        if (!c->n_dirs)
                return false;
        /* v1 counts the event where the fork failed (the leaf), v2 on
         * every level */
        const char *dir = c->cg->mode == RUNNER_CG_V2 ? c->dirs[0] : c->dirs[1];
        _cleanup_free_ char *top = kiln_asprintf("%s/pids.events", dir);
        _cleanup_free_ char *leaf = kiln_asprintf("%s/c/pids.events", dir);
        return read_key(top, "max") > 0 || read_key(leaf, "max") > 0;
}

bool runner_cgroup_oom(const struct runner_cgroup *c)
{
        if (!c->n_dirs)
                return false;
        _cleanup_free_ char *path = NULL;
        char buf[64];
        if (c->cg->mode == RUNNER_CG_V2) {
                path = kiln_asprintf("%s/memory.events", c->dirs[0]);
                return read_key(path, "oom_kill") > 0;
        }
        /* v1 counts OOM kills in the leaf, which the runtime removes; that
         * the limit was reached (failcnt) stays on the parent */
        path = kiln_asprintf("%s/memory.failcnt", c->dirs[0]);
        return read_str(path, buf, sizeof(buf)) == 0 && strtoull(buf, NULL, 10) > 0;
}

/* Kills every process left in dir and below (v1 has no cgroup.kill). */
static void kill_tree(const char *dir)
{
        _cleanup_free_ char *procs = kiln_asprintf("%s/cgroup.procs", dir);
        for (int round = 0; round < 100; round++) {
                FILE *f = fopen(procs, "re");
                if (!f)
                        break;
                bool any = false;
                long pid;
                while (fscanf(f, "%ld", &pid) == 1) {
                        kill((pid_t)pid, SIGKILL);
                        any = true;
                }
                fclose(f);
                if (!any)
                        break;
                usleep(1000);
        }
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_type == DT_DIR && de->d_name[0] != '.') {
                        _cleanup_free_ char *sub = kiln_asprintf("%s/%s", dir, de->d_name);
                        kill_tree(sub);
                }
        closedir(d);
}

void runner_cgroup_kill(const struct runner_cgroup *c)
{
        if (!c->n_dirs)
                return;
        if (c->cg->mode == RUNNER_CG_V2) {
                _cleanup_free_ char *path = kiln_asprintf("%s/cgroup.kill", c->dirs[0]);
                if (write_str(path, "1") == 0)
                        return;
        }
        for (size_t i = 0; i < c->n_dirs; i++)
                kill_tree(c->dirs[i]);
}

/* Removes kiln/<name>/c and kiln/<name> from every mounted hierarchy: the
 * OCI runtime creates the path in all v1 hierarchies, not only ours. */
static void remove_everywhere(const char *parent, const char *name)
{
        DIR *d = opendir(V1_ROOT);
        if (!d) {
                return;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *leaf = kiln_asprintf(V1_ROOT "/%s/%s/%s/c", de->d_name,
                                                          parent, name);
                _cleanup_free_ char *dir = kiln_asprintf(V1_ROOT "/%s/%s/%s", de->d_name, parent,
                                                         name);
                (void)rmdir(leaf);
                (void)rmdir(dir);
        }
        closedir(d);
        _cleanup_free_ char *leaf = kiln_asprintf(V1_ROOT "/%s/%s/c", parent, name);
        _cleanup_free_ char *dir = kiln_asprintf(V1_ROOT "/%s/%s", parent, name);
        (void)rmdir(leaf);
        (void)rmdir(dir);
}

void runner_cgroup_done(struct runner_cgroup *c)
{
        if (c->name && c->cg && c->cg->mode != RUNNER_CG_NONE) {
                runner_cgroup_kill(c);
                /* a cgroup is removable once its last process is reaped */
                for (int i = 0; i < 200; i++) {
                        remove_everywhere(c->cg->parent, c->name);
                        bool left = false;
                        for (size_t j = 0; j < c->n_dirs; j++)
                                left |= access(c->dirs[j], F_OK) == 0;
                        if (!left)
                                break;
                        usleep(1000);
                }
        }
        for (size_t i = 0; i < c->n_dirs; i++)
                free(c->dirs[i]);
        free(c->name);
        *c = (struct runner_cgroup){0};
}
