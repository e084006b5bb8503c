/* BLAKE3 kernel selection.
 *
 * What the CPU offers is probed once (cpuid, plus xgetbv to be sure the OS saves YMM/ZMM
 * state; a CPU with AVX2 under an OS that does not is not fit for AVX2) and cached. A level
 * is usable when the build has its kernel (meson options blake3_sse41/avx2/avx512 define
 * KILN_BLAKE3_HAVE_<ISA>) and the CPU supports it.
 *
 * The level in use is chosen on first use: KILN_BLAKE3_SIMD if it names a usable level,
 * otherwise the best usable one. A name that is unknown, or a level this CPU or build
 * cannot run, silently means "best": the variable is a tuning knob, and a library does not
 * print. kiln_blake3_force_level() overrides both, and fails with -ENOTSUP instead.
 *
 * The choice is one atomic pointer to a static table, so concurrent first uses race only to
 * store the same value. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "blake3_impl.h"

enum {
        FEATURE_SSE41 = 1 << 0,
        FEATURE_AVX2 = 1 << 1,
        FEATURE_AVX512 = 1 << 2, /* AVX512F and AVX512VL */
        FEATURES_PROBED = 1 << 30,
};

static const char *const level_names[] = {
        [KILN_BLAKE3_PORTABLE] = "portable",
        [KILN_BLAKE3_SSE41] = "sse41",
        [KILN_BLAKE3_AVX2] = "avx2",
        [KILN_BLAKE3_AVX512] = "avx512",
};

/* Singles go through the best compress the build has: AVX2 brings none of its own. */
#ifdef KILN_BLAKE3_HAVE_SSE41
#define COMPRESS_BELOW_AVX512 kiln_blake3_compress_sse41
#else
#define COMPRESS_BELOW_AVX512 kiln_blake3_compress_portable
#endif

static const struct kiln_blake3_ops portable_ops = {
        .level = KILN_BLAKE3_PORTABLE,
        .degree = 1,
        .compress = kiln_blake3_compress_portable,
        .hash_many = kiln_blake3_hash_many_portable,
};

#ifdef KILN_BLAKE3_HAVE_SSE41
static const struct kiln_blake3_ops sse41_ops = {
        .level = KILN_BLAKE3_SSE41,
        .degree = 4,
        .compress = kiln_blake3_compress_sse41,
        .hash_many = kiln_blake3_hash_many_sse41,
};
#endif

#ifdef KILN_BLAKE3_HAVE_AVX2
static const struct kiln_blake3_ops avx2_ops = {
        .level = KILN_BLAKE3_AVX2,
        .degree = 8,
        .compress = COMPRESS_BELOW_AVX512,
        .hash_many = kiln_blake3_hash_many_avx2,
};
#endif

#ifdef KILN_BLAKE3_HAVE_AVX512
static const struct kiln_blake3_ops avx512_ops = {
        .level = KILN_BLAKE3_AVX512,
        .degree = 16,
        .compress = kiln_blake3_compress_avx512,
        .hash_many = kiln_blake3_hash_many_avx512,
};
#endif

/* NULL where the build left a kernel out. */
static const struct kiln_blake3_ops *const level_ops[KILN_BLAKE3_LEVEL_MAX + 1] = {
        [KILN_BLAKE3_PORTABLE] = &portable_ops,
#ifdef KILN_BLAKE3_HAVE_SSE41
        [KILN_BLAKE3_SSE41] = &sse41_ops,
#endif
#ifdef KILN_BLAKE3_HAVE_AVX2
        [KILN_BLAKE3_AVX2] = &avx2_ops,
#endif
#ifdef KILN_BLAKE3_HAVE_AVX512
        [KILN_BLAKE3_AVX512] = &avx512_ops,
#endif
};

static unsigned cached_features;
static const struct kiln_blake3_ops *active;

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void)
{
        uint32_t lo, hi;

        /* Raw opcode users need no -mxsave; only reached when CPUID says OSXSAVE. */
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        return ((uint64_t)hi << 32) | lo;
}

