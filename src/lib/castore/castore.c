/* Nodes and Directories: validation, canonical encoding
 * and digest. Decoding goes through protobuf-c, which accepts any
 * valid encoding; encoding is our own, so digests never depend on how a peer
 * encoded a message. */
#include <stdio.h>

#include <kiln/castore/castore.h>
#include "kiln_config.h"
#include "castore.pb-c.h"

#define NAME_MAX_LEN   255
#define TARGET_MAX_LEN 4095

enum kiln_size_formula kiln_size_formula_default(void)
{
        return KILN_SIZE_DOC ? KILN_SIZE_DOC : KILN_SIZE_REF;
}

const char *kiln_node_kind_name(enum kiln_node_kind kind)
{
        switch (kind) {
        case KILN_NODE_DIRECTORY:
                return "directory";
        case KILN_NODE_FILE:
                return "file";
        case KILN_NODE_SYMLINK:
                return "symlink";
        }
        return "unknown";
}

static void bytes_set(struct kiln_bytes *b, const void *p, size_t len)
{
        free(b->data);
        b->data = len ? kiln_memdup(p, len) : NULL;
        b->len = len;
}

void kiln_node_done(struct kiln_node *n)
{
        if (!n)
                return;
        free(n->name.data);
        free(n->target.data);
        n->name = (struct kiln_bytes){0};
        n->target = (struct kiln_bytes){0};
}

void kiln_node_copy(struct kiln_node *dst, const struct kiln_node *src)
{
        *dst = *src;
        dst->name = (struct kiln_bytes){0};
        dst->target = (struct kiln_bytes){0};
        bytes_set(&dst->name, src->name.data, src->name.len);
        bytes_set(&dst->target, src->target.data, src->target.len);
}

void kiln_node_set_name(struct kiln_node *n, const void *name, size_t len)
{
        bytes_set(&n->name, name, len);
}

static bool bytes_eq(const struct kiln_bytes *a, const struct kiln_bytes *b)
{
        return a->len == b->len && (a->len == 0 || !memcmp(a->data, b->data, a->len));
}

bool kiln_node_eq(const struct kiln_node *a, const struct kiln_node *b)
{
        if (a->kind != b->kind || !bytes_eq(&a->name, &b->name))
                return false;
        switch (a->kind) {
        case KILN_NODE_DIRECTORY:
                return kiln_digest_eq(&a->digest, &b->digest) && a->size == b->size;
        case KILN_NODE_FILE:
                return kiln_digest_eq(&a->digest, &b->digest) && a->size == b->size &&
                       a->executable == b->executable;
        case KILN_NODE_SYMLINK:
                return bytes_eq(&a->target, &b->target);
        }
        return false;
}

/* Quotes a byte string for messages: printable ASCII as is, the rest as \xNN. */
static char *quote(const uint8_t *p, size_t len)
{
        struct kiln_buf b = KILN_BUF_INIT;
        size_t shown = KILN_MIN(len, (size_t)64);
        kiln_buf_append_byte(&b, '"');
        for (size_t i = 0; i < shown; i++) {
                if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
                        kiln_buf_append_byte(&b, p[i]);
                } else {
                        char esc[5];
                        snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
                        kiln_buf_append(&b, esc, 4);
                }
        }
        kiln_buf_append_byte(&b, '"');
        if (shown < len)
                kiln_buf_append(&b, "...", 3);
        kiln_buf_append_byte(&b, '\0');
        return (char *)kiln_buf_steal(&b, NULL);
}

int kiln_name_validate(const void *name, size_t len, struct kiln_error **err)
{
        const char *why = NULL;
        if (len == 0)
                why = "cannot be empty";
        else if (len == 2 && !memcmp(name, "..", 2))
                why = "cannot be '..'";
        else if (len == 1 && !memcmp(name, ".", 1))
                why = "cannot be '.'";
        else if (len > NAME_MAX_LEN)
                why = "cannot be over 255 bytes long";
        else if (memchr(name, '\0', len))
                why = "cannot contain null bytes";
        else if (memchr(name, '/', len))
                why = "cannot contain slashes";
        if (!why)
                return 0;
        _cleanup_free_ char *q = quote(name, len);
        return kiln_error_set(err, EINVAL, "invalid name %s: %s", q, why);
}

