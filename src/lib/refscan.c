/* Multi-needle substring search for reference scanning.
 *
 * Nix hands us hundreds of 32-byte needles, and scanning runs in the same pass as BLAKE3, so it
 * must cost far less than a byte-at-a-time automaton. Needles are split by length:
 *
 * - Long needles (>= LONG_MIN bytes) use sampled hashing. Let m be the shortest long needle
 *   and w the window width (8 bytes, or 4 when m < 16). Any match of a needle of length >= m
 *   covers s = m - w + 1 consecutive window starts, so one of them is a multiple of s. The set
 *   holds, for every long needle and every offset 0..s-1, the w-byte window at that offset; the
 *   scan hashes only the windows at positions 0, s, 2s, ... (one probe per 25 bytes for 32-byte
 *   needles). A bitmap filter that fits the L1/L2 cache rejects almost every probe; survivors
 *   look up their exact window in an open-addressing table and memcmp the needle at the implied
 *   start.
 * - Short needles (< LONG_MIN bytes) are rare in practice and are found position by position:
 *   a 64 Kibit bitmap of their first two bytes (a 1-byte needle c sets every pair (c, *)), then
 *   the same kind of table keyed by those two bytes.
 *
 * Either engine scans one contiguous block and finds exactly the matches lying wholly inside
 * it. A stream keeps the last L-1 bytes (L = longest needle) and on each feed also scans that
 * carry stitched to the first L-1 new bytes, which contains every match crossing the boundary;
 * since a result is a set, finding a match twice is harmless.
 *
 * Equal needles are compiled once ("unique" needles); a match marks all their indices. */
#include <kiln/refscan.h>

#include <assert.h>

/* Needles shorter than this take the short path. 8 keeps the long path at one probe per 5 or
 * more bytes (m = 8, w = 4) while the short path sees only lengths 1..7. */
#define LONG_MIN 8
/* More offsets per needle mean fewer probes but a fuller filter; past this the gain is nil. */
#define STRIDE_MAX 64
/* Bound on table entries (long needles x stride): the stride shrinks to stay under it. */
#define ENTRIES_MAX (1u << 22)
#define HASH_MUL    UINT64_C(0x9E3779B97F4A7C15)
#define NONE        UINT32_MAX

struct hslot {
        uint64_t key;   /* the window (zero-extended) */
        uint32_t first; /* its entries: ents[first .. first + count) */
        uint32_t count; /* 0: empty slot */
};

struct hent {
        uint32_t uniq; /* unique needle */
        uint32_t off;  /* offset of the window inside the needle */
};

/* Exact map from window to entries, with linear probing at load <= 1/2. */
struct htab {
        unsigned shift; /* slot = (key * HASH_MUL) >> shift */
        size_t mask;
        struct hslot *slots;
        struct hent *ents;
};

struct uniq {
        const uint8_t *p;
        size_t len;
        uint32_t first_idx; /* lowest index with these bytes; others via next_dup */
};

struct kiln_refscan_set {
        size_t n;       /* needles as given */
        size_t n_uniq;  /* distinct needles */
        size_t max_len; /* L */
        size_t words;   /* uint64_t words in a result */
        struct uniq *uniq;
        uint32_t *next_dup; /* per index: the next index with equal bytes, or NONE */
        uint8_t *bytes;     /* storage of the unique needles */

        bool has_long;
        unsigned w;    /* window width: 4 or 8 */
        size_t m;      /* shortest long needle */
        size_t stride; /* s */
        unsigned fshift; /* filter bit = (key * HASH_MUL) >> fshift */
        uint64_t *filter;
        struct htab ltab;

        bool has_short;
        uint32_t one[256]; /* 1-byte needle c: its unique id + 1, or 0 */
        uint64_t *pairs;   /* 65536-bit filter over the first two bytes */
        struct htab stab;  /* first two bytes (b0 | b1 << 8) -> short needles of length >= 2 */
};

struct kiln_refscan_result {
        size_t n;
        size_t words;
        uint64_t bits[];
};

