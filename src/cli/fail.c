/* How every verb reports errors: one line on stderr, prefixed with "kiln". */
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

int cli_fail(const struct kiln_error *e)
{
        fprintf(stderr, "kiln: %s\n", kiln_error_msg(e));
        return 1;
}

int cli_failf(const char *fmt, ...)
{
        va_list ap;
        fputs("kiln: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

int cli_usage_error(const char *verb, const char *fmt, ...)
{
        va_list ap;
        fprintf(stderr, "kiln %s: ", verb);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n(see kiln %s --help)\n", verb);
        return 2;
}
