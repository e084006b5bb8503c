/* Nix's serve protocol (nix-store --serve, Nix 2.8's serve-protocol.hh,
 * version 2.7) over kiln's stores: what Nix's legacy ssh:// store and its
 * build hook talk to, so that a kiln machine is a Nix remote builder (kiln
 * nix serve). Store paths are those of the PathInfo store, their contents
 * are in castore, derivations are built on the build service as
 * kiln_nixbuild_build_basic() builds them. */
#pragma once

#include <kiln/nixbuild/nixbuild.h>

struct kiln_nixbuild_serve_options {
        /* Stores, build service, PathInfo store, cores, the log (build logs
         * and messages meant for the client's stderr, e.g. "error: …" of a
         * failed build). pathinfo_only and jobs are set by the session; the
         * client's build settings (timeout, max-silent-time, max-log-size)
         * replace timeout, max_silent and max_log for its builds. */
        struct kiln_nixbuild_options build;
        bool write; /* allow adding paths and building (--write) */
        /* Harnesses only: a hang-up of in_fd does not cancel a build (the
         * fuzz target's input is a pipe already closed). */
        bool ignore_hangup;
};

/* One session on in_fd (the client's bytes) and out_fd (the replies), until
 * the client ends it (0). Everything the client sends is checked before a
 * store changes. Any error (a malformed or unknown command, a NAR that is
 * not the one claimed, a client that goes away mid-command) ends the
 * session with -errno and a message, as it ends nix-store --serve. The
 * descriptors stay the caller's; in_fd is also watched for a hang-up while
 * a build runs (the build is then cancelled). */
KILN_PUBLIC int kiln_nixbuild_serve(const struct kiln_nixbuild_serve_options *o, int in_fd,
                                    int out_fd, struct kiln_error **err);
