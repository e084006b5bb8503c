/* Internals of libkiln-nixbuild: one build session (build.c) and what it
 * does with store paths (paths.c). */
#pragma once

#include <pthread.h>

#include <kiln/nixbuild/nixbuild.h>

struct nixbuild {
        const struct kiln_nixbuild_options *o;
        /* One connection to Nix's daemon, shared by the workers. */
        struct kiln_nix_daemon *daemon;
        pthread_mutex_t daemon_lock;
        /* Imports one path at a time, so two builds never import the same. */
        pthread_mutex_t import_lock;
};

/* Every path of the closure of roots (absolute store paths), roots first;
 * -ENOENT "path '…' is not valid" for a path Nix does not have. */
int nixbuild_closure(struct nixbuild *nb, const struct kiln_strv *roots, struct kiln_strv *ret,
                     struct kiln_error **err);
/* The castore node of a valid store path, named by its basename: the
 * remembered one, or imported now and remembered. */
int nixbuild_input_node(struct nixbuild *nb, const char *path, struct kiln_node *ret,
                        struct kiln_error **err);
/* Checks one output of a finished build (a fixed output's hash, with Nix's
 * "hash mismatch" message), registers it in the Nix store with its NAR
 * hash, references, deriver and content address, and remembers it. */
int nixbuild_register_output(struct nixbuild *nb, const struct kiln_nix_derivation *d,
                             const char *drv_path, const char *out_name,
                             const struct kiln_nixbuild_plan *plan,
                             const struct kiln_build_output *bo, struct kiln_error **err);
