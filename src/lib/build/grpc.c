/* grpc+…:// build service: the client of tvix.build.v1.BuildService
 *. Unlike the reference it validates the response (a Build whose
 * echo or outputs fail validation is -EBADMSG), honours the call's
 * kiln_cancel (the RPC is cancelled, -ECANCELED) and its timeout (the call's
 * deadline, -ETIMEDOUT), and maps the status back to errno codes with the
 * server's message. Thread-safe: every build is its own call.
 *
 * A caller that wants to see the build (progress, output or queue position
 * callbacks) gets kiln.build.v1.BuildEvents/Build from a kiln server, its
 * events turned back into those callbacks; a server without it (UNIMPLEMENTED:
 * upstream's) is asked with DoBuild from then on.
 *
 * A build whose connection is lost before its answer (UNAVAILABLE, or a
 * stream that a proxy reset when the builder behind it died) is sent again,
 * at most BUILD_ATTEMPTS times in all, within the call's timeout: builds
 * are hermetic, so running one twice changes nothing. A build the server
 * answered, even with a failure, is never sent again.
 *
 * Every build call carries the request's identity (the action cache's key)
 * as the header kiln-action: a proxy that balances on it (haproxy's
 * `balance hdr(kiln-action)`) sends identical builds to one builder, whose
 * action cache and in-flight deduplication then serve them all. A build
 * that must not come from a cache (kiln_build_call.no_cache) also carries
 * kiln-no-cache: 1, so that a kiln daemon runs it rather than answering
 * from its cache; one whose directory is kept if it fails, kiln-keep-failed:
 * 1. */
#include <poll.h>
#include <stdatomic.h>
#include <time.h>

#include <kiln/build/action_cache.h>
#include <kiln/build/service.h>
#include <kiln/util/status.h>

#include "grpc.h"
#include "../rpc/client.h"
#include "build.pb-c.h"
#include "events.pb-c.h"

#define BUILD_ATTEMPTS 3

#define ACTION_HEADER "kiln-action"

#define M_DO_BUILD "/tvix.build.v1.BuildService/DoBuild"
#define M_EVENTS   "/kiln.build.v1.BuildEvents/Build"

struct grpc_build_service {
        struct kiln_build_service base;
        struct rpc_channel *ch;
        atomic_bool no_events; /* the server answered UNIMPLEMENTED */
};

static int bad_build(struct grpc_build_service *g, struct kiln_error **err)
{
        if (err && *err)
                (*err)->code = EBADMSG;
        return kiln_error_prefix(err, -EBADMSG, "invalid Build from %s", rpc_channel_url(g->ch));
}

/* One event: 0 to go on, 1 with *ret filled (Completed), < 0 (Failed, or a
 * malformed event). */
static int on_event(struct grpc_build_service *g, const struct kiln_build_call *call,
                    const Kiln__Build__V1__BuildEvent *ev, bool *queued, struct kiln_build *ret,
                    struct kiln_error **err)
{
        void *ud = call->userdata;
        switch (ev->event_case) {
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_QUEUED:
                if (!*queued && call->progress)
                        call->progress(ud, "queued");
                *queued = true;
                if (call->queue_position)
                        call->queue_position(ud, (size_t)ev->queued->position);
                return 0;
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_STARTED:
                if (call->progress)
                        call->progress(ud, "run");
                return 0;
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_LOG:
                if (call->output && ev->log->data.len)
                        call->output(ud, ev->log->stream == KILN__BUILD__V1__BUILD_EVENT__STREAM__STDOUT ? 1 : 2,
                                     ev->log->data.data, ev->log->data.len);
                return 0;
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_REFSCAN:
                if (call->progress)
                        call->progress(ud, "ingest");
                return 0;
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_COMPLETED: {
                const Kiln__Build__V1__BuildEvent__Completed *c = ev->completed;
                if (!c->build)
                        return kiln_error_set(err, EBADMSG, "invalid Build from %s: none in Completed",
                                              rpc_channel_url(g->ch));
                size_t n = tvix__build__v1__build__get_packed_size(c->build);
                _cleanup_free_ uint8_t *b = kiln_malloc(n);
                tvix__build__v1__build__pack(c->build, b);
                if (kiln_build_decode(b, n, ret, err) < 0)
                        return bad_build(g, err);
                if (call->progress && (c->cached || c->joined))
                        call->progress(ud, c->cached ? "cache-hit" : "joined");
                return 1;
        }
        case KILN__BUILD__V1__BUILD_EVENT__EVENT_FAILED: {
                int code = kiln_errno_from_status(ev->failed->code);
                return kiln_error_set_lines(err, code ? code : EIO, "%s", ev->failed->message);
        }
        default: /* an event of a newer server: ignore it */
                return 0;
        }
}

