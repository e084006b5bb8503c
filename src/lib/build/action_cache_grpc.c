/* grpc+…:// action cache: the client of kiln.build.v1.ActionCache, so that
 * builders share the action cache of one daemon (--serve-action-cache).
 * Records are Builds without their request, sent and received as they are
 * (a Build's encoding is the record), and checked as every record is, by
 * kiln_action_cache_lookup(). Thread-safe: every operation is its own call.
 * max-entries is the serving daemon's business, not the client's. */
#include <kiln/build/action_cache.h>

#include "action_cache_backends.h"
#include "../rpc/client.h"
#include "action_cache.pb-c.h"

#define M_GET    "/kiln.build.v1.ActionCache/Get"
#define M_PUT    "/kiln.build.v1.ActionCache/Put"
#define M_REMOVE "/kiln.build.v1.ActionCache/Remove"
#define M_COUNT  "/kiln.build.v1.ActionCache/Count"

/* Calls of the cache are small and answered at once. */
#define CALL_TIMEOUT_S 30

struct grpc_action_cache {
        struct kiln_action_cache base;
        struct rpc_channel *ch;
};

static struct rpc_channel *channel(struct kiln_action_cache *c)
{
        return ((struct grpc_action_cache *)c)->ch;
}

/* The message {identity = key} (field 1), the request of Get and Remove
 * and the head of Put's. */
static void identity_msg(const struct kiln_digest *key, struct kiln_buf *b)
{
        kiln_buf_append_byte(b, 0x0a);
        kiln_buf_append_varint(b, KILN_DIGEST_LEN);
        kiln_buf_append(b, key->b, KILN_DIGEST_LEN);
}

static int grpc_get(struct kiln_action_cache *c, const struct kiln_digest *key,
                    struct kiln_buf *ret, struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf req = KILN_BUF_INIT;
        identity_msg(key, &req);
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        int r = rpc_unary(channel(c), M_GET, req.data, req.len, CALL_TIMEOUT_S, NULL, ret, &e);
        if (r == -ENOENT)
                return 0;
        return r < 0 ? rpc_error_move(err, &e, r) : 1;
}

static int grpc_put(struct kiln_action_cache *c, const struct kiln_digest *key, const void *data,
                    size_t len, struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf req = KILN_BUF_INIT;
        identity_msg(key, &req);
        kiln_buf_append_byte(&req, 0x12); /* build = 2, the record as it is */
        kiln_buf_append_varint(&req, len);
        kiln_buf_append(&req, data, len);
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        return rpc_unary(channel(c), M_PUT, req.data, req.len, CALL_TIMEOUT_S, NULL, &resp, err);
}

static int grpc_remove(struct kiln_action_cache *c, const struct kiln_digest *key,
                       struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf req = KILN_BUF_INIT;
        identity_msg(key, &req);
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        int r = rpc_unary(channel(c), M_REMOVE, req.data, req.len, CALL_TIMEOUT_S, NULL, &resp,
                          err);
        if (r < 0)
                return r;
        Kiln__Build__V1__RemoveActionResponse *m =
                kiln__build__v1__remove_action_response__unpack(NULL, resp.len, resp.data);
        if (!m)
                return kiln_error_set(err, EBADMSG, "%s: malformed RemoveActionResponse",
                                      rpc_channel_url(channel(c)));
        r = m->removed ? 1 : 0;
        kiln__build__v1__remove_action_response__free_unpacked(m, NULL);
        return r;
}

static int grpc_count(struct kiln_action_cache *c, uint64_t *ret, struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        int r = rpc_unary(channel(c), M_COUNT, "", 0, CALL_TIMEOUT_S, NULL, &resp, err);
        if (r < 0)
                return r;
        Kiln__Build__V1__CountActionsResponse *m =
                kiln__build__v1__count_actions_response__unpack(NULL, resp.len, resp.data);
        if (!m)
                return kiln_error_set(err, EBADMSG, "%s: malformed CountActionsResponse",
                                      rpc_channel_url(channel(c)));
        *ret = m->count;
        kiln__build__v1__count_actions_response__free_unpacked(m, NULL);
        return 0;
}

static void grpc_free(struct kiln_action_cache *c)
{
        rpc_channel_unref(channel(c));
        free(c);
}

static const struct kiln_action_cache_ops grpc_ops = {
        .name = "grpc",
        .get = grpc_get,
        .put = grpc_put,
        .remove = grpc_remove,
        .count = grpc_count,
        .free = grpc_free,
};

int kiln_action_cache_grpc_new(const struct kiln_url *u, const char *url,
                               struct kiln_action_cache **ret, struct kiln_error **err)
{
        struct rpc_channel *ch;
        int r = rpc_channel_open(u, url, &ch, err);
        if (r < 0)
                return r;
        struct grpc_action_cache *g = kiln_calloc(1, sizeof(*g));
        g->base.ops = &grpc_ops;
        g->ch = ch;
        *ret = &g->base;
        return 0;
}
