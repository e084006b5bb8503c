/* The castore closure validator (closure.c) against a plain re-implementation
 * of the protocol's rule, on Directory sequences the input describes.
 *
 * Input: byte 0 picks the order (bit 0: root-to-leaves) and, for downloads,
 * the expected root (bits 1..4: a pool index; past the pool, a digest nobody
 * has). Then a pool of up to 12 Directories, each a count and entries:
 * files, symlinks and DirectoryNodes pointing at an earlier pool member (or
 * at a digest no Directory has), with its size right or off by an
 * input-chosen amount. The rest are steps: add a pool member (sent through
 * the wire encoding and decoded, as DirectoryService Put and Get receive it),
 * ask want() about one, or finish in the middle.
 *
 * Property: every add, want and finish is accepted exactly when the
 * reference below accepts it; rejections are one line; a finished closure's
 * root is the reference's, and its drains hold each accepted Directory once,
 * unchanged, leaves-to-root with every child before its parents and the root
 * last, root-to-leaves with the root first and every other Directory after
 * one of its parents (not necessarily all of them: breadth-first).
 *
 * The reference, per add of Directory D with digest d, keeping the list of
 * accepted Directories: after finish, nothing; a d already accepted is
 * accepted again and changes nothing; leaves-to-root, every DirectoryNode of
 * D must point at an accepted Directory whose size (2 or 1 per entry by the
 * build's formula, plus the sizes its DirectoryNodes state) it states;
 * root-to-leaves, d must be the root or pointed at by an accepted Directory,
 * and every DirectoryNode between D and an accepted Directory, either way,
 * states the size of its target. Finish needs one accepted Directory at
 * least, exactly one that no accepted Directory points at and, root to
 * leaves, every DirectoryNode pointing at an accepted Directory. */
#include <kiln/castore/castore.h>
#include <kiln/castore/closure.h>

#include "fuzz.h"

#define POOL_MAX    12
#define ENTRIES_MAX 4
#define STEPS_MAX   64

struct cursor {
        const uint8_t *p;
        size_t n;
};

static uint8_t next(struct cursor *c)
{
        if (!c->n)
                return 0;
        c->n--;
        return *c->p++;
}

struct pool {
        struct kiln_directory dir[POOL_MAX];
        struct kiln_digest digest[POOL_MAX];
        size_t n;
};

static uint64_t ref_size(const struct kiln_directory *d, bool *overflow)
{
        unsigned __int128 total = 0;
        uint64_t per = kiln_size_formula_default() == KILN_SIZE_REF ? 2 : 1;
        for (size_t i = 0; i < d->n; i++)
                total += per + (d->nodes[i].kind == KILN_NODE_DIRECTORY ? d->nodes[i].size : 0);
        *overflow = total > UINT64_MAX;
        return (uint64_t)total;
}

