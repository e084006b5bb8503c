/* Error objects: see include/kiln/error.h for the contract. */
#include <stdarg.h>
#include <stdio.h>

#include <kiln/util/error.h>

/* Messages quote what they were given, which may be anything: control
 * characters are written as \xNN so that a message stays one line (with
 * `lines`, line breaks and tabs stay). Takes msg over and returns the
 * message to keep. */
static bool escaped(unsigned char c, bool lines)
{
        return (c < 0x20 || c == 0x7f) && !(lines && (c == '\n' || c == '\t'));
}

static char *clean(char *msg, bool lines)
{
        static const char hex[] = "0123456789abcdef";
        size_t n = 0, len = 0;
        for (; msg[len]; len++)
                n += escaped((unsigned char)msg[len], lines);
        if (!n)
                return msg;
        char *out = kiln_malloc(len + 3 * n + 1), *o = out;
        for (const char *p = msg; *p; p++) {
                unsigned char c = (unsigned char)*p;
                if (escaped(c, lines)) {
                        *o++ = '\\';
                        *o++ = 'x';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                } else {
                        *o++ = (char)c;
                }
        }
        *o = '\0';
        free(msg);
        return out;
}

static int set_v(struct kiln_error **err, int code, bool with_errno, bool lines,
                 const char *fmt, va_list ap)
{
        if (code <= 0)
                code = code < 0 ? -code : EIO;
        if (!err)
                return -code;
        char *msg;
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        if (with_errno) {
                char *full = kiln_asprintf("%s: %s", msg, strerror(code));
                free(msg);
                msg = full;
        }
        msg = clean(msg, lines);
        kiln_error_free(*err);
        *err = kiln_malloc(sizeof(**err));
        (*err)->code = code;
        (*err)->msg = msg;
        return -code;
}

int kiln_error_set(struct kiln_error **err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_v(err, code, false, false, fmt, ap);
        va_end(ap);
        return r;
}

int kiln_error_set_lines(struct kiln_error **err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_v(err, code, false, true, fmt, ap);
        va_end(ap);
        return r;
}

int kiln_error_errno(struct kiln_error **err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_v(err, code, true, false, fmt, ap);
        va_end(ap);
        return r;
}

int kiln_error_prefix(struct kiln_error **err, int r, const char *fmt, ...)
{
        if (!err || !*err)
                return r;
        va_list ap;
        char *prefix;
        va_start(ap, fmt);
        if (vasprintf(&prefix, fmt, ap) < 0)
                abort();
        va_end(ap);
        prefix = clean(prefix, false);
        char *msg = kiln_asprintf("%s: %s", prefix, kiln_error_msg(*err));
        free(prefix);
        free((*err)->msg);
        (*err)->msg = msg;
        return r;
}

void kiln_error_free(struct kiln_error *e)
{
        if (!e)
                return;
        free(e->msg);
        free(e);
}

void kiln_error_clear(struct kiln_error **err)
{
        if (err) {
                kiln_error_free(*err);
                *err = NULL;
        }
}
