/* Opening a store by URL (the schemes of docs/PROTOCOLS.md), and the default
 * store under $KILN_HOME. */
#include <pwd.h>
#include <stdio.h>

#include <kiln/rpc/url.h>
#include <kiln/store/backend.h>
#include <kiln/util/url.h>

#include "backends/backends.h"

/* --- URL dispatch --- */

/* memory:// takes neither host nor path. */
static int check_memory_url(const struct kiln_url *u, const char *url, struct kiln_error **err)
{
        if (u->host)
                return kiln_error_set(err, EINVAL, "invalid URL '%s': memory:// takes no host",
                                      url);
        if (u->path[0])
                return kiln_error_set(err, EINVAL, "invalid URL '%s': memory:// takes no path",
                                      url);
        return 0;
}

/* cache+FAR?near=NEAR: the near URL (the query value, percent-decoded) and
 * the far one (the rest after "cache+", its query without the near pair). */
static int split_cache_url(const char *url, const struct kiln_url *u, const char *what,
                           char **ret_near, char **ret_far, struct kiln_error **err)
{
        _cleanup_free_ char *near = kiln_url_query_get(u, "near");
        if (!near || !*near)
                return kiln_error_set(err, EINVAL,
                                      "invalid %s URL '%s': cache+ needs near=URL (the local "
                                      "store that keeps what is read from the far one)",
                                      what, url);
        const char *rest = url + strlen("cache+");
        size_t base = strcspn(rest, "?#");
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_buf_append(&b, rest, base);
        if (rest[base] == '?') {
                const char *q = rest + base + 1;
                size_t qlen = strcspn(q, "#");
                char sep = '?';
                while (qlen) {
                        size_t n = 0;
                        while (n < qlen && q[n] != '&')
                                n++;
                        bool is_near = (n == 4 && !strncmp(q, "near", 4)) ||
                                       (n > 4 && !strncmp(q, "near=", 5));
                        if (n && !is_near) {
                                kiln_buf_append_byte(&b, (uint8_t)sep);
                                kiln_buf_append(&b, q, n);
                                sep = '&';
                        }
                        q += n < qlen ? n + 1 : n;
                        qlen -= n < qlen ? n + 1 : n;
                }
        }
        kiln_buf_append_byte(&b, 0);
        char *far = (char *)kiln_buf_steal(&b, NULL);
        if (!strncmp(far, "cache+", 6) || !strncmp(near, "cache+", 6)) {
                free(far);
                return kiln_error_set(err, EINVAL, "invalid %s URL '%s': caches do not nest",
                                      what, url);
        }
        *ret_near = TAKE_PTR(near);
        *ret_far = far;
        return 0;
}

static int blob_cache_open(const char *url, const struct kiln_url *u,
                           struct kiln_blob_service **ret, struct kiln_error **err)
{
        _cleanup_free_ char *near_url = NULL, *far_url = NULL;
        int r = split_cache_url(url, u, "blob service", &near_url, &far_url, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_blob_service_freep) struct kiln_blob_service *near = NULL, *far = NULL;
        r = kiln_blob_service_open(near_url, &near, err);
        if (r < 0)
                return r;
        r = kiln_blob_service_open(far_url, &far, err);
        if (r < 0)
                return r;
        *ret = kiln_blob_cache_over(TAKE_PTR(near), TAKE_PTR(far));
        return 0;
}

static int directory_cache_open(const char *url, const struct kiln_url *u,
                                struct kiln_directory_service **ret, struct kiln_error **err)
{
        _cleanup_free_ char *near_url = NULL, *far_url = NULL;
        int r = split_cache_url(url, u, "directory service", &near_url, &far_url, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_directory_service_freep) struct kiln_directory_service *near = NULL,
                                                                            *far = NULL;
        r = kiln_directory_service_open(near_url, &near, err);
        if (r < 0)
                return r;
        r = kiln_directory_service_open(far_url, &far, err);
        if (r < 0)
                return r;
        *ret = kiln_directory_cache_over(TAKE_PTR(near), TAKE_PTR(far));
        return 0;
}

