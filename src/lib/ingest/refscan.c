/* Multi-needle substring search for reference scanning.
 *
 * Nix hands us hundreds of 32-byte needles, and scanning runs in the same pass as BLAKE3, so it
 * must cost far less than a byte-at-a-time automaton. Needles are split by length:
 *
 * - Long needles (>= REFSCAN_LONG_MIN bytes) use sampled hashing. Let m be the shortest long
 *   needle and w the window width (8 or 4 bytes, see pick_window()). Any match of a needle of
 *   length >= m covers s = m - w + 1 consecutive window starts, so one of them is a multiple of
 *   s. The set holds, for every long needle and every offset 0..s-1, the w-byte window at that
 *   offset; the scan hashes only the windows at positions 0, s, 2s, ... of a block (one probe
 *   per 25 bytes for 32-byte needles). A Bloom filter of at most 128 KiB rejects nearly every
 *   probe; survivors look up their exact window in an open-addressing table and memcmp each
 *   needle having it at the implied start.
 * - Short needles are rare in practice and are looked for at every position. With AVX2 and at
 *   most REFSCAN_TEDDY_MAX of them, a nibble-mask prefilter does it 32 positions at a time
 *   (refscan_avx2.c). Otherwise a 64 K-entry table maps the two bytes at a position to a group
 *   of needles that may start with them (a 1-byte needle c claims every pair (c, *)).
 *   Survivors are checked with one masked 8-byte compare per needle. Both prefilters live partly
 *   in per-stream state, from which found needles are dropped: a needle such as "e" that occurs
 *   everywhere costs nothing once seen.
 *
 * Each kernel scans one contiguous block and finds exactly the matches lying wholly inside it.
 * A stream keeps the last L-1 bytes (L = longest needle) and on each feed also scans that
 * carry stitched to the first L-1 new bytes, which contains every match crossing the boundary.
 * Since a result is a set, finding a match twice is harmless.
 *
 * Equal needles are compiled once ("unique" needles); a match marks all their indices. The
 * kernel (portable or AVX2) is chosen when a set is compiled. */
#include <assert.h>

#include "refscan_impl.h"

/* More offsets per needle mean fewer probes but a fuller filter; past this the gain is nil. */
#define STRIDE_MAX 64
/* Bound on table entries (long needles x stride): the stride shrinks to stay under it. */
#define ENTRIES_MAX (1u << 22)
/* Filter size: bits per distinct window (under 1% false hits), capped at 128 KiB so that the
 * filter stays L2-resident next to the data (about 2.5% false hits at 1000 32-byte needles). */
#define FILTER_BITS_PER_KEY 128
#define FILTER_BITS_MAX     20u

struct kiln_refscan_stream {
        const struct kiln_refscan_set *set;
        struct kiln_refscan_result *r;
        struct refscan_short_state st;
        size_t keep;   /* L - 1 */
        size_t clen;   /* carry bytes at the start of buf */
        uint8_t buf[]; /* 2 * keep: carry, then the first new bytes while stitching */
};

/* ---- portable kernel --------------------------------------------------------------------- */

/* The pair at pos maps to live group g: check its needles, and retire the group once all of
 * them are in r. */
static __attribute__((noinline)) void group_candidate(const struct kiln_refscan_set *set,
                                                      struct refscan_short_state *st,
                                                      const uint8_t *p, size_t n, size_t pos,
                                                      unsigned g, struct kiln_refscan_result *r)
{
        uint64_t win = refscan_window(p + pos, n - pos);
        bool all_seen = true;

        for (uint32_t i = set->group_first[g]; i < set->group_first[g + 1]; i++) {
                const struct refscan_short_ent *e = &set->group_ent[i];

                if (refscan_seen(r, set->uniq[e->uniq].first_idx))
                        continue;
                if (refscan_short_match(e, win, n - pos))
                        refscan_mark(set, e->uniq, r);
                else
                        all_seen = false;
        }
        if (all_seen)
                st->live[g] = 0;
}

static inline unsigned pair_at(const uint8_t *pair_group, const uint8_t *p)
{
        return pair_group[p[0] | (unsigned)p[1] << 8];
}