static bool call_cancelled(const struct kiln_build_call *call)
{
        return call->cancel && kiln_cancel_is_set(call->cancel);
}

/* The build through BuildEvents: 0 or a failure; *unimplemented when the
 * server has no such method, *lost when the call broke without the server's
 * answer. */
static int build_events(struct grpc_build_service *g, const struct kiln_buf *msg,
                        grpc_metadata *md, size_t n_md, const struct kiln_build_call *call,
                        unsigned timeout,
                        struct kiln_build *ret, bool *unimplemented, bool *lost,
                        struct kiln_error **err)
{
        struct rpc_call c;
        int r = rpc_call_start_md(&c, g->ch, M_EVENTS, timeout, call->cancel, md, n_md, err);
        if (r >= 0)
                r = rpc_call_send(&c, kiln_rpc_bb_copy(msg->data, msg->len), err);
        if (r >= 0)
                r = rpc_call_close_send(&c, err);
        bool queued = false, done = false, any = false, answered = false;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        while (r >= 0 && !done) {
                r = rpc_call_recv(&c, &in, err);
                any = any || r > 0;
                if (r == 0)
                        r = kiln_error_set(err, EBADMSG, "%s: the build's events ended without "
                                           "its result", rpc_channel_url(g->ch));
                if (r < 0)
                        break;
                Kiln__Build__V1__BuildEvent *ev =
                        kiln__build__v1__build_event__unpack(NULL, in.len, in.data);
                if (!ev) {
                        r = kiln_error_set(err, EBADMSG, "%s: malformed BuildEvent",
                                           rpc_channel_url(g->ch));
                        break;
                }
                r = on_event(g, call, ev, &queued, ret, err);
                answered = ev->event_case == KILN__BUILD__V1__BUILD_EVENT__EVENT_FAILED;
                kiln__build__v1__build_event__free_unpacked(ev, NULL);
                done = r > 0;
        }
        /* Wherever it failed (the server may refuse before reading): a
         * server without the method says so before any event. */
        grpc_status_code st = rpc_call_status(&c);
        *unimplemented = r < 0 && !any && st == GRPC_STATUS_UNIMPLEMENTED;
        /* A kiln server answers with Failed, never with a bare UNKNOWN: that
         * status is the transport's, for a stream reset under it. */
        *lost = r < 0 && !answered && !call_cancelled(call) &&
                (st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_UNKNOWN);
        if (*lost) {
                if (err && *err)
                        (*err)->code = EAGAIN;
                r = kiln_error_prefix(err, -EAGAIN, "lost the connection to the builder");
        }
        rpc_call_done(&c);
        return r < 0 ? r : 0;
}


/* One attempt: 0, or a failure with *lost when sending it again may help. */
static int build_once(struct grpc_build_service *g, const struct kiln_buf *msg,
                      grpc_metadata *md, size_t n_md, const struct kiln_build_call *call,
                      unsigned timeout, struct kiln_build *ret, bool *lost,
                      struct kiln_error **err)
{
        *lost = false;
        if ((call->progress || call->output || call->queue_position) &&
            !atomic_load(&g->no_events)) {
                bool unimplemented = false;
                int r = build_events(g, msg, md, n_md, call, timeout, ret, &unimplemented, lost,
                                     err);
                if (!unimplemented)
                        return r;
                kiln_error_free(TAKE_PTR(*err));
                atomic_store(&g->no_events, true);
        }
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        int r = rpc_unary_md(g->ch, M_DO_BUILD, md, n_md, msg->data, msg->len, timeout, call->cancel,
                             &resp, err);
        if (r < 0) {
                *lost = r == -EAGAIN && !call_cancelled(call);
                return r;
        }
        r = kiln_build_decode(resp.data, resp.len, ret, err);
        return r < 0 ? bad_build(g, err) : 0;
}

