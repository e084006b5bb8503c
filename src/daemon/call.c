/* Server calls: see call.h. */
#include <stdarg.h>
#include <stdio.h>

#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "call.h"
#include "log.h"

struct srv_call *srv_call_new(struct kiln_server *srv)
{
        struct srv_call *c = kiln_calloc(1, sizeof(*c));
        c->srv = srv;
        c->cq = grpc_completion_queue_create_for_pluck(NULL);
        grpc_metadata_array_init(&c->md);
        grpc_call_details_init(&c->details);
        return c;
}

bool srv_call_wait(struct srv_call *c, void *tag)
{
        grpc_event ev = grpc_completion_queue_pluck(c->cq, tag,
                                                    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
                abort(); /* the queue is shut down only after every op completed */
        return ev.success;
}

static bool start(struct srv_call *c, grpc_op *ops, size_t n, void *tag)
{
        return grpc_call_start_batch(c->call, ops, n, tag, NULL) == GRPC_CALL_OK;
}

void srv_call_begin(struct srv_call *c)
{
        clock_gettime(CLOCK_MONOTONIC, &c->start);
        grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                      .data.recv_close_on_server.cancelled = &c->cancelled};
        if (!start(c, &op, 1, &c->tag_close))
                c->close_done = true; /* nothing to wait for */
}

static const char *method_name(const struct srv_call *c, char *buf, size_t size)
{
        const char *m;
        size_t len;
        if (c->method) {
                m = c->method->path;
                len = strlen(m);
        } else {
                m = (const char *)GRPC_SLICE_START_PTR(c->details.method);
                len = GRPC_SLICE_LENGTH(c->details.method);
        }
        /* "/tvix.castore.v1.BlobService/Stat" → "BlobService/Stat" */
        const char *slash = memrchr(m, '/', len);
        const char *p = slash ? slash : m + len;
        while (p > m && p[-1] != '.' && p[-1] != '/')
                p--;
        snprintf(buf, size, "%.*s", (int)(len - (size_t)(p - m)), p);
        return buf;
}

void srv_call_free(struct srv_call *c)
{
        if (!c)
                return;
        if (c->call) {
                if (!c->finished)
                        grpc_call_cancel(c->call, NULL);
                if (c->send_pending)
                        srv_call_wait(c, &c->tag_send);
                if (c->recv_pending) {
                        srv_call_wait(c, &c->tag_recv);
                        if (c->recv_bb)
                                grpc_byte_buffer_destroy(c->recv_bb);
                }
                if (!c->close_done)
                        srv_call_wait(c, &c->tag_close);

                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                double ms = (double)(now.tv_sec - c->start.tv_sec) * 1e3 +
                            (double)(now.tv_nsec - c->start.tv_nsec) / 1e6;
                char name[128];
                method_name(c, name, sizeof(name));
                grpc_status_code st = c->finished ? c->status : GRPC_STATUS_CANCELLED;
                const char *msg = c->status_msg ? c->status_msg
                                  : c->finished ? ""
                                                : "client went away";
                if (daemon_log_debug_enabled()) {
                        char *peer = grpc_call_get_peer(c->call);
                        daemon_log_debug("%s from %s: %s%s%s%s in %.3f ms, %llu B in, %llu B out",
                                         name, peer, kiln_rpc_status_name(st), *msg ? " (" : "",
                                         msg, *msg ? ")" : "", ms,
                                         (unsigned long long)c->bytes_in,
                                         (unsigned long long)c->bytes_out);
                        gpr_free(peer);
                } else if (st != GRPC_STATUS_OK && st != GRPC_STATUS_NOT_FOUND) {
                        daemon_log_error("%s: %s: %s", name, kiln_rpc_status_name(st), msg);
                }
                grpc_call_unref(c->call);
        }
        if (c->send_bb)
                grpc_byte_buffer_destroy(c->send_bb);
        if (c->payload)
                grpc_byte_buffer_destroy(c->payload);
        grpc_metadata_array_destroy(&c->md);
        grpc_call_details_destroy(&c->details);
        grpc_completion_queue_shutdown(c->cq);
        while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(c->cq);
        free(c->status_msg);
        free(c);
}

int srv_payload(struct srv_call *c, struct kiln_buf *b)
{
        if (!c->payload)
                return -1;
        kiln_rpc_bb_read(c->payload, b);
        c->bytes_in += b->len;
        return 0;
}

int srv_send_md(struct srv_call *c, grpc_metadata *md, size_t n)
{
        if (c->md_sent)
                return 0;
        grpc_op op = {.op = GRPC_OP_SEND_INITIAL_METADATA,
                      .data.send_initial_metadata = {.count = n, .metadata = md}};
        c->md_sent = true;
        if (!start(c, &op, 1, &c->tag_md) || !srv_call_wait(c, &c->tag_md)) {
                c->send_failed = true;
                return -1;
        }
        return 0;
}

