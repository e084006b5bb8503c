/* Error objects: see include/kiln/error.h for the contract. */
#include <stdarg.h>
#include <stdio.h>

#include <kiln/util/error.h>

static int set_v(struct kiln_error **err, int code, bool with_errno, const char *fmt, va_list ap)
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
        int r = set_v(err, code, false, fmt, ap);
        va_end(ap);
        return r;
}

int kiln_error_errno(struct kiln_error **err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = set_v(err, code, true, fmt, ap);
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