int kiln_symlink_target_validate(const void *target, size_t len, struct kiln_error **err)
{
        if (len == 0)
                return kiln_error_set(err, EINVAL, "invalid symlink target: cannot be empty");
        if (len > TARGET_MAX_LEN)
                return kiln_error_set(err, EINVAL,
                                      "invalid symlink target: cannot be over 4095 bytes long");
        if (memchr(target, '\0', len))
                return kiln_error_set(err, EINVAL,
                                      "invalid symlink target: cannot contain null bytes");
        return 0;
}

/* The node's own fields (validation step 2); the name is checked separately. */
static int node_validate_fields(const struct kiln_node *n, struct kiln_error **err)
{
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
        case KILN_NODE_FILE:
                return 0; /* digests are fixed-size here; length is checked at decode */
        case KILN_NODE_SYMLINK:
                return kiln_symlink_target_validate(n->target.data, n->target.len, err);
        }
        return kiln_error_set(err, EINVAL, "No node set");
}

int kiln_node_validate(const struct kiln_node *n, enum kiln_node_naming naming,
                       struct kiln_error **err)
{
        int r = node_validate_fields(n, err);
        if (r < 0)
                return r;
        if (naming == KILN_NODE_ANONYMOUS) {
                if (n->name.len != 0)
                        return kiln_error_set(err, EINVAL, "Name is set when it shouldn't");
                return 0;
        }
        return kiln_name_validate(n->name.data, n->name.len, err);
}

/* --- canonical encoding --- */

static void put_bytes_field(struct kiln_buf *out, uint8_t tag, const void *p, size_t len)
{
        if (len == 0)
                return; /* proto3 default: omitted */
        kiln_buf_append_byte(out, tag);
        kiln_buf_append_varint(out, len);
        kiln_buf_append(out, p, len);
}

static size_t varint_len(uint64_t v)
{
        size_t n = 1;
        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

static size_t bytes_field_len(size_t len)
{
        return len ? 1 + varint_len(len) + len : 0;
}

/* Length of the DirectoryNode / FileNode / SymlinkNode body. */
static size_t node_body_len(const struct kiln_node *n)
{
        size_t l = bytes_field_len(n->name.len);
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
        case KILN_NODE_FILE:
                l += bytes_field_len(KILN_DIGEST_LEN);
                if (n->size)
                        l += 1 + varint_len(n->size);
                if (n->kind == KILN_NODE_FILE && n->executable)
                        l += 2;
                break;
        case KILN_NODE_SYMLINK:
                l += bytes_field_len(n->target.len);
                break;
        }
        return l;
}

static void node_body_encode(const struct kiln_node *n, struct kiln_buf *out)
{
        put_bytes_field(out, 0x0a, n->name.data, n->name.len);
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
        case KILN_NODE_FILE:
                put_bytes_field(out, 0x12, n->digest.b, KILN_DIGEST_LEN);
                if (n->size) {
                        kiln_buf_append_byte(out, 0x18);
                        kiln_buf_append_varint(out, n->size);
                }
                if (n->kind == KILN_NODE_FILE && n->executable) {
                        kiln_buf_append_byte(out, 0x20);
                        kiln_buf_append_byte(out, 0x01);
                }
                break;
        case KILN_NODE_SYMLINK:
                put_bytes_field(out, 0x12, n->target.data, n->target.len);
                break;
        }
}

/* Field numbers of the three kinds, in Directory and in the Node oneof alike. */
static uint8_t kind_tag(enum kiln_node_kind kind)
{
        return (uint8_t)((unsigned)kind << 3 | 2);
}

static void node_entry_encode(const struct kiln_node *n, struct kiln_buf *out)
{
        kiln_buf_append_byte(out, kind_tag(n->kind));
        kiln_buf_append_varint(out, node_body_len(n));
        node_body_encode(n, out);
}

void kiln_node_encode(const struct kiln_node *n, struct kiln_buf *out)
{
        node_entry_encode(n, out);
}

void kiln_directory_encode(const struct kiln_directory *d, struct kiln_buf *out)
{
        /* Field order: all directories, then files, then symlinks; each list
         * in name order, which is the order of d->nodes. */
        static const enum kiln_node_kind order[] = {KILN_NODE_DIRECTORY, KILN_NODE_FILE,
                                                    KILN_NODE_SYMLINK};
        for (size_t k = 0; k < KILN_ARRAY_SIZE(order); k++)
                for (size_t i = 0; i < d->n; i++)
                        if (d->nodes[i].kind == order[k])
                                node_entry_encode(&d->nodes[i], out);
}

