/* oci:///abs/bundle/root: the sandbox is a container of an OCI runtime
 * (runc, or crun), started from the bundle's config.json (oci_spec.c) by
 * `<runtime> run` (oci_runtime.c). */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#include <kiln/util/fsutil.h>
#include <kiln/util/url.h>

#include "runner.h"

#define LOG_TAIL_LINES 20

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* A memfd nothing can change once sealed: the build's first program,
 * kiln-sandbox oci-exec (native_exec.c), and its seccomp programs reach the
 * runtime this way. The container never sees a host path of them, and
 * nothing can change them while they are used (the runc /proc/self/exe
 * lesson). Made once; every build shares them. */
static int sealed_memfd(const char *name, bool exec, int *ret, struct kiln_error **err)
{
        /* Kernels that know vm.memfd_noexec want MFD_EXEC said; older ones
         * refuse the flag. */
        unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
        int fd = memfd_create(name, flags | (exec ? MFD_EXEC : 0));
        if (fd < 0 && exec && errno == EINVAL)
                fd = memfd_create(name, flags);
        if (fd < 0)
                return kiln_error_errno(err, errno, "oci: memfd_create");
        *ret = fd;
        return 0;
}

static int seal(int fd, const char *what, struct kiln_error **err)
{
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
                return kiln_error_errno(err, errno, "oci: seal %s", what);
        return 0;
}

static int seal_helper(struct oci_config *oc, struct kiln_error **err)
{
        _cleanup_free_ char *path = runner_find_helper();
        _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (in < 0 || fstat(in, &st) < 0)
                return kiln_error_errno(err, errno, "oci: " RUNNER_HELPER_MISSING, path);
        int r = sealed_memfd("kiln-sandbox", true, &oc->exec_fd, err);
        if (r < 0)
                return r;
        for (off_t done = 0; done < st.st_size;) {
                ssize_t n = sendfile(oc->exec_fd, in, NULL, (size_t)(st.st_size - done));
                if (n <= 0)
                        return kiln_error_errno(err, n < 0 ? errno : EIO, "oci: copy %s", path);
                done += n;
        }
        return seal(oc->exec_fd, path, err);
}

static int seal_seccomp(struct oci_config *oc, struct kiln_error **err)
{
        struct kiln_buf bpf = KILN_BUF_INIT;
        int r = runner_seccomp_bpf(&bpf, err);
        if (r >= 0)
                r = sealed_memfd("kiln-seccomp", false, &oc->seccomp_fd, err);
        if (r >= 0) {
                r = kiln_write_all(oc->seccomp_fd, bpf.data, bpf.len);
                r = r < 0 ? kiln_error_errno(err, -r, "oci: write the seccomp programs")
                          : seal(oc->seccomp_fd, "the seccomp programs", err);
        }
        kiln_buf_done(&bpf);
        return r;
}

static int oci_init(struct runner_service *s, const struct kiln_url *u, const char *url,
                    struct kiln_error **err)
{
        struct oci_config *oc = kiln_calloc(1, sizeof(*oc));
        s->backend_data = oc;
        oc->exec_fd = oc->seccomp_fd = -1;
        oc->runtime = kiln_url_query_get(u, "runtime");
        if (!oc->runtime)
                oc->runtime = kiln_strdup("runc");
        if (strcmp(oc->runtime, "runc") && strcmp(oc->runtime, "crun"))
                return kiln_error_set(
                    err, EINVAL, "invalid build service URL '%s': runtime must be runc or crun",
                    url);
        oc->state_dir = kiln_asprintf("%s/.state/%s", s->cfg.bundle_root, oc->runtime);
        int r = kiln_mkdir_p(oc->state_dir, 0700);
        if (r < 0)
                return kiln_error_errno(err, -r, "create %s", oc->state_dir);
        if ((r = seal_helper(oc, err)) < 0)
                return r;
        return seal_seccomp(oc, err);
}

static void oci_done(struct runner_service *s)
{
        struct oci_config *oc = s->backend_data;
        if (!oc)
                return;
        free(oc->runtime);
        free(oc->state_dir);
        if (oc->exec_fd >= 0)
                close(oc->exec_fd);
        if (oc->seccomp_fd >= 0)
                close(oc->seccomp_fd);
        free(oc);
}

static int write_config(struct runner_build *b, struct kiln_error **err)
{
        json_t *spec = runner_spec(&b->svc->cfg, &b->ids, &b->cgroup, b->req, b->input_src);
        char *text = json_dumps(spec, JSON_INDENT(2));
        json_decref(spec);
        if (!text)
                return kiln_error_set(err, ENOMEM, "serialise config.json");
        int r = runner_write_file_at(b->dir_fd, "config.json", text, strlen(text), 0600, err);
        free(text);
        return r;
}

/* A bundle kept for inspection (keep-failed) can be run again by hand:
 * runc run --preserve-fds 2 --bundle DIR ID 3<kiln-sandbox 4<DIR/seccomp.bpf */
static int write_seccomp(struct runner_build *b, struct kiln_error **err)
{
        const struct oci_config *oc = b->svc->backend_data;
        struct stat st;
        if (fstat(oc->seccomp_fd, &st) < 0)
                return kiln_error_errno(err, errno, "fstat the seccomp programs");
        _cleanup_free_ uint8_t *data = kiln_malloc((size_t)st.st_size);
        if (pread(oc->seccomp_fd, data, (size_t)st.st_size, 0) != st.st_size)
                return kiln_error_errno(err, EIO, "read the seccomp programs");
        return runner_write_file_at(b->dir_fd, "seccomp.bpf", data, (size_t)st.st_size, 0600,
                                    err);
}

static int oci_start(struct runner_build *b, int out_fd, int err_fd, struct kiln_error **err)
{
        int r = runner_bundle_symlink_inputs(b, err);
        if (r >= 0)
                r = write_config(b, err);
        if (r >= 0 && runner_keeps_failed(b))
                r = write_seccomp(b, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "bundle");
        return runtime_start(b->svc->backend_data, b->dir, b->id, out_fd, err_fd, &b->pid,
                             &b->pidfd, err);
}

static void oci_kill(struct runner_build *b)
{
        runtime_kill(b->svc->backend_data, b->id, b->pid, b->pidfd);
        b->pid = 0;
}

static void oci_release(struct runner_build *b)
{
        runtime_delete(b->svc->backend_data, b->id);
}

/* The runtime logs its own failures apart from the build's output. */
static char *oci_setup_failure(struct runner_build *b, const char *what)
{
        _cleanup_close_ int fd = openat(b->dir_fd, "runtime.log", O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
                return NULL;
        struct runner_tail t = {.len = (size_t)KILN_MIN(st.st_size, (off_t)RUNNER_TAIL_SIZE)};
        ssize_t n = pread(fd, t.buf, t.len, st.st_size - (off_t)t.len);
        if (n <= 0)
                return NULL;
        t.len = (size_t)n;
        _cleanup_free_ char *tail = runner_tail_text(&t, LOG_TAIL_LINES);
        if (!tail || !strstr(tail, "\"level\":\"error\""))
                return NULL;
        const struct oci_config *oc = b->svc->backend_data;
        return kiln_asprintf("runtime: %s %s: %s", oc->runtime, what, tail);
}

const struct runner_backend runner_oci_backend = {
    .scheme = "oci",
    .own_cgroup_leaf = false,
    .init = oci_init,
    .done = oci_done,
    .start = oci_start,
    .kill = oci_kill,
    .release = oci_release,
    .setup_failure = oci_setup_failure,
};
