/* Building Nix derivations with kiln: a derivation becomes a BuildRequest
 * whose sandbox a build cannot tell from Nix's (request.c), its inputs come
 * from the local Nix store through castore, remembered in the PathInfo store
 * (inputs.c), its outputs are checked, registered in the Nix store with
 * their full metadata and remembered too (outputs.c), and derivations are
 * built in dependency order, several at once (build.c). */
#pragma once

#include <kiln/build/events.h>

#include <kiln/build/service.h>
#include <kiln/nix/daemon.h>
#include <kiln/nix/derivation.h>
#include <kiln/nix/pathinfo.h>

/* --- derivation → BuildRequest --- */

struct kiln_nixbuild_request_options {
        unsigned cores;    /* NIX_BUILD_CORES */
        bool provide_bin_sh; /* a /bin/sh, as Nix's sandbox-paths may give */
};

/* A request and how to read its answer back. */
struct kiln_nixbuild_plan {
        struct kiln_build_request req;
        /* req.outputs[i] is the output named output_names.v[i]. */
        struct kiln_strv output_names;
        /* req.needles[i] is the hash part of needle_paths.v[i]. */
        struct kiln_strv needle_paths;
};
KILN_PUBLIC void kiln_nixbuild_plan_done(struct kiln_nixbuild_plan *p);

/* The request for derivation d (read from drv_path) over its input closure
 * inputs[0..n) (nodes named by store path basename, any order). -EINVAL
 * naming the derivation for what cannot be built as Nix would: a floating
 * or impure output, a passAsFile naming no attribute, a __json that is not
 * a JSON object, a value that is not UTF-8. */
KILN_PUBLIC int kiln_nixbuild_request(const struct kiln_nix_derivation *d, const char *drv_path,
                                      const struct kiln_node *inputs, size_t n_inputs,
                                      const struct kiln_nixbuild_request_options *o,
                                      struct kiln_nixbuild_plan *ret, struct kiln_error **err);

/* Nix's structured attributes files for a __json object (with "outputs"
 * already set): .attrs.json as Nix 2.8 prints it (keys sorted, compact) and
 * .attrs.sh (bash declarations of the attributes bash can hold). */
KILN_PUBLIC int kiln_nixbuild_attrs_json(const json_t *attrs, struct kiln_buf *out,
                                         struct kiln_error **err);
KILN_PUBLIC void kiln_nixbuild_attrs_sh(const json_t *attrs, struct kiln_buf *out);

/* --- building --- */

struct kiln_nixbuild_options {
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_build_service *builds;
        struct kiln_nix_pathinfo_store *pathinfo;
        const char *nix_daemon; /* program; NULL: nix-daemon */
        /* Inputs come from the PathInfo store alone (paths a client copied
         * to kiln) and outputs are registered only there: no Nix daemon and
         * no local Nix store are used (kiln nix serve). */
        bool pathinfo_only;
        struct kiln_nixbuild_request_options request;
        unsigned jobs; /* derivations built at once; 0: 1 */
        /* Progress lines ("building '…'") and, unless quiet, the builds'
         * log lines ("<name>> …"), called from any thread; may be NULL. */
        void (*log)(void *userdata, const char *line);
        /* Each build's events (kiln.build.v1, events.h) as they happen,
         * from its building thread; may be NULL. Its log then reaches log
         * only through these. */
        void (*event)(void *userdata, const char *drv_path, const struct kiln_build_event *ev);
        void *userdata;
        bool quiet;
        struct kiln_cancel *cancel; /* optional */
        /* Limits of each build (kiln_build_call): seconds in all, seconds
         * without output, bytes of output; 0 = the build service's. */
        unsigned timeout, max_silent;
        uint64_t max_log;
        /* Nix's --repeat: each derivation is built this many times more
         * (kiln_build_call.no_cache) and its outputs compared with the first
         * build's. Outputs that differ fail the derivation with
         * KILN_NIXBUILD_NOT_DETERMINISTIC when enforce_determinism is set,
         * else are a warning on the log; the first build's outputs are
         * kept. */
        unsigned repeat;
        bool enforce_determinism;
        /* Nix's --keep-failed: a failed build's directory stays on the
         * machine that ran it (kiln_build_call.keep_failed). */
        bool keep_failed;
};

/* The error code (negated) of a derivation whose repeated build gave other
 * outputs, with enforce_determinism. */
#define KILN_NIXBUILD_NOT_DETERMINISTIC EUCLEAN

/* What one derivation's build came to (kiln_nixbuild_build_basic). */
struct kiln_nixbuild_result {
        unsigned times_built;   /* builds run: 1 + repeats (0: none ran) */
        bool non_deterministic; /* a repeat gave other outputs */
};

/* Builds the derivations drvs[0..n) (absolute .drv paths in the local Nix
 * store) and every input derivation whose outputs are not valid yet, in
 * dependency order, up to o->jobs at once; registers each output in the Nix
 * store. *ret gets every output path of drvs, in order (the outputs of each
 * derivation by name). The first failure stops what depends on it and is
 * returned naming its derivation; builds already running are finished. */
KILN_PUBLIC int kiln_nixbuild_build(const struct kiln_nixbuild_options *o,
                                    const char *const *drvs, size_t n, struct kiln_strv *ret,
                                    struct kiln_error **err);

/* Builds one derivation d, read from drv_path, whose inputs are all among
 * its input sources (Nix's BasicDerivation, as `nix-store --serve` receives
 * it: no input derivations), as kiln_nixbuild_build() builds each of its
 * derivations. With o->pathinfo_only the input closure must be in the
 * PathInfo store (-ENOENT "path '…' is not valid" otherwise). *ret_result
 * (may be NULL) says how many times it was built and whether a repeat
 * differed, whatever the outcome. */
KILN_PUBLIC int kiln_nixbuild_build_basic(const struct kiln_nixbuild_options *o,
                                          const struct kiln_nix_derivation *d,
                                          const char *drv_path,
                                          struct kiln_nixbuild_result *ret_result,
                                          struct kiln_error **err);
