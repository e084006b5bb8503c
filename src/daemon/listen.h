/* Listening addresses of the server. TCP and abstract sockets are gRPC's own
 * listeners, the only ones that can speak TLS. Unix socket paths and sockets passed by systemd (sd-listen) are
 * ours: an accept thread hands each connection to
 * grpc_server_add_channel_from_fd after raising its socket buffers (gRPC
 * cannot listen on a passed socket, and with the default ~200 KiB unix
 * socket buffer a 1 MiB message takes several wake-ups of both sides, which
 * made streaming latency-bound); binding the path ourselves also makes the
 * "is a live server there" check race-free. */
#pragma once

#include <pthread.h>

#include <grpc/grpc.h>

#include <kiln/util/error.h>

struct srv_listeners {
        char **unix_paths; /* socket files we created, removed at the end */
        size_t n_unix;
        int *fds; /* listening sockets we accept on (unix paths, sd-listen) */
        size_t n_fds;
        bool sd_listen;
        int wake[2]; /* stops the accept thread */
        pthread_t accept_thread;
        bool accepting;
        grpc_server *server;
        grpc_server_credentials *creds;
        grpc_server_credentials *tls; /* for gRPC's own listeners; NULL: plaintext */
};

void srv_listeners_init(struct srv_listeners *l);
/* TLS for the addresses listened on afterwards (see kiln_server_set_tls). */
int srv_listeners_set_tls(struct srv_listeners *l, const char *cert_pem, const char *key_pem,
                          const char *client_ca_pem, struct kiln_error **err);
int srv_listen(struct srv_listeners *l, grpc_server *server, const char *addr, char **ret_desc,
               struct kiln_error **err);
/* After grpc_server_start(): starts accepting on sd-listen sockets. */
int srv_listeners_start(struct srv_listeners *l, grpc_server *server, struct kiln_error **err);
/* Stops accepting on sd-listen sockets (gRPC's own listeners stop with the
 * server's shutdown). */
void srv_listeners_stop(struct srv_listeners *l);
/* Closes passed sockets, removes our unix socket files. */
void srv_listeners_done(struct srv_listeners *l);
