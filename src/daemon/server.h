/* The kiln gRPC server: tvix.castore.v1.BlobService and DirectoryService,
 * tvix.build.v1.BuildService and grpc.health.v1.Health over kiln's stores,
 * answering UNIMPLEMENTED for any other method.
 *
 * Threading: one notification completion queue and a main loop (in
 * kiln_server_run) that keeps one request outstanding per method; each call
 * that arrives gets its own pluck completion queue and runs synchronously on
 * a thread of its own, at most max_calls at once (further calls wait in
 * gRPC's queue until a slot frees). */
#pragma once

#include <kiln/build/service.h>
#include <kiln/store/store.h>

struct kiln_server_config {
        /* Borrowed: they must outlive the server. Each may be used by many
         * call threads at once (store.h promises that). */
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
        struct kiln_build_service *builds;
        /* Served by kiln.build.v1.ActionCache when set (borrowed). */
        struct kiln_action_cache *action_cache;
        unsigned max_calls; /* concurrent calls; 0: 256 */
        unsigned grace_ms;  /* how long shutdown lets calls finish; 0: 3000 */
};

struct kiln_server;

int kiln_server_new(const struct kiln_server_config *cfg, struct kiln_server **ret,
                    struct kiln_error **err);
/* Adds a listening address before kiln_server_start(): "host:port" or
 * "[v6]:port" (port 0 picks a free one), a unix socket path starting with
 * '/' or '.', "@name" for an abstract unix socket, or "sd-listen" for the
 * sockets systemd passed (LISTEN_FDS). A unix socket held by a live server
 * is refused (-EADDRINUSE); a stale socket file is replaced. *ret_desc (heap)
 * names what was bound, with the real port. */
int kiln_server_listen(struct kiln_server *s, const char *addr, char **ret_desc,
                       struct kiln_error **err);
/* Serves TLS, before any kiln_server_listen(), on the addresses gRPC binds
 * itself (host:port, @name); unix socket paths stay plaintext (their file
 * mode decides who connects) and sd-listen is refused (gRPC takes passed
 * sockets in plaintext only). PEM texts, copied. client_ca_pem: every
 * client must show a certificate it signed (mTLS); NULL: none is asked. */
int kiln_server_set_tls(struct kiln_server *s, const char *cert_pem, const char *key_pem,
                        const char *client_ca_pem, struct kiln_error **err);
int kiln_server_start(struct kiln_server *s, struct kiln_error **err);
/* Appends the server's metrics in the Prometheus text format (metrics.h). */
void kiln_server_metrics(struct kiln_server *s, struct kiln_buf *out);
/* Serves until kiln_server_stop(), then stops accepting, lets running calls
 * finish for the grace period, cancels the rest (builds see their
 * kiln_cancel triggered), waits for every call thread and returns. */
void kiln_server_run(struct kiln_server *s);
/* Asks a running server to stop. Async-signal-safe and thread-safe. */
void kiln_server_stop(struct kiln_server *s);
/* Frees a server that is not running; removes the unix socket files it
 * created. */
void kiln_server_free(struct kiln_server *s);
DEFINE_CLEANUP_FUNC(struct kiln_server, kiln_server_free)