void kiln_refscan_short_pairs(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                              const uint8_t *p, size_t n, struct kiln_refscan_result *r)
{
        const uint8_t *pair_group = set->pair_group;
        const uint8_t *live = st->live;
        size_t pos = 0;

        if (n == 0)
                return;
        for (; pos + 8 < n; pos += 8) {
                unsigned hit = 0;
                for (unsigned j = 0; j < 8; j++)
                        hit |= live[pair_at(pair_group, p + pos + j)];
                if (_unlikely_(hit))
                        for (unsigned j = 0; j < 8; j++) {
                                unsigned g = pair_at(pair_group, p + pos + j);
                                if (live[g])
                                        group_candidate(set, st, p, n, pos + j, g, r);
                        }
        }
        for (; pos + 1 < n; pos++) {
                unsigned g = pair_at(pair_group, p + pos);
                if (live[g])
                        group_candidate(set, st, p, n, pos, g, r);
        }
        /* The last byte starts no pair; only a 1-byte needle can match there. */
        if (set->one[p[n - 1]])
                refscan_verify(set, set->one[p[n - 1]] - 1, p, n, n - 1, r);
}

void kiln_refscan_block_portable(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                                 const uint8_t *p, size_t n, struct kiln_refscan_result *r)
{
        if (set->has_long)
                refscan_long_scan(set, p, n, r);
        if (set->has_short)
                kiln_refscan_short_pairs(set, st, p, n, r);
}

/* ---- kernel choice ----------------------------------------------------------------------- */

static const char *const level_names[] = {
    [KILN_REFSCAN_PORTABLE] = "portable",
    [KILN_REFSCAN_AVX2] = "avx2",
};

/* -1: not chosen yet. */
static int active_level = -1;

enum kiln_refscan_level kiln_refscan_level_supported(void)
{
#if defined(KILN_REFSCAN_HAVE_AVX2)
        /* GCC's and clang's probe also checks that the OS saves the YMM state. */
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2"))
                return KILN_REFSCAN_AVX2;
#endif
        return KILN_REFSCAN_PORTABLE;
}

const char *kiln_refscan_level_name(enum kiln_refscan_level level)
{
        return (unsigned)level <= KILN_REFSCAN_LEVEL_MAX ? level_names[level] : "unknown";
}

int kiln_refscan_level_from_name(const char *name, enum kiln_refscan_level *ret)
{
        for (unsigned l = 0; l <= KILN_REFSCAN_LEVEL_MAX; l++)
                if (strcmp(name, level_names[l]) == 0) {
                        *ret = l;
                        return 0;
                }
        return -EINVAL;
}

int kiln_refscan_force_level(enum kiln_refscan_level level)
{
        if ((unsigned)level > (unsigned)kiln_refscan_level_supported())
                return -ENOTSUP;
        __atomic_store_n(&active_level, (int)level, __ATOMIC_RELAXED);
        return 0;
}

enum kiln_refscan_level kiln_refscan_level(void)
{
        int l = __atomic_load_n(&active_level, __ATOMIC_RELAXED);

        if (l < 0) {
                /* An unknown or unsupported KILN_REFSCAN_SIMD is a tuning knob gone wrong, not
                 * an error: it silently means "best". Racing first calls store the same. */
                const char *env = getenv("KILN_REFSCAN_SIMD");
                enum kiln_refscan_level best = kiln_refscan_level_supported(), want;

                l = best;
                if (env && kiln_refscan_level_from_name(env, &want) == 0 && want <= best)
                        l = want;
                __atomic_store_n(&active_level, l, __ATOMIC_RELAXED);
        }
        return l;
}

static void choose_kernel(struct kiln_refscan_set *set)
{
        set->scan_block = kiln_refscan_block_portable;
#if defined(KILN_REFSCAN_HAVE_AVX2)
        if (kiln_refscan_level() == KILN_REFSCAN_AVX2)
                set->scan_block = kiln_refscan_block_avx2;
#endif
}

/* ---- compiling a set --------------------------------------------------------------------- */

struct keyed {
        uint64_t key;
        struct refscan_hent e;
};

