/* Build service front end: URL dispatch and the dummy backend. */
#include <kiln/build/service.h>
#include <kiln/util/url.h>

#include <kiln/rpc/url.h>

#include "grpc.h"

/* dummy://: every build fails. */
static int dummy_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                       const struct kiln_build_call *call, struct kiln_build *ret,
                       struct kiln_error **err)
{
        (void)s, (void)req, (void)call, (void)ret;
        return kiln_error_set(err, EIO, "builds are not supported with DummyBuildService");
}

static void dummy_free(struct kiln_build_service *s)
{
        free(s);
}

static const struct kiln_build_service_ops dummy_ops = {
        .name = "dummy",
        .build = dummy_build,
        .free = dummy_free,
};

static struct {
        const char *scheme;
        kiln_build_service_ctor ctor;
} registered[4];

void kiln_build_service_register(const char *scheme, kiln_build_service_ctor ctor)
{
        for (size_t i = 0; i < KILN_ARRAY_SIZE(registered); i++)
                if (!registered[i].scheme || !strcmp(registered[i].scheme, scheme)) {
                        registered[i].scheme = scheme;
                        registered[i].ctor = ctor;
                        return;
                }
        abort(); /* more backends than slots: a build-time mistake */
}

int kiln_build_service_open(const char *url, struct kiln_blob_service *blobs,
                            struct kiln_directory_service *dirs, struct kiln_build_service **ret,
                            struct kiln_error **err)
{
        _cleanup_(kiln_url_done) struct kiln_url u = {0};
        int r = kiln_url_parse(url, &u, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < KILN_ARRAY_SIZE(registered) && registered[i].scheme; i++)
                if (!strcmp(registered[i].scheme, u.scheme))
                        return registered[i].ctor(&u, url, blobs, dirs, ret, err);
        if (!strcmp(u.scheme, "dummy")) {
                /* Host, path and query are ignored, as upstream does. */
                struct kiln_build_service *s = kiln_calloc(1, sizeof(*s));
                s->ops = &dummy_ops;
                *ret = s;
                return 0;
        }
        if (!strcmp(u.scheme, "oci")) {
                if (u.path[0] != '/')
                        return kiln_error_set(err, EINVAL,
                                              "invalid build service URL '%s': oci needs a bundle "
                                              "dir as path",
                                              url);
                return kiln_error_set(err, ENOTSUP,
                                      "%s: the OCI build service is not available in this build",
                                      url);
        }
        if (!strcmp(u.type, "grpc")) {
                r = kiln_grpc_url_check(&u, url, err);
                if (r < 0)
                        return r;
                return kiln_build_grpc_new(&u, url, ret, err);
        }
        return kiln_error_set(err, EINVAL, "invalid build service URL '%s': unknown scheme: %s",
                              url, u.scheme);
}

void kiln_build_service_free(struct kiln_build_service *s)
{
        if (s)
                s->ops->free(s);
}

const char *kiln_build_service_name(const struct kiln_build_service *s)
{
        return s->ops->name;
}

const char *kiln_build_service_notice(struct kiln_build_service *s)
{
        return s->ops->notice ? s->ops->notice(s) : NULL;
}

int kiln_build_service_build(struct kiln_build_service *s, const struct kiln_build_request *req,
                             const struct kiln_build_call *call, struct kiln_build *ret,
                             struct kiln_error **err)
{
        static const struct kiln_build_call none = {0};
        return s->ops->build(s, req, call ? call : &none, ret, err);
}
