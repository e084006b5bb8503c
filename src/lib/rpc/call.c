/* Synchronous client calls: every call has its own pluck completion queue
 * and at most one SEND_MESSAGE and one RECV_MESSAGE in flight. The status is
 * requested as soon as the call starts, so a server that fails an upload
 * early is noticed at the next send instead of after the whole stream. */
#include <stdio.h>

#include <grpc/support/time.h>

#include "client.h"

/* How often a call with a kiln_cancel token checks it while waiting. */
#define CANCEL_POLL_MS 50

/* Waits for one of our ops; returns its success flag. */
static bool wait_tag(struct rpc_call *c, void *tag)
{
        for (;;) {
                gpr_timespec dl = c->cancel && !c->cancelled
                                          ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                         gpr_time_from_millis(CANCEL_POLL_MS,
                                                                              GPR_TIMESPAN))
                                          : gpr_inf_future(GPR_CLOCK_REALTIME);
                grpc_event ev = grpc_completion_queue_pluck(c->cq, tag, dl, NULL);
                if (ev.type == GRPC_OP_COMPLETE)
                        return ev.success;
                if (ev.type == GRPC_QUEUE_TIMEOUT) {
                        if (kiln_cancel_is_set(c->cancel)) {
                                c->cancelled = true;
                                grpc_call_cancel(c->call, NULL);
                        }
                        continue;
                }
                abort(); /* our queue is shut down only after every op completed */
        }
}

static bool start(struct rpc_call *c, grpc_op *ops, size_t n, void *tag)
{
        return grpc_call_start_batch(c->call, ops, n, tag, NULL) == GRPC_CALL_OK;
}

/* "BlobService/Stat" out of "/tvix.castore.v1.BlobService/Stat". */
static const char *short_method(const char *m)
{
        const char *slash = strrchr(m, '/');
        const char *p = slash;
        while (p > m && p[-1] != '.' && p[-1] != '/')
                p--;
        return slash ? p : m;
}

int rpc_call_start(struct rpc_call *c, struct rpc_channel *ch, const char *method,
                   unsigned timeout_s, struct kiln_cancel *cancel, struct kiln_error **err)
{
        return rpc_call_start_md(c, ch, method, timeout_s, cancel, NULL, 0, err);
}

int rpc_call_start_md(struct rpc_call *c, struct rpc_channel *ch, const char *method,
                      unsigned timeout_s, struct kiln_cancel *cancel, grpc_metadata *md,
                      size_t n_md, struct kiln_error **err)
{
        *c = (struct rpc_call){.method = method, .ch = ch, .cancel = cancel};
        c->details = grpc_empty_slice();
        grpc_metadata_array_init(&c->initial_md);
        grpc_metadata_array_init(&c->trailing_md);
        c->cq = grpc_completion_queue_create_for_pluck(NULL);
        gpr_timespec deadline = timeout_s ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                         gpr_time_from_seconds(timeout_s,
                                                                               GPR_TIMESPAN))
                                          : gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_slice m = grpc_slice_from_static_string(method);
        c->call = grpc_channel_create_call(rpc_channel_grpc(ch), NULL, GRPC_PROPAGATE_DEFAULTS,
                                          c->cq, m, NULL, deadline, NULL);
        grpc_op status = {
                .op = GRPC_OP_RECV_STATUS_ON_CLIENT,
                .data.recv_status_on_client = {.trailing_metadata = &c->trailing_md,
                                               .status = &c->status,
                                               .status_details = &c->details},
        };
        grpc_op send_md = {.op = GRPC_OP_SEND_INITIAL_METADATA,
                           .data.send_initial_metadata = {.count = n_md, .metadata = md}};
        if (!c->call || !start(c, &status, 1, &c->tag_status) ||
            !start(c, &send_md, 1, &c->tag_send))
                return kiln_error_set(err, EIO, "%s on %s: cannot start call",
                                      short_method(method), rpc_channel_url(ch));
        c->send_pending = true;
        return 0;
}

int rpc_call_finish(struct rpc_call *c, struct kiln_error **err)
{
        if (!c->status_received) {
                /* gRPC core delivers the status only after the initial
                 * metadata was asked for: a client stream that the server
                 * failed early (say, ENOSPC in the middle of an upload) never
                 * asked, and would wait for the status forever. */
                if (!c->md_received) {
                        grpc_op op = {.op = GRPC_OP_RECV_INITIAL_METADATA,
                                      .data.recv_initial_metadata.recv_initial_metadata =
                                              &c->initial_md};
                        if (start(c, &op, 1, &c->tag_md))
                                (void)wait_tag(c, &c->tag_md);
                        c->md_received = true;
                }
                wait_tag(c, &c->tag_status);
                c->status_received = true;
        }
        if (c->status == GRPC_STATUS_OK)
                return 0;
        int code = kiln_rpc_errno_from_status(c->status);
        if (c->cancelled)
                code = ECANCELED;
        size_t dlen = GRPC_SLICE_LENGTH(c->details);
        if (dlen)
                return kiln_error_set(err, code, "%s on %s: %s: %.*s", short_method(c->method),
                                      rpc_channel_url(c->ch), kiln_rpc_status_name(c->status),
                                      (int)dlen, (const char *)GRPC_SLICE_START_PTR(c->details));
        return kiln_error_set(err, code, "%s on %s: %s", short_method(c->method),
                              rpc_channel_url(c->ch), kiln_rpc_status_name(c->status));
}

/* A send or receive failed: the status says why. */
static int dead(struct rpc_call *c, const char *what, struct kiln_error **err)
{
        int r = rpc_call_finish(c, err);
        if (r < 0)
                return r;
        return kiln_error_set(err, EIO, "%s on %s: %s failed", short_method(c->method),
                              rpc_channel_url(c->ch), what);
}