static int keyed_cmp(const void *a, const void *b)
{
        const struct keyed *x = a, *y = b;

        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        if (x->e.uniq != y->e.uniq)
                return x->e.uniq < y->e.uniq ? -1 : 1;
        return x->e.off < y->e.off ? -1 : x->e.off > y->e.off;
}

static unsigned log2_ceil(size_t v)
{
        unsigned b = 0;

        while (((size_t)1 << b) < v)
                b++;
        return b;
}

/* Builds t from k[0..nk), which it sorts. Returns the number of distinct keys. */
static size_t htab_build(struct refscan_htab *t, struct keyed *k, size_t nk)
{
        size_t distinct = 0, nslots;
        unsigned bits;

        qsort(k, nk, sizeof(*k), keyed_cmp);
        for (size_t i = 0; i < nk; i++)
                if (i == 0 || k[i].key != k[i - 1].key)
                        distinct++;
        bits = KILN_MAX(log2_ceil(2 * distinct), 4u);
        nslots = (size_t)1 << bits;
        t->shift = 64 - bits;
        t->mask = nslots - 1;
        t->slots = kiln_calloc(nslots, sizeof(*t->slots));
        t->ents = kiln_reallocarray(NULL, KILN_MAX(nk, (size_t)1), sizeof(*t->ents));
        for (size_t i = 0, j; i < nk; i = j) {
                struct refscan_hslot *sl;
                size_t h = (k[i].key * REFSCAN_HASH_MUL) >> t->shift;

                for (j = i; j < nk && k[j].key == k[i].key; j++)
                        t->ents[j] = k[j].e;
                while (t->slots[h].count)
                        h = (h + 1) & t->mask;
                sl = &t->slots[h];
                sl->key = k[i].key;
                sl->first = i;
                sl->count = j - i;
        }
        return distinct;
}

static void htab_done(struct refscan_htab *t)
{
        free(t->slots);
        free(t->ents);
}

/* Window width for shortest long needle m and nlong long needles. A 4-byte window allows 4
 * more bytes of stride than an 8-byte one but is less selective: in text with ~5 bits per byte
 * (nixbase32, as in store paths), each of the nlong * s windows matches 1 in 2^20 positions,
 * and every match costs a table lookup. Modelled per byte: (probe + matches * lookup) / s,
 * with a probe ~2.5 cycles and a lookup ~100; 8-byte windows almost never match by chance. */
static unsigned pick_window(size_t m, size_t nlong)
{
        double s4 = KILN_MIN(m - 3, (size_t)STRIDE_MAX), s8 = KILN_MIN(m - 7, (size_t)STRIDE_MAX);
        double cost4 = (2.5 + 100.0 * nlong * s4 / (1 << 20)) / s4, cost8 = 2.5 / s8;

        assert(m >= REFSCAN_LONG_MIN && REFSCAN_LONG_MIN >= 8);
        return cost4 < cost8 ? 4 : 8;
}

static void build_long(struct kiln_refscan_set *set)
{
        _cleanup_free_ struct keyed *k = NULL;
        size_t nlong = 0, nk = 0, distinct, fbits_n;
        unsigned fbits;

        set->m = SIZE_MAX;
        for (size_t u = 0; u < set->n_uniq; u++)
                if (set->uniq[u].len >= REFSCAN_LONG_MIN) {
                        set->m = KILN_MIN(set->m, set->uniq[u].len);
                        nlong++;
                }
        if (nlong == 0)
                return;
        set->has_long = true;
        set->w = pick_window(set->m, nlong);
        set->stride = KILN_MIN(set->m - set->w + 1, (size_t)STRIDE_MAX);
        while (set->stride > 1 && nlong * set->stride > ENTRIES_MAX)
                set->stride /= 2;

        k = kiln_reallocarray(NULL, nlong * set->stride, sizeof(*k));
        for (size_t u = 0; u < set->n_uniq; u++) {
                if (set->uniq[u].len < REFSCAN_LONG_MIN)
                        continue;
                for (size_t off = 0; off < set->stride; off++)
                        k[nk++] = (struct keyed){
                            .key = refscan_load_w(set->uniq[u].p + off, set->w),
                            .e = {.uniq = u, .off = off},
                        };
        }
        distinct = htab_build(&set->ltab, k, nk);

        fbits = log2_ceil(FILTER_BITS_PER_KEY * distinct);
        fbits = KILN_MAX(fbits, 12u);
        fbits = KILN_MIN(fbits, FILTER_BITS_MAX);
        static_assert(FILTER_BITS_MAX - 6 <= REFSCAN_FILTER_WORD_BITS_MAX, "filter too large");
        fbits_n = (size_t)1 << fbits;
        set->fshift = 64 - (fbits - 6);
        set->filter = kiln_calloc(fbits_n / 64, sizeof(uint64_t));
        for (size_t i = 0; i < nk; i++) {
                uint64_t h = k[i].key * REFSCAN_HASH_MUL;
                set->filter[h >> set->fshift] |= refscan_filter_mask(h);
        }
}

