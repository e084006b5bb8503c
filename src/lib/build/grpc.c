/* grpc+…:// build service: the client of tvix.build.v1.BuildService
 *. Unlike the reference it validates the response (a Build whose
 * echo or outputs fail validation is -EBADMSG), honours the call's
 * kiln_cancel (the RPC is cancelled, -ECANCELED) and its timeout (the call's
 * deadline, -ETIMEDOUT), and maps the status back to errno codes with the
 * server's message. Thread-safe: every build is its own call. */
#include <kiln/build/service.h>

#include "grpc.h"
#include "../rpc/client.h"

#define M_DO_BUILD "/tvix.build.v1.BuildService/DoBuild"

struct grpc_build_service {
        struct kiln_build_service base;
        struct rpc_channel *ch;
};

static int grpc_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                      const struct kiln_build_call *call, struct kiln_build *ret,
                      struct kiln_error **err)
{
        struct grpc_build_service *g = (struct grpc_build_service *)s;
        _cleanup_(kiln_buf_done) struct kiln_buf msg = KILN_BUF_INIT;
        kiln_build_request_encode(req, &msg);
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        int r = rpc_unary(g->ch, M_DO_BUILD, msg.data, msg.len, call->timeout, call->cancel,
                          &resp, err);
        if (r < 0)
                return r;
        r = kiln_build_decode(resp.data, resp.len, ret, err);
        if (r < 0) {
                if (err && *err)
                        (*err)->code = EBADMSG;
                return kiln_error_prefix(err, -EBADMSG, "invalid Build from %s",
                                         rpc_channel_url(g->ch));
        }
        return 0;
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
