/* Writing NARs from a filesystem tree or a stored castore tree.
 *
 * All output goes through one buffer: tags are appended to it, and file
 * contents are read straight into its free space, so every byte is copied
 * once (by the kernel or the blob reader) and hashed while it is still in the
 * cache. A full buffer is hashed and handed to the sink. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <kiln/castore/digest_map.h>
#include <kiln/nix/nar.h>

#include "quote.h"

/* Large enough that a read() is worth its syscall, small enough to stay in
 * the L2 cache between the copy and the hashing. */
#define NAR_BUF_SIZE (256 * 1024)
#define MAX_DEPTH    512

struct nar_out {
        uint8_t *buf;
        size_t len;
        struct kiln_nix_hasher h;
        uint64_t size;
        const struct kiln_nix_nar_sink *sink;
};

static void out_init(struct nar_out *o, const struct kiln_nix_nar_sink *sink)
{
        *o = (struct nar_out){.buf = kiln_malloc(NAR_BUF_SIZE), .sink = sink};
        kiln_nix_hasher_init(&o->h, KILN_NIX_HASH_SHA256);
}

static void out_done(struct nar_out *o)
{
        free(o->buf);
        kiln_nix_hasher_done(&o->h);
}

static int out_flush(struct nar_out *o, struct kiln_error **err)
{
        if (o->len == 0)
                return 0;
        kiln_nix_hasher_update(&o->h, o->buf, o->len);
        o->size += o->len;
        size_t n = o->len;
        o->len = 0;
        if (o->sink)
                return o->sink->write(o->sink->ctx, o->buf, n, err);
        return 0;
}

static int out_bytes(struct nar_out *o, const void *p, size_t n, struct kiln_error **err)
{
        const uint8_t *s = p;
        while (n > 0) {
                if (o->len == NAR_BUF_SIZE) {
                        int r = out_flush(o, err);
                        if (r < 0)
                                return r;
                }
                size_t k = KILN_MIN(n, NAR_BUF_SIZE - o->len);
                memcpy(o->buf + o->len, s, k);
                o->len += k;
                s += k;
                n -= k;
        }
        return 0;
}

static int out_u64(struct nar_out *o, uint64_t v, struct kiln_error **err)
{
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)(v >> (8 * i));
        return out_bytes(o, le, 8, err);
}

static int out_pad(struct nar_out *o, uint64_t n, struct kiln_error **err)
{
        static const uint8_t zero[8];
        return n % 8 ? out_bytes(o, zero, 8 - n % 8, err) : 0;
}

static int out_str(struct nar_out *o, const void *p, size_t n, struct kiln_error **err)
{
        int r = out_u64(o, n, err);
        if (r >= 0)
                r = out_bytes(o, p, n, err);
        if (r >= 0)
                r = out_pad(o, n, err);
        return r;
}

/* A sequence of literal tags. */
static int out_tags(struct nar_out *o, struct kiln_error **err, const char *const *tags)
{
        for (; *tags; tags++) {
                int r = out_str(o, *tags, strlen(*tags), err);
                if (r < 0)
                        return r;
        }
        return 0;
}
#define OUT_TAGS(o, err, ...) out_tags((o), (err), (const char *const[]){__VA_ARGS__, NULL})

static int out_file_header(struct nar_out *o, bool executable, uint64_t size,
                           struct kiln_error **err)
{
        int r = executable ? OUT_TAGS(o, err, "(", "type", "regular", "executable", "", "contents")
                           : OUT_TAGS(o, err, "(", "type", "regular", "contents");
        return r < 0 ? r : out_u64(o, size, err);
}

static int out_symlink(struct nar_out *o, const void *target, size_t n, struct kiln_error **err)
{
        int r = OUT_TAGS(o, err, "(", "type", "symlink", "target");
        if (r >= 0)
                r = out_str(o, target, n, err);
        if (r >= 0)
                r = OUT_TAGS(o, err, ")");
        return r;
}

static void fill_info(struct nar_out *o, struct kiln_nix_nar_info *ret)
{
        if (!ret)
                return;
        kiln_nix_hasher_final(&o->h, &ret->hash);
        ret->size = o->size;
}

static int fd_sink_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        int r = kiln_write_all((int)(intptr_t)ctx, p, n);
        return r < 0 ? kiln_error_errno(err, -r, "write NAR") : 0;
}

