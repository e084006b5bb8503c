/* One server call, run synchronously by its thread over the call's own
 * pluck completion queue: at most one send and one receive in flight, the
 * close notification requested at the start so a client that cancels or
 * disconnects is seen (and can cancel a build). */
#pragma once

#include <time.h>

#include <kiln/rpc/rpc.h>

#include "server.h"

struct srv_call {
        struct kiln_server *srv;
        const struct srv_method *method; /* NULL: not a method we serve */
        grpc_call *call;
        grpc_completion_queue *cq;
        gpr_timespec deadline;
        grpc_metadata_array md;
        grpc_call_details details; /* for unregistered calls */
        grpc_byte_buffer *payload; /* the request of unary and server-streaming methods */
        int cancelled;             /* RECV_CLOSE_ON_SERVER: client cancelled or went away */
        bool close_done;
        bool md_sent;
        bool send_pending;
        bool send_failed;
        grpc_byte_buffer *send_bb;
        bool recv_pending;
        grpc_byte_buffer *recv_bb;
        bool finished;
        grpc_status_code status;
        char *status_msg;
        uint64_t bytes_in, bytes_out;
        struct timespec start;
        uint8_t tag_close, tag_send, tag_recv, tag_finish, tag_md;
};

/* A method we serve. */
struct srv_method {
        const char *path;
        bool payload; /* the request message arrives with the call */
        void (*handle)(struct srv_call *c);
};

struct srv_call *srv_call_new(struct kiln_server *srv);
/* Starts the close notification; called by the call thread first. */
void srv_call_begin(struct srv_call *c);
/* Waits for our op with this tag; returns its success. */
bool srv_call_wait(struct srv_call *c, void *tag);
/* Logs the call, releases it and its queue. */
void srv_call_free(struct srv_call *c);

/* Sends the initial metadata now (e.g. with x-kiln-blob-size). */
int srv_send_md(struct srv_call *c, grpc_metadata *md, size_t n);
/* Sends one message (taken over). Waits for the previous one first, so the
 * caller prepares the next message while this one goes out. -1 when the
 * call is dead (client gone). */
int srv_send(struct srv_call *c, grpc_byte_buffer *bb);
/* Starts receiving the next message; srv_recv_wait() collects it: 1 with
 * *ret (caller destroys), 0 at the end of the client's stream, -1 when the
 * call failed (client cancelled or disconnected). */
void srv_recv_start(struct srv_call *c);
int srv_recv_wait(struct srv_call *c, grpc_byte_buffer **ret);
/* The next message of a client stream, copied into *msg, while receiving
 * of the one after starts (so it arrives as this one is processed): 1, 0 at
 * the end of the stream, or -1 when the upload was interrupted, in which
 * case the call has been finished with CANCELLED. */
int srv_recv_next(struct srv_call *c, struct kiln_buf *msg);
/* The same, handing over the message itself (the caller destroys it). */
int srv_recv_next_bb(struct srv_call *c, grpc_byte_buffer **ret);
/* Copies the request payload into b; -1 when there was none. */
int srv_payload(struct srv_call *c, struct kiln_buf *b);

/* Ends the call with a status (and a last message, taken over, may be NULL). */
void srv_finish(struct srv_call *c, grpc_status_code status, const char *msg,
                grpc_byte_buffer *resp);
void srv_finishf(struct srv_call *c, grpc_status_code status, const char *fmt, ...)
        _printf_(3, 4);
/* Ends the call with the status kiln_rpc_status_from_errno(e->code). */
void srv_fail(struct srv_call *c, const struct kiln_error *e);

/* The server's metrics (metrics.h). */
struct srv_metrics *srv_metrics(const struct srv_call *c);

/* The services' stores. */
struct kiln_blob_service *srv_blobs(const struct srv_call *c);
struct kiln_directory_service *srv_dirs(const struct srv_call *c);
struct kiln_build_service *srv_builds(const struct srv_call *c);
/* The action cache served by kiln.build.v1.ActionCache; NULL: not served. */
struct kiln_action_cache *srv_action_cache(const struct srv_call *c);

/* Handlers (svc_*.c). */
void svc_blob_stat(struct srv_call *c);
void svc_blob_read(struct srv_call *c);
void svc_blob_put(struct srv_call *c);
void svc_directory_get(struct srv_call *c);
void svc_directory_put(struct srv_call *c);
void svc_build_do_build(struct srv_call *c);
/* snix.build.v1.BuildService/DoBuild: the same build, Snix's BuildResponse. */
void svc_build_do_build_snix(struct srv_call *c);
/* kiln.build.v1.BuildEvents/Build: the same build, streaming its events. */
void svc_build_events(struct srv_call *c);
void svc_health_check(struct srv_call *c);
void svc_action_cache_get(struct srv_call *c);
void svc_action_cache_put(struct srv_call *c);
void svc_action_cache_remove(struct srv_call *c);
void svc_action_cache_count(struct srv_call *c);
