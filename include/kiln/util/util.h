/* Small utilities shared by libkiln and its front ends: allocation that aborts
 * on exhaustion, systemd-style cleanup attributes, and a growable byte buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#define KILN_PUBLIC __attribute__((visibility("default")))

#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(kiln_freep)
#define _cleanup_close_ _cleanup_(kiln_closep)
#define _unused_        __attribute__((unused))
#define _printf_(a, b)  __attribute__((format(printf, a, b)))
#define _likely_(x)     __builtin_expect(!!(x), 1)
#define _unlikely_(x)   __builtin_expect(!!(x), 0)

#define KILN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KILN_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define KILN_MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Moves ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
        ({                                                                                         \
                __typeof__(p) _p_ = (p);                                                           \
                (p) = NULL;                                                                        \
                _p_;                                                                               \
        })
#define TAKE_FD(fd)                                                                                \
        ({                                                                                         \
                int _fd_ = (fd);                                                                   \
                (fd) = -1;                                                                         \
                _fd_;                                                                              \
        })

/* Derives `name##p(type **)` calling `name(type *)`, for _cleanup_. */
#define DEFINE_CLEANUP_FUNC(type, name)                                                            \
        static inline void name##p(type **p)                                                       \
        {                                                                                          \
                if (*p)                                                                            \
                        name(*p);                                                                  \
        }

static inline void kiln_freep(void *p)
{
        free(*(void **)p);
}

static inline void kiln_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

/* Allocation never fails: out of memory aborts (as crun and bubblewrap do). */
KILN_PUBLIC void *kiln_malloc(size_t n);
KILN_PUBLIC void *kiln_calloc(size_t n, size_t size);
KILN_PUBLIC void *kiln_realloc(void *p, size_t n);
KILN_PUBLIC void *kiln_reallocarray(void *p, size_t n, size_t size);
KILN_PUBLIC char *kiln_strdup(const char *s);
KILN_PUBLIC void *kiln_memdup(const void *p, size_t n);
KILN_PUBLIC char *kiln_asprintf(const char *fmt, ...) _printf_(1, 2);
/* Untrusted bytes for an error message: at most the first `max` of (s, len),
 * bytes outside printable ASCII, the quote ' and the backslash written as
 * \xNN (so the message stays one line), "..." appended when cut. Heap string. */
KILN_PUBLIC char *kiln_quote(const void *s, size_t len, size_t max);

/* Growable byte buffer. `data` is NULL until the first append. */
struct kiln_buf {
        uint8_t *data;
        size_t len;
        size_t cap;
};
#define KILN_BUF_INIT {NULL, 0, 0}

KILN_PUBLIC void kiln_buf_reserve(struct kiln_buf *b, size_t extra);
KILN_PUBLIC void kiln_buf_append(struct kiln_buf *b, const void *p, size_t n);
KILN_PUBLIC void kiln_buf_append_byte(struct kiln_buf *b, uint8_t c);
/* Appends a protobuf base-128 varint. */
KILN_PUBLIC void kiln_buf_append_varint(struct kiln_buf *b, uint64_t v);
/* Empties the buffer but keeps its memory for reuse. */
static inline void kiln_buf_clear(struct kiln_buf *b)
{
        b->len = 0;
}
/* Frees the contents; the struct may be reused afterwards. */
KILN_PUBLIC void kiln_buf_done(struct kiln_buf *b);
/* Hands out the contents (caller frees) and resets the buffer. */
KILN_PUBLIC uint8_t *kiln_buf_steal(struct kiln_buf *b, size_t *ret_len);

/* Byte-wise comparison as the castore defines "sorted": memcmp over the common
 * prefix, then the shorter first. */
static inline int kiln_bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
        size_t n = KILN_MIN(alen, blen);
        int c = n ? memcmp(a, b, n) : 0;
        if (c != 0)
                return c;
        return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Value of a hex digit (either case), or -1. */
static inline int kiln_unhex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Full write/read loops that retry on EINTR and short transfers.
 * Return 0 / bytes read, or -errno. */
KILN_PUBLIC int kiln_write_all(int fd, const void *p, size_t n);
KILN_PUBLIC ssize_t kiln_read_full(int fd, void *p, size_t n);
/* A whole small file as a NUL-terminated string (certificates, keys): 0, or
 * -errno; -EFBIG when over max bytes, -EILSEQ when it holds a NUL byte. */
KILN_PUBLIC int kiln_read_text_file(const char *path, size_t max, char **ret);

/* Whether p[0..len) is well-formed UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
KILN_PUBLIC bool kiln_utf8_valid(const void *p, size_t len);

/* A list of heap strings. */
struct kiln_strv {
        char **v;
        size_t n;
};
KILN_PUBLIC void kiln_strv_done(struct kiln_strv *s);
/* Appends a copy of str. */
KILN_PUBLIC void kiln_strv_push(struct kiln_strv *s, const char *str);