/* Builds pool member i from the input; false if it is no valid Directory. */
static bool build(struct pool *pool, size_t i, struct cursor *c)
{
        struct kiln_directory *d = &pool->dir[i];
        size_t n = next(c) % (ENTRIES_MAX + 1);
        for (size_t j = 0; j < n; j++) {
                uint8_t t = next(c);
                /* Names sort by their first byte; the second may be any
                 * byte a name can hold (a newline tests the messages). */
                uint8_t name[2] = {(uint8_t)('a' + j), next(c)};
                struct kiln_node e = {0};
                kiln_node_set_name(&e, name, name[1] && name[1] != '/' ? 2 : 1);
                switch (t % 4) {
                case 0:
                        e.kind = KILN_NODE_FILE;
                        memset(e.digest.b, next(c), sizeof(e.digest.b));
                        e.size = t >> 2;
                        e.executable = t & 0x80;
                        break;
                case 1:
                        e.kind = KILN_NODE_SYMLINK;
                        e.target.data = kiln_malloc(1);
                        e.target.data[0] = (uint8_t)('a' + (t >> 2) % 26);
                        e.target.len = 1;
                        break;
                default: {
                        e.kind = KILN_NODE_DIRECTORY;
                        uint8_t s = next(c);
                        if (i == 0 || (t & 0x80)) {
                                /* A digest no Directory has. */
                                memset(e.digest.b, 0xee, sizeof(e.digest.b));
                                e.digest.b[0] = t;
                                e.size = s;
                                break;
                        }
                        size_t k = (t >> 2) % i;
                        bool ovf;
                        e.digest = pool->digest[k];
                        e.size = ref_size(&pool->dir[k], &ovf);
                        if (s >= 0xf0) /* a wrong size */
                                e.size += s == 0xff ? UINT64_MAX / 2 : (uint64_t)(s & 0xf) - 7;
                        break;
                }
                }
                kiln_directory_add(d, &e);
        }
        struct kiln_error *err = NULL;
        if (kiln_directory_seal(d, &err) < 0) {
                kiln_error_free(err);
                return false;
        }
        kiln_directory_digest(d, NULL, &pool->digest[i]);
        return true;
}

/* --- the reference --- */

struct ref {
        bool root_to_leaves, finished;
        struct kiln_digest root;
        const struct kiln_directory *acc[POOL_MAX];
        struct kiln_digest acc_digest[POOL_MAX];
        size_t n;
};

static const struct kiln_directory *ref_find(const struct ref *r, const struct kiln_digest *d)
{
        for (size_t i = 0; i < r->n; i++)
                if (kiln_digest_eq(&r->acc_digest[i], d))
                        return r->acc[i];
        return NULL;
}

/* Whether an accepted Directory points at d. */
static bool ref_pointed_at(const struct ref *r, const struct kiln_digest *d)
{
        for (size_t i = 0; i < r->n; i++)
                for (size_t k = 0; k < r->acc[i]->n; k++)
                        if (r->acc[i]->nodes[k].kind == KILN_NODE_DIRECTORY &&
                            kiln_digest_eq(&r->acc[i]->nodes[k].digest, d))
                                return true;
        return false;
}

/* Whether every DirectoryNode from `from` to `to` states to's size. */
static bool ref_edges_ok(const struct kiln_directory *from, const struct kiln_directory *to,
                         const struct kiln_digest *to_digest)
{
        bool ovf;
        uint64_t size = ref_size(to, &ovf);
        for (size_t k = 0; k < from->n; k++)
                if (from->nodes[k].kind == KILN_NODE_DIRECTORY &&
                    kiln_digest_eq(&from->nodes[k].digest, to_digest) &&
                    from->nodes[k].size != size)
                        return false;
        return true;
}

static int ref_want(const struct ref *r, const struct kiln_digest *d)
{
        if (ref_find(r, d))
                return 0;
        if (r->root_to_leaves && !kiln_digest_eq(d, &r->root) && !ref_pointed_at(r, d))
                return -1;
        return 1;
}

static bool ref_add(struct ref *r, const struct kiln_directory *dir, const struct kiln_digest *d)
{
        if (r->finished)
                return false;
        if (ref_find(r, d))
                return true;
        if (r->root_to_leaves) {
                if (!kiln_digest_eq(d, &r->root) && !ref_pointed_at(r, d))
                        return false;
                for (size_t i = 0; i < r->n; i++)
                        if (!ref_edges_ok(r->acc[i], dir, d) ||
                            !ref_edges_ok(dir, r->acc[i], &r->acc_digest[i]))
                                return false;
        } else {
                for (size_t k = 0; k < dir->n; k++) {
                        const struct kiln_node *e = &dir->nodes[k];
                        if (e->kind != KILN_NODE_DIRECTORY)
                                continue;
                        const struct kiln_directory *child = ref_find(r, &e->digest);
                        if (!child || !ref_edges_ok(dir, child, &e->digest))
                                return false;
                }
        }
        r->acc[r->n] = dir;
        r->acc_digest[r->n++] = *d;
        return true;
}

