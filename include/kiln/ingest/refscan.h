/* Reference scanning: which of a list of needles (non-empty byte strings) occur as substrings
 * anywhere in a build output. Every occurrence counts, overlapping ones included, whatever the
 * needle lengths and however short the haystack. What is fed (file contents, symlink targets,
 * entry names) is the caller's choice.
 *
 * Three objects:
 * - a set: the needles, compiled once per build request; immutable, so any number of threads
 *   may scan with one set at the same time;
 * - a stream: the state of one haystack fed piecewise (a file read in arbitrary pieces); one
 *   thread at a time; reusable for the next haystack without allocating;
 * - a result: the needle indices seen so far, one per output. Streams mark it with an atomic OR,
 *   so the streams of one output may feed on different threads concurrently; read it only after
 *   they all ended (joining the threads orders the marks before the read).
 *
 * Scanning cannot fail and does not allocate; a set must outlive its streams and results.
 * Memory: a set holds its needles, a filter of at most 128 KiB, a hash table of about 50 bytes
 * per needle and sampling offset (1.2 MiB for 1000 32-byte needles) and, with needles under 8
 * bytes, a 64 KiB table; a stream holds 2 * (longest needle - 1) bytes and 0.5 KiB. Any feed size
 * works; feeds much longer than the longest needle are cheapest, since each feed also rescans the
 * boundary region. Speed depends on the shortest needle: 32-byte needles cost about one hash probe
 * per 25 bytes, needles shorter than 8 bytes a look at every position. */
#pragma once

#include <kiln/util/error.h>

struct kiln_refscan_set;
struct kiln_refscan_stream;
struct kiln_refscan_result;

/* Compiles n needles (needles[i] of lens[i] bytes; copied, so the caller may free them). Equal
 * needles are allowed, and each of their indices is reported. n may be 0: nothing then ever
 * matches. Returns 0 and *ret (free with kiln_refscan_set_free), or -EINVAL when a needle is
 * empty (the message names its index) or n is too large. */
KILN_PUBLIC int kiln_refscan_set_new(const uint8_t *const *needles, const size_t *lens, size_t n,
                                     struct kiln_refscan_set **ret, struct kiln_error **err);
/* Accepts NULL. No stream or result of the set may be in use. */
KILN_PUBLIC void kiln_refscan_set_free(struct kiln_refscan_set *set);
DEFINE_CLEANUP_FUNC(struct kiln_refscan_set, kiln_refscan_set_free)
/* Number of needles (indices run from 0 to this minus one). */
KILN_PUBLIC size_t kiln_refscan_set_count(const struct kiln_refscan_set *set);
/* Length of the longest needle, 0 for an empty set. */
KILN_PUBLIC size_t kiln_refscan_set_max_len(const struct kiln_refscan_set *set);

/* A new, empty result sized for the set. Free with kiln_refscan_result_free. */
KILN_PUBLIC struct kiln_refscan_result *kiln_refscan_result_new(const struct kiln_refscan_set *set);
/* Accepts NULL. */
KILN_PUBLIC void kiln_refscan_result_free(struct kiln_refscan_result *r);
DEFINE_CLEANUP_FUNC(struct kiln_refscan_result, kiln_refscan_result_free)
/* Forgets every match, for reuse with the next output. Not while streams feed into it. */
KILN_PUBLIC void kiln_refscan_result_clear(struct kiln_refscan_result *r);
/* Whether needle `idx` (< kiln_refscan_set_count()) was seen. */
KILN_PUBLIC bool kiln_refscan_result_test(const struct kiln_refscan_result *r, size_t idx);
/* How many distinct needle indices were seen. */
KILN_PUBLIC size_t kiln_refscan_result_count(const struct kiln_refscan_result *r);
/* The seen indices in ascending order, as the build protocol reports them: returns their
 * number and sets *ret to a new array of them (caller frees; NULL when the number is 0). */
KILN_PUBLIC size_t kiln_refscan_result_list(const struct kiln_refscan_result *r, uint64_t **ret);
/* Adds the matches of src (of the same set) to dst, for callers that keep one result per
 * stream. Safe while other streams feed into dst; src must be quiescent. */
KILN_PUBLIC void kiln_refscan_result_merge(struct kiln_refscan_result *dst,
                                           const struct kiln_refscan_result *src);

/* Scans one whole haystack (symlink target, name, small file) into r. Thread-safe as far as
 * the set goes; r as described at the top. Does not allocate. */
KILN_PUBLIC void kiln_refscan_scan(const struct kiln_refscan_set *set, const void *data, size_t len,
                                   struct kiln_refscan_result *r);

/* A stream for the set, holding the carry-over buffer (the last longest-needle-minus-one
 * bytes). Free with kiln_refscan_stream_free. */
KILN_PUBLIC struct kiln_refscan_stream *kiln_refscan_stream_new(const struct kiln_refscan_set *set);
/* Accepts NULL. */
KILN_PUBLIC void kiln_refscan_stream_free(struct kiln_refscan_stream *s);
DEFINE_CLEANUP_FUNC(struct kiln_refscan_stream, kiln_refscan_stream_free)
/* Starts a new haystack whose matches go into r (of the same set; it must stay alive until
 * kiln_refscan_stream_end). Any previous haystack is forgotten. */
KILN_PUBLIC void kiln_refscan_stream_begin(struct kiln_refscan_stream *s,
                                           struct kiln_refscan_result *r);
/* Scans the next len bytes of the haystack. Matches straddling earlier feeds are found:
 * results do not depend on how the haystack is split (empty feeds are fine). */
KILN_PUBLIC void kiln_refscan_stream_feed(struct kiln_refscan_stream *s, const void *data,
                                          size_t len);
/* Ends the haystack; every match in it is now in r. The stream may begin again. */
KILN_PUBLIC void kiln_refscan_stream_end(struct kiln_refscan_stream *s);

/* Instruction-set levels of the scan kernels, in increasing order of preference. Results never
 * depend on the level; only speed does. */
enum kiln_refscan_level {
        KILN_REFSCAN_PORTABLE = 0,
        KILN_REFSCAN_AVX2,
        KILN_REFSCAN_LEVEL_MAX = KILN_REFSCAN_AVX2,
};

/* The level sets compiled from now on use: the best the CPU supports, unless
 * KILN_REFSCAN_SIMD (portable|avx2) in the environment or kiln_refscan_force_level() chose
 * another. A set keeps the level it was compiled with. */
KILN_PUBLIC enum kiln_refscan_level kiln_refscan_level(void);
/* The best level this CPU (and build) supports. */
KILN_PUBLIC enum kiln_refscan_level kiln_refscan_level_supported(void);
/* Pins the level for sets compiled afterwards (a test hook). Returns 0, or -ENOTSUP when the
 * CPU or the build lacks it. */
KILN_PUBLIC int kiln_refscan_force_level(enum kiln_refscan_level level);
/* "portable" or "avx2" ("unknown" for anything else); static storage. */
KILN_PUBLIC const char *kiln_refscan_level_name(enum kiln_refscan_level level);
/* Parses a level name into *ret; -EINVAL for an unknown name (*ret untouched). */
KILN_PUBLIC int kiln_refscan_level_from_name(const char *name, enum kiln_refscan_level *ret);