static int wait_send(struct srv_call *c)
{
        if (c->send_pending) {
                bool ok = srv_call_wait(c, &c->tag_send);
                c->send_pending = false;
                grpc_byte_buffer_destroy(c->send_bb);
                c->send_bb = NULL;
                if (!ok)
                        c->send_failed = true;
        }
        return c->send_failed ? -1 : 0;
}

int srv_send(struct srv_call *c, grpc_byte_buffer *bb)
{
        if (wait_send(c) < 0) {
                grpc_byte_buffer_destroy(bb);
                return -1;
        }
        grpc_op ops[2];
        size_t n = 0;
        if (!c->md_sent) {
                ops[n++] = (grpc_op){.op = GRPC_OP_SEND_INITIAL_METADATA};
                c->md_sent = true;
        }
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = bb};
        c->bytes_out += grpc_byte_buffer_length(bb);
        c->send_bb = bb;
        if (!start(c, ops, n, &c->tag_send)) {
                c->send_failed = true;
                return -1;
        }
        c->send_pending = true;
        return 0;
}

void srv_recv_start(struct srv_call *c)
{
        if (c->recv_pending)
                return;
        c->recv_bb = NULL;
        grpc_op op = {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &c->recv_bb};
        c->recv_pending = start(c, &op, 1, &c->tag_recv);
}

int srv_recv_next_bb(struct srv_call *c, grpc_byte_buffer **ret)
{
        srv_recv_start(c);
        int r = srv_recv_wait(c, ret);
        if (r < 0) {
                srv_finish(c, GRPC_STATUS_CANCELLED, "upload interrupted: nothing stored", NULL);
                return -1;
        }
        if (r > 0)
                srv_recv_start(c);
        return r;
}

int srv_recv_next(struct srv_call *c, struct kiln_buf *msg)
{
        grpc_byte_buffer *bb;
        int r = srv_recv_next_bb(c, &bb);
        if (r <= 0)
                return r;
        kiln_rpc_bb_read(bb, msg);
        grpc_byte_buffer_destroy(bb);
        return 1;
}

int srv_recv_wait(struct srv_call *c, grpc_byte_buffer **ret)
{
        if (!c->recv_pending)
                return -1;
        bool ok = srv_call_wait(c, &c->tag_recv);
        c->recv_pending = false;
        if (!ok) {
                if (c->recv_bb)
                        grpc_byte_buffer_destroy(c->recv_bb);
                c->recv_bb = NULL;
                return -1;
        }
        if (!c->recv_bb) {
                /* A connection that drops also ends the stream; only a
                 * half-close from the client is a real end. */
                if (grpc_call_failed_before_recv_message(c->call))
                        return -1;
                if (!c->close_done) {
                        grpc_event ev = grpc_completion_queue_pluck(
                                c->cq, &c->tag_close, gpr_inf_past(GPR_CLOCK_REALTIME), NULL);
                        if (ev.type == GRPC_OP_COMPLETE)
                                c->close_done = true;
                }
                if (c->close_done && c->cancelled)
                        return -1;
                return 0;
        }
        c->bytes_in += grpc_byte_buffer_length(c->recv_bb);
        *ret = TAKE_PTR(c->recv_bb);
        return 1;
}

void srv_finish(struct srv_call *c, grpc_status_code status, const char *msg,
                grpc_byte_buffer *resp)
{
        if (c->finished) {
                if (resp)
                        grpc_byte_buffer_destroy(resp);
                return;
        }
        wait_send(c);
        c->finished = true;
        c->status = status;
        free(c->status_msg);
        c->status_msg = msg && *msg ? kiln_strdup(msg) : NULL;
        grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
        grpc_op ops[3];
        size_t n = 0;
        if (!c->md_sent) {
                ops[n++] = (grpc_op){.op = GRPC_OP_SEND_INITIAL_METADATA};
                c->md_sent = true;
        }
        if (resp && !c->send_failed) {
                ops[n++] = (grpc_op){.op = GRPC_OP_SEND_MESSAGE,
                                     .data.send_message.send_message = resp};
                c->bytes_out += grpc_byte_buffer_length(resp);
        }
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
                             .data.send_status_from_server = {.status = status,
                                                              .status_details = &details}};
        if (start(c, ops, n, &c->tag_finish))
                srv_call_wait(c, &c->tag_finish);
        grpc_slice_unref(details);
        if (resp)
                grpc_byte_buffer_destroy(resp);
}

void srv_finishf(struct srv_call *c, grpc_status_code status, const char *fmt, ...)
{
        va_list ap;
        char *msg;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        va_end(ap);
        srv_finish(c, status, msg, NULL);
        free(msg);
}

void srv_fail(struct srv_call *c, const struct kiln_error *e)
{
        srv_finish(c, kiln_rpc_status_from_errno(e ? e->code : EIO), kiln_error_msg(e), NULL);
}