static bool ref_finish(struct ref *r, struct kiln_digest *root)
{
        if (r->finished) {
                *root = r->root;
                return true;
        }
        if (r->n == 0)
                return false;
        size_t roots = 0;
        for (size_t i = 0; i < r->n; i++) {
                if (!ref_pointed_at(r, &r->acc_digest[i])) {
                        roots++;
                        *root = r->acc_digest[i];
                }
                for (size_t k = 0; k < r->acc[i]->n; k++)
                        if (r->acc[i]->nodes[k].kind == KILN_NODE_DIRECTORY &&
                            !ref_find(r, &r->acc[i]->nodes[k].digest))
                                return false;
        }
        if (roots != 1)
                return false;
        r->root = *root;
        r->finished = true;
        return true;
}

/* --- the drains --- */

static size_t position(const struct kiln_digest *digests, size_t n, const struct kiln_digest *d)
{
        for (size_t i = 0; i < n; i++)
                if (kiln_digest_eq(&digests[i], d))
                        return i;
        return SIZE_MAX;
}

static void check_drain(struct kiln_closure *c, const struct ref *r, enum kiln_closure_order o)
{
        const struct kiln_directory **dirs;
        const struct kiln_digest *digests;
        size_t n = kiln_closure_drain(c, o, &dirs, &digests);
        FUZZ_CHECK(n == r->n);
        struct kiln_buf a = KILN_BUF_INIT, b = KILN_BUF_INIT;
        for (size_t i = 0; i < n; i++) {
                struct kiln_digest d;
                kiln_directory_digest(dirs[i], NULL, &d);
                FUZZ_CHECK(kiln_digest_eq(&d, &digests[i]));
                FUZZ_CHECK(position(digests, n, &d) == i); /* each once */
                const struct kiln_directory *want = ref_find(r, &d);
                FUZZ_CHECK(want);
                kiln_buf_clear(&a);
                kiln_buf_clear(&b);
                kiln_directory_encode(dirs[i], &a);
                kiln_directory_encode(want, &b);
                FUZZ_CHECK(fuzz_buf_eq(&a, &b));
                bool has_parent_before = false;
                for (size_t k = 0; k < dirs[i]->n; k++) {
                        if (dirs[i]->nodes[k].kind != KILN_NODE_DIRECTORY)
                                continue;
                        size_t at = position(digests, n, &dirs[i]->nodes[k].digest);
                        FUZZ_CHECK(at != SIZE_MAX);
                        if (o == KILN_CLOSURE_LEAVES_TO_ROOT)
                                FUZZ_CHECK(at < i);
                }
                for (size_t p = 0; p < i; p++)
                        for (size_t k = 0; k < dirs[p]->n; k++)
                                if (dirs[p]->nodes[k].kind == KILN_NODE_DIRECTORY &&
                                    kiln_digest_eq(&dirs[p]->nodes[k].digest, &d))
                                        has_parent_before = true;
                if (o == KILN_CLOSURE_ROOT_TO_LEAVES)
                        FUZZ_CHECK(i == 0 ? kiln_digest_eq(&d, &r->root) : has_parent_before);
        }
        if (o == KILN_CLOSURE_LEAVES_TO_ROOT)
                FUZZ_CHECK(n > 0 && kiln_digest_eq(&digests[n - 1], &r->root));
        kiln_buf_done(&a);
        kiln_buf_done(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cursor c = {data, size};
        struct kiln_error *err = NULL;
        static struct pool pool;
        /* Received copies of the pool, decoded from the wire form. */
        static struct kiln_directory wire[POOL_MAX];
        uint8_t flags = next(&c);
        size_t n_pool = 1 + next(&c) % POOL_MAX;
        memset(&pool, 0, sizeof(pool));
        memset(wire, 0, sizeof(wire));
        bool ok = true;
        for (pool.n = 0; pool.n < n_pool && ok; pool.n++)
                ok = build(&pool, pool.n, &c);
        struct ref ref = {.root_to_leaves = flags & 1};
        struct kiln_closure *cl = NULL;
        if (!ok)
                goto out;
        struct kiln_buf enc = KILN_BUF_INIT;
        for (size_t i = 0; i < pool.n; i++) {
                kiln_buf_clear(&enc);
                kiln_directory_encode(&pool.dir[i], &enc);
                FUZZ_CHECK(kiln_directory_decode(enc.data, enc.len, &wire[i], &err) == 0);
        }
        kiln_buf_done(&enc);

        size_t root_pick = (flags >> 1) & 0xf;
        if (root_pick < pool.n) {
                ref.root = pool.digest[root_pick];
        } else {
                memset(ref.root.b, 0xee, sizeof(ref.root.b));
                ref.root.b[0] = flags;
        }
        cl = kiln_closure_new(ref.root_to_leaves ? KILN_CLOSURE_ROOT_TO_LEAVES
                                                 : KILN_CLOSURE_LEAVES_TO_ROOT,
                              &ref.root);
        struct kiln_digest root;
        for (size_t step = 0; step < STEPS_MAX && c.n; step++) {
                uint8_t op = next(&c);
                if (op == 0xff) { /* finish in the middle */
                        struct kiln_digest want_root = {0};
                        bool want = ref_finish(&ref, &want_root);
                        int r = kiln_closure_finish(cl, &root, &err);
                        FUZZ_CHECK((r == 0) == want);
                        if (r < 0)
                                fuzz_rejected(r, &err);
                        else
                                FUZZ_CHECK(kiln_digest_eq(&root, &want_root));
                        continue;
                }
                size_t i = op % pool.n;
                if (op >= 0xf0) { /* want() */
                        int want = ref_want(&ref, &pool.digest[i]);
                        int r = kiln_closure_want(cl, &pool.digest[i], &err);
                        if (want < 0)
                                fuzz_rejected(r, &err);
                        else
                                FUZZ_CHECK(r == want);
                        continue;
                }
                bool want = ref_add(&ref, &pool.dir[i], &pool.digest[i]);
                struct kiln_digest got;
                int r = kiln_closure_add(cl, &wire[i], &got, &err);
                FUZZ_CHECK((r == 0) == want);
                if (r < 0)
                        fuzz_rejected(r, &err);
                else
                        FUZZ_CHECK(kiln_digest_eq(&got, &pool.digest[i]));
        }
        struct kiln_digest want_root = {0};
        bool want = ref_finish(&ref, &want_root);
        int r = kiln_closure_finish(cl, &root, &err);
        FUZZ_CHECK((r == 0) == want);
        if (r < 0) {
                fuzz_rejected(r, &err);
                const struct kiln_directory **dirs;
                FUZZ_CHECK(kiln_closure_drain(cl, KILN_CLOSURE_LEAVES_TO_ROOT, &dirs, NULL) == 0);
        } else {
                FUZZ_CHECK(kiln_digest_eq(&root, &want_root));
                check_drain(cl, &ref, KILN_CLOSURE_LEAVES_TO_ROOT);
                check_drain(cl, &ref, KILN_CLOSURE_ROOT_TO_LEAVES);
                /* Finished: adds fail, finishing again gives the same root. */
                r = kiln_closure_add(cl, &wire[0], NULL, &err);
                fuzz_rejected(r, &err);
                FUZZ_CHECK(kiln_closure_finish(cl, &root, &err) == 0);
                FUZZ_CHECK(kiln_digest_eq(&root, &want_root));
        }
out:
        kiln_closure_free(cl);
        for (size_t i = 0; i < POOL_MAX; i++) {
                kiln_directory_done(&pool.dir[i]);
                kiln_directory_done(&wire[i]);
        }
        return 0;
}