void kiln_nix_nar_sink_fd(int fd, struct kiln_nix_nar_sink *ret)
{
        *ret = (struct kiln_nix_nar_sink){.write = fd_sink_write, .ctx = (void *)(intptr_t)fd};
}

/* --- from the filesystem --- */

struct fs_dumper {
        struct nar_out out;
        struct kiln_buf path; /* the current path, for messages (NUL-terminated) */
        char link[4097];
        unsigned depth;
};

static const char *cur_path(struct fs_dumper *d)
{
        return (const char *)d->path.data;
}

/* Appends "/name" to the path; returns the old length to restore. */
static size_t path_push(struct fs_dumper *d, const char *name)
{
        size_t old = d->path.len;
        d->path.len--; /* drop the NUL */
        kiln_buf_append_byte(&d->path, '/');
        kiln_buf_append(&d->path, name, strlen(name) + 1);
        return old;
}

static void path_pop(struct fs_dumper *d, size_t old)
{
        d->path.len = old;
        d->path.data[old - 1] = '\0';
}

static int changed(struct fs_dumper *d, struct kiln_error **err)
{
        return kiln_error_set(err, EAGAIN, "%s changed while being dumped", cur_path(d));
}

/* The contents of an open file of `size` bytes, read into the buffer. One
 * byte more than expected is asked for each time, so that the short read at
 * the end shows that the file did not grow, without another read(). */
static int dump_contents(struct fs_dumper *d, int fd, uint64_t size, struct kiln_error **err)
{
        struct nar_out *o = &d->out;
        uint64_t left = size;
        for (;;) {
                if (o->len == NAR_BUF_SIZE) {
                        int r = out_flush(o, err);
                        if (r < 0)
                                return r;
                }
                size_t want = NAR_BUF_SIZE - o->len;
                if (left < want)
                        want = (size_t)left + 1;
                ssize_t n = read(fd, o->buf + o->len, want);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_errno(err, errno, "unable to read %s", cur_path(d));
                }
                if ((uint64_t)n > left)
                        return changed(d, err);
                o->len += (size_t)n;
                left -= (uint64_t)n;
                if (n == 0 || (left == 0 && (size_t)n < want))
                        break;
        }
        if (left > 0)
                return changed(d, err);
        return out_pad(o, size, err);
}

static int dump_at(struct fs_dumper *d, int dirfd, const char *name, unsigned char dtype,
                   struct kiln_error **err);

struct dir_entry {
        char *name;
        unsigned char dtype;
};

static int entry_cmp(const void *a, const void *b)
{
        return strcmp(((const struct dir_entry *)a)->name, ((const struct dir_entry *)b)->name);
}

static int dump_dir(struct fs_dumper *d, int fd, struct kiln_error **err)
{
        if (d->depth >= MAX_DEPTH)
                return kiln_error_set(err, ELOOP, "%s: directories nested deeper than %d",
                                      cur_path(d), MAX_DEPTH);
        int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0)
                return kiln_error_errno(err, errno, "unable to read directory %s", cur_path(d));
        DIR *dir = fdopendir(dfd);
        if (!dir) {
                close(dfd);
                return kiln_error_errno(err, errno, "unable to read directory %s", cur_path(d));
        }
        struct dir_entry *ents = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(dir);
                if (!de) {
                        if (errno)
                                r = kiln_error_errno(err, errno, "unable to read directory %s",
                                                     cur_path(d));
                        break;
                }
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (n == cap) {
                        cap = cap ? 2 * cap : 16;
                        ents = kiln_reallocarray(ents, cap, sizeof(*ents));
                }
                ents[n++] = (struct dir_entry){kiln_strdup(de->d_name), de->d_type};
        }
        closedir(dir);
        if (r >= 0) {
                /* strcmp orders as unsigned bytes, as Nix's std::map<std::string> does. */
                if (n)
                        qsort(ents, n, sizeof(*ents), entry_cmp);
                r = OUT_TAGS(&d->out, err, "(", "type", "directory");
        }
        d->depth++;
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = OUT_TAGS(&d->out, err, "entry", "(", "name");
                if (r >= 0)
                        r = out_str(&d->out, ents[i].name, strlen(ents[i].name), err);
                if (r >= 0)
                        r = OUT_TAGS(&d->out, err, "node");
                if (r >= 0) {
                        size_t old = path_push(d, ents[i].name);
                        r = dump_at(d, fd, ents[i].name, ents[i].dtype, err);
                        path_pop(d, old);
                }
                if (r >= 0)
                        r = OUT_TAGS(&d->out, err, ")");
        }
        d->depth--;
        for (size_t i = 0; i < n; i++)
                free(ents[i].name);
        free(ents);
        return r < 0 ? r : OUT_TAGS(&d->out, err, ")");
}

