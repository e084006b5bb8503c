/* Reading a NAR into the castore.
 *
 * One pass over the stream with a reused input buffer, which is hashed as it
 * is filled (every byte must be consumed: trailing data is an error). Open
 * directories form an explicit stack, so a hostile nesting costs heap, not C
 * stack, and is bounded. File contents go straight from the input buffer to a
 * blob writer. Directories are sealed as they close (post-order, so leaves
 * come first) and given to one putter, which is closed only after the whole
 * NAR has been checked and the blobs synced: a failure leaves no Directory
 * behind that refers to anything missing. */
#include <stdarg.h>
#include <stdio.h>

#include <kiln/nix/nar.h>

#include "quote.h"

#define IN_BUF_SIZE (256 * 1024)
#define MAX_DEPTH   1024
#define TAG_MAX     16 /* longest literal: "nix-archive-1" */
#define NAME_MAX_   255
#define TARGET_MAX  4095

struct frame {
        struct kiln_directory dir;
        struct kiln_bytes name; /* this directory's entry name (empty for the root) */
        struct kiln_bytes prev; /* the last entry name read, for the order check */
};

struct reader {
        const struct kiln_nix_nar_source *src;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        uint8_t *buf;
        size_t pos, len;
        uint64_t consumed; /* offset of buf[pos] in the NAR */
        bool eof;
        struct kiln_nix_hasher h;
        struct frame *stack;
        size_t depth, cap;
        struct kiln_directory_putter *putter;
        struct kiln_buf scratch;
        bool wrote_blobs;
        struct kiln_error **err;
};

static int bad(struct reader *rd, uint64_t at, const char *fmt, ...) _printf_(3, 4);
static int bad(struct reader *rd, uint64_t at, const char *fmt, ...)
{
        va_list ap;
        char *msg;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        va_end(ap);
        int r = kiln_error_set(rd->err, EINVAL, "invalid NAR at byte %llu: %s",
                               (unsigned long long)at, msg);
        free(msg);
        return r;
}

static uint64_t offset(const struct reader *rd)
{
        return rd->consumed;
}

/* Makes at least one byte available; 0 at the end of the stream. */
static int fill(struct reader *rd)
{
        if (rd->pos < rd->len)
                return 1;
        if (rd->eof)
                return 0;
        rd->pos = rd->len = 0;
        for (;;) {
                ssize_t n = rd->src->read(rd->src->ctx, rd->buf, IN_BUF_SIZE, rd->err);
                if (n < 0)
                        return kiln_error_prefix(rd->err, (int)n, "read NAR at byte %llu",
                                                 (unsigned long long)rd->consumed);
                if (n == 0) {
                        rd->eof = true;
                        return 0;
                }
                kiln_nix_hasher_update(&rd->h, rd->buf, (size_t)n);
                rd->len = (size_t)n;
                return 1;
        }
}

/* Copies n bytes out (into p, or nowhere when p is NULL). */
static int take(struct reader *rd, void *p, size_t n, const char *what)
{
        uint8_t *o = p;
        while (n > 0) {
                int r = fill(rd);
                if (r < 0)
                        return r;
                if (r == 0)
                        return bad(rd, offset(rd), "truncated in %s", what);
                size_t k = KILN_MIN(n, rd->len - rd->pos);
                if (o) {
                        memcpy(o, rd->buf + rd->pos, k);
                        o += k;
                }
                rd->pos += k;
                rd->consumed += k;
                n -= k;
        }
        return 0;
}

static int read_u64(struct reader *rd, uint64_t *ret, const char *what)
{
        uint8_t le[8];
        int r = take(rd, le, 8, what);
        if (r < 0)
                return r;
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
                v = v << 8 | le[i];
        *ret = v;
        return 0;
}

static int read_padding(struct reader *rd, uint64_t n)
{
        if (n % 8 == 0)
                return 0;
        uint8_t pad[8];
        uint64_t at = offset(rd);
        size_t k = 8 - n % 8;
        int r = take(rd, pad, k, "padding");
        if (r < 0)
                return r;
        for (size_t i = 0; i < k; i++)
                if (pad[i])
                        return bad(rd, at + i, "non-zero padding");
        return 0;
}