static void teddy_add(struct refscan_teddy *t, unsigned b, const struct refscan_uniq *nd)
{
        uint8_t bit = 1u << b;

        for (size_t j = 0; j < REFSCAN_TEDDY_F; j++) {
                if (j < nd->len) {
                        t->lo[j][nd->p[j] & 15] |= bit;
                        t->hi[j][nd->p[j] >> 4] |= bit;
                } else {
                        /* past the needle's end any byte will do */
                        for (unsigned x = 0; x < 16; x++) {
                                t->lo[j][x] |= bit;
                                t->hi[j][x] |= bit;
                        }
                }
        }
}

void kiln_refscan_teddy_prune(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                              unsigned b, const struct kiln_refscan_result *r)
{
        uint8_t keep = ~(1u << b);

        for (size_t j = 0; j < REFSCAN_TEDDY_F; j++)
                for (unsigned x = 0; x < 16; x++) {
                        st->masks.lo[j][x] &= keep;
                        st->masks.hi[j][x] &= keep;
                }
        for (uint32_t i = set->bucket_first[b]; i < set->bucket_first[b + 1]; i++) {
                const struct refscan_uniq *nd = &set->uniq[set->bucket[i].uniq];
                if (!refscan_seen(r, nd->first_idx))
                        teddy_add(&st->masks, b, nd);
        }
}

static struct refscan_short_ent short_ent(const struct kiln_refscan_set *set, uint32_t u)
{
        struct refscan_short_ent e = {.uniq = u, .len = set->uniq[u].len};

        static_assert(REFSCAN_LONG_MIN <= 9, "short needles must fit a uint64_t");
        memcpy(&e.val, set->uniq[u].p, e.len);
        memset(&e.mask, 0xff, e.len);
        return e;
}

static int short_cmp(const void *a, const void *b, void *arg)
{
        const struct refscan_uniq *uniq = arg;
        const struct refscan_short_ent *x = a, *y = b;
        const struct refscan_uniq *nx = &uniq[x->uniq], *ny = &uniq[y->uniq];

        if (nx->len != ny->len)
                return nx->len < ny->len ? -1 : 1;
        return memcmp(nx->p, ny->p, nx->len);
}

/* Buckets of similar needles, so that few nibble combinations pass besides theirs: sorted by
 * length (the shortest, with their wildcards, together) and then bytes, cut into runs. */
static void build_teddy(struct kiln_refscan_set *set, size_t nshort)
{
        size_t k = 0;

        set->bucket = kiln_calloc(nshort, sizeof(*set->bucket));
        for (size_t u = 0; u < set->n_uniq; u++)
                if (set->uniq[u].len < REFSCAN_LONG_MIN)
                        set->bucket[k++] = short_ent(set, u);
        qsort_r(set->bucket, nshort, sizeof(*set->bucket), short_cmp, set->uniq);
        for (unsigned b = 0; b <= REFSCAN_TEDDY_BUCKETS; b++)
                set->bucket_first[b] = b * nshort / REFSCAN_TEDDY_BUCKETS;
        for (unsigned b = 0; b < REFSCAN_TEDDY_BUCKETS; b++)
                for (uint32_t i = set->bucket_first[b]; i < set->bucket_first[b + 1]; i++)
                        teddy_add(&set->teddy, b, &set->uniq[set->bucket[i].uniq]);
}