struct kiln_refscan_stream {
        const struct kiln_refscan_set *set;
        struct kiln_refscan_result *r;
        size_t keep; /* L - 1 */
        size_t clen; /* carry bytes at the start of buf */
        uint8_t buf[]; /* 2 * keep: carry, then the first new bytes while stitching */
};

/* ---- matching ---------------------------------------------------------------------------- */

static inline uint64_t load64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint64_t load32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint64_t load_w(const uint8_t *p, unsigned w)
{
        return w == 8 ? load64(p) : load32(p);
}

static inline bool seen(const struct kiln_refscan_result *r, uint32_t idx)
{
        return (__atomic_load_n(&r->bits[idx / 64], __ATOMIC_RELAXED) >> (idx % 64)) & 1;
}

/* Cold: runs once per needle and output in practice, since found needles are skipped. */
static void mark(const struct kiln_refscan_set *set, uint32_t u, struct kiln_refscan_result *r)
{
        for (uint32_t i = set->uniq[u].first_idx; i != NONE; i = set->next_dup[i])
                __atomic_fetch_or(&r->bits[i / 64], UINT64_C(1) << (i % 64), __ATOMIC_RELAXED);
}

/* Unique needle u at p[q..] within a block of n bytes? */
static inline void verify(const struct kiln_refscan_set *set, uint32_t u, const uint8_t *p,
                          size_t n, size_t q, struct kiln_refscan_result *r)
{
        const struct uniq *nd = &set->uniq[u];

        if (nd->len > n - q || seen(r, nd->first_idx))
                return;
        if (memcmp(p + q, nd->p, nd->len) == 0)
                mark(set, u, r);
}

static const struct hslot *htab_find(const struct htab *t, uint64_t key)
{
        for (size_t i = (key * HASH_MUL) >> t->shift;; i = (i + 1) & t->mask) {
                const struct hslot *sl = &t->slots[i];
                if (sl->count == 0)
                        return NULL;
                if (sl->key == key)
                        return sl;
        }
}

/* A probe at pos passed the filter: check the needles having that window. */
static __attribute__((noinline)) void long_candidate(const struct kiln_refscan_set *set,
                                                     const uint8_t *p, size_t n, size_t pos,
                                                     struct kiln_refscan_result *r)
{
        const struct hslot *sl = htab_find(&set->ltab, load_w(p + pos, set->w));

        if (!sl)
                return;
        for (uint32_t i = sl->first; i < sl->first + sl->count; i++) {
                const struct hent *e = &set->ltab.ents[i];
                if (e->off <= pos)
                        verify(set, e->uniq, p, n, pos - e->off, r);
        }
}

static inline bool filter_hit(const uint64_t *filter, unsigned fshift, uint64_t key)
{
        uint64_t b = (key * HASH_MUL) >> fshift;
        return (filter[b / 64] >> (b % 64)) & 1;
}

/* The sampled scan, specialised by window width so loads and shifts are constants. */
static inline __attribute__((always_inline)) void long_scan(const struct kiln_refscan_set *set,
                                                            const uint8_t *p, size_t n,
                                                            struct kiln_refscan_result *r,
                                                            const unsigned w)
{
        const size_t s = set->stride;
        const uint64_t *filter = set->filter;
        const unsigned fshift = set->fshift;
        size_t pos = 0, last;

        if (n < set->m)
                return;
        /* Probes start at pos <= last; the match a probe finds lies within m >= w + s - 1
         * bytes from its start, so the probes stop early enough to stay in bounds. */
        last = n - w;
        /* Four independent probes per round, so their cache misses overlap and the rare
         * filter hit costs one branch. */
        if (last >= 3 * s) {
                for (; pos <= last - 3 * s; pos += 4 * s) {
                        unsigned hit = filter_hit(filter, fshift, load_w(p + pos, w)) |
                                       filter_hit(filter, fshift, load_w(p + pos + s, w)) << 1 |
                                       filter_hit(filter, fshift, load_w(p + pos + 2 * s, w)) << 2 |
                                       filter_hit(filter, fshift, load_w(p + pos + 3 * s, w)) << 3;
                        if (_unlikely_(hit))
                                for (unsigned j = 0; j < 4; j++)
                                        if (hit & (1u << j))
                                                long_candidate(set, p, n, pos + j * s, r);
                }
        }
        for (; pos <= last; pos += s)
                if (filter_hit(filter, fshift, load_w(p + pos, w)))
                        long_candidate(set, p, n, pos, r);
}

