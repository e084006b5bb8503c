/* Errors: one object carrying a positive errno-style code and a one-line
 * message. A fallible call returns < 0 (-code) and sets *err, or >= 0 on
 * success leaving *err alone. `err` is always the last parameter; NULL means the
 * caller does not want the text. */
#pragma once

#include <kiln/util/util.h>

struct kiln_error {
        int code;  /* positive errno value, never 0 */
        char *msg; /* one line, lowercase, no final period */
};

/* Replaces *err with a new error; returns -code. */
KILN_PUBLIC int kiln_error_set(struct kiln_error **err, int code, const char *fmt, ...)
        _printf_(3, 4);
/* Messages are one line: control characters in them (from quoted input)
 * are written as \xNN. kiln_error_set_lines keeps line breaks and tabs, for
 * messages made of lines: Nix's fixed-output hash mismatch, the last lines
 * of a failed build's output. */
KILN_PUBLIC int kiln_error_set_lines(struct kiln_error **err, int code, const char *fmt, ...)
        _printf_(3, 4);
/* Like kiln_error_set, appending ": strerror(code)" to the message. */
KILN_PUBLIC int kiln_error_errno(struct kiln_error **err, int code, const char *fmt, ...)
        _printf_(3, 4);
/* Prefixes "<fmt>: " to the message of *err, keeping its code. `r` is the
 * negative code the failing call returned; it is returned again so callers
 * can write `return kiln_error_prefix(err, r, "step %s", x);`. */
KILN_PUBLIC int kiln_error_prefix(struct kiln_error **err, int r, const char *fmt, ...)
        _printf_(3, 4);
KILN_PUBLIC void kiln_error_free(struct kiln_error *e);
/* Frees *err and sets it to NULL. */
KILN_PUBLIC void kiln_error_clear(struct kiln_error **err);
DEFINE_CLEANUP_FUNC(struct kiln_error, kiln_error_free)

/* Message of an error for display (never NULL). */
static inline const char *kiln_error_msg(const struct kiln_error *e)
{
        return e && e->msg ? e->msg : "unknown error";
}