struct group_member {
        uint32_t id;
        uint32_t uniq;
};

static int member_cmp(const void *a, const void *b)
{
        const struct group_member *x = a, *y = b;

        return x->id != y->id ? (x->id < y->id ? -1 : 1)
                              : (x->uniq > y->uniq) - (x->uniq < y->uniq);
}

/* The pair table: each 1-byte needle c is a group (of the pairs (c, *)), and so is each distinct
 * first pair of the longer short needles, which also takes in the 1-byte needle of its first
 * byte, if any. Past REFSCAN_GROUPS_MAX groups, ids are shared: a group then just holds the
 * needles of several. k[0..nk) are (first pair, needle) of the short needles of length >= 2. */
static void build_groups(struct kiln_refscan_set *set, struct keyed *k, size_t nk)
{
        _cleanup_free_ struct group_member *mem =
            kiln_reallocarray(NULL, 2 * nk + 256, sizeof(*mem));
        uint8_t a_id[256] = {0};
        size_t nat = 0, nmem = 0;

        set->pair_group = kiln_calloc(65536, 1);
        for (unsigned c = 0; c < 256; c++) {
                if (!set->one[c])
                        continue;
                a_id[c] = nat++ % REFSCAN_GROUPS_MAX + 1;
                mem[nmem++] = (struct group_member){a_id[c], set->one[c] - 1};
                for (unsigned y = 0; y < 256; y++)
                        set->pair_group[c | y << 8] = a_id[c];
        }
        qsort(k, nk, sizeof(*k), keyed_cmp);
        for (size_t i = 0, j; i < nk; i = j) {
                uint32_t id = nat++ % REFSCAN_GROUPS_MAX + 1;
                unsigned c = k[i].key & 0xff;

                set->pair_group[k[i].key] = id;
                for (j = i; j < nk && k[j].key == k[i].key; j++)
                        mem[nmem++] = (struct group_member){id, k[j].e.uniq};
                if (set->one[c])
                        mem[nmem++] = (struct group_member){id, set->one[c] - 1};
        }

        qsort(mem, nmem, sizeof(*mem), member_cmp);
        set->group_ent =
            kiln_reallocarray(NULL, KILN_MAX(nmem, (size_t)1), sizeof(*set->group_ent));
        for (size_t i = 0, g = 0; g <= REFSCAN_GROUPS_MAX + 1; g++) {
                set->group_first[g] = i;
                for (; i < nmem && mem[i].id == g; i++)
                        set->group_ent[i] = short_ent(set, mem[i].uniq);
                if (g <= REFSCAN_GROUPS_MAX)
                        set->group_live[g] = g > 0 && set->group_first[g] < i;
        }
}

static void build_short(struct kiln_refscan_set *set)
{
        _cleanup_free_ struct keyed *k = NULL;
        size_t nshort = 0, nk = 0;

        for (size_t u = 0; u < set->n_uniq; u++)
                if (set->uniq[u].len < REFSCAN_LONG_MIN)
                        nshort++;
        if (nshort == 0)
                return;
        set->has_short = true;
        k = kiln_reallocarray(NULL, nshort, sizeof(*k));
        for (size_t u = 0; u < set->n_uniq; u++) {
                const uint8_t *p = set->uniq[u].p;

                if (set->uniq[u].len >= REFSCAN_LONG_MIN)
                        continue;
                if (set->uniq[u].len == 1)
                        set->one[p[0]] = u + 1;
                else
                        k[nk++] = (struct keyed){.key = p[0] | (unsigned)p[1] << 8,
                                                 .e = {.uniq = u, .off = 0}};
        }
        build_groups(set, k, nk);
        if (nshort <= REFSCAN_TEDDY_MAX) {
                set->use_teddy = true;
                build_teddy(set, nshort);
        }
}

static int needle_cmp(const void *a, const void *b, void *arg)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        const uint8_t *const *needles = ((const void *const *)arg)[0];
        const size_t *lens = ((const void *const *)arg)[1];
        int c = kiln_bytes_cmp(needles[x], lens[x], needles[y], lens[y]);

        /* Ties by index, so each run of equal needles starts at its lowest index. */
        return c ? c : x < y ? -1 : x > y;
}

