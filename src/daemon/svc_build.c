/* tvix.build.v1.BuildService/DoBuild (and snix.build.v1's, which answers
 * Snix's BuildResponse, and kiln.build.v1.BuildEvents/Build, which streams
 * the build's events and then its result): the request is validated
 * (INVALID_ARGUMENT with upstream's message), then built by the configured
 * build service on this call's thread. A second thread waits for the call's
 * close notification and triggers the build's kiln_cancel when the client
 * cancels, disconnects or passes its deadline, or the server shuts down.
 * Build failures map through kiln_rpc_status_from_errno() (the dummy
 * service's failure is INTERNAL, as upstream). With KILN_LOG=debug, a
 * request answered by the action cache or by an identical build in flight
 * logs one line saying so (the caching build service reports it as a
 * phase). */
#include <pthread.h>

#include <kiln/build/action_cache.h>
#include <kiln/build/events.h>

#include "call.h"
#include "log.h"
#include "metrics.h"

struct watch {
        struct srv_call *call;
        struct kiln_cancel *cancel;
};

static void *watch_close(void *arg)
{
        struct watch *w = arg;
        srv_call_wait(w->call, &w->call->tag_close);
        w->call->close_done = true;
        if (w->call->cancelled)
                kiln_cancel_trigger(w->cancel);
        return NULL;
}

/* What the build service reports, for the log and the metrics: the time in
 * the queue (from the call's arrival to the first phase past "queued") and
 * the build's own time (from there to the end). */
struct phase_log {
        const struct kiln_build_request *req;
        struct srv_metrics *m;
        double arrived, started;
        bool queued;
};

static double now_s(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void count_phase(struct phase_log *p, const char *phase)
{
        if (!strcmp(phase, "queued")) {
                if (!p->queued)
                        atomic_fetch_add(&p->m->queued, 1);
                p->queued = true;
        } else if (!strcmp(phase, "cache-hit")) {
                atomic_fetch_add(&p->m->cache_hits, 1);
        } else if (!strcmp(phase, "joined")) {
                atomic_fetch_add(&p->m->builds_joined, 1);
        } else if (!p->started) { /* bundle, mount, run, ingest: out of the queue */
                p->started = now_s();
                if (p->queued)
                        atomic_fetch_sub(&p->m->queued, 1);
                p->queued = false;
                srv_histogram_observe(&p->m->queue_seconds, p->started - p->arrived);
        }
}

static void log_phase(void *userdata, const char *phase)
{
        struct phase_log *p = userdata;
        count_phase(p, phase);
        const char *what = !strcmp(phase, "cache-hit") ? "cache hit, answered from the action cache"
                           : !strcmp(phase, "joined") ? "joined an identical build in flight"
                                                      : NULL;
        if (!what || !daemon_log_debug_enabled())
                return;
        struct kiln_digest id;
        kiln_build_request_identity(p->req, &id);
        daemon_log_debug("DoBuild %s: %s", KILN_DIGEST_B64(&id), what);
}

/* kiln.build.v1.BuildEvents/Build: every event goes out as it happens;
 * once the client is gone the rest are dropped (the watcher cancels the
 * build). */
struct event_sink {
        struct srv_call *call;
        struct phase_log *pl;
        bool dead;
};

static void sink_phase(void *ud, const char *phase)
{
        struct event_sink *s = ud;
        log_phase(s->pl, phase);
}

static void sink_emit(void *ud, const struct kiln_build_event *ev)
{
        struct event_sink *s = ud;
        if (s->dead)
                return;
        _cleanup_(kiln_buf_done) struct kiln_buf b = KILN_BUF_INIT;
        kiln_build_event_encode(ev, &b);
        if (srv_send(s->call, kiln_rpc_bb_copy(b.data, b.len)) < 0)
                s->dead = true;
}

enum reply { REPLY_TVIX, REPLY_SNIX, REPLY_EVENTS };

/* Whether the client sent the header name: 1 (kiln-no-cache,
 * kiln-keep-failed: kiln_build_call). */
static bool header_set(const struct srv_call *c, const char *name)
{
        for (size_t i = 0; i < c->md.count; i++)
                if (!grpc_slice_str_cmp(c->md.metadata[i].key, name))
                        return !grpc_slice_str_cmp(c->md.metadata[i].value, "1");
        return false;
}

static void do_build(struct srv_call *c, enum reply reply)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        if (srv_payload(c, &in) < 0)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed BuildRequest",
                                  NULL);
        struct kiln_build_request req = {0};
        int r = kiln_build_request_decode(in.data, in.len, &req, &err);
        if (r < 0)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, kiln_error_msg(err), NULL);

        _cleanup_(kiln_cancel_freep) struct kiln_cancel *cancel = kiln_cancel_new();
        struct watch w = {.call = c, .cancel = cancel};
        pthread_t watcher;
        bool watching = !c->close_done && pthread_create(&watcher, NULL, watch_close, &w) == 0;
        struct phase_log pl = {.req = &req, .m = srv_metrics(c), .arrived = now_s()};
        struct kiln_build_call call = {
                .cancel = cancel,
                .progress = log_phase,
                .userdata = &pl,
                .no_cache = header_set(c, KILN_BUILD_NO_CACHE_HEADER),
                .keep_failed = header_set(c, KILN_BUILD_KEEP_FAILED_HEADER),
        };
        struct event_sink sink = {.call = c, .pl = &pl};
        struct kiln_build_events events = {.phase = sink_phase};
        if (reply == REPLY_EVENTS)
                kiln_build_events_init(&events, sink_emit, &sink, &call);
        struct kiln_build build = {0};
        r = kiln_build_service_build(srv_builds(c), &req, &call, &build, &err);
        if (pl.queued) /* cancelled while waiting */
                atomic_fetch_sub(&pl.m->queued, 1);
        if (pl.started)
                srv_histogram_observe(&pl.m->build_seconds, now_s() - pl.started);
        atomic_fetch_add(r >= 0                        ? &pl.m->builds_ok
                         : kiln_cancel_is_set(cancel) ? &pl.m->builds_cancelled
                                                       : &pl.m->builds_failed,
                         1);
        if (reply == REPLY_EVENTS) {
                kiln_build_events_end(&events, r, r < 0 ? NULL : &build, err);
                if (r >= 0)
                        kiln_build_done(&build);
                srv_finish(c, GRPC_STATUS_OK, NULL, NULL);
        } else if (r < 0) {
                srv_fail(c, err);
        } else {
                _cleanup_(kiln_buf_done) struct kiln_buf out = KILN_BUF_INIT;
                (reply == REPLY_SNIX ? kiln_build_encode_snix : kiln_build_encode)(&build, &out);
                kiln_build_done(&build);
                srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out.data, out.len));
        }
        kiln_build_request_done(&req);
        /* The close notification arrives once the status is out. */
        if (watching)
                pthread_join(watcher, NULL);
}

void svc_build_do_build(struct srv_call *c)
{
        do_build(c, REPLY_TVIX);
}

void svc_build_do_build_snix(struct srv_call *c)
{
        do_build(c, REPLY_SNIX);
}

void svc_build_events(struct srv_call *c)
{
        do_build(c, REPLY_EVENTS);
}