void kiln_directory_digest(const struct kiln_directory *d, struct kiln_buf *scratch,
                           struct kiln_digest *ret)
{
        struct kiln_buf local = KILN_BUF_INIT;
        struct kiln_buf *b = scratch ? scratch : &local;
        kiln_buf_clear(b);
        kiln_directory_encode(d, b);
        kiln_digest_of(b->data, b->len, ret);
        kiln_buf_done(&local);
}

/* --- Directory --- */

void kiln_directory_done(struct kiln_directory *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                kiln_node_done(&d->nodes[i]);
        free(d->nodes);
        *d = (struct kiln_directory)KILN_DIRECTORY_INIT;
}

struct kiln_directory *kiln_directory_new(void)
{
        return kiln_calloc(1, sizeof(struct kiln_directory));
}

void kiln_directory_free(struct kiln_directory *d)
{
        kiln_directory_done(d);
        free(d);
}

void kiln_directory_copy(struct kiln_directory *dst, const struct kiln_directory *src)
{
        *dst = (struct kiln_directory)KILN_DIRECTORY_INIT;
        if (src->n == 0)
                return;
        dst->nodes = kiln_reallocarray(NULL, src->n, sizeof(*dst->nodes));
        dst->n = dst->cap = src->n;
        for (size_t i = 0; i < src->n; i++)
                kiln_node_copy(&dst->nodes[i], &src->nodes[i]);
}

void kiln_directory_add(struct kiln_directory *d, struct kiln_node *node)
{
        if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 8;
                d->nodes = kiln_reallocarray(d->nodes, d->cap, sizeof(*d->nodes));
        }
        d->nodes[d->n++] = *node;
        node->name = (struct kiln_bytes){0};
        node->target = (struct kiln_bytes){0};
}

