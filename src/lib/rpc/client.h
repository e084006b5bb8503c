/* Client side of kiln's gRPC plumbing (inside libkiln): channels shared per
 * URL, and a synchronous call wrapper over one pluck completion queue per
 * call. A call is used by one thread at a time. */
#pragma once

#include <kiln/util/cancel.h>
#include <kiln/rpc/rpc.h>
#include <kiln/util/url.h>

/* One HTTP/2 channel, shared by every service opened on the same URL (query
 * ignored) within the process. Thread-safe. */
struct rpc_channel;

/* Opens (or shares) the channel for a checked grpc+… URL. With
 * ?wait-connect=1 it connects now and fails with -ECONNREFUSED when the
 * endpoint is unreachable; otherwise it connects on first use. */
int rpc_channel_open(const struct kiln_url *u, const char *url, struct rpc_channel **ret,
                     struct kiln_error **err);
void rpc_channel_unref(struct rpc_channel *ch);
/* The URL the channel was opened with (for messages). */
const char *rpc_channel_url(const struct rpc_channel *ch);
grpc_channel *rpc_channel_grpc(const struct rpc_channel *ch);

struct rpc_call {
        grpc_call *call;
        grpc_completion_queue *cq;
        const char *method; /* static string, "/pkg.Service/Method" */
        const struct rpc_channel *ch;
        struct kiln_cancel *cancel; /* optional: checked while waiting */
        grpc_metadata_array initial_md, trailing_md;
        grpc_status_code status;
        grpc_slice details;
        grpc_byte_buffer *recv_bb;
        grpc_byte_buffer *send_bb; /* the message in flight */
        bool cancelled;            /* we cancelled it (kiln_cancel) */
        bool send_pending;    /* a SEND_MESSAGE is in flight */
        bool send_failed;     /* a send failed: the call is dead, see the status */
        bool half_closed;     /* SEND_CLOSE_FROM_CLIENT done */
        bool md_received;     /* initial metadata arrived */
        bool status_received; /* RECV_STATUS_ON_CLIENT completed */
        bool ended;           /* RECV_MESSAGE returned the end of the stream */
        uint8_t tag_send, tag_recv, tag_md, tag_status, tag_close;
};

/* Starts a call: sends the headers and the request for the status, so a
 * server failure during a long upload is noticed. timeout_s = 0: none. */
int rpc_call_start(struct rpc_call *c, struct rpc_channel *ch, const char *method,
                   unsigned timeout_s, struct kiln_cancel *cancel, struct kiln_error **err);
/* The same with n_md headers of the caller's (copied by gRPC at the start). */
int rpc_call_start_md(struct rpc_call *c, struct rpc_channel *ch, const char *method,
                      unsigned timeout_s, struct kiln_cancel *cancel, grpc_metadata *md,
                      size_t n_md, struct kiln_error **err);
/* Sends one message (taken over). Waits for the previous send first, so one
 * message is in flight while the caller prepares the next. */
int rpc_call_send(struct rpc_call *c, grpc_byte_buffer *bb, struct kiln_error **err);
/* Waits for the pending send, then half-closes. */
int rpc_call_close_send(struct rpc_call *c, struct kiln_error **err);
/* Waits for the initial metadata (or the end of the call). */
int rpc_call_recv_md(struct rpc_call *c, struct kiln_error **err);
/* Receives the next message into *ret (cleared, memory reused): 1, or 0 at
 * the end of the stream with an OK status; a non-OK status is returned as
 * its mapped -errno with the server's message. */
int rpc_call_recv(struct rpc_call *c, struct kiln_buf *ret, struct kiln_error **err);
/* The same, handing over the message itself (no copy): *ret is the caller's
 * to grpc_byte_buffer_destroy(). */
int rpc_call_recv_bb(struct rpc_call *c, grpc_byte_buffer **ret, struct kiln_error **err);
/* Waits for the status: 0 when OK, else its mapped -errno with a message
 * "<Service>/<Method> on <url>: <details>". */
int rpc_call_finish(struct rpc_call *c, struct kiln_error **err);
/* The status once known (after finish or a failed recv). */
static inline grpc_status_code rpc_call_status(const struct rpc_call *c)
{
        return c->status_received ? c->status : GRPC_STATUS_UNKNOWN;
}
/* Cancels the call if it is still running, then releases everything. */
void rpc_call_done(struct rpc_call *c);

/* One unary call: request bytes → response message in *resp. */
int rpc_unary(struct rpc_channel *ch, const char *method, const void *req, size_t req_len,
              unsigned timeout_s, struct kiln_cancel *cancel, struct kiln_buf *resp,
              struct kiln_error **err);
int rpc_unary_md(struct rpc_channel *ch, const char *method, grpc_metadata *md, size_t n_md,
                 const void *req, size_t req_len, unsigned timeout_s,
                 struct kiln_cancel *cancel, struct kiln_buf *resp, struct kiln_error **err);

/* Hands a locally collected error to the caller's err (for paths where an
 * expected outcome, such as NOT_FOUND meaning "absent", must leave err alone). */
static inline int rpc_error_move(struct kiln_error **dst, struct kiln_error **src, int r)
{
        if (dst) {
                kiln_error_free(*dst);
                *dst = *src;
                *src = NULL;
        }
        return r;
}

