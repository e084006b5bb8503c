/* Channels: one per URL (without its query) and process, shared by the
 * blob, directory and build clients opened on it and destroyed with the last
 * of them. Each channel holds one grpc_init() reference. */
#include <pthread.h>
#include <stdio.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "client.h"

/* How long ?wait-connect=1 waits for a connection before giving up. */
#define WAIT_CONNECT_S 10

struct rpc_channel {
        struct rpc_channel *next;
        char *key; /* scheme://host:port/path, no query */
        char *url; /* as first opened, for messages */
        grpc_channel *channel;
        unsigned refs;
};

static pthread_mutex_t channels_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rpc_channel *channels;

const char *rpc_channel_url(const struct rpc_channel *ch)
{
        return ch->url;
}

grpc_channel *rpc_channel_grpc(const struct rpc_channel *ch)
{
        return ch->channel;
}

static char *target_of(const struct kiln_url *u)
{
        if (!strcmp(u->sub, "unix"))
                return kiln_asprintf("unix:%s", u->path);
        const char *port = u->port ? u->port : !strcmp(u->sub, "https") ? "443" : "80";
        return kiln_asprintf("%s:%s", u->host, port);
}

static int wait_connected(grpc_channel *ch, const char *url, struct kiln_error **err)
{
        grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
        gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                             gpr_time_from_seconds(WAIT_CONNECT_S, GPR_TIMESPAN));
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
        int r = 0;
        while (st != GRPC_CHANNEL_READY) {
                if (st == GRPC_CHANNEL_TRANSIENT_FAILURE || st == GRPC_CHANNEL_SHUTDOWN) {
                        r = kiln_error_set(err, ECONNREFUSED, "%s: cannot connect", url);
                        break;
                }
                grpc_channel_watch_connectivity_state(ch, st, deadline, cq, NULL);
                grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                           NULL);
                if (!ev.success) {
                        r = kiln_error_set(err, ETIMEDOUT, "%s: cannot connect within %d s", url,
                                           WAIT_CONNECT_S);
                        break;
                }
                st = grpc_channel_check_connectivity_state(ch, 1);
        }
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(cq);
        return r;
}

/* The PEM text of a file a URL names in `param`, or NULL if it names none. */
static int tls_file(const struct kiln_url *u, const char *url, const char *param, char **ret,
                    struct kiln_error **err)
{
        _cleanup_free_ char *path = kiln_url_query_get(u, param);
        *ret = NULL;
        if (!path)
                return 0;
        int r = kiln_read_text_file(path, 1 << 20, ret);
        if (r < 0)
                return kiln_error_errno(err, -r, "%s: cannot read %s= file %s", url, param, path);
        return 0;
}

static int create(const struct kiln_url *u, const char *url, grpc_channel **ret,
                  struct kiln_error **err)
{
        _cleanup_free_ char *target = target_of(u);
        grpc_channel_credentials *creds;
        if (!strcmp(u->sub, "https")) {
                _cleanup_free_ char *ca = NULL, *cert = NULL, *key = NULL;
                int r;
                if ((r = tls_file(u, url, "ca", &ca, err)) < 0 ||
                    (r = tls_file(u, url, "cert", &cert, err)) < 0 ||
                    (r = tls_file(u, url, "key", &key, err)) < 0)
                        return r;
                grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
                /* ca NULL: the system's roots (or GRPC_DEFAULT_SSL_ROOTS_FILE_PATH). */
                creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        } else {
                creds = grpc_insecure_credentials_create();
        }
        *ret = grpc_channel_create(target, creds, kiln_rpc_channel_args());
        grpc_channel_credentials_release(creds);
        return 0;
}

int rpc_channel_open(const struct kiln_url *u, const char *url, struct rpc_channel **ret,
                     struct kiln_error **err)
{
        /* Channels differ by their TLS files too. */
        _cleanup_free_ char *ca = kiln_url_query_get(u, "ca"), *cert = kiln_url_query_get(u, "cert"),
                            *pkey = kiln_url_query_get(u, "key");
        _cleanup_free_ char *key = kiln_asprintf(
                "%s://%s:%s%s ca=%s cert=%s key=%s", u->scheme, u->host ? u->host : "",
                u->port ? u->port : "", u->path, ca ? ca : "", cert ? cert : "", pkey ? pkey : "");
        _cleanup_free_ char *wait = kiln_url_query_get(u, "wait-connect");
        struct rpc_channel *ch;

        pthread_mutex_lock(&channels_lock);
        for (ch = channels; ch; ch = ch->next)
                if (!strcmp(ch->key, key))
                        break;
        if (ch) {
                ch->refs++;
        } else {
                grpc_channel *gch;
                kiln_rpc_init();
                int r = create(u, url, &gch, err);
                if (r < 0) {
                        pthread_mutex_unlock(&channels_lock);
                        grpc_shutdown();
                        return r;
                }
                ch = kiln_calloc(1, sizeof(*ch));
                ch->key = TAKE_PTR(key);
                ch->url = kiln_strdup(url);
                ch->channel = gch;
                ch->refs = 1;
                ch->next = channels;
                channels = ch;
        }
        pthread_mutex_unlock(&channels_lock);

        if (wait && !strcmp(wait, "1")) {
                int r = wait_connected(ch->channel, url, err);
                if (r < 0) {
                        rpc_channel_unref(ch);
                        return r;
                }
        }
        *ret = ch;
        return 0;
}

void rpc_channel_unref(struct rpc_channel *ch)
{
        if (!ch)
                return;
        pthread_mutex_lock(&channels_lock);
        bool last = --ch->refs == 0;
        if (last)
                for (struct rpc_channel **p = &channels; *p; p = &(*p)->next)
                        if (*p == ch) {
                                *p = ch->next;
                                break;
                        }
        pthread_mutex_unlock(&channels_lock);
        if (!last)
                return;
        grpc_channel_destroy(ch->channel);
        free(ch->key);
        free(ch->url);
        free(ch);
        grpc_shutdown();
}
