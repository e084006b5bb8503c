/* tvix.build.v1.BuildService/DoBuild (and snix.build.v1's, which answers
 * Snix's BuildResponse): the request is validated
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

#include "call.h"
#include "log.h"

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

struct phase_log {
        const struct kiln_build_request *req;
};

static void log_phase(void *userdata, const char *phase)
{
        const struct phase_log *p = userdata;
        const char *what = !strcmp(phase, "cache-hit") ? "cache hit, answered from the action cache"
                           : !strcmp(phase, "joined") ? "joined an identical build in flight"
                                                      : NULL;
        if (!what || !daemon_log_debug_enabled())
                return;
        struct kiln_digest id;
        kiln_build_request_identity(p->req, &id);
        daemon_log_debug("DoBuild %s: %s", KILN_DIGEST_B64(&id), what);
}

static void do_build(struct srv_call *c, bool snix)
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
        struct phase_log pl = {.req = &req};
        struct kiln_build_call call = {.cancel = cancel, .progress = log_phase, .userdata = &pl};
        struct kiln_build build = {0};
        r = kiln_build_service_build(srv_builds(c), &req, &call, &build, &err);
        if (r < 0) {
                srv_fail(c, err);
        } else {
                _cleanup_(kiln_buf_done) struct kiln_buf out = KILN_BUF_INIT;
                (snix ? kiln_build_encode_snix : kiln_build_encode)(&build, &out);
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
        do_build(c, false);
}

void svc_build_do_build_snix(struct srv_call *c)
{
        do_build(c, true);
}
