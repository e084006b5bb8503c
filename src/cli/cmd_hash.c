/* kiln hash: BLAKE3 digests of files, printed exactly as b3sum prints them. */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <kiln/blake3/blake3.h>

#include "cli.h"

/* One buffer, allocated once and reused for every file: fresh pages are expensive here.
 * Its size is a multiple of 16 KiB (16 chunks, the widest kernel) so every full read is
 * whole subtrees, and small enough to stay in the L2 cache between the kernel's copy and
 * the hashing: measured on 1 GiB from the page cache, 64-128 KiB reads cost ~0.12 s of
 * system time, 256 KiB-1 MiB reads ~0.5 s. */
#define READ_BUF_LEN (128 * 1024)

/* Regular files of at least this size are mapped and hashed on several threads: below it,
 * starting threads and mapping cost more than they save. */
#define PARALLEL_MIN (2 * 1024 * 1024)

static void usage(FILE *f)
{
        fputs("usage: kiln hash [--threads N] [--mmap] [FILE|-]...\n"
              "\n"
              "Prints the BLAKE3 digest of each FILE as \"<64 hex digits>  <name>\", the output "
              "of\n"
              "b3sum. With no FILE, or where FILE is -, reads standard input (named -).\n"
              "Unreadable files are reported on stderr; the others are still hashed, and the exit\n"
              "status is then 1.\n"
              "\n"
              "  --threads N  hash files of 2 MiB and more on N threads (default: the CPUs this\n"
              "               process may run on; 1: read and hash on one thread)\n"
              "  --mmap       with several threads, map the file instead of reading it\n"
              "  -h, --help   show this help\n"
              "\n"
              "KILN_BLAKE3_SIMD=portable|sse41|avx2|avx512 pins the instruction set (a level\n"
              "this CPU lacks means the best it has).\n",
              f);
}

/* Length of the valid UTF-8 sequence at s, or 0 with *bad set to the length of the invalid
 * piece to replace by one U+FFFD: the longest prefix that could still have become valid
 * (Unicode's "maximal subpart", which Rust's to_string_lossy and so b3sum follow). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
        unsigned char c = s[0], lo = 0x80, hi = 0xBF;
        size_t len;

        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2;
        else if (c >= 0xE0 && c <= 0xEF)
                len = 3;
        else if (c >= 0xF0 && c <= 0xF4)
                len = 4;
        else {
                *bad = 1;
                return 0;
        }
        /* The second byte's range excludes overlong forms, surrogates and > U+10FFFF. */
        if (c == 0xE0)
                lo = 0xA0;
        else if (c == 0xED)
                hi = 0x9F;
        else if (c == 0xF0)
                lo = 0x90;
        else if (c == 0xF4)
                hi = 0x8F;
        for (size_t k = 1; k < len; k++) {
                if (k >= n || s[k] < lo || s[k] > hi) {
                        *bad = k;
                        return 0;
                }
                lo = 0x80;
                hi = 0xBF;
        }
        return len;
}

/* Prints one line as b3sum does: the name made valid UTF-8 (invalid pieces become U+FFFD);
 * then, if it holds a backslash or a newline, those are escaped as \\ and \n and the line
 * starts with a backslash, so that every line stays one line and can be parsed back. */
static void print_line(const uint8_t digest[KILN_BLAKE3_OUT_LEN], const char *name)
{
        const unsigned char *s = (const unsigned char *)name;
        size_t n = strlen(name);
        struct kiln_buf line = KILN_BUF_INIT;
        bool escaped = strchr(name, '\\') || strchr(name, '\n');
        static const char hex[] = "0123456789abcdef";

        if (escaped)
                kiln_buf_append_byte(&line, '\\');
        for (size_t i = 0; i < KILN_BLAKE3_OUT_LEN; i++) {
                kiln_buf_append_byte(&line, hex[digest[i] >> 4]);
                kiln_buf_append_byte(&line, hex[digest[i] & 15]);
        }
        kiln_buf_append(&line, "  ", 2);
        for (size_t i = 0; i < n;) {
                size_t bad = 0, len = utf8_seq(s + i, n - i, &bad);

                if (!len) {
                        kiln_buf_append(&line, "\xEF\xBF\xBD", 3);
                        i += bad;
                } else if (escaped && s[i] == '\\') {
                        kiln_buf_append(&line, "\\\\", 2);
                        i++;
                } else if (escaped && s[i] == '\n') {
                        kiln_buf_append(&line, "\\n", 2);
                        i++;
                } else {
                        kiln_buf_append(&line, s + i, len);
                        i += len;
                }
        }
        kiln_buf_append_byte(&line, '\n');
        fwrite(line.data, 1, line.len, stdout);
        kiln_buf_done(&line);
}

