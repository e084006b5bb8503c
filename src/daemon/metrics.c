/* Metrics: see metrics.h. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include <kiln/rpc/rpc.h>

#include "lazylib.h"
#include "metrics.h"

static const double bucket_le[SRV_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                   1,     2.5,  5,     10,   30,  120, 600};

void srv_metrics_init(struct srv_metrics *m, const char **method_names, size_t n_methods)
{
        *m = (struct srv_metrics){0};
        m->n_methods = n_methods;
        m->method_names = method_names;
        m->calls = kiln_calloc(n_methods + 1, sizeof(*m->calls));
        m->bytes_in = kiln_calloc(n_methods + 1, sizeof(*m->bytes_in));
        m->bytes_out = kiln_calloc(n_methods + 1, sizeof(*m->bytes_out));
}

void srv_metrics_done(struct srv_metrics *m)
{
        free(m->calls);
        free(m->bytes_in);
        free(m->bytes_out);
        *m = (struct srv_metrics){0};
}

void srv_histogram_observe(struct srv_histogram *h, double seconds)
{
        size_t i = 0;
        while (i < SRV_HIST_BUCKETS && seconds > bucket_le[i])
                i++;
        atomic_fetch_add(&h->bucket[i], 1);
        atomic_fetch_add(&h->sum_us, (uint64_t)(seconds > 0 ? seconds * 1e6 : 0));
}

static void header(struct kiln_buf *out, const char *name, const char *type, const char *help)
{
        char *s = kiln_asprintf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
        kiln_buf_append(out, s, strlen(s));
        free(s);
}

static void line(struct kiln_buf *out, const char *name, const char *labels, uint64_t v)
{
        char *s = kiln_asprintf("%s%s%s%s %" PRIu64 "\n", name, labels ? "{" : "",
                                labels ? labels : "", labels ? "}" : "", v);
        kiln_buf_append(out, s, strlen(s));
        free(s);
}

void kiln_metrics_put(struct kiln_buf *out, const char *name, const char *type, const char *help,
                      uint64_t value)
{
        header(out, name, type, help);
        line(out, name, NULL, value);
}

static void histogram(struct kiln_buf *out, const char *name, const char *help,
                      const struct srv_histogram *h)
{
        header(out, name, "histogram", help);
        _cleanup_free_ char *bucket = kiln_asprintf("%s_bucket", name);
        uint64_t total = 0;
        for (size_t i = 0; i <= SRV_HIST_BUCKETS; i++) {
                total += atomic_load(&h->bucket[i]);
                char le[40];
                if (i < SRV_HIST_BUCKETS)
                        snprintf(le, sizeof(le), "le=\"%g\"", bucket_le[i]);
                else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                line(out, bucket, le, total);
        }
        uint64_t us = atomic_load(&h->sum_us);
        char *s = kiln_asprintf("%s_sum %" PRIu64 ".%06" PRIu64 "\n%s_count %" PRIu64 "\n", name,
                                us / 1000000, us % 1000000, name, total);
        kiln_buf_append(out, s, strlen(s));
        free(s);
}

void srv_metrics_render(const struct srv_metrics *m, unsigned open_calls, struct kiln_buf *out)
{
        kiln_metrics_put(out, "kiln_calls_open", "gauge", "gRPC calls being served now.",
                         open_calls);
        header(out, "kiln_calls_total", "counter", "gRPC calls finished, by method and status.");
        for (size_t i = 0; i <= m->n_methods; i++)
                for (int code = 0; code < SRV_STATUS_CODES; code++) {
                        uint64_t v = atomic_load(&m->calls[i][code]);
                        if (!v)
                                continue;
                        _cleanup_free_ char *l = kiln_asprintf(
                                "method=\"%s\",code=\"%s\"",
                                i < m->n_methods ? m->method_names[i] : "other",
                                kiln_rpc_status_name((grpc_status_code)code));
                        line(out, "kiln_calls_total", l, v);
                }
        static const char *const dir_name[2] = {"kiln_call_received_bytes_total",
                                                "kiln_call_sent_bytes_total"};
        static const char *const dir_help[2] = {"Message bytes received, by method.",
                                                "Message bytes sent, by method."};
        for (int d = 0; d < 2; d++) {
                header(out, dir_name[d], "counter", dir_help[d]);
                for (size_t i = 0; i <= m->n_methods; i++) {
                        uint64_t v = atomic_load(d ? &m->bytes_out[i] : &m->bytes_in[i]);
                        if (!v)
                                continue;
                        _cleanup_free_ char *l = kiln_asprintf(
                                "method=\"%s\"", i < m->n_methods ? m->method_names[i] : "other");
                        line(out, dir_name[d], l, v);
                }
        }
        kiln_metrics_put(out, "kiln_blobs_put_total", "counter", "Blobs stored by Put.",
                         atomic_load(&m->blobs_put));
        kiln_metrics_put(out, "kiln_blob_put_bytes_total", "counter", "Blob bytes stored by Put.",
                         atomic_load(&m->blob_put_bytes));
        kiln_metrics_put(out, "kiln_blobs_read_total", "counter", "Blobs sent whole by Read.",
                         atomic_load(&m->blobs_read));
        kiln_metrics_put(out, "kiln_blob_read_bytes_total", "counter", "Blob bytes sent by Read.",
                         atomic_load(&m->blob_read_bytes));
        kiln_metrics_put(out, "kiln_directories_put_total", "counter",
                         "Directories received by Put in accepted closures.",
                         atomic_load(&m->directories_put));
        kiln_metrics_put(out, "kiln_directories_sent_total", "counter",
                         "Directories sent by Get.", atomic_load(&m->directories_sent));
        header(out, "kiln_builds_total", "counter", "DoBuild calls finished, by outcome.");
        line(out, "kiln_builds_total", "outcome=\"ok\"", atomic_load(&m->builds_ok));
        line(out, "kiln_builds_total", "outcome=\"failed\"", atomic_load(&m->builds_failed));
        line(out, "kiln_builds_total", "outcome=\"cancelled\"", atomic_load(&m->builds_cancelled));
        kiln_metrics_put(out, "kiln_action_cache_hits_total", "counter",
                         "Builds answered from the action cache.", atomic_load(&m->cache_hits));
        kiln_metrics_put(out, "kiln_builds_joined_total", "counter",
                         "Builds answered by an identical build in flight.",
                         atomic_load(&m->builds_joined));
        int64_t q = atomic_load(&m->queued);
        kiln_metrics_put(out, "kiln_build_queue_length", "gauge",
                         "Builds waiting for a build slot now.", q > 0 ? (uint64_t)q : 0);
        histogram(out, "kiln_build_queue_seconds", "Time builds waited for a build slot.",
                  &m->queue_seconds);
        histogram(out, "kiln_build_duration_seconds",
                  "Time from a build's start (after the queue) to its end.", &m->build_seconds);
}

/* --- the HTTP endpoint --- */