static unsigned probe_features(void)
{
        unsigned a, b, c, d, features = 0;
        uint64_t xcr0 = 0;

        if (!__get_cpuid(1, &a, &b, &c, &d))
                return 0;
        if (c & bit_SSE4_1)
                features |= FEATURE_SSE41;
        if (c & bit_OSXSAVE)
                xcr0 = xgetbv0();
        /* XCR0 bits: 1 SSE, 2 AVX (YMM upper halves), 5-7 opmask and ZMM state. */
        if ((xcr0 & 0x06) != 0x06)
                return features;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
                return features;
        if (b & bit_AVX2)
                features |= FEATURE_AVX2;
        if ((xcr0 & 0xE0) == 0xE0 && (b & bit_AVX512F) && (b & bit_AVX512VL))
                features |= FEATURE_AVX512;
        return features;
}
#else
static unsigned probe_features(void)
{
        return 0;
}
#endif

static unsigned features(void)
{
        unsigned f = __atomic_load_n(&cached_features, __ATOMIC_RELAXED);

        if (!(f & FEATURES_PROBED)) {
                f = probe_features() | FEATURES_PROBED;
                __atomic_store_n(&cached_features, f, __ATOMIC_RELAXED);
        }
        return f;
}

static bool cpu_has(enum kiln_blake3_level level)
{
        static const unsigned needs[] = {
                [KILN_BLAKE3_PORTABLE] = 0,
                [KILN_BLAKE3_SSE41] = FEATURE_SSE41,
                [KILN_BLAKE3_AVX2] = FEATURE_AVX2,
                [KILN_BLAKE3_AVX512] = FEATURE_AVX512,
        };

        return (features() & needs[level]) == needs[level];
}

bool kiln_blake3_level_built(enum kiln_blake3_level level)
{
        return (unsigned)level <= KILN_BLAKE3_LEVEL_MAX && level_ops[level];
}

const struct kiln_blake3_ops *kiln_blake3_ops_for_level(enum kiln_blake3_level level)
{
        if (!kiln_blake3_level_built(level) || !cpu_has(level))
                return NULL;
        return level_ops[level];
}

enum kiln_blake3_level kiln_blake3_level_supported(void)
{
        for (int l = KILN_BLAKE3_LEVEL_MAX; l > KILN_BLAKE3_PORTABLE; l--)
                if (kiln_blake3_ops_for_level((enum kiln_blake3_level)l))
                        return (enum kiln_blake3_level)l;
        return KILN_BLAKE3_PORTABLE;
}

static const struct kiln_blake3_ops *select_ops(void)
{
        const char *want = getenv("KILN_BLAKE3_SIMD");
        enum kiln_blake3_level level;

        if (want && kiln_blake3_level_from_name(want, &level) == 0) {
                const struct kiln_blake3_ops *ops = kiln_blake3_ops_for_level(level);
                if (ops)
                        return ops;
        }
        return kiln_blake3_ops_for_level(kiln_blake3_level_supported());
}

const struct kiln_blake3_ops *kiln_blake3_ops_current(void)
{
        const struct kiln_blake3_ops *ops = __atomic_load_n(&active, __ATOMIC_ACQUIRE);

        if (_unlikely_(!ops)) {
                ops = select_ops();
                __atomic_store_n(&active, ops, __ATOMIC_RELEASE);
        }
        return ops;
}

void kiln_blake3_ops_set(const struct kiln_blake3_ops *ops)
{
        __atomic_store_n(&active, ops, __ATOMIC_RELEASE);
}

enum kiln_blake3_level kiln_blake3_level(void)
{
        return kiln_blake3_ops_current()->level;
}

int kiln_blake3_force_level(enum kiln_blake3_level level)
{
        const struct kiln_blake3_ops *ops;

        if ((unsigned)level > KILN_BLAKE3_LEVEL_MAX)
                return -EINVAL;
        ops = kiln_blake3_ops_for_level(level);
        if (!ops)
                return -ENOTSUP;
        kiln_blake3_ops_set(ops);
        return 0;
}

const char *kiln_blake3_level_name(enum kiln_blake3_level level)
{
        if ((unsigned)level > KILN_BLAKE3_LEVEL_MAX)
                return "unknown";
        return level_names[level];
}

int kiln_blake3_level_from_name(const char *name, enum kiln_blake3_level *ret)
{
        for (size_t l = 0; l < KILN_ARRAY_SIZE(level_names); l++)
                if (!strcmp(name, level_names[l])) {
                        *ret = (enum kiln_blake3_level)l;
                        return 0;
                }
        return -EINVAL;
}
