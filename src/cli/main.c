/* kiln: the command users run. It runs `kiln hash` itself and executes kiln-core
 * for every other verb. Why two programs: kiln-core links gRPC, FUSE, LMDB and
 * zstd (13 shared libraries with gRPC linked in statically, some 8 ms per
 * start), which `kiln hash` never needs; this program links only libc, so
 * hashing a small file starts as fast as b3sum. `kiln nix serve` is relayed
 * from here to a warm `kiln nix serve --listen` when one runs (serve_relay.c). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* kiln-core beside this program (the build tree), in ../libexec/kiln (an
 * installed prefix, wherever it was moved), or where it was installed. */
static void exec_core(char **argv)
{
        const char *env = getenv("KILN_CORE");
        if (env && *env) {
                execv(env, argv);
                fprintf(stderr, "kiln: cannot run %s (KILN_CORE): %s\n", env, strerror(errno));
                _exit(127);
        }
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        char path[PATH_MAX + 32];
                        snprintf(path, sizeof(path), "%s/kiln-core", self);
                        execv(path, argv);
                        snprintf(path, sizeof(path), "%s/../libexec/kiln/kiln-core", self);
                        execv(path, argv);
                }
        }
        execv(KILN_CORE_PATH, argv);
        fprintf(stderr, "kiln: cannot run %s: %s\n", KILN_CORE_PATH, strerror(errno));
        _exit(127);
}

int main(int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "hash"))
                return cmd_hash(argc - 1, argv + 1);
        if (argc >= 3 && !strcmp(argv[1], "nix") && !strcmp(argv[2], "serve")) {
                int r = serve_relay(argc, argv);
                if (r >= 0)
                        return r;
        }
        tunables_for_core();
        exec_core(argv);
}
