/* Filesystem helpers. All paths are relative to a directory fd (or absolute). */
#pragma once

#include <kiln/util/error.h>

/* Removes name and everything below it without following symlinks and
 * without crossing into other mounts. Absent is success. Returns 0 or -errno. */
KILN_PUBLIC int kiln_rm_rf_at(int dirfd, const char *name);
/* mkdir -p with `mode` for the created components. Returns 0 or -errno. */
KILN_PUBLIC int kiln_mkdir_p(const char *path, mode_t mode);
/* Creates a unique temporary name "<base>.<tag>-XXXXXX" next to base (same
 * directory) as a directory. Heap string in *ret. */
KILN_PUBLIC int kiln_mkdtemp_beside(int dirfd, const char *base, const char *tag, char **ret);
