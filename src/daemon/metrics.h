/* The daemon's metrics: counters kept with atomics by the call threads,
 * rendered in the Prometheus text format (version 0.0.4) on demand, and an
 * HTTP endpoint (libmicrohttpd) that serves them at /metrics. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include <kiln/util/error.h>
#include <kiln/util/util.h>

/* Seconds; the last bucket is +Inf. */
#define SRV_HIST_BUCKETS 14

struct srv_histogram {
        atomic_uint_fast64_t bucket[SRV_HIST_BUCKETS + 1]; /* non-cumulative */
        atomic_uint_fast64_t sum_us;
};

/* gRPC status codes 0..16. */
#define SRV_STATUS_CODES 17

struct srv_metrics {
        /* Calls by method (index into the server's methods; the last slot is
         * every method the server does not serve) and status code. */
        atomic_uint_fast64_t (*calls)[SRV_STATUS_CODES];
        atomic_uint_fast64_t *bytes_in, *bytes_out;
        const char **method_names;
        size_t n_methods;

        atomic_uint_fast64_t blobs_put, blob_put_bytes, blobs_read, blob_read_bytes;
        atomic_uint_fast64_t directories_put, directories_sent;

        atomic_uint_fast64_t builds_ok, builds_failed, builds_cancelled;
        atomic_uint_fast64_t cache_hits, builds_joined;
        atomic_int_fast64_t queued; /* builds waiting for a slot now */
        struct srv_histogram queue_seconds, build_seconds;
};

void srv_metrics_init(struct srv_metrics *m, const char **method_names, size_t n_methods);
void srv_metrics_done(struct srv_metrics *m);
void srv_histogram_observe(struct srv_histogram *h, double seconds);
/* Appends every metric; open_calls is the gauge of calls being served. */
void srv_metrics_render(const struct srv_metrics *m, unsigned open_calls, struct kiln_buf *out);

/* Appends one metric family of a single value. */
void kiln_metrics_put(struct kiln_buf *out, const char *name, const char *type, const char *help,
                      uint64_t value);

/* The /metrics endpoint. render() fills the page on every scrape, from the
 * endpoint's own thread. */
typedef void (*kiln_metrics_render_fn)(void *ud, struct kiln_buf *out);
struct kiln_metrics_http;
/* Listens on host:port or [v6]:port (port 0 picks one); *ret_desc (heap)
 * is the bound address. */
int kiln_metrics_http_start(const char *addr, kiln_metrics_render_fn render, void *ud,
                            struct kiln_metrics_http **ret, char **ret_desc,
                            struct kiln_error **err);
void kiln_metrics_http_stop(struct kiln_metrics_http *h);
