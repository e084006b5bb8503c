/* Allocation, buffers and I/O loops. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>

#include <kiln/util/util.h>

static void oom(void)
{
        static const char msg[] = "kiln: out of memory\n";
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
}

void *kiln_malloc(size_t n)
{
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *kiln_calloc(size_t n, size_t size)
{
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *kiln_realloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *kiln_reallocarray(void *p, size_t n, size_t size)
{
        size_t total;
        if (__builtin_mul_overflow(n, size, &total))
                oom();
        return kiln_realloc(p, total);
}

char *kiln_strdup(const char *s)
{
        char *p = strdup(s);
        if (!p)
                oom();
        return p;
}

void *kiln_memdup(const void *p, size_t n)
{
        void *q = kiln_malloc(n);
        if (n)
                memcpy(q, p, n);
        return q;
}

char *kiln_asprintf(const char *fmt, ...)
{
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                oom();
        va_end(ap);
        return s;
}

void kiln_buf_reserve(struct kiln_buf *b, size_t extra)
{
        size_t need;
        if (__builtin_add_overflow(b->len, extra, &need))
                oom();
        if (need <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
                cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        b->data = kiln_realloc(b->data, cap);
        b->cap = cap;
}

void kiln_buf_append(struct kiln_buf *b, const void *p, size_t n)
{
        if (n == 0)
                return;
        kiln_buf_reserve(b, n);
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

void kiln_buf_append_byte(struct kiln_buf *b, uint8_t c)
{
        kiln_buf_reserve(b, 1);
        b->data[b->len++] = c;
}

void kiln_buf_append_varint(struct kiln_buf *b, uint64_t v)
{
        kiln_buf_reserve(b, 10);
        while (v >= 0x80) {
                b->data[b->len++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        b->data[b->len++] = (uint8_t)v;
}

void kiln_buf_done(struct kiln_buf *b)
{
        free(b->data);
        *b = (struct kiln_buf)KILN_BUF_INIT;
}

uint8_t *kiln_buf_steal(struct kiln_buf *b, size_t *ret_len)
{
        uint8_t *p = b->data ? b->data : kiln_malloc(1);
        if (ret_len)
                *ret_len = b->len;
        *b = (struct kiln_buf)KILN_BUF_INIT;
        return p;
}

int kiln_write_all(int fd, const void *p, size_t n)
{
        const uint8_t *c = p;
        while (n > 0) {
                ssize_t w = write(fd, c, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (w == 0)
                        return -EIO;
                c += w;
                n -= (size_t)w;
        }
        return 0;
}

ssize_t kiln_read_full(int fd, void *p, size_t n)
{
        uint8_t *c = p;
        size_t got = 0;
        while (got < n) {
                ssize_t r = read(fd, c + got, n - got);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        break;
                got += (size_t)r;
        }
        return (ssize_t)got;
}

int kiln_read_text_file(const char *path, size_t max, char **ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        char *s = kiln_malloc(max + 2);
        ssize_t n = kiln_read_full(fd, s, max + 1);
        if (n < 0 || (size_t)n > max || memchr(s, '\0', (size_t)n)) {
                free(s);
                return n < 0 ? (int)n : (size_t)n > max ? -EFBIG : -EILSEQ;
        }
        s[n] = '\0';
        *ret = s;
        return 0;
}

bool kiln_utf8_valid(const void *data, size_t len)
{
        if (len == 0)
                return true; /* data may be NULL */
        const uint8_t *p = data, *end = p + len;
        while (p < end) {
                uint8_t c = *p++;
                if (c < 0x80)
                        continue;
                size_t n;
                uint32_t cp;
                if ((c & 0xe0) == 0xc0) {
                        n = 1;
                        cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2;
                        cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if ((size_t)(end - p) < n)
                        return false;
                for (size_t i = 0; i < n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                p += n;
                /* overlong forms, surrogates, beyond U+10FFFF */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
        }
        return true;
}

void kiln_strv_done(struct kiln_strv *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (struct kiln_strv){0};
}

void kiln_strv_push(struct kiln_strv *s, const char *str)
{
        s->v = kiln_reallocarray(s->v, s->n + 1, sizeof(*s->v));
        s->v[s->n++] = kiln_strdup(str);
}

char *kiln_quote(const void *s, size_t len, size_t max)
{
        static const char hex[] = "0123456789abcdef";
        const uint8_t *p = s;
        size_t n = KILN_MIN(len, max);
        char *out = kiln_malloc(n * 4 + 4);
        char *o = out;
        for (size_t i = 0; i < n; i++) {
                uint8_t c = p[i];
                if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
                        *o++ = (char)c;
                } else {
                        *o++ = '\\';
                        *o++ = 'x';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                }
        }
        if (n < len) {
                memcpy(o, "...", 3);
                o += 3;
        }
        *o = '\0';
        return out;
}
