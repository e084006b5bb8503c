/* The checks of grpc+unix / grpc+http / grpc+https URLs, shared by every
 * gRPC client (and made in builds without gRPC too). */
#include <kiln/rpc/url.h>

int kiln_grpc_url_check(const struct kiln_url *u, const char *url, struct kiln_error **err)
{
        if (!u->sub)
                return kiln_error_set(err, EINVAL,
                                      "invalid URL '%s': use grpc+unix, grpc+http or grpc+https",
                                      url);
        if (!strcmp(u->sub, "unix")) {
                if (u->host)
                        return kiln_error_set(err, EINVAL,
                                              "invalid URL '%s': host may not be set for unix "
                                              "domain sockets",
                                              url);
                if (u->path[0] != '/')
                        return kiln_error_set(err, EINVAL,
                                              "invalid URL '%s': needs an absolute socket path",
                                              url);
        } else if (!strcmp(u->sub, "http") || !strcmp(u->sub, "https")) {
                if (!u->host)
                        return kiln_error_set(err, EINVAL, "invalid URL '%s': needs a host", url);
                if (u->path[0])
                        return kiln_error_set(err, EINVAL, "invalid URL '%s': path may not be set",
                                              url);
        } else {
                return kiln_error_set(err, EINVAL,
                                      "invalid URL '%s': unsupported transport grpc+%s (use "
                                      "grpc+unix, grpc+http or grpc+https)",
                                      url, u->sub);
        }
        static const char *const allowed[] = {"wait-connect", NULL};
        /* TLS: the CA to trust instead of the system's, a client key pair. */
        static const char *const allowed_tls[] = {"wait-connect", "ca", "cert", "key", NULL};
        bool tls = !strcmp(u->sub, "https");
        int r = kiln_url_query_check(u, tls ? allowed_tls : allowed, url, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *cert = tls ? kiln_url_query_get(u, "cert") : NULL;
        _cleanup_free_ char *key = tls ? kiln_url_query_get(u, "key") : NULL;
        if (!cert != !key)
                return kiln_error_set(err, EINVAL,
                                      "invalid URL '%s': a client certificate needs both cert= "
                                      "and key=",
                                      url);
        return 0;
}
