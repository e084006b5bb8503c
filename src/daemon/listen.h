/* Listening addresses of the server: TCP, unix sockets (with the check that
 * no live server holds the path), abstract sockets and systemd socket
 * activation (sd-listen), which gRPC cannot listen on by itself: an accept
 * thread hands each accepted connection to grpc_server_add_channel_from_fd. */
#pragma once

#include <pthread.h>

#include <grpc/grpc.h>

#include <kiln/error.h>

struct srv_listeners {
        char **unix_paths; /* socket files we created, removed at the end */
        size_t n_unix;
        int *sd_fds; /* listening sockets passed by systemd */
        size_t n_sd;
        int wake[2]; /* stops the accept thread */
        pthread_t accept_thread;
        bool accepting;
        grpc_server *server;
        grpc_server_credentials *creds;
};

void srv_listeners_init(struct srv_listeners *l);
int srv_listen(struct srv_listeners *l, grpc_server *server, const char *addr, char **ret_desc,
               struct kiln_error **err);
/* After grpc_server_start(): starts accepting on sd-listen sockets. */
int srv_listeners_start(struct srv_listeners *l, grpc_server *server, struct kiln_error **err);
/* Stops accepting on sd-listen sockets (gRPC's own listeners stop with the
 * server's shutdown). */
void srv_listeners_stop(struct srv_listeners *l);
/* Closes passed sockets, removes our unix socket files. */
void srv_listeners_done(struct srv_listeners *l);