/* A string of at most max bytes into buf (max + 1 bytes, NUL added). */
static int read_str(struct reader *rd, char *buf, size_t max, size_t *ret_len, const char *what)
{
        uint64_t at = offset(rd), n;
        int r = read_u64(rd, &n, what);
        if (r < 0)
                return r;
        if (n > max)
                return bad(rd, at, "%s of %llu bytes, at most %zu allowed", what,
                           (unsigned long long)n, max);
        r = take(rd, buf, (size_t)n, what);
        if (r >= 0)
                r = read_padding(rd, n);
        if (r < 0)
                return r;
        buf[n] = '\0';
        *ret_len = (size_t)n;
        return 0;
}

/* A tag that must be one of the NULL-terminated alternatives; returns its
 * index. */
static int read_tag_of(struct reader *rd, const char *const *alts)
{
        char tag[TAG_MAX + 1];
        size_t len;
        uint64_t at = offset(rd);
        /* Longer than any tag: report it as unexpected, not as too long. */
        uint64_t n;
        int r = read_u64(rd, &n, "a tag");
        if (r < 0)
                return r;
        struct kiln_buf want = KILN_BUF_INIT;
        for (size_t i = 0; alts[i]; i++) {
                if (i)
                        kiln_buf_append(&want, " or ", 4);
                kiln_buf_append_byte(&want, '\'');
                kiln_buf_append(&want, alts[i], strlen(alts[i]));
                kiln_buf_append_byte(&want, '\'');
        }
        kiln_buf_append_byte(&want, 0);
        if (n > TAG_MAX) {
                r = bad(rd, at, "expected %s, found a string of %llu bytes", (char *)want.data,
                        (unsigned long long)n);
                kiln_buf_done(&want);
                return r;
        }
        len = (size_t)n;
        r = take(rd, tag, len, "a tag");
        if (r >= 0)
                r = read_padding(rd, n);
        if (r < 0) {
                kiln_buf_done(&want);
                return r;
        }
        for (size_t i = 0; alts[i]; i++)
                if (strlen(alts[i]) == len && memcmp(alts[i], tag, len) == 0) {
                        kiln_buf_done(&want);
                        return (int)i;
                }
        _cleanup_free_ char *q = kiln_nix_quote(tag, len);
        r = bad(rd, at, "expected %s, found '%s'", (char *)want.data, q);
        kiln_buf_done(&want);
        return r;
}
#define READ_TAG(rd, ...) read_tag_of((rd), (const char *const[]){__VA_ARGS__, NULL})

static int expect_tags(struct reader *rd, const char *const *tags)
{
        for (; *tags; tags++) {
                int r = read_tag_of(rd, (const char *const[]){*tags, NULL});
                if (r < 0)
                        return r;
        }
        return 0;
}
#define EXPECT(rd, ...) expect_tags((rd), (const char *const[]){__VA_ARGS__, NULL})

static int read_contents(struct reader *rd, bool executable, struct kiln_node *ret)
{
        uint64_t size;
        int r = read_u64(rd, &size, "the file size");
        if (r < 0)
                return r;
        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        r = kiln_blob_open_write(rd->blobs, &w, rd->err);
        if (r < 0)
                return r;
        rd->wrote_blobs = true;
        uint64_t left = size;
        while (left > 0) {
                r = fill(rd);
                if (r < 0)
                        return r;
                if (r == 0)
                        return bad(rd, offset(rd),
                                   "truncated in file contents (%llu of %llu bytes "
                                   "missing)",
                                   (unsigned long long)left, (unsigned long long)size);
                size_t k = (size_t)KILN_MIN((uint64_t)(rd->len - rd->pos), left);
                r = kiln_blob_writer_write(w, rd->buf + rd->pos, k, rd->err);
                if (r < 0)
                        return r;
                rd->pos += k;
                rd->consumed += k;
                left -= k;
        }
        struct kiln_digest d;
        r = kiln_blob_writer_close(w, &d, rd->err);
        if (r < 0)
                return r;
        r = read_padding(rd, size);
        if (r < 0)
                return r;
        *ret = (struct kiln_node){
            .kind = KILN_NODE_FILE, .digest = d, .size = size, .executable = executable};
        return 0;
}

/* After "(" "type": reads a file or symlink whole (with its ")"), or the
 * start of a directory. Returns 1 when a directory was opened (pushed). */