/* libmicrohttpd, opened when the first endpoint starts (lazylib.h). */
#define MHD_FUNCS(X)                                                                          \
        X(start_daemon) X(stop_daemon) X(get_daemon_info) X(create_response_from_buffer)      \
        X(add_response_header) X(queue_response) X(destroy_response)
enum {
#define MHD_IDX(f) MHD_FN_##f,
        MHD_FUNCS(MHD_IDX) MHD_FN_N
};
static const char *const mhd_names[] = {
#define MHD_NAME(f) "MHD_" #f,
        MHD_FUNCS(MHD_NAME) NULL,
};
static void *mhd_fn[MHD_FN_N];
static struct lazy_lib mhd_lib = LAZY_LIB_INIT("libmicrohttpd.so.12", mhd_names, mhd_fn);
#define MHD_CALL(f) ((typeof(&MHD_##f))mhd_fn[MHD_FN_##f])

struct kiln_metrics_http {
        struct MHD_Daemon *mhd;
        kiln_metrics_render_fn render;
        void *ud;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **state)
{
        (void)version, (void)data, (void)data_size, (void)state;
        struct kiln_metrics_http *h = cls;
        bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
        unsigned code = MHD_HTTP_OK;
        struct kiln_buf page = KILN_BUF_INIT;
        if (!get) {
                code = MHD_HTTP_METHOD_NOT_ALLOWED;
                kiln_buf_append(&page, "only GET\n", 9);
        } else if (strcmp(url, "/metrics") != 0) {
                code = MHD_HTTP_NOT_FOUND;
                kiln_buf_append(&page, "not found: try /metrics\n", 24);
        } else {
                h->render(h->ud, &page);
        }
        struct MHD_Response *resp = MHD_CALL(create_response_from_buffer)(
                page.len, page.data, MHD_RESPMEM_MUST_COPY);
        kiln_buf_done(&page);
        if (!resp)
                return MHD_NO;
        const char *type = code == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
                                               : "text/plain; charset=utf-8";
        MHD_CALL(add_response_header)(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        enum MHD_Result r = MHD_CALL(queue_response)(conn, code, resp);
        MHD_CALL(destroy_response)(resp);
        return r;
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss, struct kiln_error **err)
{
        const char *colon = strrchr(addr, ':');
        const char *rb = strrchr(addr, ']');
        if (!colon || colon == addr || !colon[1] || (rb && rb > colon) ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1))
                return kiln_error_set(err, EINVAL,
                                      "invalid metrics address '%s': use host:port or [v6]:port",
                                      addr);
        _cleanup_free_ char *host = NULL;
        if (addr[0] == '[' && rb == colon - 1)
                host = kiln_asprintf("%.*s", (int)(rb - addr - 1), addr + 1);
        else
                host = kiln_asprintf("%.*s", (int)(colon - addr), addr);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int r = getaddrinfo(host, colon + 1, &hints, &res);
        if (r != 0)
                return kiln_error_set(err, EINVAL, "invalid metrics address '%s': %s", addr,
                                      gai_strerror(r));
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        return 0;
}

