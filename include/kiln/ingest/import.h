/* Importing filesystem trees into the store and exporting them back out
 *. */
#pragma once

#include <kiln/store/store.h>

struct kiln_refscan_set;
struct kiln_refscan_result;

struct kiln_import_options {
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        /* Optional reference scanning: every needle of `needles` found in file
         * contents, symlink targets or entry names (scan_names) is marked in
         * `found`. Both NULL for no scanning. */
        const struct kiln_refscan_set *needles;
        struct kiln_refscan_result *found;
        bool scan_names;
        /* The tree was written by a build, not a user: refuse files and
         * directories with the setuid or setgid bit, and anything on another
         * filesystem than path itself (a hard link or mount from outside),
         * with a message naming the path. */
        bool untrusted;
        /* Worker threads hashing and uploading files; 0 = number of CPUs. */
        unsigned threads;
};

/* Ingests path (relative to dirfd, or absolute), never following symlinks:
 * files, directories and symlinks become nodes, uploaded to the blob and
 * directory services; other file types fail with -EINVAL naming the path.
 * *ret gets the anonymous root node. The store stays consistent if the import
 * fails or is interrupted (whatever was written is complete and verified). */
KILN_PUBLIC int kiln_import_path(const struct kiln_import_options *o, int dirfd, const char *path,
                                 struct kiln_node *ret, struct kiln_error **err);

/* Recreates the tree of `root` at dest (relative to dirfd): directories,
 * files (0644, or 0755 when executable, less the umask) and symlinks.
 * Refuses an existing dest (-EEXIST). Works in a temporary sibling that is
 * renamed into place at the end, so a failed export leaves nothing at dest.
 * Missing objects fail with -ENOENT naming the digest. */
KILN_PUBLIC int kiln_export_node(struct kiln_blob_service *blobs,
                                 struct kiln_directory_service *dirs,
                                 const struct kiln_node *root, int dirfd, const char *dest,
                                 struct kiln_error **err);