static int read_node_start(struct reader *rd, struct kiln_node *ret, const char *name,
                           size_t name_len)
{
        int r = EXPECT(rd, "(", "type");
        if (r < 0)
                return r;
        int type = READ_TAG(rd, "regular", "symlink", "directory");
        if (type < 0)
                return type;
        if (type == 0) {
                int t = READ_TAG(rd, "executable", "contents");
                if (t < 0)
                        return t;
                if (t == 0) {
                        char empty[1];
                        size_t len;
                        uint64_t at = offset(rd);
                        r = read_str(rd, empty, 0, &len, "the executable marker");
                        if (r < 0)
                                return r == -EINVAL ? bad(rd, at, "executable marker is not empty")
                                                    : r;
                        r = EXPECT(rd, "contents");
                        if (r < 0)
                                return r;
                }
                r = read_contents(rd, t == 0, ret);
                if (r >= 0)
                        r = EXPECT(rd, ")");
                return r < 0 ? r : 0;
        }
        if (type == 1) {
                r = EXPECT(rd, "target");
                if (r < 0)
                        return r;
                char target[TARGET_MAX + 1];
                size_t len;
                uint64_t at = offset(rd);
                r = read_str(rd, target, TARGET_MAX, &len, "a symlink target");
                if (r < 0)
                        return r;
                struct kiln_error *e = NULL;
                if (kiln_symlink_target_validate(target, len, &e) < 0) {
                        r = bad(rd, at, "%s", kiln_error_msg(e));
                        kiln_error_free(e);
                        return r;
                }
                r = EXPECT(rd, ")");
                if (r < 0)
                        return r;
                *ret = (struct kiln_node){.kind = KILN_NODE_SYMLINK};
                ret->target.data = kiln_memdup(target, len);
                ret->target.len = len;
                return 0;
        }
        if (rd->depth >= MAX_DEPTH)
                return bad(rd, offset(rd), "directories nested deeper than %d", MAX_DEPTH);
        if (rd->depth == rd->cap) {
                rd->cap = rd->cap ? 2 * rd->cap : 16;
                rd->stack = kiln_reallocarray(rd->stack, rd->cap, sizeof(*rd->stack));
        }
        struct frame *f = &rd->stack[rd->depth++];
        *f = (struct frame){.dir = KILN_DIRECTORY_INIT};
        if (name_len) {
                f->name.data = kiln_memdup(name, name_len);
                f->name.len = name_len;
        }
        return 1;
}

static void frame_done(struct frame *f)
{
        kiln_directory_done(&f->dir);
        free(f->name.data);
        free(f->prev.data);
}

/* Checks an entry name as Nix does, plus the castore's length limit. */
static int check_name(struct reader *rd, uint64_t at, struct frame *f, const char *name, size_t len)
{
        _cleanup_free_ char *q = kiln_nix_quote(name, len);
        if (len == 0 || (len == 1 && name[0] == '.') || (len == 2 && !memcmp(name, "..", 2)) ||
            memchr(name, '/', len) || memchr(name, '\0', len))
                return bad(rd, at, "invalid entry name '%s'", q);
        if (f->dir.n > 0 && kiln_bytes_cmp(f->prev.data, f->prev.len, name, len) >= 0)
                return bad(rd, at, "entry '%s' is %s", q,
                           kiln_bytes_cmp(f->prev.data, f->prev.len, name, len) == 0
                               ? "repeated"
                               : "out of order");
        free(f->prev.data);
        f->prev.data = kiln_memdup(name, len);
        f->prev.len = len;
        return 0;
}

/* Seals the top directory and uploads it; *ret gets its (anonymous) node. */
static int close_dir(struct reader *rd, struct kiln_node *ret)
{
        struct frame *f = &rd->stack[rd->depth - 1];
        int r = kiln_directory_seal(&f->dir, rd->err);
        if (r < 0)
                return r;
        struct kiln_digest d;
        kiln_directory_digest(&f->dir, &rd->scratch, &d);
        if (!rd->putter) {
                r = kiln_directory_put_multiple_start(rd->dirs, &rd->putter, rd->err);
                if (r < 0)
                        return kiln_error_prefix(rd->err, r, "start directory upload");
        }
        r = kiln_directory_putter_put(rd->putter, &f->dir, rd->err);
        if (r < 0)
                return kiln_error_prefix(rd->err, r, "upload directory");
        kiln_directory_to_node(&f->dir, &d, NULL, 0, ret);
        return 0;
}

/* Gives a finished node to the open directory on top, named `name`. */
static void attach(struct reader *rd, struct kiln_node *n, const void *name, size_t len)
{
        kiln_node_set_name(n, name, len);
        kiln_directory_add(&rd->stack[rd->depth - 1].dir, n);
}

