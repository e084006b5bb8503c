/* The server's main loop and call threads (design in server.h).
 *
 * Every method has one grpc_server_request_registered_call outstanding on
 * the notification queue; an unregistered grpc_server_request_call catches
 * every other method, which is answered UNIMPLEMENTED at once (without it
 * such calls would hang until the client's deadline). When a call arrives
 * the request is renewed first, then the call goes to a new detached thread
 * that owns it (and its queue) until the end. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "call.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"

enum {
        M_BLOB_STAT,
        M_BLOB_READ,
        M_BLOB_PUT,
        M_DIR_GET,
        M_DIR_PUT,
        M_BUILD,
        M_HEALTH_CHECK,
        /* The same services under Snix's package names (same messages, but
         * for DoBuild's answer). */
        M_SNIX_BLOB_STAT,
        M_SNIX_BLOB_READ,
        M_SNIX_BLOB_PUT,
        M_SNIX_DIR_GET,
        M_SNIX_DIR_PUT,
        M_SNIX_BUILD,
        M_BUILD_EVENTS,
        M_AC_GET,
        M_AC_PUT,
        M_AC_REMOVE,
        M_AC_COUNT,
        M_COUNT,
};

static const struct srv_method methods[M_COUNT] = {
        [M_BLOB_STAT] = {"/tvix.castore.v1.BlobService/Stat", true, svc_blob_stat},
        [M_BLOB_READ] = {"/tvix.castore.v1.BlobService/Read", true, svc_blob_read},
        [M_BLOB_PUT] = {"/tvix.castore.v1.BlobService/Put", false, svc_blob_put},
        [M_DIR_GET] = {"/tvix.castore.v1.DirectoryService/Get", true, svc_directory_get},
        [M_DIR_PUT] = {"/tvix.castore.v1.DirectoryService/Put", false, svc_directory_put},
        [M_BUILD] = {"/tvix.build.v1.BuildService/DoBuild", true, svc_build_do_build},
        [M_HEALTH_CHECK] = {"/grpc.health.v1.Health/Check", true, svc_health_check},
        [M_SNIX_BLOB_STAT] = {"/snix.castore.v1.BlobService/Stat", true, svc_blob_stat},
        [M_SNIX_BLOB_READ] = {"/snix.castore.v1.BlobService/Read", true, svc_blob_read},
        [M_SNIX_BLOB_PUT] = {"/snix.castore.v1.BlobService/Put", false, svc_blob_put},
        [M_SNIX_DIR_GET] = {"/snix.castore.v1.DirectoryService/Get", true, svc_directory_get},
        [M_SNIX_DIR_PUT] = {"/snix.castore.v1.DirectoryService/Put", false, svc_directory_put},
        [M_SNIX_BUILD] = {"/snix.build.v1.BuildService/DoBuild", true, svc_build_do_build_snix},
        [M_BUILD_EVENTS] = {"/kiln.build.v1.BuildEvents/Build", true, svc_build_events},
        [M_AC_GET] = {"/kiln.build.v1.ActionCache/Get", true, svc_action_cache_get},
        [M_AC_PUT] = {"/kiln.build.v1.ActionCache/Put", true, svc_action_cache_put},
        [M_AC_REMOVE] = {"/kiln.build.v1.ActionCache/Remove", true, svc_action_cache_remove},
        [M_AC_COUNT] = {"/kiln.build.v1.ActionCache/Count", true, svc_action_cache_count},
};

#define DEFAULT_MAX_CALLS 256
#define DEFAULT_GRACE_MS  3000
/* How often the main loop looks at the stop flag. */
#define TICK_MS 100

struct pending {
        int method; /* index into methods, or -1 for an unregistered call */
        struct srv_call *call;
};

struct kiln_server {
        struct kiln_server_config cfg;
        grpc_server *server;
        grpc_completion_queue *cq;
        void *handles[M_COUNT];
        struct srv_listeners listeners;
        bool started;
        atomic_int stop;
        bool shutting_down;

        pthread_mutex_t lock;
        pthread_cond_t idle; /* signalled when a call thread ends */
        unsigned active;     /* call threads running */
        uint8_t shutdown_tag;
        const char *method_names[M_COUNT];
        struct srv_metrics metrics;
};

struct srv_metrics *srv_metrics(const struct srv_call *c)
{
        return &c->srv->metrics;
}

void kiln_server_metrics(struct kiln_server *s, struct kiln_buf *out)
{
        pthread_mutex_lock(&s->lock);
        unsigned open = s->active;
        pthread_mutex_unlock(&s->lock);
        srv_metrics_render(&s->metrics, open, out);
}

struct kiln_blob_service *srv_blobs(const struct srv_call *c)
{
        return c->srv->cfg.blobs;
}

