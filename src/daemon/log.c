/* Daemon logging to stderr, one line per message (written with one
 * write so lines from call threads do not interleave). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

bool daemon_log_debug_enabled(void)
{
        static int enabled = -1;
        if (enabled < 0) {
                const char *v = getenv("KILN_LOG");
                enabled = v && (!strcmp(v, "debug") || !strcmp(v, "trace"));
        }
        return enabled;
}

static void out(const char *level, const char *fmt, va_list ap)
{
        char line[2048];
        int n = snprintf(line, sizeof(line), "kiln daemon: %s", level);
        if (n < 0)
                return;
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        if (m < 0)
                return;
        size_t len = KILN_MIN((size_t)n + (size_t)m, sizeof(line) - 2);
        line[len++] = '\n';
        (void)!write(STDERR_FILENO, line, len);
}

void daemon_log_debug(const char *fmt, ...)
{
        if (!daemon_log_debug_enabled())
                return;
        va_list ap;
        va_start(ap, fmt);
        out("", fmt, ap);
        va_end(ap);
}

void daemon_log_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        out("", fmt, ap);
        va_end(ap);
}
