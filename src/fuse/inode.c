/* The inode table: numbers for castore nodes, deduplicated by content, and
 * directory listings fetched on first use.
 *
 * One inode per Directory digest, per (blob digest, executable) pair and per
 * symlink target, so the same bytes as a plain and as an executable file keep
 * their own modes (upstream shares one inode). Numbers
 * start at 2 in discovery order and are never reused: inodes live as long as
 * the mount (FORGET is ignored), which keeps numbers stable and lookups
 * lock-free at the price of memory growing with what has been looked at. */
#include <stdarg.h>
#include <stdio.h>

#include "fuse_int.h"

struct kfuse_page {
        _Atomic(struct kfuse_inode *) slot[KFUSE_PAGE_SIZE];
};

void kfuse_table_init(struct kiln_fuse *f)
{
        f->pages = kiln_calloc(KFUSE_MAX_PAGES, sizeof(*f->pages));
        f->next_ino = KFUSE_ROOT_INO + 1;
        f->root.ino = KFUSE_ROOT_INO;
        f->root.kind = KFUSE_ROOT;
}

static void inode_free(struct kfuse_inode *in)
{
        free(in->target);
        free(atomic_load(&in->dd));
        free(in);
}

static void free_directory(void *p)
{
        kiln_directory_free(p);
}

void kfuse_table_done(struct kiln_fuse *f)
{
        if (f->pages) {
                for (size_t p = 0; p < KFUSE_MAX_PAGES; p++) {
                        struct kfuse_page *pg = atomic_load(&f->pages[p]);
                        if (!pg)
                                continue;
                        for (size_t i = 0; i < KFUSE_PAGE_SIZE; i++) {
                                struct kfuse_inode *in = atomic_load(&pg->slot[i]);
                                if (in)
                                        inode_free(in);
                        }
                        free(pg);
                }
                free(f->pages);
                f->pages = NULL;
        }
        free(atomic_load(&f->root.dd));
        atomic_store(&f->root.dd, NULL);
        kiln_digest_map_done(&f->dir_map, NULL);
        kiln_digest_map_done(&f->file_map, NULL);
        kiln_digest_map_done(&f->exec_map, NULL);
        kiln_digest_map_done(&f->link_map, NULL);
        kiln_digest_map_done(&f->root_map, NULL);
        while (f->dyn_origins) {
                struct kfuse_origin *o = f->dyn_origins;
                f->dyn_origins = o->next;
                free(o);
        }
        kiln_digest_map_done(&f->closure_dirs, free_directory);
        free(f->origins);
        f->origins = NULL;
}

struct kfuse_inode *kfuse_inode_get(struct kiln_fuse *f, uint64_t ino)
{
        if (ino == KFUSE_ROOT_INO)
                return &f->root;
        uint64_t p = ino >> KFUSE_PAGE_BITS;
        if (p >= KFUSE_MAX_PAGES)
                return NULL;
        /* Acquire pairs with the release in publish(): an inode number only
         * reaches the kernel after its inode has been published. */
        struct kfuse_page *pg = atomic_load_explicit(&f->pages[p], memory_order_acquire);
        if (!pg)
                return NULL;
        return atomic_load_explicit(&pg->slot[ino & (KFUSE_PAGE_SIZE - 1)], memory_order_acquire);
}

uint64_t kfuse_inode_count(struct kiln_fuse *f)
{
        pthread_mutex_lock(&f->lock);
        uint64_t n = f->next_ino - 1;
        pthread_mutex_unlock(&f->lock);
        return n;
}

/* Allocates the next number and publishes the inode. Under f->lock. */
static int publish(struct kiln_fuse *f, struct kfuse_inode *in)
{
        uint64_t ino = f->next_ino;
        uint64_t p = ino >> KFUSE_PAGE_BITS;
        if (p >= KFUSE_MAX_PAGES)
                return -ENOSPC;
        struct kfuse_page *pg = atomic_load_explicit(&f->pages[p], memory_order_relaxed);
        if (!pg) {
                pg = kiln_calloc(1, sizeof(*pg));
                atomic_store_explicit(&f->pages[p], pg, memory_order_release);
        }
        f->next_ino++;
        in->ino = ino;
        atomic_store_explicit(&pg->slot[ino & (KFUSE_PAGE_SIZE - 1)], in, memory_order_release);
        return 0;
}