/* Digest of everything readable from fd; 0, or -errno from read(). */
static int hash_fd(int fd, uint8_t *buf, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct kiln_blake3 h;

        kiln_blake3_init(&h);
        for (;;) {
                /* Full reads even from pipes, so the hasher sees whole subtrees. */
                ssize_t n = kiln_read_full(fd, buf, READ_BUF_LEN);

                if (n < 0)
                        return (int)n;
                kiln_blake3_update(&h, buf, (size_t)n);
                if ((size_t)n < READ_BUF_LEN)
                        break; /* short only at end of file */
        }
        kiln_blake3_final(&h, out);
        return 0;
}

/* A regular file of PARALLEL_MIN bytes or more, hashed on `threads` threads: 1 when done,
 * 0 to use the streaming path instead (not such a file; a failed mmap), or -errno of a
 * failed read. By default each thread pread()s pieces into its own buffer: on this kind of
 * machine (a VM) page faults on a mapping cost more than the copy, so that even b3sum hashes
 * faster with --no-mmap. With `mapped` (--mmap), the file is mapped as b3sum does, its page
 * tables filled in one call (MAP_POPULATE: a fault per page costs more); a file truncated
 * meanwhile then kills the process with SIGBUS. */
static int hash_parallel(int fd, unsigned threads, bool mapped, uint8_t out[KILN_BLAKE3_OUT_LEN])
{
        struct stat st;
        void *map;

        if (threads <= 1 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < PARALLEL_MIN ||
            (uintmax_t)st.st_size > SIZE_MAX)
                return 0;
        if (!mapped) {
                int r = kiln_blake3_parallel_fd(fd, (size_t)st.st_size, threads, out);

                return r < 0 ? r : 1;
        }
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED)
                return 0;
        kiln_blake3_parallel(map, (size_t)st.st_size, threads, out);
        munmap(map, (size_t)st.st_size);
        return 1;
}

/* Hashes and prints one file; on failure prints why on stderr and returns 1. */
static int hash_one(const char *name, uint8_t *buf, unsigned threads, bool mapped)
{
        uint8_t digest[KILN_BLAKE3_OUT_LEN];
        _cleanup_close_ int owned = -1;
        int fd = STDIN_FILENO, r;

        if (strcmp(name, "-") != 0) {
                owned = open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (owned < 0)
                        return cli_failf("hash: cannot open '%s': %s", name, strerror(errno));
                fd = owned;
                /* Best effort: larger read-ahead. Fails harmlessly on pipes. */
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        }
        /* A directory opens fine and fails here, with EISDIR. */
        r = hash_parallel(fd, threads, mapped, digest);
        r = r == 0 ? hash_fd(fd, buf, digest) : KILN_MIN(r, 0);
        if (r < 0)
                return cli_failf("hash: cannot read '%s': %s", name, strerror(-r));
        print_line(digest, name);
        return 0;
}

/* The CPUs this process may run on (at least 1). */
static unsigned cpus_available(void)
{
        cpu_set_t set;

        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return 1;
        return (unsigned)KILN_MAX(CPU_COUNT(&set), 1);
}

/* N of --threads N: 1 to 64; -1 when not a number in that range. */
static int parse_threads(const char *s)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 1 || v > 64)
                return -1;
        return (int)v;
}

int cmd_hash(int argc, char **argv)
{
        _cleanup_free_ const char **files = kiln_calloc((size_t)argc + 1, sizeof(*files));
        _cleanup_free_ uint8_t *buf = NULL;
        bool options_done = false, mapped = false;
        int n_files = 0, status = 0, threads = 0;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (options_done || a[0] != '-' || !strcmp(a, "-")) {
                        files[n_files++] = a;
                } else if (!strcmp(a, "--")) {
                        options_done = true;
                } else if (!strcmp(a, "--threads") || !strncmp(a, "--threads=", 10)) {
                        const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);

                        threads = v ? parse_threads(v) : -1;
                        if (threads < 0) {
                                cli_failf("hash: --threads wants a number from 1 to 64");
                                usage(stderr);
                                return 2;
                        }
                } else if (!strcmp(a, "--mmap")) {
                        mapped = true;
                } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        return 0;
                } else {
                        cli_failf("hash: unknown option '%s'", a);
                        usage(stderr);
                        return 2;
                }
        }
        if (n_files == 0)
                files[n_files++] = "-";

        if (threads == 0)
                threads = (int)KILN_MIN(cpus_available(), 64u);
        buf = kiln_malloc(READ_BUF_LEN);
        for (int i = 0; i < n_files; i++)
                if (hash_one(files[i], buf, (unsigned)threads, mapped) != 0)
                        status = 1;
        if (fflush(stdout) != 0 || ferror(stdout))
                return cli_failf("hash: write to standard output: %s", strerror(errno));
        return status;
}