static const char *type_name(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFIFO:
                return "fifo";
        case S_IFSOCK:
                return "socket";
        case S_IFCHR:
                return "character device";
        case S_IFBLK:
                return "block device";
        }
        return "unknown";
}

static int dump_at(struct fs_dumper *d, int dirfd, const char *name, unsigned char dtype,
                   struct kiln_error **err)
{
        mode_t mode;
        if (dtype == DT_REG) {
                mode = S_IFREG;
        } else if (dtype == DT_DIR) {
                mode = S_IFDIR;
        } else if (dtype == DT_LNK) {
                mode = S_IFLNK;
        } else {
                struct stat st;
                if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return kiln_error_errno(err, errno, "unable to stat %s", cur_path(d));
                mode = st.st_mode & S_IFMT;
        }

        if (S_ISLNK(mode)) {
                ssize_t n = readlinkat(dirfd, name, d->link, sizeof(d->link));
                if (n < 0)
                        return kiln_error_errno(err, errno, "unable to read symlink %s",
                                                cur_path(d));
                if ((size_t)n == sizeof(d->link))
                        return kiln_error_set(err, ENAMETOOLONG, "symlink %s: target too long",
                                              cur_path(d));
                return out_symlink(&d->out, d->link, (size_t)n, err);
        }
        if (!S_ISREG(mode) && !S_ISDIR(mode))
                return kiln_error_set(err, EINVAL, "unsupported file type at %s: %s", cur_path(d),
                                      type_name(mode));

        int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
        _cleanup_close_ int fd =
            openat(dirfd, name, S_ISDIR(mode) ? flags | O_DIRECTORY : flags | O_NONBLOCK);
        if (fd < 0)
                return kiln_error_errno(err, errno, "unable to open %s", cur_path(d));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return kiln_error_errno(err, errno, "unable to stat %s", cur_path(d));
        if ((st.st_mode & S_IFMT) != mode)
                return changed(d, err);
        if (S_ISDIR(mode))
                return dump_dir(d, fd, err);
        int r = out_file_header(&d->out, (st.st_mode & S_IXUSR) != 0, (uint64_t)st.st_size, err);
        if (r < 0)
                return r;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        r = dump_contents(d, fd, (uint64_t)st.st_size, err);
        if (r >= 0)
                r = OUT_TAGS(&d->out, err, ")");
        return r;
}

int kiln_nix_nar_dump_path(int dirfd, const char *path, const struct kiln_nix_nar_sink *sink,
                           struct kiln_nix_nar_info *ret, struct kiln_error **err)
{
        struct fs_dumper d = {0};
        out_init(&d.out, sink);
        kiln_buf_append(&d.path, path, strlen(path) + 1);
        int r = OUT_TAGS(&d.out, err, "nix-archive-1");
        if (r >= 0)
                r = dump_at(&d, dirfd, path, DT_UNKNOWN, err);
        if (r >= 0)
                r = out_flush(&d.out, err);
        if (r >= 0)
                fill_info(&d.out, ret);
        out_done(&d.out);
        kiln_buf_done(&d.path);
        return r < 0 ? r : 0;
}

/* --- from the castore --- */

struct node_dumper {
        struct nar_out out;
        struct kiln_blob_service *blobs;
        struct kiln_digest_map closure; /* digest -> struct kiln_directory * */
        unsigned depth;
};

static int dump_blob(struct node_dumper *d, const struct kiln_node *n, struct kiln_error **err)
{
        struct nar_out *o = &d->out;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        int r = kiln_blob_open_read(d->blobs, &n->digest, &rd, err);
        if (r < 0)
                return r;
        if (r == 0)
                return kiln_error_set(err, ENOENT, "blob %s not found",
                                      KILN_DIGEST_B64(&n->digest));
        r = out_file_header(o, n->executable, n->size, err);
        if (r < 0)
                return r;
        uint64_t left = n->size;
        for (;;) {
                if (o->len == NAR_BUF_SIZE) {
                        r = out_flush(o, err);
                        if (r < 0)
                                return r;
                }
                ssize_t got =
                    kiln_blob_reader_read(rd, o->buf + o->len, NAR_BUF_SIZE - o->len, err);
                if (got < 0)
                        return (int)got;
                if (got == 0)
                        break;
                if ((uint64_t)got > left)
                        return kiln_error_set(
                            err, EBADMSG, "blob %s is longer than its node says (%llu bytes)",
                            KILN_DIGEST_B64(&n->digest), (unsigned long long)n->size);
                o->len += (size_t)got;
                left -= (uint64_t)got;
        }
        if (left > 0)
                return kiln_error_set(err, EBADMSG,
                                      "blob %s is shorter than its node says (%llu bytes)",
                                      KILN_DIGEST_B64(&n->digest), (unsigned long long)n->size);
        r = out_pad(o, n->size, err);
        return r < 0 ? r : OUT_TAGS(o, err, ")");
}

