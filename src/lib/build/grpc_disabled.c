/* Builds without the grpc feature: grpc+… URLs are understood (and checked)
 * but cannot be used. */
#include "action_cache_backends.h"
#include "grpc.h"

static int not_built(const char *url, struct kiln_error **err)
{
        return kiln_error_set(err, ENOTSUP, "%s: gRPC clients are not available in this build",
                              url);
}

int kiln_build_grpc_new(const struct kiln_url *u, const char *url,
                        struct kiln_build_service **ret, struct kiln_error **err)
{
        (void)u, (void)ret;
        return not_built(url, err);
}

int kiln_action_cache_grpc_new(const struct kiln_url *u, const char *url,
                               struct kiln_action_cache **ret, struct kiln_error **err)
{
        (void)u, (void)ret;
        return not_built(url, err);
}