static double now_seconds(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int build_attempts(struct grpc_build_service *g, const struct kiln_buf *msg,
                          grpc_metadata *md, size_t n_md, const struct kiln_build_call *call,
                          struct kiln_build *ret, struct kiln_error **err)
{
        double start = now_seconds();
        for (unsigned attempt = 1;; attempt++) {
                _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
                unsigned timeout = call->timeout;
                if (timeout) {
                        double left = call->timeout - (now_seconds() - start);
                        timeout = left < 1 ? 1 : (unsigned)left;
                }
                bool lost;
                int r = build_once(g, msg, md, n_md, call, timeout, ret, &lost, &e);
                if (r >= 0 || !lost || attempt == BUILD_ATTEMPTS ||
                    (call->timeout && now_seconds() - start >= call->timeout)) {
                        if (r < 0 && err) {
                                kiln_error_free(*err);
                                *err = TAKE_PTR(e);
                        }
                        return r;
                }
                if (call->retrying)
                        call->retrying(call->userdata, e, attempt + 1, BUILD_ATTEMPTS);
                /* a moment for the proxy's health check to see the builder gone */
                struct pollfd p = {.fd = call->cancel ? kiln_cancel_fd(call->cancel) : -1,
                                   .events = POLLIN};
                if (poll(&p, 1, 250 * (int)attempt) > 0)
                        return kiln_error_set(err, ECANCELED, "build cancelled");
        }
}

static int grpc_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                      const struct kiln_build_call *call, struct kiln_build *ret,
                      struct kiln_error **err)
{
        struct grpc_build_service *g = (struct grpc_build_service *)s;
        _cleanup_(kiln_buf_done) struct kiln_buf msg = KILN_BUF_INIT;
        kiln_build_request_encode(req, &msg);
        struct kiln_digest id;
        kiln_build_request_identity(req, &id);
        grpc_metadata md[3] = {
                {.key = grpc_slice_from_static_string(ACTION_HEADER),
                 .value = grpc_slice_from_copied_string(KILN_DIGEST_HEX(&id))},
        };
        size_t n_md = 1;
        if (call->no_cache)
                md[n_md++] = (grpc_metadata){
                    .key = grpc_slice_from_static_string(KILN_BUILD_NO_CACHE_HEADER),
                    .value = grpc_slice_from_static_string("1")};
        if (call->keep_failed)
                md[n_md++] = (grpc_metadata){
                    .key = grpc_slice_from_static_string(KILN_BUILD_KEEP_FAILED_HEADER),
                    .value = grpc_slice_from_static_string("1")};
        int r = build_attempts(g, &msg, md, n_md, call, ret, err);
        grpc_slice_unref(md[0].value);
        return r;
}

static void grpc_build_free(struct kiln_build_service *s)
{
        struct grpc_build_service *g = (struct grpc_build_service *)s;
        rpc_channel_unref(g->ch);
        free(g);
}

static const struct kiln_build_service_ops grpc_build_ops = {
        .name = "grpc",
        .build = grpc_build,
        .free = grpc_build_free,
};

int kiln_build_grpc_new(const struct kiln_url *u, const char *url,
                        struct kiln_build_service **ret, struct kiln_error **err)
{
        struct rpc_channel *ch;
        int r = rpc_channel_open(u, url, &ch, err);
        if (r < 0)
                return r;
        struct grpc_build_service *g = kiln_calloc(1, sizeof(*g));
        g->base.ops = &grpc_build_ops;
        g->ch = ch;
        *ret = &g->base;
        return 0;
}