static __attribute__((noinline)) void short_candidate(const struct kiln_refscan_set *set,
                                                      const uint8_t *p, size_t n, size_t pos,
                                                      struct kiln_refscan_result *r)
{
        uint32_t one = set->one[p[pos]];
        const struct hslot *sl;

        if (one)
                verify(set, one - 1, p, n, pos, r);
        if (pos + 1 >= n)
                return;
        sl = htab_find(&set->stab, p[pos] | (uint64_t)p[pos + 1] << 8);
        if (!sl)
                return;
        for (uint32_t i = sl->first; i < sl->first + sl->count; i++)
                verify(set, set->stab.ents[i].uniq, p, n, pos, r);
}

static inline bool pair_hit(const uint64_t *pairs, const uint8_t *p)
{
        unsigned x = p[0] | (unsigned)p[1] << 8;
        return (pairs[x / 64] >> (x % 64)) & 1;
}

static void short_scan(const struct kiln_refscan_set *set, const uint8_t *p, size_t n,
                       struct kiln_refscan_result *r)
{
        const uint64_t *pairs = set->pairs;
        size_t pos = 0;

        if (n == 0)
                return;
        for (; pos + 8 < n; pos += 8) {
                unsigned hit = 0;
                for (unsigned j = 0; j < 8; j++)
                        hit |= (unsigned)pair_hit(pairs, p + pos + j) << j;
                if (_unlikely_(hit))
                        for (unsigned j = 0; j < 8; j++)
                                if (hit & (1u << j))
                                        short_candidate(set, p, n, pos + j, r);
        }
        for (; pos + 1 < n; pos++)
                if (pair_hit(pairs, p + pos))
                        short_candidate(set, p, n, pos, r);
        /* The last byte starts no pair; only a 1-byte needle can match there. */
        if (set->one[p[n - 1]])
                verify(set, set->one[p[n - 1]] - 1, p, n, n - 1, r);
}

/* Finds every match lying wholly inside p[0..n). */
static void scan_block(const struct kiln_refscan_set *set, const uint8_t *p, size_t n,
                       struct kiln_refscan_result *r)
{
        if (set->has_long) {
                if (set->w == 8)
                        long_scan(set, p, n, r, 8);
                else
                        long_scan(set, p, n, r, 4);
        }
        if (set->has_short)
                short_scan(set, p, n, r);
}

/* ---- compiling a set --------------------------------------------------------------------- */