/* The inode for a node, created on first sight. Under f->lock. */
static int node_inode(struct kiln_fuse *f, const struct kiln_node *n, struct kfuse_origin *origin,
                      struct kfuse_inode **ret)
{
        struct kiln_digest_map *map;
        struct kiln_digest key;
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
                map = &f->dir_map;
                key = n->digest;
                break;
        case KILN_NODE_FILE:
                map = n->executable ? &f->exec_map : &f->file_map;
                key = n->digest;
                break;
        case KILN_NODE_SYMLINK:
                /* Targets are keyed by their hash: no second map type needed. */
                map = &f->link_map;
                kiln_digest_of(n->target.data, n->target.len, &key);
                break;
        default:
                return -EINVAL;
        }
        struct kfuse_inode *in = kiln_digest_map_get(map, &key);
        if (in) {
                *ret = in;
                return 0;
        }
        in = kiln_calloc(1, sizeof(*in));
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
                in->kind = KFUSE_DIR;
                in->digest = n->digest;
                in->origin = origin;
                break;
        case KILN_NODE_FILE:
                in->kind = KFUSE_FILE;
                in->digest = n->digest;
                in->size = n->size;
                in->executable = n->executable;
                break;
        case KILN_NODE_SYMLINK:
                in->kind = KFUSE_SYMLINK;
                in->target = kiln_malloc(n->target.len + 1);
                memcpy(in->target, n->target.data, n->target.len);
                in->target[n->target.len] = '\0';
                in->size = n->target.len;
                break;
        }
        int r = publish(f, in);
        if (r < 0) {
                inode_free(in);
                return r;
        }
        kiln_digest_map_put(map, &key, in);
        *ret = in;
        return 0;
}

/* Builds a listing from sorted, unique, valid nodes: one allocation holding
 * the entries and their NUL-terminated names. `origins` (may be NULL) gives
 * each directory node's origin, else `origin` is used. */
static int build_dirdata(struct kiln_fuse *f, const struct kiln_node *nodes, size_t n,
                         struct kfuse_origin *origin, struct kfuse_origin *const *origins,
                         struct kfuse_dirdata **ret)
{
        size_t names = 0;
        for (size_t i = 0; i < n; i++)
                names += nodes[i].name.len + 1;
        struct kfuse_dirdata *dd = kiln_malloc(sizeof(*dd) + n * sizeof(dd->ents[0]) + names);
        char *p = (char *)&dd->ents[n];
        dd->n = n;
        dd->nsubdirs = 0;
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < n; i++) {
                const struct kiln_node *node = &nodes[i];
                struct kfuse_inode *in;
                int r = node_inode(f, node, origins ? origins[i] : origin, &in);
                if (r < 0) {
                        pthread_mutex_unlock(&f->lock);
                        free(dd);
                        return r;
                }
                memcpy(p, node->name.data, node->name.len);
                p[node->name.len] = '\0';
                dd->ents[i] = (struct kfuse_dirent){
                    .name = p, .name_len = (uint32_t)node->name.len, .inode = in};
                p += node->name.len + 1;
                if (node->kind == KILN_NODE_DIRECTORY)
                        dd->nsubdirs++;
        }
        pthread_mutex_unlock(&f->lock);
        *ret = dd;
        return 0;
}