struct kiln_directory_service *srv_dirs(const struct srv_call *c)
{
        return c->srv->cfg.dirs;
}

struct kiln_build_service *srv_builds(const struct srv_call *c)
{
        return c->srv->cfg.builds;
}

struct kiln_action_cache *srv_action_cache(const struct srv_call *c)
{
        return c->srv->cfg.action_cache;
}

int kiln_server_new(const struct kiln_server_config *cfg, struct kiln_server **ret,
                    struct kiln_error **err)
{
        (void)err;
        struct kiln_server *s = kiln_calloc(1, sizeof(*s));
        s->cfg = *cfg;
        if (!s->cfg.max_calls)
                s->cfg.max_calls = DEFAULT_MAX_CALLS;
        if (!s->cfg.grace_ms)
                s->cfg.grace_ms = DEFAULT_GRACE_MS;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->idle, NULL);
        for (int i = 0; i < M_COUNT; i++)
                s->method_names[i] = methods[i].path;
        srv_metrics_init(&s->metrics, s->method_names, M_COUNT);
        kiln_rpc_init();
        /* kiln's shared arguments, and: gRPC sets SO_REUSEPORT by default,
         * which would let a second daemon bind the same TCP port and
         * silently share it. */
        const grpc_channel_args *base = kiln_rpc_channel_args();
        grpc_arg extra = {.type = GRPC_ARG_INTEGER,
                          .key = (char *)GRPC_ARG_ALLOW_REUSEPORT,
                          .value.integer = 0};
        grpc_arg args[16];
        assert(base->num_args < KILN_ARRAY_SIZE(args));
        memcpy(args, base->args, base->num_args * sizeof(*args));
        args[base->num_args] = extra;
        grpc_channel_args cargs = {.num_args = base->num_args + 1, .args = args};
        s->server = grpc_server_create(&cargs, NULL);
        s->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->cq, NULL);
        for (int i = 0; i < M_COUNT; i++)
                s->handles[i] = grpc_server_register_method(
                        s->server, methods[i].path, NULL,
                        methods[i].payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                           : GRPC_SRM_PAYLOAD_NONE,
                        0);
        srv_listeners_init(&s->listeners);
        *ret = s;
        return 0;
}

int kiln_server_listen(struct kiln_server *s, const char *addr, char **ret_desc,
                       struct kiln_error **err)
{
        return srv_listen(&s->listeners, s->server, addr, ret_desc, err);
}

int kiln_server_set_tls(struct kiln_server *s, const char *cert_pem, const char *key_pem,
                        const char *client_ca_pem, struct kiln_error **err)
{
        return srv_listeners_set_tls(&s->listeners, cert_pem, key_pem, client_ca_pem, err);
}

static void request(struct kiln_server *s, int method)
{
        struct pending *p = kiln_calloc(1, sizeof(*p));
        p->method = method;
        p->call = srv_call_new(s);
        struct srv_call *c = p->call;
        grpc_call_error e;
        if (method >= 0) {
                c->method = &methods[method];
                e = grpc_server_request_registered_call(
                        s->server, s->handles[method], &c->call, &c->deadline, &c->md,
                        methods[method].payload ? &c->payload : NULL, c->cq, s->cq, p);
        } else {
                e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, c->cq,
                                             s->cq, p);
        }
        if (e != GRPC_CALL_OK) {
                daemon_log_error("cannot request calls (grpc_call_error %d)", (int)e);
                srv_call_free(p->call);
                free(p);
        }
}

int kiln_server_start(struct kiln_server *s, struct kiln_error **err)
{
        grpc_server_start(s->server);
        s->started = true;
        for (int i = 0; i < M_COUNT; i++)
                request(s, i);
        request(s, -1);
        return srv_listeners_start(&s->listeners, s->server, err);
}

static void unimplemented(struct srv_call *c)
{
        srv_finishf(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %.*s",
                    (int)GRPC_SLICE_LENGTH(c->details.method),
                    (const char *)GRPC_SLICE_START_PTR(c->details.method));
}

