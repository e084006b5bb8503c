/* grpc.health.v1.Health/Check: SERVING for the whole server ("") and for
 * each service it serves (kiln.build.v1.ActionCache only when it is
 * served), NOT_FOUND for any other name (as the standard health service
 * does). */
#include "call.h"
#include "health.pb-c.h"

static const char *const served[] = {
        "",
        "tvix.castore.v1.BlobService",
        "tvix.castore.v1.DirectoryService",
        "tvix.build.v1.BuildService",
        "snix.castore.v1.BlobService",
        "snix.castore.v1.DirectoryService",
        "snix.build.v1.BuildService",
        "kiln.build.v1.BuildEvents",
        "grpc.health.v1.Health",
};

void svc_health_check(struct srv_call *c)
{
        _cleanup_(kiln_buf_done) struct kiln_buf in = KILN_BUF_INIT;
        Grpc__Health__V1__HealthCheckRequest *req = NULL;
        if (srv_payload(c, &in) == 0)
                req = grpc__health__v1__health_check_request__unpack(NULL, in.len, in.data);
        if (!req)
                return srv_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest",
                                  NULL);
        bool known = srv_action_cache(c) && !strcmp(req->service, "kiln.build.v1.ActionCache");
        for (size_t i = 0; i < KILN_ARRAY_SIZE(served) && !known; i++)
                known = !strcmp(req->service, served[i]);
        if (!known) {
                srv_finishf(c, GRPC_STATUS_NOT_FOUND, "unknown service %s", req->service);
                grpc__health__v1__health_check_request__free_unpacked(req, NULL);
                return;
        }
        grpc__health__v1__health_check_request__free_unpacked(req, NULL);
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        uint8_t out[16];
        size_t n = grpc__health__v1__health_check_response__pack(&resp, out);
        srv_finish(c, GRPC_STATUS_OK, NULL, kiln_rpc_bb_copy(out, n));
}