static int cmp_node_names(const void *a, const void *b)
{
        const struct kiln_node *x = a, *y = b;
        return kiln_bytes_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

int kfuse_roots_init(struct kiln_fuse *f, const struct kiln_node *roots, size_t n,
                     struct kiln_error **err)
{
        _cleanup_free_ struct kiln_node *sorted = kiln_calloc(n ? n : 1, sizeof(*sorted));
        if (n)
                memcpy(sorted, roots, n * sizeof(*sorted)); /* shallow: names stay the caller's */
        for (size_t i = 0; i < n; i++) {
                int r = kiln_node_validate(&sorted[i], KILN_NODE_NAMED, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "root node %zu", i);
        }
        qsort(sorted, n, sizeof(*sorted), cmp_node_names);
        for (size_t i = 1; i < n; i++)
                if (!cmp_node_names(&sorted[i - 1], &sorted[i]))
                        return kiln_error_set(err, EINVAL, "duplicate root node name '%.*s'",
                                              (int)sorted[i].name.len,
                                              (const char *)sorted[i].name.data);

        /* Each directory root starts a closure of its own (see fetch()). */
        f->origins = kiln_calloc(n ? n : 1, sizeof(*f->origins));
        _cleanup_free_ struct kfuse_origin **origins = kiln_calloc(n ? n : 1, sizeof(*origins));
        for (size_t i = 0; i < n; i++) {
                if (sorted[i].kind != KILN_NODE_DIRECTORY)
                        continue;
                f->origins[f->n_origins] = (struct kfuse_origin){.root = sorted[i].digest};
                origins[i] = &f->origins[f->n_origins++];
        }
        struct kfuse_dirdata *dd;
        int r = build_dirdata(f, sorted, n, NULL, origins, &dd);
        if (r < 0)
                return kiln_error_set(err, -r, "too many inodes");
        atomic_store(&f->root.dd, dd);
        return 0;
}

int kiln_fuse_root_add(struct kiln_fuse *f, const struct kiln_node *node, char **ret_name,
                       struct kiln_error **err)
{
        if (!f->opts.dynamic_roots)
                return kiln_error_set(err, EINVAL, "the mount has fixed roots");
        int r = kiln_node_validate(node, node->name.len ? KILN_NODE_NAMED : KILN_NODE_ANONYMOUS,
                                   err);
        if (r < 0)
                return r;
        const char *hex = KILN_DIGEST_HEX(&node->digest);
        char *name;
        if (node->kind == KILN_NODE_DIRECTORY)
                name = kiln_asprintf("d-%s", hex);
        else if (node->kind == KILN_NODE_FILE)
                name = kiln_asprintf("%c-%s-%llu", node->executable ? 'x' : 'f', hex,
                                     (unsigned long long)node->size);
        else
                return kiln_error_set(err, EINVAL, "a symlink cannot be a root of this mount");
        struct kiln_digest key;
        kiln_digest_of(name, strlen(name), &key);
        pthread_mutex_lock(&f->lock);
        struct kfuse_inode *in = kiln_digest_map_get(&f->root_map, &key);
        if (!in && node->kind == KILN_NODE_DIRECTORY) {
                /* Directories are what their digest says, whoever names
                 * them: shared with every other sighting. Each starts a
                 * closure of its own (see fetch()) unless known already. */
                struct kfuse_origin *o = kiln_calloc(1, sizeof(*o));
                o->root = node->digest;
                r = node_inode(f, node, o, &in);
                if (r == 0 && in->origin == o) {
                        o->next = f->dyn_origins;
                        f->dyn_origins = o;
                } else {
                        free(o);
                }
        } else if (!in) {
                in = kiln_calloc(1, sizeof(*in));
                in->kind = KFUSE_FILE;
                in->digest = node->digest;
                in->size = node->size;
                in->executable = node->executable;
                r = publish(f, in);
                if (r < 0) {
                        inode_free(in);
                        in = NULL;
                }
        }
        if (r == 0)
                kiln_digest_map_put(&f->root_map, &key, in);
        pthread_mutex_unlock(&f->lock);
        if (r < 0) {
                free(name);
                return kiln_error_set(err, -r, "too many inodes");
        }
        *ret_name = name;
        return 0;
}

struct kfuse_inode *kfuse_root_find(struct kiln_fuse *f, const char *name, size_t len)
{
        struct kiln_digest key;
        kiln_digest_of(name, len, &key);
        pthread_mutex_lock(&f->lock);
        struct kfuse_inode *in = kiln_digest_map_get(&f->root_map, &key);
        pthread_mutex_unlock(&f->lock);
        return in;
}

uint64_t kiln_fuse_inode_count(struct kiln_fuse *f)
{
        return kfuse_inode_count(f);
}

const struct kfuse_dirent *kfuse_dir_find(const struct kfuse_dirdata *dd, const char *name,
                                          size_t len)
{
        size_t lo = 0, hi = dd->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct kfuse_dirent *e = &dd->ents[mid];
                int c = kiln_bytes_cmp(e->name, e->name_len, name, len);
                if (c == 0)
                        return e;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

/* Loads the closure of an origin into f->closure_dirs, for directory stores
 * that only return whole closures by their root (the objectstore).
 * Directories already listed are skipped. Under f->closure_lock. */
static int load_closure(struct kiln_fuse *f, struct kfuse_origin *o, struct kiln_error **err)
{
        _cleanup_(kiln_directory_stream_freep) struct kiln_directory_stream *st = NULL;
        int r = kiln_directory_get_recursive(f->dirs, &o->root, &st, err);
        if (r < 0)
                return r;
        for (;;) {
                struct kiln_directory *d = kiln_directory_new();
                struct kiln_digest digest;
                r = kiln_directory_stream_next(st, d, &digest, err);
                if (r <= 0) {
                        kiln_directory_free(d);
                        break;
                }
                pthread_mutex_lock(&f->lock);
                struct kfuse_inode *in = kiln_digest_map_get(&f->dir_map, &digest);
                bool listed = in && atomic_load_explicit(&in->dd, memory_order_acquire);
                pthread_mutex_unlock(&f->lock);
                if (listed || kiln_digest_map_get(&f->closure_dirs, &digest))
                        kiln_directory_free(d);
                else
                        kiln_digest_map_put(&f->closure_dirs, &digest, d);
        }
        if (r < 0)
                return r;
        o->loaded = true;
        return 0;
}

/* Fetches the Directory of a directory inode: 1 found, 0 absent, < 0 error. */
static int fetch(struct kiln_fuse *f, struct kfuse_inode *in, struct kiln_directory *ret,
                 struct kiln_error **err)
{
        pthread_mutex_lock(&f->closure_lock);
        struct kiln_directory *d = kiln_digest_map_remove(&f->closure_dirs, &in->digest);
        pthread_mutex_unlock(&f->closure_lock);
        if (!d) {
                int r = kiln_directory_get(f->dirs, &in->digest, ret, err);
                if (r != 0 || !in->origin)
                        return r;
                /* Absent on its own: the store may only serve closures by
                 * their root. Fetch the closure this directory was found in,
                 * once per mount root. */
                pthread_mutex_lock(&f->closure_lock);
                if (!in->origin->loaded) {
                        r = load_closure(f, in->origin, err);
                        if (r < 0) {
                                pthread_mutex_unlock(&f->closure_lock);
                                return kiln_error_prefix(err, r, "closure of %s",
                                                         KILN_DIGEST_B64(&in->origin->root));
                        }
                }
                d = kiln_digest_map_remove(&f->closure_dirs, &in->digest);
                pthread_mutex_unlock(&f->closure_lock);
                if (!d)
                        return 0;
        }
        *ret = *d;
        free(d);
        return 1;
}

int kfuse_dir_get(struct kiln_fuse *f, struct kfuse_inode *in, const struct kfuse_dirdata **ret)
{
        struct kfuse_dirdata *dd = atomic_load_explicit(&in->dd, memory_order_acquire);
        if (dd) {
                *ret = dd;
                return 0;
        }
        if (in->kind != KFUSE_DIR)
                return -ENOTDIR;

        /* One fetch per directory: later comers wait for the first. */
        pthread_mutex_lock(&f->fetch_lock);
        while (in->fetching)
                pthread_cond_wait(&f->fetch_cond, &f->fetch_lock);
        dd = atomic_load_explicit(&in->dd, memory_order_acquire);
        if (dd) {
                pthread_mutex_unlock(&f->fetch_lock);
                *ret = dd;
                return 0;
        }
        in->fetching = true;
        pthread_mutex_unlock(&f->fetch_lock);

        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_directory_done) struct kiln_directory dir = KILN_DIRECTORY_INIT;
        int r = fetch(f, in, &dir, &err);
        if (r < 0)
                kfuse_log(f, "directory %s: %s", KILN_DIGEST_B64(&in->digest), kiln_error_msg(err));
        else if (r == 0)
                kfuse_log(f, "directory %s not found", KILN_DIGEST_B64(&in->digest));
        else if (build_dirdata(f, dir.nodes, dir.n, in->origin, NULL, &dd) < 0) {
                kfuse_log(f, "directory %s: too many inodes", KILN_DIGEST_B64(&in->digest));
                r = -ENOSPC;
        }

        pthread_mutex_lock(&f->fetch_lock);
        in->fetching = false;
        if (r > 0)
                atomic_store_explicit(&in->dd, dd, memory_order_release);
        pthread_cond_broadcast(&f->fetch_cond);
        pthread_mutex_unlock(&f->fetch_lock);
        if (r <= 0)
                return -EIO;
        *ret = dd;
        return 0;
}
