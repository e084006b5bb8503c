/* kiln-core's heap on transparent huge pages. On the VMs we run on, a
 * process's first touch of a fresh 4 KiB page costs about 10 µs (host facts,
 * docs/ARCHITECTURE.md); on huge pages that is one fault per 2 MiB, which
 * moves `kiln cat` of 256 MiB over gRPC from about 1.0 to 1.4 GB/s. glibc
 * reads the setting from GLIBC_TUNABLES at start only, so `kiln` sets it when
 * it executes kiln-core, and kiln-core puts the user's environment back
 * before it runs anything. A user's own glibc.malloc.hugetlb wins. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TUNABLE "glibc.malloc.hugetlb=1"
/* The user's GLIBC_TUNABLES, or "-" when there was none. */
#define SAVED "KILN_USER_GLIBC_TUNABLES"

void tunables_for_core(void)
{
        const char *user = getenv("GLIBC_TUNABLES");
        if (getenv(SAVED) || (user && strstr(user, "glibc.malloc.hugetlb")))
                return; /* the user chose, or a kiln above us did */
        char *set = NULL;
        if (asprintf(&set, "%s%s" TUNABLE, user ? user : "", user && *user ? ":" : "") < 0)
                return;
        if (setenv(SAVED, user ? user : "-", 1) == 0)
                setenv("GLIBC_TUNABLES", set, 1);
        free(set);
}

void tunables_restore(void)
{
        const char *saved = getenv(SAVED);
        if (!saved)
                return;
        if (!strcmp(saved, "-"))
                unsetenv("GLIBC_TUNABLES");
        else
                setenv("GLIBC_TUNABLES", saved, 1);
        unsetenv(SAVED);
}