struct keyed {
        uint64_t key;
        struct hent e;
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
static size_t htab_build(struct htab *t, struct keyed *k, size_t nk)
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
                struct hslot *sl;
                size_t h = (k[i].key * HASH_MUL) >> t->shift;

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

static void htab_done(struct htab *t)
{
        free(t->slots);
        free(t->ents);
}

static void build_long(struct kiln_refscan_set *set)
{
        _cleanup_free_ struct keyed *k = NULL;
        size_t nlong = 0, nk = 0, distinct, fbits_n;
        unsigned fbits;

        set->m = SIZE_MAX;
        for (size_t u = 0; u < set->n_uniq; u++)
                if (set->uniq[u].len >= LONG_MIN) {
                        set->m = KILN_MIN(set->m, set->uniq[u].len);
                        nlong++;
                }
        if (nlong == 0)
                return;
        set->has_long = true;
        set->w = set->m >= 16 ? 8 : 4;
        set->stride = KILN_MIN(set->m - set->w + 1, (size_t)STRIDE_MAX);
        while (set->stride > 1 && nlong * set->stride > ENTRIES_MAX)
                set->stride /= 2;

        k = kiln_reallocarray(NULL, nlong * set->stride, sizeof(*k));
        for (size_t u = 0; u < set->n_uniq; u++) {
                if (set->uniq[u].len < LONG_MIN)
                        continue;
                for (size_t off = 0; off < set->stride; off++)
                        k[nk++] = (struct keyed){
                                .key = load_w(set->uniq[u].p + off, set->w),
                                .e = {.uniq = u, .off = off},
                        };
        }
        distinct = htab_build(&set->ltab, k, nk);

        /* ~32 filter bits per key: about 3% of probes pass by collision, and the filter stays
         * within 64 KiB (L2-resident even at thousands of needles). */
        fbits = log2_ceil(32 * distinct);
        fbits = KILN_MAX(fbits, 12u);
        fbits = KILN_MIN(fbits, 19u);
        fbits_n = (size_t)1 << fbits;
        set->fshift = 64 - fbits;
        set->filter = kiln_calloc(fbits_n / 64, sizeof(uint64_t));
        for (size_t i = 0; i < nk; i++) {
                uint64_t b = (k[i].key * HASH_MUL) >> set->fshift;
                set->filter[b / 64] |= UINT64_C(1) << (b % 64);
        }
}

static void build_short(struct kiln_refscan_set *set)
{
        _cleanup_free_ struct keyed *k = NULL;
        size_t nk = 0;

        for (size_t u = 0; u < set->n_uniq; u++)
                if (set->uniq[u].len < LONG_MIN)
                        nk++;
        if (nk == 0)
                return;
        set->has_short = true;
        set->pairs = kiln_calloc(65536 / 64, sizeof(uint64_t));
        k = kiln_reallocarray(NULL, nk, sizeof(*k));
        nk = 0;
        for (size_t u = 0; u < set->n_uniq; u++) {
                const uint8_t *p = set->uniq[u].p;

                if (set->uniq[u].len >= LONG_MIN)
                        continue;
                if (set->uniq[u].len == 1) {
                        set->one[p[0]] = u + 1;
                        for (unsigned y = 0; y < 256; y++) {
                                unsigned x = p[0] | y << 8;
                                set->pairs[x / 64] |= UINT64_C(1) << (x % 64);
                        }
                        continue;
                }
                unsigned x = p[0] | (unsigned)p[1] << 8;
                set->pairs[x / 64] |= UINT64_C(1) << (x % 64);
                k[nk++] = (struct keyed){.key = x, .e = {.uniq = u, .off = 0}};
        }
        htab_build(&set->stab, k, nk);
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

        /* Indices travel as uint32_t; NONE is reserved. */
        if (n >= NONE)
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
                struct uniq *u = &set->uniq[set->n_uniq++];

                u->first_idx = a;
                u->len = lens[a];
                total += lens[a];
                set->max_len = KILN_MAX(set->max_len, lens[a]);
                for (j = i + 1; j < n && kiln_bytes_cmp(needles[a], lens[a], needles[order[j]],
                                                        lens[order[j]]) == 0;
                     j++)
                        set->next_dup[order[j - 1]] = order[j];
                set->next_dup[order[j - 1]] = NONE;
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
        free(set->pairs);
        htab_done(&set->stab);
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
        return seen(r, idx);
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
                for (size_t i = 0; i < r->words; i++)
                        for (uint64_t w = __atomic_load_n(&r->bits[i], __ATOMIC_RELAXED); w;
                             w &= w - 1)
                                list[k++] = i * 64 + __builtin_ctzll(w);
                assert(k == c);
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

void kiln_refscan_scan(const struct kiln_refscan_set *set, const void *data, size_t len,
                       struct kiln_refscan_result *r)
{
        assert(r->n == set->n);
        if (set->n_uniq > 0)
                scan_block(set, data, len, r);
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
}

void kiln_refscan_stream_feed(struct kiln_refscan_stream *s, const void *data, size_t len)
{
        const uint8_t *p = data;
        size_t keep = s->keep;

        assert(s->r);
        if (len == 0 || s->set->n_uniq == 0)
                return;
        if (s->clen == 0 || keep == 0) {
                scan_block(s->set, p, len, s->r);
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
        scan_block(s->set, s->buf, total, s->r);
        if (len > keep) {
                scan_block(s->set, p, len, s->r);
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
