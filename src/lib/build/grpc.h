/* The gRPC build service client (grpc.c), for a URL already checked by
 * kiln_grpc_url_check(); in builds without the grpc feature it fails with
 * -ENOTSUP (grpc_disabled.c). */
#pragma once

#include <kiln/build/service.h>
#include <kiln/util/url.h>

int kiln_build_grpc_new(const struct kiln_url *u, const char *url,
                        struct kiln_build_service **ret, struct kiln_error **err);