int kiln_blob_service_open(const char *url, struct kiln_blob_service **ret,
                           struct kiln_error **err)
{
        _cleanup_(kiln_url_done) struct kiln_url u = {0};
        int r = kiln_url_parse(url, &u, err);
        if (r < 0)
                return r;
        if (!strcmp(u.scheme, "memory")) {
                r = check_memory_url(&u, url, err);
                return r < 0 ? r : kiln_blob_memory_new(&u, ret, err);
        }
        if (!strcmp(u.type, "objectstore"))
                return kiln_blob_objectstore_new(&u, ret, err);
        if (!strcmp(u.type, "cache") && u.sub)
                return blob_cache_open(url, &u, ret, err);
        if (!strcmp(u.type, "grpc")) {
                r = kiln_grpc_url_check(&u, url, err);
                return r < 0 ? r : kiln_blob_grpc_new(&u, url, ret, err);
        }
        return kiln_error_set(err, EINVAL, "invalid blob service URL '%s': unknown type: %s", url,
                              u.type);
}

int kiln_directory_service_open(const char *url, struct kiln_directory_service **ret,
                                struct kiln_error **err)
{
        _cleanup_(kiln_url_done) struct kiln_url u = {0};
        int r = kiln_url_parse(url, &u, err);
        if (r < 0)
                return r;
        if (!strcmp(u.scheme, "memory")) {
                r = check_memory_url(&u, url, err);
                return r < 0 ? r : kiln_directory_memory_new(&u, ret, err);
        }
        if (!strcmp(u.scheme, "lmdb"))
                return kiln_directory_lmdb_new(&u, ret, err);
        if (!strcmp(u.type, "objectstore"))
                return kiln_directory_objectstore_new(&u, ret, err);
        if (!strcmp(u.type, "cache") && u.sub)
                return directory_cache_open(url, &u, ret, err);
        if (!strcmp(u.scheme, "redb"))
                return kiln_error_set(err, EINVAL,
                                      "invalid directory service URL '%s': redb is not supported "
                                      "by kiln; use lmdb:///abs/path for an embedded store",
                                      url);
        if (!strcmp(u.type, "grpc")) {
                r = kiln_grpc_url_check(&u, url, err);
                return r < 0 ? r : kiln_directory_grpc_new(&u, url, ret, err);
        }
        return kiln_error_set(err, EINVAL,
                              "invalid directory service URL '%s': unknown type: %s", url,
                              u.type);
}

/* --- default store --- */

static char *absolute(const char *p)
{
        if (p[0] == '/')
                return kiln_strdup(p);
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        return kiln_asprintf("%s/%s", cwd ? cwd : "", p);
}

char *kiln_home(void)
{
        const char *h = getenv("KILN_HOME");
        if (h && *h)
                return absolute(h);
        if (geteuid() == 0)
                return kiln_strdup("/var/lib/kiln");
        const char *xdg = getenv("XDG_DATA_HOME");
        if (xdg && *xdg == '/')
                return kiln_asprintf("%s/kiln", xdg);
        const char *home = getenv("HOME");
        if (!home || !*home) {
                struct passwd *pw = getpwuid(geteuid());
                home = pw ? pw->pw_dir : "/";
        }
        return kiln_asprintf("%s/.local/share/kiln", home);
}

/* A path as a URL path: escapes the characters the parser would take as
 * delimiters or escapes. */
static char *url_path(const char *p)
{
        struct kiln_buf b = KILN_BUF_INIT;
        for (; *p; p++) {
                if (*p == '%' || *p == '?' || *p == '#') {
                        char esc[4];
                        snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*p);
                        kiln_buf_append(&b, esc, 3);
                } else {
                        kiln_buf_append_byte(&b, (uint8_t)*p);
                }
        }
        kiln_buf_append_byte(&b, 0);
        return (char *)kiln_buf_steal(&b, NULL);
}

char *kiln_default_blob_url(void)
{
        _cleanup_free_ char *h = kiln_home();
        _cleanup_free_ char *p = url_path(h);
        return kiln_asprintf("objectstore+file://%s/blobs", p);
}

char *kiln_default_directory_url(void)
{
        _cleanup_free_ char *h = kiln_home();
        _cleanup_free_ char *p = url_path(h);
        return kiln_asprintf("lmdb://%s/directories", p);
}
