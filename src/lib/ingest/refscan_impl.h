/* Reference scanner internals shared by the portable code (refscan.c) and the per-ISA scan
 * kernels (refscan_<isa>.c, each compiled with its own -m flags). See refscan.c for the
 * design. Everything here is static inline so each kernel gets its own specialised copy. */
#pragma once

#include <kiln/ingest/refscan.h>

/* Needles shorter than this take the short path. 8 keeps the long path at one probe per 5 or
 * more bytes (m = 8, w = 4) while the short path sees only lengths 1..7. */
#define REFSCAN_LONG_MIN 8
/* Bytes of each short needle the nibble-mask prefilter looks at (fewer: wildcards). */
#define REFSCAN_TEDDY_F 4
/* Buckets of the nibble-mask prefilter: bits of a byte. */
#define REFSCAN_TEDDY_BUCKETS 8
/* Above this many short needles the buckets grow too crowded to filter; the pair table,
 * which does not care, is used instead. */
#define REFSCAN_TEDDY_MAX 32
#define REFSCAN_HASH_MUL  UINT64_C(0x9E3779B97F4A7C15)
#define REFSCAN_NONE      UINT32_MAX

struct refscan_hslot {
        uint64_t key;   /* the window (zero-extended) */
        uint32_t first; /* its entries: ents[first .. first + count) */
        uint32_t count; /* 0: empty slot */
};

struct refscan_hent {
        uint32_t uniq; /* unique needle */
        uint32_t off;  /* offset of the window (long) or 0 (short) */
};

/* Exact map from window to entries, with linear probing at load <= 1/2. */
struct refscan_htab {
        unsigned shift; /* slot = (key * REFSCAN_HASH_MUL) >> shift */
        size_t mask;
        struct refscan_hslot *slots;
        struct refscan_hent *ents;
};

/* A short needle as an 8-byte word: it is at p when (load64(p) & mask) == val. */
struct refscan_short_ent {
        uint64_t val;
        uint64_t mask;
        uint32_t uniq;
        uint32_t len;
};

struct refscan_uniq {
        const uint8_t *p;
        size_t len;
        uint32_t first_idx; /* lowest index with these bytes; others via next_dup */
};

/* Nibble masks of the short-needle prefilter: byte j of a candidate, split into its low and
 * high nibble, selects in lo[j] and hi[j] the buckets whose needles allow it there. Copied
 * into each stream, which drops found needles from it (see refscan_teddy_prune). */
struct refscan_teddy {
        uint8_t lo[REFSCAN_TEDDY_F][16];
        uint8_t hi[REFSCAN_TEDDY_F][16];
};

/* Groups of the pair table: ids 1..REFSCAN_GROUPS_MAX; 0 means no short needle starts there. */
#define REFSCAN_GROUPS_MAX 255

/* What a stream (or a one-shot scan) learns about the short needles of its result: found ones
 * leave the prefilters, so that needles occurring everywhere stop costing. */
struct refscan_short_state {
        struct refscan_teddy masks;
        uint8_t live[REFSCAN_GROUPS_MAX + 1]; /* pair-table groups with needles not yet found */
};

struct kiln_refscan_set {
        size_t n;       /* needles as given */
        size_t n_uniq;  /* distinct needles */
        size_t max_len; /* L */
        size_t words;   /* uint64_t words in a result */
        struct refscan_uniq *uniq;
        uint32_t *next_dup; /* per index: the next index with equal bytes, or REFSCAN_NONE */
        uint8_t *bytes;     /* storage of the unique needles */
        /* the kernel of the level chosen when the set was compiled */
        void (*scan_block)(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                           const uint8_t *p, size_t n, struct kiln_refscan_result *r);

        /* long needles: sampled hashing */
        bool has_long;
        unsigned w;      /* window width: 4 or 8 */
        size_t m;        /* shortest long needle */
        size_t stride;   /* s */
        unsigned fshift; /* filter word = (key * REFSCAN_HASH_MUL) >> fshift */
        uint64_t *filter;
        struct refscan_htab ltab;

