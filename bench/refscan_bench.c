/* Reference scanner throughput: a buffer of random nixbase32-ish text (1 GiB by default) with a
 * few planted needles, for several needle sets. Prints GB/s (10^9 bytes per second), best of a
 * few runs, for
 *   cold:  the whole buffer as one stream in fixed-size feeds (memory-bound; compare with the
 *          memory read baseline),
 *   hot:   one feed-sized piece fed over and over as one stream, as much data as the buffer: the
 *          data is in cache, as it is right after BLAKE3 hashed it,
 *   files: that piece as separate 4 KiB haystacks (begin/feed/end each), per-file overhead.
 *
 *     refscan-bench [MiB [feed KiB [runs]]]
 *
 * The buffer is allocated and touched once up front: page faults would dominate otherwise. */
#include <kiln/ingest/refscan.h>

#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

static const char B32[] = "0123456789abcdfghijklmnpqrsvwxyz";

static uint64_t rng = UINT64_C(0x853c49e6748fea9b);

static uint64_t rnd(void)
{
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(0x2545F4914F6CDD1D);
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct needles {
        size_t n;
        uint8_t **p;
        size_t *len;
};

/* n needles with lengths drawn uniformly from [lo, hi]. */
static void make_needles(struct needles *nd, size_t n, size_t lo, size_t hi)
{
        nd->n = n;
        nd->p = kiln_reallocarray(NULL, KILN_MAX(n, (size_t)1), sizeof(*nd->p));
        nd->len = kiln_reallocarray(NULL, KILN_MAX(n, (size_t)1), sizeof(*nd->len));
        for (size_t i = 0; i < n; i++) {
                nd->len[i] = lo + rnd() % (hi - lo + 1);
                nd->p[i] = kiln_malloc(nd->len[i]);
                for (size_t j = 0; j < nd->len[i]; j++)
                        nd->p[i][j] = B32[rnd() % 32];
        }
}

static void free_needles(struct needles *nd)
{
        for (size_t i = 0; i < nd->n; i++)
                free(nd->p[i]);
        free(nd->p);
        free(nd->len);
}

static void die(const char *what, struct kiln_error *err)
{
        fprintf(stderr, "refscan-bench: %s: %s\n", what, kiln_error_msg(err));
        exit(1);
}

/* Scans size bytes as one stream in feeds of `feed` bytes taken from buf, which holds `span`
 * bytes (span == size: the whole buffer in order; smaller: the same piece again and again).
 * Best time of `runs`. */
static double scan_stream(struct kiln_refscan_stream *s, struct kiln_refscan_result *r,
                          const uint8_t *buf, size_t span, size_t size, size_t feed, int runs)
{
        double best = 1e30;

        for (int run = 0; run < runs; run++) {
                double t0 = now();

                kiln_refscan_result_clear(r);
                kiln_refscan_stream_begin(s, r);
                for (size_t off = 0; off < size; off += feed) {
                        size_t at = off % span;
                        kiln_refscan_stream_feed(s, buf + at, KILN_MIN(feed, span - at));
                }
                kiln_refscan_stream_end(s);
                best = KILN_MIN(best, now() - t0);
        }
        return best;
}

/* Scans size bytes as files of `file` bytes from the piece buf[0..span), each its own stream. */
static double scan_files(struct kiln_refscan_stream *s, struct kiln_refscan_result *r,
                         const uint8_t *buf, size_t span, size_t size, size_t file, int runs)
{
        double best = 1e30;

        for (int run = 0; run < runs; run++) {
                double t0 = now();

                kiln_refscan_result_clear(r);
                for (size_t off = 0; off < size; off += file) {
                        size_t at = off % span;
                        kiln_refscan_stream_begin(s, r);
                        kiln_refscan_stream_feed(s, buf + at, KILN_MIN(file, span - at));
                        kiln_refscan_stream_end(s);
                }
                best = KILN_MIN(best, now() - t0);
        }
        return best;
}

static double read_baseline(const uint8_t *buf, size_t size, int runs, uint64_t *sink)
{
        double best = 1e30;

        for (int run = 0; run < runs; run++) {
                double t0 = now();
                uint64_t acc = 0;

                /* One 8-byte load per 16 bytes: every cache line is read, like the scan does. */
                for (size_t off = 0; off + 8 <= size; off += 16) {
                        uint64_t v;
                        memcpy(&v, buf + off, 8);
                        acc += v;
                }
                *sink += acc;
                best = KILN_MIN(best, now() - t0);
        }
        return best;
}

struct plant {
        size_t pos;
        uint8_t saved[512];
        size_t len;
};

static void run_set(const char *label, size_t n, size_t lo, size_t hi, uint8_t *buf, size_t size,
                    size_t feed, int runs)
{
        struct needles nd;
        struct kiln_error *err = NULL;
        _cleanup_(kiln_refscan_set_freep) struct kiln_refscan_set *set = NULL;
        _cleanup_(kiln_refscan_result_freep) struct kiln_refscan_result *r = NULL;
        _cleanup_(kiln_refscan_stream_freep) struct kiln_refscan_stream *s = NULL;
        struct plant plants[8];
        size_t nplant = KILN_MIN(n, KILN_ARRAY_SIZE(plants)), found, piece = KILN_MIN(feed, size);
        double t_build, t_cold, t_hot, t_files;

        make_needles(&nd, n, lo, hi);
        t_build = now();
        if (kiln_refscan_set_new((const uint8_t *const *)nd.p, nd.len, n, &set, &err) < 0)
                die("compile needles", err);
        t_build = now() - t_build;
        r = kiln_refscan_result_new(set);
        s = kiln_refscan_stream_new(set);

        /* Plant the first few needles spread over the buffer, straddling feed boundaries when
         * these are far enough apart. */
        for (size_t i = 0; i < nplant; i++) {
                struct plant *pl = &plants[i];
                size_t b;

                pl->len = KILN_MIN(nd.len[i], sizeof(pl->saved));
                pl->pos = (i + 1) * (size / (nplant + 1));
                b = pl->pos / feed * feed;
                if (b >= pl->len && (i == 0 || b - pl->len / 2 >= plants[i - 1].pos + 512))
                        pl->pos = b - pl->len / 2;
                memcpy(pl->saved, buf + pl->pos, pl->len);
                memcpy(buf + pl->pos, nd.p[i], pl->len);
        }

        t_cold = scan_stream(s, r, buf, size, size, feed, runs);
        found = kiln_refscan_result_count(r);
        t_hot = scan_stream(s, r, buf, piece, size, feed, runs);
        t_files = scan_files(s, r, buf, piece, size, 4096, runs);

        printf("%-16s %5zu %9.2f %9.2f %9.2f   found %zu (planted %zu), compile %.2f ms\n", label,
               n, size / t_cold / 1e9, size / t_hot / 1e9, size / t_files / 1e9, found, nplant,
               t_build * 1e3);

        for (size_t i = nplant; i-- > 0;)
                memcpy(buf + plants[i].pos, plants[i].saved, plants[i].len);
        free_needles(&nd);
}

int main(int argc, char **argv)
{
        size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
        size_t feed = (argc > 2 ? strtoul(argv[2], NULL, 0) : 256) * 1024;
        int runs = argc > 3 ? atoi(argv[3]) : 3;
        size_t size = mib << 20;
        uint64_t sink = 0;
        uint8_t *buf;
        double t;

        if (mib == 0 || feed == 0 || runs <= 0) {
                fprintf(stderr, "usage: refscan-bench [MiB [feed KiB [runs]]]\n");
                return 2;
        }
        buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
                perror("refscan-bench: mmap");
                return 1;
        }
        (void)madvise(buf, size, MADV_HUGEPAGE);
        for (size_t i = 0; i < size; i += 8) {
                uint64_t x = rnd(), v = 0;
                for (int j = 0; j < 8; j++, x >>= 5)
                        v |= (uint64_t)(uint8_t)B32[x & 31] << (8 * j);
                memcpy(buf + i, &v, 8);
        }

        printf("buffer %zu MiB, feeds %zu KiB, best of %d, kernel %s\n", mib, feed >> 10, runs,
               kiln_refscan_level_name(kiln_refscan_level()));
        t = read_baseline(buf, size, runs, &sink);
        printf("memory read baseline %.2f GB/s\n", size / t / 1e9);
        printf("%-16s %5s %9s %9s %9s\n", "needles", "n", "cold", "hot", "4K files");
        run_set("none", 0, 32, 32, buf, size, feed, runs);
        run_set("32-byte", 1, 32, 32, buf, size, feed, runs);
        run_set("32-byte", 32, 32, 32, buf, size, feed, runs);
        run_set("32-byte", 200, 32, 32, buf, size, feed, runs);
        run_set("32-byte", 1000, 32, 32, buf, size, feed, runs);
        run_set("mixed 16..64", 200, 16, 64, buf, size, feed, runs);
        run_set("mixed 8..64", 200, 8, 64, buf, size, feed, runs);
        run_set("mixed 1..64", 200, 1, 64, buf, size, feed, runs);
        run_set("short 1..7", 8, 1, 7, buf, size, feed, runs);
        run_set("short 2..7", 20, 2, 7, buf, size, feed, runs);
        run_set("short 1..7", 100, 1, 7, buf, size, feed, runs);
        run_set("long 100..300", 50, 100, 300, buf, size, feed, runs);
        return sink == 42; /* keeps the baseline loop alive */
}
