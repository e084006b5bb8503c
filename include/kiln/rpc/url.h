/* gRPC endpoint URLs: grpc+unix:///abs/socket, grpc+http://host:port and
 * grpc+https://host:port, with ?wait-connect=1 as the only query. */
#pragma once

#include <kiln/util/url.h>

/* -EINVAL naming what is wrong with the parsed URL u (text `url`). */
int kiln_grpc_url_check(const struct kiln_url *u, const char *url, struct kiln_error **err);