        /* short needles */
        bool has_short;
        bool use_teddy;      /* prefilter with the nibble masks, not the pair table */
        uint32_t one[256];   /* 1-byte needle c: its unique id + 1, or 0 */
        uint8_t *pair_group; /* 65536: group of the needles that may start with b0 | b1 << 8 */
        /* group g holds group_ent[group_first[g] .. group_first[g + 1]) */
        uint32_t group_first[REFSCAN_GROUPS_MAX + 2];
        struct refscan_short_ent *group_ent;
        uint8_t group_live[REFSCAN_GROUPS_MAX + 1]; /* groups in use: a stream's initial live[] */
        struct refscan_teddy teddy;
        /* bucket b holds bucket[bucket_first[b] .. bucket_first[b + 1]) */
        uint32_t bucket_first[REFSCAN_TEDDY_BUCKETS + 1];
        struct refscan_short_ent *bucket;
};

struct kiln_refscan_result {
        size_t n;
        size_t words;
        uint64_t bits[];
};

/* Block kernels: find every match lying wholly inside p[0..n). */
void kiln_refscan_block_portable(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                                 const uint8_t *p, size_t n, struct kiln_refscan_result *r);
void kiln_refscan_block_avx2(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                             const uint8_t *p, size_t n, struct kiln_refscan_result *r);
/* Rebuilds bucket b of st's masks from the needles of b not yet in r. */
void kiln_refscan_teddy_prune(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                              unsigned b, const struct kiln_refscan_result *r);
/* The short-needle pair-table scan (portable). */
void kiln_refscan_short_pairs(const struct kiln_refscan_set *set, struct refscan_short_state *st,
                              const uint8_t *p, size_t n, struct kiln_refscan_result *r);

static inline uint64_t refscan_load64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint64_t refscan_load32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static inline uint64_t refscan_load_w(const uint8_t *p, unsigned w)
{
        return w == 8 ? refscan_load64(p) : refscan_load32(p);
}

static inline bool refscan_seen(const struct kiln_refscan_result *r, uint32_t idx)
{
        return (__atomic_load_n(&r->bits[idx / 64], __ATOMIC_RELAXED) >> (idx % 64)) & 1;
}

/* Marks every index of unique needle u. Rare: found needles are not verified again. */
static inline void refscan_mark(const struct kiln_refscan_set *set, uint32_t u,
                                struct kiln_refscan_result *r)
{
        for (uint32_t i = set->uniq[u].first_idx; i != REFSCAN_NONE; i = set->next_dup[i])
                __atomic_fetch_or(&r->bits[i / 64], UINT64_C(1) << (i % 64), __ATOMIC_RELAXED);
}

/* Unique needle u at p[q..] within a block of n bytes (q < n)? Marks it if so. Returns
 * whether u is now known to be in r, found here or before. */
static inline bool refscan_verify(const struct kiln_refscan_set *set, uint32_t u, const uint8_t *p,
                                  size_t n, size_t q, struct kiln_refscan_result *r)
{
        const struct refscan_uniq *nd = &set->uniq[u];

        if (refscan_seen(r, nd->first_idx))
                return true;
        if (nd->len > n - q || memcmp(p + q, nd->p, nd->len) != 0)
                return false;
        refscan_mark(set, u, r);
        return true;
}

/* The 8 bytes at p, zero-padded past the block's end when fewer than 8 remain. */
static inline uint64_t refscan_window(const uint8_t *p, size_t left)
{
        uint64_t win = 0;

        if (left >= 8)
                return refscan_load64(p);
        memcpy(&win, p, left);
        return win;
}

/* Whether short needle e starts at a position with `left` bytes to the block's end, whose
 * window is win. The length check keeps padding from matching. */
static inline bool refscan_short_match(const struct refscan_short_ent *e, uint64_t win, size_t left)
{
        return (win & e->mask) == e->val && e->len <= left;
}

static inline const struct refscan_hslot *refscan_htab_find(const struct refscan_htab *t,
                                                            uint64_t key)
{
        for (size_t i = (key * REFSCAN_HASH_MUL) >> t->shift;; i = (i + 1) & t->mask) {
                const struct refscan_hslot *sl = &t->slots[i];
                if (sl->count == 0)
                        return NULL;
                if (sl->key == key)
                        return sl;
        }
}

/* A one-bit-per-key Bloom filter addressed as words: the top hash bits pick the word, fixed
 * lower ones the bit. The scan loop is ALU-bound, and one bit costs half the operations of two
 * while a roomy filter (REFSCAN_FILTER_BITS_PER_KEY) keeps false hits near 1%. The bit comes
 * from hash bits below those of the word index, which uses at most
 * REFSCAN_FILTER_WORD_BITS_MAX top bits. */
