/* kiln-core: every verb of kiln, dispatched by name. `kiln` runs the hot verbs itself
 * and executes this program for the others (main.c). */
#include <stdio.h>
#include <malloc.h>
#include <string.h>

#include "cli.h"
#include "kiln_config.h"

static const struct cli_verb verbs[] = {
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

int main(int argc, char **argv)
{
        /* Page faults are expensive on our machines: keep freed memory for
         * reuse instead of returning it to the kernel after every buffer. */
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        mallopt(M_TOP_PAD, 16 << 20);
        tunables_restore();

        if (argc >= 2 && !strcmp(argv[1], "--version")) {
                printf("kiln %s\n", KILN_VERSION);
                return 0;
        }
        return cli_dispatch("kiln", verbs, 10, argc, argv);
}