static void *call_thread(void *arg)
{
        struct pending *p = arg;
        struct srv_call *c = p->call;
        struct kiln_server *s = c->srv;
        free(p);
        srv_call_begin(c);
        if (c->method)
                c->method->handle(c);
        else
                unimplemented(c);
        if (!c->finished)
                srv_finish(c, GRPC_STATUS_INTERNAL, "the handler did not answer", NULL);
        size_t m = c->method ? (size_t)(c->method - methods) : M_COUNT;
        unsigned code = (unsigned)c->status < SRV_STATUS_CODES ? (unsigned)c->status
                                                                 : GRPC_STATUS_UNKNOWN;
        atomic_fetch_add(&s->metrics.calls[m][code], 1);
        atomic_fetch_add(&s->metrics.bytes_in[m], c->bytes_in);
        atomic_fetch_add(&s->metrics.bytes_out[m], c->bytes_out);
        srv_call_free(c);
        pthread_mutex_lock(&s->lock);
        s->active--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static struct timespec deadline_in(unsigned ms)
{
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

/* Refuses a call that never reached a handler, and frees it. */
static void refuse(struct pending *p, grpc_status_code status, const char *msg)
{
        if (p->call->call) {
                grpc_call_cancel_with_status(p->call->call, status, msg, NULL);
                p->call->finished = true;
                p->call->status = status;
                p->call->close_done = true;
        }
        srv_call_free(p->call);
        free(p);
}

/* Hands a call to a new thread, waiting for a free slot first. */
static void dispatch(struct kiln_server *s, struct pending *p)
{
        pthread_mutex_lock(&s->lock);
        while (s->active >= s->cfg.max_calls && !atomic_load(&s->stop)) {
                struct timespec t = deadline_in(TICK_MS);
                pthread_cond_timedwait(&s->idle, &s->lock, &t);
        }
        if (s->active >= s->cfg.max_calls) { /* stopping */
                pthread_mutex_unlock(&s->lock);
                refuse(p, GRPC_STATUS_UNAVAILABLE, "server shutting down");
                return;
        }
        s->active++;
        pthread_mutex_unlock(&s->lock);

        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        int r = pthread_create(&t, &attr, call_thread, p);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                daemon_log_error("cannot start a call thread: %s", strerror(r));
                pthread_mutex_lock(&s->lock);
                s->active--;
                pthread_mutex_unlock(&s->lock);
                refuse(p, GRPC_STATUS_RESOURCE_EXHAUSTED, "cannot start a call thread");
        }
}

static void drop(struct pending *p)
{
        refuse(p, GRPC_STATUS_UNAVAILABLE, "server shutting down");
}

void kiln_server_run(struct kiln_server *s)
{
        gpr_timespec shutdown_at = {0};
        bool cancelled_all = false;
        for (;;) {
                grpc_event ev = grpc_completion_queue_next(
                        s->cq,
                        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(TICK_MS, GPR_TIMESPAN)),
                        NULL);
                if (ev.type == GRPC_QUEUE_TIMEOUT) {
                        if (atomic_load(&s->stop) && !s->shutting_down) {
                                s->shutting_down = true;
                                shutdown_at = gpr_now(GPR_CLOCK_MONOTONIC);
                                srv_listeners_stop(&s->listeners);
                                grpc_server_shutdown_and_notify(s->server, s->cq,
                                                                &s->shutdown_tag);
                        }
                        if (s->shutting_down && !cancelled_all &&
                            gpr_time_cmp(gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), shutdown_at),
                                         gpr_time_from_millis(s->cfg.grace_ms, GPR_TIMESPAN)) >
                                    0) {
                                cancelled_all = true;
                                grpc_server_cancel_all_calls(s->server);
                        }
                        continue;
                }
                if (ev.type != GRPC_OP_COMPLETE)
                        break; /* cannot happen: the queue is shut down below */
                if (ev.tag == &s->shutdown_tag)
                        break;
                struct pending *p = ev.tag;
                if (!ev.success || s->shutting_down) {
                        drop(p);
                        continue;
                }
                request(s, p->method);
                dispatch(s, p);
        }
        /* Every call has ended from gRPC's point of view; wait for the call
         * threads to let go of the stores. */
        pthread_mutex_lock(&s->lock);
        while (s->active > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        pthread_mutex_unlock(&s->lock);
}

void kiln_server_stop(struct kiln_server *s)
{
        atomic_store(&s->stop, 1);
}

void kiln_server_free(struct kiln_server *s)
{
        if (!s)
                return;
        if (s->started && !s->shutting_down) {
                srv_listeners_stop(&s->listeners);
                grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
                grpc_server_cancel_all_calls(s->server);
                s->shutting_down = true;
                for (;;) {
                        grpc_event ev = grpc_completion_queue_next(
                                s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                        if (ev.tag == &s->shutdown_tag)
                                break;
                        drop(ev.tag);
                }
        } else if (!s->started) {
                grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
                grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        }
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        for (;;) {
                grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                           NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type == GRPC_OP_COMPLETE && ev.tag != &s->shutdown_tag)
                        drop(ev.tag);
        }
        grpc_completion_queue_destroy(s->cq);
        srv_listeners_done(&s->listeners);
        srv_metrics_done(&s->metrics);
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
        free(s);
        grpc_shutdown();
}
