/* Directory closures: the Directories reachable from a root, and the checks
 * that an upload or a download of one is complete and in order. */
#pragma once

#include <kiln/castore/castore.h>

/* The two orders of a Directory closure. */
enum kiln_closure_order {
        KILN_CLOSURE_LEAVES_TO_ROOT, /* uploads */
        KILN_CLOSURE_ROOT_TO_LEAVES, /* downloads; needs the expected root */
};

/* Closure validation: checks that the Directories of an upload
 * or a download form one connected graph, received in the right order, with
 * every DirectoryNode.size equal to kiln_directory_size() of its target.
 * All failures are -EINVAL. Costs are linear in the closure's size. Not
 * thread-safe: one user at a time. */
struct kiln_closure;
/* `root` is required for ROOT_TO_LEAVES and ignored otherwise. */
KILN_PUBLIC struct kiln_closure *kiln_closure_new(enum kiln_closure_order order,
                                                  const struct kiln_digest *root);
KILN_PUBLIC void kiln_closure_free(struct kiln_closure *c);
DEFINE_CLEANUP_FUNC(struct kiln_closure, kiln_closure_free)
/* For checking a received Directory's digest before decoding it: 1 if a
 * Directory with digest d may be added, 0 if one was already added (add
 * would ignore it), -EINVAL "unexpected digest" if a root-to-leaves closure
 * cannot accept it. Leaves-to-root closures can only judge the children, so
 * they answer 1 for anything new. */
KILN_PUBLIC int kiln_closure_want(struct kiln_closure *c, const struct kiln_digest *d,
                                  struct kiln_error **err);
/* Adds a (validated) Directory, taking a copy. Fails with -EINVAL
 * "unknown directory was referenced" (leaves-to-root: a child not added
 * before), "unexpected digest" (root-to-leaves: neither the root nor
 * referenced by an added Directory) or "'<name>' has wrong size, specified
 * X, recorded Y" (an edge whose both ends are present). Duplicates are
 * accepted and ignored. A failed add changes nothing. *ret_digest (may be
 * NULL) gets the Directory's digest. */
KILN_PUBLIC int kiln_closure_add(struct kiln_closure *c, const struct kiln_directory *dir,
                                 struct kiln_digest *ret_digest, struct kiln_error **err);
/* Final checks: -EINVAL "got no directories" / "graph has disconnected
 * roots" / "graph is incomplete". *ret_root (may be NULL) gets the root
 * digest. Once it succeeded, further adds fail and finishing again succeeds. */
KILN_PUBLIC int kiln_closure_finish(struct kiln_closure *c, struct kiln_digest *ret_root,
                                    struct kiln_error **err);
/* After a successful finish: the Directories leaves-to-root (depth-first
 * post-order from the root) or root-to-leaves (breadth-first), children in
 * name order, each once; returns their count (0 before finish). The arrays
 * and Directories stay owned by the closure, valid until the next drain or
 * free; `ret_digests` (may be NULL) gets the matching digests. */
KILN_PUBLIC size_t kiln_closure_drain(struct kiln_closure *c, enum kiln_closure_order order,
                                      const struct kiln_directory ***ret_dirs,
                                      const struct kiln_digest **ret_digests);
