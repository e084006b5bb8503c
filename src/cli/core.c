/* kiln-core: every verb of kiln, dispatched by name. `kiln` runs the hot verbs itself
 * and executes this program for the others (main.c). */
#include <stdio.h>
#include <malloc.h>
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
        {"import", cmd_import, "ingest files and directories into the store"},
        {"export", cmd_export, "write a stored tree back to the filesystem"},
        {"cat", cmd_cat, "write a blob to stdout"},
        {"ls", cmd_ls, "list a stored Directory"},
        {"daemon", cmd_daemon, "serve the stores and the build service over gRPC"},
        {"mount", cmd_mount, "serve stored trees as a read-only FUSE filesystem"},
        {"build", cmd_build, "run a BuildRequest (JSON) and print the Build"},
        {"run", cmd_run, "run a command hermetically over imported inputs"},
        {"nix", cmd_nix, "Nix derivations, store paths and NARs (kiln nix --help)"},
        {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
        fprintf(f, "usage: kiln <verb> [options] [args]\n\nverbs:\n");
        for (const struct verb *v = verbs; v->name; v++)
                fprintf(f, "  %-10s %s\n", v->name, v->summary);
        fprintf(f, "\nkiln <verb> --help shows the options of a verb.\n");
}

int main(int argc, char **argv)
{
        /* Page faults are expensive on our machines: keep freed memory for
         * reuse instead of returning it to the kernel after every buffer. */
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        mallopt(M_TOP_PAD, 16 << 20);

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