static int dump_node(struct node_dumper *d, const struct kiln_node *n, struct kiln_error **err)
{
        switch (n->kind) {
        case KILN_NODE_FILE:
                return dump_blob(d, n, err);
        case KILN_NODE_SYMLINK:
                return out_symlink(&d->out, n->target.data, n->target.len, err);
        case KILN_NODE_DIRECTORY:
                break;
        default:
                return kiln_error_set(err, EINVAL, "unknown node kind");
        }
        const struct kiln_directory *dir = kiln_digest_map_get(&d->closure, &n->digest);
        if (!dir)
                return kiln_error_set(err, ENOENT, "directory %s not found",
                                      KILN_DIGEST_B64(&n->digest));
        if (d->depth >= MAX_DEPTH)
                return kiln_error_set(err, ELOOP, "directories nested deeper than %d", MAX_DEPTH);
        int r = OUT_TAGS(&d->out, err, "(", "type", "directory");
        d->depth++;
        /* A validated Directory is one list sorted by name bytes: NAR order. */
        for (size_t i = 0; i < dir->n && r >= 0; i++) {
                const struct kiln_node *c = &dir->nodes[i];
                r = OUT_TAGS(&d->out, err, "entry", "(", "name");
                if (r >= 0)
                        r = out_str(&d->out, c->name.data, c->name.len, err);
                if (r >= 0)
                        r = OUT_TAGS(&d->out, err, "node");
                if (r >= 0) {
                        r = dump_node(d, c, err);
                        if (r < 0) {
                                _cleanup_free_ char *q = kiln_nix_quote(c->name.data, c->name.len);
                                r = kiln_error_prefix(err, r, "%s", q);
                        }
                }
                if (r >= 0)
                        r = OUT_TAGS(&d->out, err, ")");
        }
        d->depth--;
        return r < 0 ? r : OUT_TAGS(&d->out, err, ")");
}

static int load_closure(struct node_dumper *d, struct kiln_directory_service *dirs,
                        const struct kiln_digest *root, struct kiln_error **err)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = kiln_directory_get_recursive(dirs, root, &st, err);
        if (r < 0)
                return r;
        for (;;) {
                struct kiln_directory *dir = kiln_directory_new();
                struct kiln_digest dg;
                r = kiln_directory_stream_next(st, dir, &dg, err);
                if (r <= 0) {
                        kiln_directory_free(dir);
                        break;
                }
                kiln_directory_free(kiln_digest_map_put(&d->closure, &dg, dir));
        }
        if (r < 0)
                return r;
        if (!kiln_digest_map_get(&d->closure, root))
                return kiln_error_set(err, ENOENT, "directory %s not found", KILN_DIGEST_B64(root));
        return 0;
}

static void free_dir(void *p)
{
        kiln_directory_free(p);
}

int kiln_nix_nar_dump_node(struct kiln_blob_service *blobs, struct kiln_directory_service *dirs,
                           const struct kiln_node *root, const struct kiln_nix_nar_sink *sink,
                           struct kiln_nix_nar_info *ret, struct kiln_error **err)
{
        struct node_dumper d = {.blobs = blobs};
        int r = 0;
        if (root->kind == KILN_NODE_DIRECTORY)
                r = load_closure(&d, dirs, &root->digest, err);
        if (r >= 0) {
                out_init(&d.out, sink);
                r = OUT_TAGS(&d.out, err, "nix-archive-1");
                if (r >= 0)
                        r = dump_node(&d, root, err);
                if (r >= 0)
                        r = out_flush(&d.out, err);
                if (r >= 0)
                        fill_info(&d.out, ret);
                out_done(&d.out);
        }
        kiln_digest_map_done(&d.closure, free_dir);
        return r < 0 ? r : 0;
}