#define REFSCAN_FILTER_WORD_BITS_MAX 14
#define REFSCAN_FILTER_BIT_SHIFT     40

static inline uint64_t refscan_filter_mask(uint64_t h)
{
        return UINT64_C(1) << ((h >> REFSCAN_FILTER_BIT_SHIFT) % 64);
}

/* Bit 0 of the result: whether the filter passes key. (The other bits are garbage; callers OR
 * several probes together and test bit 0 once.) */
static inline uint64_t refscan_filter_bits(const uint64_t *filter, unsigned fshift, uint64_t key)
{
        uint64_t h = key * REFSCAN_HASH_MUL;
        /* A rotation rather than a shift: one flag-free rorx with BMI2, and only the low six
         * bits of a shift count matter. */
        uint64_t c = h >> REFSCAN_FILTER_BIT_SHIFT | h << (64 - REFSCAN_FILTER_BIT_SHIFT);

        return filter[h >> fshift] >> (c % 64);
}

static inline bool refscan_filter_hit(const uint64_t *filter, unsigned fshift, uint64_t key)
{
        return refscan_filter_bits(filter, fshift, key) & 1;
}

/* A probe at pos passed the filter: check the needles having that window. Cold. */
static __attribute__((noinline, unused)) void
refscan_long_candidate(const struct kiln_refscan_set *set, const uint8_t *p, size_t n, size_t pos,
                       struct kiln_refscan_result *r)
{
        const struct refscan_hslot *sl =
            refscan_htab_find(&set->ltab, refscan_load_w(p + pos, set->w));

        if (!sl)
                return;
        for (uint32_t i = sl->first; i < sl->first + sl->count; i++) {
                const struct refscan_hent *e = &set->ltab.ents[i];
                if (e->off <= pos)
                        refscan_verify(set, e->uniq, p, n, pos - e->off, r);
        }
}

/* The sampled scan of the long needles, specialised by window width so that loads are
 * constants. */
static inline __attribute__((always_inline)) void
refscan_long_scan_w(const struct kiln_refscan_set *set, const uint8_t *p, size_t n,
                    struct kiln_refscan_result *r, const unsigned w)
{
        const size_t s = set->stride;
        const uint64_t *filter = set->filter;
        const unsigned fshift = set->fshift;
        size_t pos = 0, last;

        if (n < set->m)
                return;
        /* A match of length >= m starting at q contains the probe at the multiple of s in
         * [q, q + s), which ends by q + s - 1 + w <= q + m: so probes never read past n. */
        last = n - w;
        /* Four independent probes per round, so their cache misses overlap and the rare
         * filter hit costs one branch; the hit is recomputed probe by probe then. */
        if (last >= 3 * s) {
                const size_t s2 = 2 * s, s3 = 3 * s, s4 = 4 * s;

                for (; pos <= last - s3; pos += s4) {
                        const uint8_t *q = p + pos;
                        uint64_t hit =
                            refscan_filter_bits(filter, fshift, refscan_load_w(q, w)) |
                            refscan_filter_bits(filter, fshift, refscan_load_w(q + s, w)) |
                            refscan_filter_bits(filter, fshift, refscan_load_w(q + s2, w)) |
                            refscan_filter_bits(filter, fshift, refscan_load_w(q + s3, w));
                        if (_unlikely_(hit & 1))
                                for (size_t j = pos; j < pos + s4; j += s)
                                        if (refscan_filter_hit(filter, fshift,
                                                               refscan_load_w(p + j, w)))
                                                refscan_long_candidate(set, p, n, j, r);
                }
        }
        for (; pos <= last; pos += s)
                if (refscan_filter_hit(filter, fshift, refscan_load_w(p + pos, w)))
                        refscan_long_candidate(set, p, n, pos, r);
}

static inline __attribute__((always_inline)) void
refscan_long_scan(const struct kiln_refscan_set *set, const uint8_t *p, size_t n,
                  struct kiln_refscan_result *r)
{
        if (set->w == 8)
                refscan_long_scan_w(set, p, n, r, 8);
        else
                refscan_long_scan_w(set, p, n, r, 4);
}
