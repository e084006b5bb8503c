/* Build services: run a validated BuildRequest and answer with a Build
 *. Chosen by URL: dummy://, oci:///abs/bundle/root
 * and grpc+unix / grpc+http / grpc+https. */
#pragma once

#include <kiln/build/build.h>
#include <kiln/store/store.h>
#include <kiln/util/cancel.h>

/* The gRPC request headers of kiln_build_call.no_cache and .keep_failed
 * (value "1"). */
#define KILN_BUILD_NO_CACHE_HEADER "kiln-no-cache"
#define KILN_BUILD_KEEP_FAILED_HEADER "kiln-keep-failed"

/* Per-call context of a build; every member is optional. */

struct kiln_build_call {
        struct kiln_cancel *cancel;
        /* Called from the building thread with a short phase name ("queued",
         * "bundle", "mount", "run", "ingest"). */
        void (*progress)(void *userdata, const char *phase);
        /* Called from the building thread with the build's output as it
         * comes (stream 1 stdout, 2 stderr), up to the log limit; local
         * build services only. */
        void (*output)(void *userdata, int stream, const void *p, size_t n);
        /* Called from the building thread while the build waits for a slot,
         * each time the number of builds ahead of it changes. */
        void (*queue_position)(void *userdata, size_t ahead);
        /* Called before a remote build is sent again because the connection
         * to its builder was lost before an answer (why says how); the
         * output seen so far was the lost attempt's. */
        void (*retrying)(void *userdata, const struct kiln_error *why, unsigned attempt,
                         unsigned attempts);
        void *userdata;
        /* Wall-clock limit in seconds for this build; 0 = the service's. */
        unsigned timeout;
        /* Seconds without output, and bytes of output, after which this
         * build is killed; 0 = the service's. Local build services only. */
        unsigned max_silent;
        uint64_t max_log;
        /* Run this build even if an identical one is cached or in flight,
         * and cache nothing of it: a repeat whose outputs are compared with
         * the first's (Nix's --repeat). Sent on to a remote kiln as the
         * kiln-no-cache header; other remote services may still answer
         * from their own cache. */
        bool no_cache;
        /* Keep this build's directory on the machine that ran it if the
         * build fails, as the service's keep-failed=1 does for all (Nix's
         * --keep-failed); the failure message then ends with the line
         * "note: keeping build directory 'DIR'". Sent on to a remote kiln
         * as the kiln-keep-failed header. */
        bool keep_failed;
};

struct kiln_build_service;
struct kiln_build_service_ops {
        const char *name;
        /* *ret is filled on success. Failures: -EINVAL (request), -ENOEXEC (an
         * unmet constraint), -ETIMEDOUT, -ECANCELED, other codes for build and
         * infrastructure failures, with a message saying which step failed. */
        int (*build)(struct kiln_build_service *s, const struct kiln_build_request *req,
                     const struct kiln_build_call *call, struct kiln_build *ret,
                     struct kiln_error **err);
        void (*free)(struct kiln_build_service *s);
        /* Optional: a one-line notice about how builds will run here that an
         * operator should read once (e.g. limits that cannot be enforced). */
        const char *(*notice)(struct kiln_build_service *s);
};
struct kiln_build_service {
        const struct kiln_build_service_ops *ops;
};

/* Backends living outside libkiln (the OCI runner) register a constructor
 * for their URL scheme at startup. `u` is the parsed `url`. */
struct kiln_url;
typedef int (*kiln_build_service_ctor)(const struct kiln_url *u, const char *url,
                                       struct kiln_blob_service *blobs,
                                       struct kiln_directory_service *dirs,
                                       struct kiln_build_service **ret, struct kiln_error **err);
/* Not thread-safe: call before services are opened. */
KILN_PUBLIC void kiln_build_service_register(const char *scheme, kiln_build_service_ctor ctor);

/* Creates a build service; blobs and dirs are borrowed (they must outlive
 * it) and used by backends that need stores (oci). */
KILN_PUBLIC int kiln_build_service_open(const char *url, struct kiln_blob_service *blobs,
                                        struct kiln_directory_service *dirs,
                                        struct kiln_build_service **ret,
                                        struct kiln_error **err);
KILN_PUBLIC void kiln_build_service_free(struct kiln_build_service *s);
DEFINE_CLEANUP_FUNC(struct kiln_build_service, kiln_build_service_free)
KILN_PUBLIC const char *kiln_build_service_name(const struct kiln_build_service *s);
/* The service's notice for operators (see the op), or NULL. Owned by s. */
KILN_PUBLIC const char *kiln_build_service_notice(struct kiln_build_service *s);

/* Runs a build. `call` may be NULL. Thread-safe: services queue as needed. */
KILN_PUBLIC int kiln_build_service_build(struct kiln_build_service *s,
                                         const struct kiln_build_request *req,
                                         const struct kiln_build_call *call,
                                         struct kiln_build *ret, struct kiln_error **err);