int kiln_metrics_http_start(const char *addr, kiln_metrics_render_fn render, void *ud,
                            struct kiln_metrics_http **ret, char **ret_desc,
                            struct kiln_error **err)
{
        struct sockaddr_storage ss;
        int r = parse_addr(addr, &ss, err);
        if (r < 0)
                return r;
        r = lazy_lib_load(&mhd_lib, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "metrics on %s", addr);
        struct kiln_metrics_http *h = kiln_calloc(1, sizeof(*h));
        h->render = render;
        h->ud = ud;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        /* MHD takes the port from the address; the argument only matters
         * without MHD_OPTION_SOCK_ADDR. */
        h->mhd = MHD_CALL(start_daemon)(flags, 0, NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR,
                                        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
                                        (unsigned)30, MHD_OPTION_CONNECTION_LIMIT,
                                        (unsigned)64, MHD_OPTION_END);
        if (!h->mhd) {
                free(h);
                return kiln_error_set(err, EADDRNOTAVAIL, "cannot serve metrics on %s", addr);
        }
        const union MHD_DaemonInfo *info =
                MHD_CALL(get_daemon_info)(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
        unsigned port = info ? info->port : 0;
        const char *colon = strrchr(addr, ':');
        *ret_desc = kiln_asprintf("%.*s:%u", (int)(colon - addr), addr, port);
        *ret = h;
        return 0;
}

void kiln_metrics_http_stop(struct kiln_metrics_http *h)
{
        if (!h)
                return;
        MHD_CALL(stop_daemon)(h->mhd);
        free(h);
}
