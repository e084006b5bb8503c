/* What a build service killed with its builds running left on the host,
 * removed when the next one starts on the same bundle root: the OCI
 * runtime's containers (runc and crun do not die with their parent), the
 * bundles with their scratch tmpfs, the inputs views (FUSE mounts whose
 * server died with the daemon; view.c) and the builds' cgroups.
 *
 * Other processes may build in the same bundle root (several `kiln run`, a
 * daemon beside them): their builds hold slot locks. Recovery first takes
 * every slot lock without waiting; if any is held, someone else is building
 * here and nothing is touched. Bundles kept on purpose (keep-failed=1) carry
 * a marker (RUNNER_KEPT_MARK) and are left alone. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <kiln/util/fsutil.h>

#include "runner.h"

/* A mount point of /proc/self/mountinfo, its octal escapes undone. */
static void unescape(char *s)
{
        char *w = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        *w++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else {
                        *w++ = *p;
                }
        }
        *w = '\0';
}

static int cmp_desc(const void *a, const void *b)
{
        return strcmp(*(char *const *)b, *(char *const *)a);
}

/* Detaches every mount below dir/ (deepest first). Returns how many. */
static size_t unmount_below(const char *dir)
{
        FILE *f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return 0;
        _cleanup_free_ char *prefix = kiln_asprintf("%s/", dir);
        size_t plen = strlen(prefix);
        struct kiln_strv found = {0};
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
                /* id parent major:minor root mountpoint ... */
                char *save = NULL, *field = strtok_r(line, " ", &save);
                for (int i = 0; field && i < 4; i++)
                        field = strtok_r(NULL, " ", &save);
                if (!field)
                        continue;
                unescape(field);
                if (!strncmp(field, prefix, plen))
                        kiln_strv_push(&found, field);
        }
        free(line);
        fclose(f);
        qsort(found.v, found.n, sizeof(char *), cmp_desc);
        for (size_t i = 0; i < found.n; i++)
                (void)umount2(found.v[i], MNT_DETACH);
        size_t n = found.n;
        kiln_strv_done(&found);
        return n;
}

/* Takes every slot lock of the bundle root without waiting: the existing
 * slot files (another service may run with a larger concurrency) and ours.
 * Returns false (holding none) when one is held. */
static bool lock_all_slots(struct runner_service *s, int **ret_fds, size_t *ret_n)
{
        _cleanup_free_ char *state = kiln_asprintf("%s/.state", s->cfg.bundle_root);
        struct kiln_strv names = {0};
        for (unsigned i = 0; i < s->cfg.concurrency; i++) {
                _cleanup_free_ char *n = kiln_asprintf("slot-%u", i);
                kiln_strv_push(&names, n);
        }
        DIR *d = opendir(state);
        if (d) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (!strncmp(de->d_name, "slot-", 5))
                                kiln_strv_push(&names, de->d_name);
                closedir(d);
        }
        int *fds = kiln_calloc(names.n ? names.n : 1, sizeof(int));
        size_t n = 0;
        bool ok = true;
        for (size_t i = 0; ok && i < names.n; i++) {
                _cleanup_free_ char *path = kiln_asprintf("%s/%s", state, names.v[i]);
                int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        continue;
                /* the same file twice (ours and the listing's) is one lock */
                if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                        bool ours = false;
                        struct stat a, b;
                        for (size_t j = 0; j < n && fstat(fd, &a) == 0; j++)
                                ours |= fstat(fds[j], &b) == 0 && a.st_ino == b.st_ino &&
                                        a.st_dev == b.st_dev;
                        close(fd);
                        ok = ours;
                        continue;
                }
                fds[n++] = fd;
        }
        kiln_strv_done(&names);
        if (!ok) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                free(fds);
                return false;
        }
        *ret_fds = fds;
        *ret_n = n;
        return true;
}

static bool kept(const char *bundle)
{
        _cleanup_free_ char *mark = kiln_asprintf("%s/" RUNNER_KEPT_MARK, bundle);
        return access(mark, F_OK) == 0;
}

size_t runner_count_kept(const char *root)
{
        size_t n = 0;
        DIR *d = opendir(root);
        if (!d)
                return 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = kiln_asprintf("%s/%s", root, de->d_name);
                n += kept(p);
        }
        closedir(d);
        return n;
}

void runner_mark_kept(const char *bundle)
{
        _cleanup_free_ char *mark = kiln_asprintf("%s/" RUNNER_KEPT_MARK, bundle);
        int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
                close(fd);
}

void runner_recover(struct runner_service *s)
{
        runner_views_recover(s->cfg.bundle_root); /* each has a lock of its own */
        int *locks = NULL;
        size_t n_locks = 0;
        if (!lock_all_slots(s, &locks, &n_locks))
                return; /* another process builds here */
        const char *root = s->cfg.bundle_root;
        struct kiln_strv ids = {0};
        DIR *d = opendir(root);
        if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        _cleanup_free_ char *p = kiln_asprintf("%s/%s", root, de->d_name);
                        if (!kept(p))
                                kiln_strv_push(&ids, de->d_name);
                }
                closedir(d);
        }
        /* containers: `delete --force` kills what still runs */
        if (s->backend == &runner_oci_backend && s->backend_data) {
                struct oci_config *oc = s->backend_data;
                DIR *st = opendir(oc->state_dir);
                if (st) {
                        struct dirent *de;
                        while ((de = readdir(st))) {
                                if (de->d_name[0] == '.')
                                        continue;
                                _cleanup_free_ char *p = kiln_asprintf("%s/%s", root, de->d_name);
                                if (!kept(p))
                                        runtime_delete(oc, de->d_name);
                        }
                        closedir(st);
                }
        }
        size_t mounts = 0;
        for (size_t i = 0; i < ids.n; i++) {
                _cleanup_free_ char *p = kiln_asprintf("%s/%s", root, ids.v[i]);
                mounts += unmount_below(p);
                /* the build's cgroup, its processes killed first */
                struct runner_cgroup cg;
                (void)runner_cgroup_create(&s->cfg.cgroups, ids.v[i], 0, 0, false, &cg, NULL);
                runner_cgroup_done(&cg);
                (void)kiln_rm_rf_at(AT_FDCWD, p);
        }
        if (ids.n)
                fprintf(stderr,
                        "kiln: note: removed %zu bundle(s) and %zu mount(s) that a killed build "
                        "service left in %s\n",
                        ids.n, mounts, root);
        kiln_strv_done(&ids);
        for (size_t i = 0; i < n_locks; i++)
                close(locks[i]);
        free(locks);
}
