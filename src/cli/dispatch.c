/* Verb tables: `kiln <verb>` (core.c) and `kiln nix <verb>` (cmd_nix.c). */
#include <string.h>

#include "cli.h"

static void usage(FILE *f, const char *prog, const struct cli_verb *verbs, int width)
{
        fprintf(f, "usage: %s <verb> [options] [args]\n\nverbs:\n", prog);
        for (const struct cli_verb *v = verbs; v->name; v++)
                fprintf(f, "  %-*s %s\n", width, v->name, v->summary);
        fprintf(f, "\n%s <verb> --help shows the options of a verb.\n", prog);
}

int cli_dispatch(const char *prog, const struct cli_verb *verbs, int width, int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr, prog, verbs, width);
                return 2;
        }
        const char *name = argv[1];
        if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
                usage(stdout, prog, verbs, width);
                return 0;
        }
        for (const struct cli_verb *v = verbs; v->name; v++)
                if (!strcmp(v->name, name))
                        return v->run(argc - 1, argv + 1);
        fprintf(stderr, "%s: unknown verb '%s'\n", prog, name);
        usage(stderr, prog, verbs, width);
        return 2;
}