static int node_name_cmp(const void *a, const void *b)
{
        const struct kiln_node *x = a, *y = b;
        return kiln_bytes_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

static int duplicate_name(const struct kiln_node *n, struct kiln_error **err)
{
        _cleanup_free_ char *q = quote(n->name.data, n->name.len);
        return kiln_error_set(err, EINVAL, "%s is a duplicate name", q);
}

int kiln_directory_size_with(const struct kiln_directory *d, enum kiln_size_formula formula,
                             uint64_t *ret, struct kiln_error **err)
{
        uint64_t per_entry = formula == KILN_SIZE_REF ? 2 : 1;
        uint64_t total = 0;
        for (size_t i = 0; i < d->n; i++) {
                uint64_t add = per_entry;
                if (d->nodes[i].kind == KILN_NODE_DIRECTORY &&
                    __builtin_add_overflow(add, d->nodes[i].size, &add))
                        goto overflow;
                if (__builtin_add_overflow(total, add, &total))
                        goto overflow;
        }
        *ret = total;
        return 0;
overflow:
        return kiln_error_set(err, EOVERFLOW, "total size exceeds u64::MAX");
}

uint64_t kiln_directory_size(const struct kiln_directory *d)
{
        uint64_t size = UINT64_MAX;
        (void)kiln_directory_size_with(d, kiln_size_formula_default(), &size, NULL);
        return size;
}

int kiln_directory_seal(struct kiln_directory *d, struct kiln_error **err)
{
        int r;
        for (size_t i = 0; i < d->n; i++) {
                struct kiln_wire_node w = {.node = d->nodes[i], .digest_len = KILN_DIGEST_LEN};
                r = kiln_wire_node_validate(&w, KILN_NODE_NAMED, err);
                if (r < 0)
                        return r;
        }
        if (d->n > 1)
                qsort(d->nodes, d->n, sizeof(*d->nodes), node_name_cmp);
        for (size_t i = 1; i < d->n; i++)
                if (node_name_cmp(&d->nodes[i - 1], &d->nodes[i]) == 0)
                        return duplicate_name(&d->nodes[i], err);
        uint64_t size;
        return kiln_directory_size_with(d, kiln_size_formula_default(), &size, err);
}

const struct kiln_node *kiln_directory_find(const struct kiln_directory *d, const void *name,
                                            size_t len)
{
        size_t lo = 0, hi = d->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct kiln_node *n = &d->nodes[mid];
                int c = kiln_bytes_cmp(name, len, n->name.data, n->name.len);
                if (c == 0)
                        return n;
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

void kiln_directory_lists_done(struct kiln_directory_lists *l)
{
        struct kiln_wire_node *lists[] = {l->dirs, l->files, l->symlinks};
        size_t counts[] = {l->n_dirs, l->n_files, l->n_symlinks};
        for (size_t k = 0; k < 3; k++) {
                for (size_t i = 0; i < counts[k]; i++)
                        kiln_node_done(&lists[k][i].node);
                free(lists[k]);
        }
        *l = (struct kiln_directory_lists){0};
}

/* Validation step 1: each list on its own must be strictly increasing. */
static int check_list_order(const struct kiln_wire_node *list, size_t n, struct kiln_error **err)
{
        const uint8_t *prev = (const uint8_t *)"";
        size_t prev_len = 0;
        for (size_t i = 0; i < n; i++) {
                const struct kiln_node *e = &list[i].node;
                int c = kiln_bytes_cmp(e->name.data, e->name.len, prev, prev_len);
                if (c < 0) {
                        _cleanup_free_ char *q = quote(e->name.data, e->name.len);
                        return kiln_error_set(err, EINVAL, "%s is not sorted", q);
                }
                if (c == 0) {
                        if (e->name.len == 0)
                                return kiln_name_validate(e->name.data, 0, err);
                        return duplicate_name(e, err);
                }
                prev = e->name.data;
                prev_len = e->name.len;
        }
        return 0;
}

int kiln_wire_node_validate(const struct kiln_wire_node *w, enum kiln_node_naming naming,
                            struct kiln_error **err)
{
        const struct kiln_node *n = &w->node;
        int r = 0;
        if (n->kind != KILN_NODE_SYMLINK && w->digest_len != KILN_DIGEST_LEN)
                r = kiln_error_set(err, EINVAL, "invalid digest length: %zu", w->digest_len);
        else
                r = node_validate_fields(n, err);
        if (r < 0) {
                if (naming == KILN_NODE_ANONYMOUS)
                        return r;
                _cleanup_free_ char *q = quote(n->name.data, n->name.len);
                return kiln_error_prefix(err, r, "invalid node with name %s", q);
        }
        return kiln_node_validate(n, naming, err);
}

int kiln_directory_from_lists(struct kiln_directory_lists *l, struct kiln_directory *ret,
                              struct kiln_error **err)
{
        struct kiln_wire_node *lists[] = {l->dirs, l->files, l->symlinks};
        size_t counts[] = {l->n_dirs, l->n_files, l->n_symlinks};
        int r;

        for (size_t k = 0; k < 3; k++) {
                r = check_list_order(lists[k], counts[k], err);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < 3; k++)
                for (size_t i = 0; i < counts[k]; i++) {
                        r = kiln_wire_node_validate(&lists[k][i], KILN_NODE_NAMED, err);
                        if (r < 0)
                                return r;
                }

        /* Step 3: merge the three sorted lists; equal names across lists are
         * duplicates, and the size must fit. */
        _cleanup_(kiln_directory_done) struct kiln_directory d = KILN_DIRECTORY_INIT;
        size_t total = counts[0] + counts[1] + counts[2];
        d.nodes = kiln_reallocarray(NULL, total ? total : 1, sizeof(*d.nodes));
        d.cap = total ? total : 1;
        size_t pos[3] = {0, 0, 0};
        while (d.n < total) {
                int best = -1;
                for (int k = 0; k < 3; k++) {
                        if (pos[k] == counts[k])
                                continue;
                        if (best < 0 || node_name_cmp(&lists[k][pos[k]].node,
                                                      &lists[best][pos[best]].node) < 0)
                                best = k;
                }
                struct kiln_node *next = &lists[best][pos[best]++].node;
                if (d.n > 0 && node_name_cmp(&d.nodes[d.n - 1], next) == 0)
                        return duplicate_name(next, err);
                kiln_directory_add(&d, next);
        }
        uint64_t size;
        r = kiln_directory_size_with(&d, kiln_size_formula_default(), &size, err);
        if (r < 0)
                return r;
        *ret = d;
        d = (struct kiln_directory)KILN_DIRECTORY_INIT;
        return 0;
}

void kiln_directory_to_node(const struct kiln_directory *d, const struct kiln_digest *digest,
                            const void *name, size_t len, struct kiln_node *ret)
{
        *ret = (struct kiln_node){.kind = KILN_NODE_DIRECTORY, .digest = *digest,
                                  .size = kiln_directory_size(d)};
        kiln_node_set_name(ret, name, len);
}

/* --- decoding through protobuf-c --- */

static void bin_set(struct kiln_bytes *dst, const ProtobufCBinaryData *b)
{
        bytes_set(dst, b->data, b->len);
}

static void wire_digest(struct kiln_wire_node *w, const ProtobufCBinaryData *b)
{
        w->digest_len = b->len;
        if (b->len == KILN_DIGEST_LEN)
                memcpy(w->node.digest.b, b->data, KILN_DIGEST_LEN);
}

static void wire_from_dirnode(const Tvix__Castore__V1__DirectoryNode *p,
                              struct kiln_wire_node *w)
{
        *w = (struct kiln_wire_node){.node = {.kind = KILN_NODE_DIRECTORY, .size = p->size}};
        bin_set(&w->node.name, &p->name);
        wire_digest(w, &p->digest);
}

static void wire_from_filenode(const Tvix__Castore__V1__FileNode *p, struct kiln_wire_node *w)
{
        *w = (struct kiln_wire_node){
                .node = {.kind = KILN_NODE_FILE, .size = p->size, .executable = p->executable}};
        bin_set(&w->node.name, &p->name);
        wire_digest(w, &p->digest);
}

static void wire_from_symlinknode(const Tvix__Castore__V1__SymlinkNode *p,
                                  struct kiln_wire_node *w)
{
        *w = (struct kiln_wire_node){.node = {.kind = KILN_NODE_SYMLINK}};
        bin_set(&w->node.name, &p->name);
        bin_set(&w->node.target, &p->target);
}

int kiln_directory_decode(const void *data, size_t len, struct kiln_directory *ret,
                          struct kiln_error **err)
{
        Tvix__Castore__V1__Directory *p = tvix__castore__v1__directory__unpack(NULL, len, data);
        if (!p)
                return kiln_error_set(err, EINVAL,
                                      "invalid Directory: not a valid protobuf message");

        _cleanup_(kiln_directory_lists_done) struct kiln_directory_lists l = {0};
        l.dirs = kiln_calloc(p->n_directories, sizeof(*l.dirs));
        l.files = kiln_calloc(p->n_files, sizeof(*l.files));
        l.symlinks = kiln_calloc(p->n_symlinks, sizeof(*l.symlinks));
        for (; l.n_dirs < p->n_directories; l.n_dirs++)
                wire_from_dirnode(p->directories[l.n_dirs], &l.dirs[l.n_dirs]);
        for (; l.n_files < p->n_files; l.n_files++)
                wire_from_filenode(p->files[l.n_files], &l.files[l.n_files]);
        for (; l.n_symlinks < p->n_symlinks; l.n_symlinks++)
                wire_from_symlinknode(p->symlinks[l.n_symlinks], &l.symlinks[l.n_symlinks]);
        tvix__castore__v1__directory__free_unpacked(p, NULL);
        return kiln_directory_from_lists(&l, ret, err);
}

int kiln_node_decode(const void *data, size_t len, enum kiln_node_naming naming,
                     struct kiln_node *ret, struct kiln_error **err)
{
        Tvix__Castore__V1__Node *p = tvix__castore__v1__node__unpack(NULL, len, data);
        if (!p)
                return kiln_error_set(err, EINVAL, "invalid Node: not a valid protobuf message");
        struct kiln_wire_node w = {0};
        int r = 0;
        switch (p->node_case) {
        case TVIX__CASTORE__V1__NODE__NODE_DIRECTORY:
                wire_from_dirnode(p->directory, &w);
                break;
        case TVIX__CASTORE__V1__NODE__NODE_FILE:
                wire_from_filenode(p->file, &w);
                break;
        case TVIX__CASTORE__V1__NODE__NODE_SYMLINK:
                wire_from_symlinknode(p->symlink, &w);
                break;
        default:
                r = kiln_error_set(err, EINVAL, "No node set");
                break;
        }
        tvix__castore__v1__node__free_unpacked(p, NULL);
        if (r == 0)
                r = kiln_wire_node_validate(&w, naming, err);
        if (r < 0) {
                kiln_node_done(&w.node);
                return r;
        }
        *ret = w.node;
        return 0;
}