static int wait_send(struct rpc_call *c, struct kiln_error **err)
{
        if (!c->send_pending)
                return c->send_failed ? dead(c, "send", err) : 0;
        bool ok = wait_tag(c, &c->tag_send);
        c->send_pending = false;
        if (c->send_bb) {
                grpc_byte_buffer_destroy(c->send_bb);
                c->send_bb = NULL;
        }
        if (!ok) {
                c->send_failed = true;
                return dead(c, "send", err);
        }
        return 0;
}

int rpc_call_send(struct rpc_call *c, grpc_byte_buffer *bb, struct kiln_error **err)
{
        int r = wait_send(c, err);
        if (r < 0) {
                grpc_byte_buffer_destroy(bb);
                return r;
        }
        c->send_bb = bb;
        grpc_op op = {.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb};
        if (!start(c, &op, 1, &c->tag_send)) {
                c->send_failed = true;
                return dead(c, "send", err);
        }
        c->send_pending = true;
        return 0;
}

int rpc_call_close_send(struct rpc_call *c, struct kiln_error **err)
{
        int r = wait_send(c, err);
        if (r < 0)
                return r;
        if (c->half_closed)
                return 0;
        grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
        if (!start(c, &op, 1, &c->tag_close) || !wait_tag(c, &c->tag_close))
                return dead(c, "half-close", err);
        c->half_closed = true;
        return 0;
}

int rpc_call_recv_md(struct rpc_call *c, struct kiln_error **err)
{
        if (c->md_received)
                return 0;
        grpc_op op = {.op = GRPC_OP_RECV_INITIAL_METADATA,
                      .data.recv_initial_metadata.recv_initial_metadata = &c->initial_md};
        if (!start(c, &op, 1, &c->tag_md))
                return dead(c, "receive", err);
        bool ok = wait_tag(c, &c->tag_md);
        c->md_received = true;
        return ok ? 0 : dead(c, "receive", err);
}

int rpc_call_recv_bb(struct rpc_call *c, grpc_byte_buffer **ret, struct kiln_error **err)
{
        if (c->ended)
                return 0;
        int r = rpc_call_recv_md(c, err);
        if (r < 0)
                return r;
        grpc_op op = {.op = GRPC_OP_RECV_MESSAGE,
                      .data.recv_message.recv_message = &c->recv_bb};
        if (!start(c, &op, 1, &c->tag_recv))
                return dead(c, "receive", err);
        bool ok = wait_tag(c, &c->tag_recv);
        if (ok && c->recv_bb) {
                *ret = c->recv_bb;
                c->recv_bb = NULL;
                return 1;
        }
        c->ended = true;
        r = rpc_call_finish(c, err);
        if (r < 0)
                return r;
        if (!ok)
                return dead(c, "receive", err);
        return 0;
}

int rpc_call_recv(struct rpc_call *c, struct kiln_buf *ret, struct kiln_error **err)
{
        grpc_byte_buffer *bb;
        int r = rpc_call_recv_bb(c, &bb, err);
        if (r > 0) {
                kiln_rpc_bb_read(bb, ret);
                grpc_byte_buffer_destroy(bb);
        }
        return r;
}

void rpc_call_done(struct rpc_call *c)
{
        if (!c->cq)
                return;
        if (c->call) {
                if (!c->status_received)
                        grpc_call_cancel(c->call, NULL);
                c->cancel = NULL; /* no more polling: everything completes now */
                if (c->send_pending)
                        wait_tag(c, &c->tag_send);
                if (c->send_bb)
                        grpc_byte_buffer_destroy(c->send_bb);
                if (!c->status_received)
                        wait_tag(c, &c->tag_status);
                grpc_call_unref(c->call);
        }
        grpc_metadata_array_destroy(&c->initial_md);
        grpc_metadata_array_destroy(&c->trailing_md);
        grpc_slice_unref(c->details);
        grpc_completion_queue_shutdown(c->cq);
        while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(c->cq);
        *c = (struct rpc_call){0};
}

int rpc_unary(struct rpc_channel *ch, const char *method, const void *req, size_t req_len,
              unsigned timeout_s, struct kiln_cancel *cancel, struct kiln_buf *resp,
              struct kiln_error **err)
{
        return rpc_unary_md(ch, method, NULL, 0, req, req_len, timeout_s, cancel, resp, err);
}

int rpc_unary_md(struct rpc_channel *ch, const char *method, grpc_metadata *md, size_t n_md,
                 const void *req, size_t req_len, unsigned timeout_s,
                 struct kiln_cancel *cancel, struct kiln_buf *resp, struct kiln_error **err)
{
        struct rpc_call c;
        int r = rpc_call_start_md(&c, ch, method, timeout_s, cancel, md, n_md, err);
        if (r >= 0)
                r = rpc_call_send(&c, kiln_rpc_bb_copy(req, req_len), err);
        if (r >= 0)
                r = rpc_call_close_send(&c, err);
        if (r >= 0)
                r = rpc_call_recv(&c, resp, err);
        if (r == 0)
                r = kiln_error_set(err, EIO, "%s on %s: no response message",
                                   short_method(method), rpc_channel_url(ch));
        if (r > 0) {
                struct kiln_buf extra = KILN_BUF_INIT;
                r = rpc_call_recv(&c, &extra, err);
                kiln_buf_done(&extra);
                if (r > 0)
                        r = kiln_error_set(err, EIO, "%s on %s: more than one response message",
                                           short_method(method), rpc_channel_url(ch));
        }
        rpc_call_done(&c);
        return r;
}
