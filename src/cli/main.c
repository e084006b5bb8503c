/* kiln: entry point and verb dispatch. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kiln_config.h"

struct verb {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};

static const struct verb verbs[] = {
        {"hash", cmd_hash, "print BLAKE3 digests of files (b3sum-compatible)"},
        {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
        fprintf(f, "usage: kiln <verb> [options] [args]\n\nverbs:\n");
        for (const struct verb *v = verbs; v->name; v++)
                fprintf(f, "  %-10s %s\n", v->name, v->summary);
        fprintf(f, "\nkiln <verb> --help shows the options of a verb.\n");
}

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

int main(int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *name = argv[1];
        if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
                usage(stdout);
                return 0;
        }
        if (!strcmp(name, "--version")) {
                printf("kiln %s\n", KILN_VERSION);
                return 0;
        }
        for (const struct verb *v = verbs; v->name; v++)
                if (!strcmp(v->name, name))
                        return v->run(argc - 1, argv + 1);
        fprintf(stderr, "kiln: unknown verb '%s'\n", name);
        usage(stderr);
        return 2;
}