static int read_tree(struct reader *rd, struct kiln_node *ret)
{
        char name[NAME_MAX_ + 1];
        size_t len;
        struct kiln_node n = {0};
        int r = EXPECT(rd, "nix-archive-1");
        if (r < 0)
                return r;
        r = read_node_start(rd, &n, NULL, 0);
        if (r < 0)
                return r;
        if (r == 0) {
                *ret = n;
                return 0;
        }
        while (rd->depth > 0) {
                struct frame *f = &rd->stack[rd->depth - 1];
                int t = READ_TAG(rd, "entry", ")");
                if (t < 0)
                        return t;
                if (t == 1) {
                        r = close_dir(rd, &n);
                        if (r < 0)
                                return r;
                        struct kiln_bytes own = f->name;
                        f->name = (struct kiln_bytes){0};
                        frame_done(f);
                        rd->depth--;
                        if (rd->depth == 0) {
                                free(own.data);
                                *ret = n;
                                return 0;
                        }
                        attach(rd, &n, own.data, own.len);
                        free(own.data);
                        r = EXPECT(rd, ")"); /* the end of the entry holding it */
                        if (r < 0)
                                return r;
                        continue;
                }
                r = EXPECT(rd, "(", "name");
                if (r < 0)
                        return r;
                uint64_t at = offset(rd);
                r = read_str(rd, name, NAME_MAX_, &len, "an entry name");
                if (r < 0)
                        return r;
                r = check_name(rd, at, f, name, len);
                if (r < 0)
                        return r;
                r = EXPECT(rd, "node");
                if (r < 0)
                        return r;
                r = read_node_start(rd, &n, name, len);
                if (r < 0)
                        return r;
                if (r == 0) {
                        attach(rd, &n, name, len);
                        r = EXPECT(rd, ")");
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static ssize_t fd_source_read(void *ctx, void *buf, size_t n, struct kiln_error **err)
{
        for (;;) {
                ssize_t r = read((int)(intptr_t)ctx, buf, n);
                if (r >= 0)
                        return r;
                if (errno != EINTR)
                        return kiln_error_errno(err, errno, "read");
        }
}

void kiln_nix_nar_source_fd(int fd, struct kiln_nix_nar_source *ret)
{
        *ret = (struct kiln_nix_nar_source){.read = fd_source_read, .ctx = (void *)(intptr_t)fd};
}

int kiln_nix_nar_import(struct kiln_blob_service *blobs, struct kiln_directory_service *dirs,
                        const struct kiln_nix_nar_source *src, struct kiln_node *ret_root,
                        struct kiln_nix_nar_info *ret_info, struct kiln_error **err)
{
        struct reader rd = {
            .src = src,
            .blobs = blobs,
            .dirs = dirs,
            .buf = kiln_malloc(IN_BUF_SIZE),
            .err = err,
        };
        kiln_nix_hasher_init(&rd.h, KILN_NIX_HASH_SHA256);
        struct kiln_node root = {0};
        bool have_root = false;
        int r = read_tree(&rd, &root);
        if (r >= 0) {
                have_root = true;
                r = fill(&rd);
                if (r > 0)
                        r = bad(&rd, offset(&rd), "trailing data after the NAR");
        }
        /* The Directories refer to the blobs: make those durable first. */
        if (r >= 0 && rd.wrote_blobs) {
                r = kiln_blob_sync(blobs, err);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "sync the blob store");
        }
        if (r >= 0 && rd.putter) {
                struct kiln_digest top;
                r = kiln_directory_putter_close(rd.putter, &top, err);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "finish directory upload");
                else if (!kiln_digest_eq(&top, &root.digest))
                        r = kiln_error_set(err, EIO, "directory upload returned %s, expected %s",
                                           KILN_DIGEST_B64(&top), KILN_DIGEST_B64(&root.digest));
        }
        if (r >= 0) {
                if (ret_info) {
                        kiln_nix_hasher_final(&rd.h, &ret_info->hash);
                        ret_info->size = rd.consumed;
                }
                *ret_root = root;
                have_root = false;
        }
        if (have_root)
                kiln_node_done(&root);
        while (rd.depth > 0)
                frame_done(&rd.stack[--rd.depth]);
        free(rd.stack);
        kiln_directory_putter_free(rd.putter);
        kiln_buf_done(&rd.scratch);
        kiln_nix_hasher_done(&rd.h);
        free(rd.buf);
        return r < 0 ? r : 0;
}