int kiln_refscan_set_new(const uint8_t *const *needles, const size_t *lens, size_t n,
                         struct kiln_refscan_set **ret, struct kiln_error **err)
{
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_free_ uint32_t *order = NULL;
        const void *ctx[2] = {needles, lens};
        size_t total = 0, off = 0;

        /* Indices travel as uint32_t; REFSCAN_NONE is reserved. */
        if (n >= REFSCAN_NONE)
                return kiln_error_set(err, EINVAL, "too many needles: %zu", n);
        for (size_t i = 0; i < n; i++) {
                if (lens[i] == 0)
                        return kiln_error_set(err, EINVAL, "needle %zu is empty", i);
                if (lens[i] > UINT32_MAX || total + lens[i] < total)
                        return kiln_error_set(err, EINVAL, "needle %zu is too long", i);
                total += lens[i];
        }

        set = kiln_calloc(1, sizeof(*set));
        set->n = n;
        set->words = (n + 63) / 64;
        if (n == 0) {
                *ret = TAKE_PTR(set);
                return 0;
        }

        order = kiln_reallocarray(NULL, n, sizeof(*order));
        for (size_t i = 0; i < n; i++)
                order[i] = i;
        qsort_r(order, n, sizeof(*order), needle_cmp, ctx);

        set->next_dup = kiln_reallocarray(NULL, n, sizeof(*set->next_dup));
        set->uniq = kiln_reallocarray(NULL, n, sizeof(*set->uniq));
        total = 0;
        for (size_t i = 0, j; i < n; i = j) {
                uint32_t a = order[i];
                struct refscan_uniq *u = &set->uniq[set->n_uniq++];

                u->first_idx = a;
                u->len = lens[a];
                total += lens[a];
                set->max_len = KILN_MAX(set->max_len, lens[a]);
                for (j = i + 1; j < n && kiln_bytes_cmp(needles[a], lens[a], needles[order[j]],
                                                        lens[order[j]]) == 0;
                     j++)
                        set->next_dup[order[j - 1]] = order[j];
                set->next_dup[order[j - 1]] = REFSCAN_NONE;
        }
        /* Only one copy of each distinct needle is kept. */
        set->bytes = kiln_malloc(total);
        for (size_t u = 0; u < set->n_uniq; u++) {
                uint32_t a = set->uniq[u].first_idx;
                memcpy(set->bytes + off, needles[a], lens[a]);
                set->uniq[u].p = set->bytes + off;
                off += lens[a];
        }

        build_long(set);
        build_short(set);
        choose_kernel(set);
        *ret = TAKE_PTR(set);
        return 0;
}

void kiln_refscan_set_free(struct kiln_refscan_set *set)
{
        if (!set)
                return;
        free(set->uniq);
        free(set->next_dup);
        free(set->bytes);
        free(set->filter);
        htab_done(&set->ltab);
        free(set->pair_group);
        free(set->group_ent);
        free(set->bucket);
        free(set);
}

size_t kiln_refscan_set_count(const struct kiln_refscan_set *set)
{
        return set->n;
}

size_t kiln_refscan_set_max_len(const struct kiln_refscan_set *set)
{
        return set->max_len;
}

/* ---- results ----------------------------------------------------------------------------- */

struct kiln_refscan_result *kiln_refscan_result_new(const struct kiln_refscan_set *set)
{
        struct kiln_refscan_result *r =
            kiln_calloc(1, sizeof(*r) + set->words * sizeof(r->bits[0]));

        r->n = set->n;
        r->words = set->words;
        return r;
}

void kiln_refscan_result_free(struct kiln_refscan_result *r)
{
        free(r);
}

void kiln_refscan_result_clear(struct kiln_refscan_result *r)
{
        memset(r->bits, 0, r->words * sizeof(r->bits[0]));
}

bool kiln_refscan_result_test(const struct kiln_refscan_result *r, size_t idx)
{
        assert(idx < r->n);
        return refscan_seen(r, idx);
}

size_t kiln_refscan_result_count(const struct kiln_refscan_result *r)
{
        size_t c = 0;

        for (size_t i = 0; i < r->words; i++)
                c += __builtin_popcountll(__atomic_load_n(&r->bits[i], __ATOMIC_RELAXED));
        return c;
}

