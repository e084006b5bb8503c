/* kiln.build.v1.ActionCache: the daemon's own action cache, for builders
 * that share it (kiln daemon --serve-action-cache). Without that option
 * every method is UNIMPLEMENTED, saying how to turn it on. A Put is checked
 * as a record is checked when read (a valid Build without its request); its
 * outputs are not looked for here: the builder that reads the record checks
 * them in its own stores before it answers from it. */
#include <kiln/build/action_cache.h>

#include "action_cache.pb-c.h"
#include "build.pb-c.h"
#include "call.h"

static struct kiln_action_cache *served(struct srv_call *c)
{
        struct kiln_action_cache *ac = srv_action_cache(c);
        if (!ac)
                srv_finish(c, GRPC_STATUS_UNIMPLEMENTED,
                           "this daemon does not serve its action cache "
                           "(kiln daemon --serve-action-cache)",
                           NULL);
        return ac;
}

/* The identity of a request message: 0, or -1 with the call finished. */
static int identity(struct srv_call *c, const ProtobufCBinaryData *id, struct kiln_digest *ret)
{
        if (id->len != KILN_DIGEST_LEN) {
                srv_finishf(c, GRPC_STATUS_INVALID_ARGUMENT,
                            "invalid identity: %zu bytes, not %d", id->len, KILN_DIGEST_LEN);
                return -1;
        }
        memcpy(ret->b, id->data, KILN_DIGEST_LEN);
        return 0;
}

#define UNPACK(c, in, type, name)                                                          \
        ({                                                                                 \
                type *m_ = NULL;                                                           \
                if (srv_payload(c, &(in)) == 0)                                            \
                        m_ = name##__unpack(NULL, (in).len, (in).data);                    \
                if (!m_)                                                                   \
                        srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed " #type, NULL); \
                m_;                                                                        \
        })

void svc_action_cache_get(struct srv_call *c)
{
        struct kiln_action_cache *ac = served(c);
        if (!ac)
                return;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Kiln__Build__V1__GetActionRequest *req =
                UNPACK(c, in, Kiln__Build__V1__GetActionRequest, kiln__build__v1__get_action_request);
        if (!req)
                return;
        struct kiln_digest key;
        int r = identity(c, &req->identity, &key);
        kiln__build__v1__get_action_request__free_unpacked(req, NULL);
        if (r < 0)
                return;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_build b = {0};
        r = kiln_action_cache_lookup(ac, &key, &b, &err);
        if (r < 0)
                return srv_fail(c, err);
        if (r == 0)
                return srv_finishf(c, GRPC_STATUS_NOT_FOUND, "no action %s", KILN_DIGEST_B64(&key));
        _cleanup_(kiln_buf_done) struct kiln_buf out = KILN_BUF_INIT;
        kiln_build_encode(&b, &out);
        kiln_build_done(&b);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out.data, out.len));
}

void svc_action_cache_put(struct srv_call *c)
{
        struct kiln_action_cache *ac = served(c);
        if (!ac)
                return;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Kiln__Build__V1__PutActionRequest *req =
                UNPACK(c, in, Kiln__Build__V1__PutActionRequest, kiln__build__v1__put_action_request);
        if (!req)
                return;
        struct kiln_digest key;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_build b = {0};
        int r = identity(c, &req->identity, &key);
        if (r == 0 && !req->build) {
                srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "PutActionRequest without a build", NULL);
                r = -1;
        }
        if (r == 0) {
                size_t n = tvix__build__v1__build__get_packed_size(req->build);
                _cleanup_free_ uint8_t *p = kiln_malloc(n);
                tvix__build__v1__build__pack(req->build, p);
                if (kiln_build_decode(p, n, &b, &err) < 0) {
                        srv_finishf(c, GRPC_STATUS_INVALID_ARGUMENT, "invalid Build: %s",
                                    kiln_error_msg(err));
                        r = -1;
                }
        }
        kiln__build__v1__put_action_request__free_unpacked(req, NULL);
        if (r < 0)
                return;
        r = kiln_action_cache_store(ac, &key, &b, &err);
        kiln_build_done(&b);
        if (r < 0)
                return srv_fail(c, err);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy("", 0)); /* PutActionResponse {} */
}

void svc_action_cache_remove(struct srv_call *c)
{
        struct kiln_action_cache *ac = served(c);
        if (!ac)
                return;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Kiln__Build__V1__RemoveActionRequest *req = UNPACK(
                c, in, Kiln__Build__V1__RemoveActionRequest, kiln__build__v1__remove_action_request);
        if (!req)
                return;
        struct kiln_digest key;
        int r = identity(c, &req->identity, &key);
        kiln__build__v1__remove_action_request__free_unpacked(req, NULL);
        if (r < 0)
                return;
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        r = kiln_action_cache_remove(ac, &key, &err);
        if (r < 0)
                return srv_fail(c, err);
        Kiln__Build__V1__RemoveActionResponse resp = KILN__BUILD__V1__REMOVE_ACTION_RESPONSE__INIT;
        resp.removed = r > 0;
        uint8_t out[8];
        size_t n = kiln__build__v1__remove_action_response__pack(&resp, out);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out, n));
}

void svc_action_cache_count(struct srv_call *c)
{
        struct kiln_action_cache *ac = served(c);
        if (!ac)
                return;
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Kiln__Build__V1__CountActionsRequest *req = UNPACK(
                c, in, Kiln__Build__V1__CountActionsRequest, kiln__build__v1__count_actions_request);
        if (!req)
                return;
        kiln__build__v1__count_actions_request__free_unpacked(req, NULL);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        uint64_t count;
        if (kiln_action_cache_count(ac, &count, &err) < 0)
                return srv_fail(c, err);
        Kiln__Build__V1__CountActionsResponse resp = KILN__BUILD__V1__COUNT_ACTIONS_RESPONSE__INIT;
        resp.count = count;
        uint8_t out[16];
        size_t n = kiln__build__v1__count_actions_response__pack(&resp, out);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out, n));
}