size_t kiln_refscan_result_list(const struct kiln_refscan_result *r, uint64_t **ret)
{
        size_t c = kiln_refscan_result_count(r), k = 0;
        uint64_t *list = NULL;

        if (c > 0) {
                list = kiln_reallocarray(NULL, c, sizeof(*list));
                /* Bounded by c even if (against the rules) marks still arrive. */
                for (size_t i = 0; i < r->words && k < c; i++)
                        for (uint64_t w = __atomic_load_n(&r->bits[i], __ATOMIC_RELAXED);
                             w && k < c; w &= w - 1)
                                list[k++] = i * 64 + __builtin_ctzll(w);
                c = k;
        }
        *ret = list;
        return c;
}

void kiln_refscan_result_merge(struct kiln_refscan_result *dst,
                               const struct kiln_refscan_result *src)
{
        assert(dst->n == src->n);
        for (size_t i = 0; i < src->words; i++)
                if (src->bits[i])
                        __atomic_fetch_or(&dst->bits[i], src->bits[i], __ATOMIC_RELAXED);
}

/* ---- scanning ---------------------------------------------------------------------------- */

static void short_state_init(struct refscan_short_state *st, const struct kiln_refscan_set *set)
{
        if (!set->has_short)
                return;
        if (set->use_teddy)
                st->masks = set->teddy;
        memcpy(st->live, set->group_live, sizeof(st->live));
}

void kiln_refscan_scan(const struct kiln_refscan_set *set, const void *data, size_t len,
                       struct kiln_refscan_result *r)
{
        struct refscan_short_state st;

        assert(r->n == set->n);
        if (set->n_uniq == 0)
                return;
        short_state_init(&st, set);
        set->scan_block(set, &st, data, len, r);
}

struct kiln_refscan_stream *kiln_refscan_stream_new(const struct kiln_refscan_set *set)
{
        size_t keep = set->max_len ? set->max_len - 1 : 0;
        struct kiln_refscan_stream *s = kiln_calloc(1, sizeof(*s) + 2 * keep);

        s->set = set;
        s->keep = keep;
        return s;
}

void kiln_refscan_stream_free(struct kiln_refscan_stream *s)
{
        free(s);
}

void kiln_refscan_stream_begin(struct kiln_refscan_stream *s, struct kiln_refscan_result *r)
{
        assert(r->n == s->set->n);
        s->r = r;
        s->clen = 0;
        /* What was pruned is only valid for the result it was pruned against. */
        short_state_init(&s->st, s->set);
}

void kiln_refscan_stream_feed(struct kiln_refscan_stream *s, const void *data, size_t len)
{
        const struct kiln_refscan_set *set = s->set;
        const uint8_t *p = data;
        size_t keep = s->keep;

        assert(s->r);
        if (len == 0 || set->n_uniq == 0)
                return;
        if (s->clen == 0 || keep == 0) {
                set->scan_block(set, &s->st, p, len, s->r);
                if (len >= keep) {
                        memcpy(s->buf, p + len - keep, keep);
                        s->clen = keep;
                } else {
                        memcpy(s->buf, p, len);
                        s->clen = len;
                }
                return;
        }

        /* A match crossing into this feed starts within the carry and ends within the first
         * keep new bytes: scan the two stitched together. When the feed is no longer than
         * keep, that window holds all of it; else the feed is scanned on its own as well. */
        size_t k = KILN_MIN(len, keep), total = s->clen + k;
        memcpy(s->buf + s->clen, p, k);
        set->scan_block(set, &s->st, s->buf, total, s->r);
        if (len > keep) {
                set->scan_block(set, &s->st, p, len, s->r);
                memcpy(s->buf, p + len - keep, keep);
                s->clen = keep;
        } else if (total > keep) {
                memmove(s->buf, s->buf + total - keep, keep);
                s->clen = keep;
        } else {
                s->clen = total;
        }
}

void kiln_refscan_stream_end(struct kiln_refscan_stream *s)
{
        s->r = NULL;
        s->clen = 0;
}
