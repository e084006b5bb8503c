/* URL parsing for service addresses: every castore scheme is
 * non-special, so "x://" has no host and an empty path, and "x:///a" has no
 * host and the path "/a". */
#include <ctype.h>

#include <kiln/util/url.h>

/* Percent-decodes [p, p+n) into a heap string; NULL on a bad escape. */
static char *pct_decode(const char *p, size_t n)
{
        char *out = kiln_malloc(n + 1), *o = out;
        for (size_t i = 0; i < n; i++) {
                if (p[i] != '%') {
                        *o++ = p[i];
                        continue;
                }
                int hi = i + 1 < n ? kiln_unhex(p[i + 1]) : -1;
                int lo = i + 2 < n ? kiln_unhex(p[i + 2]) : -1;
                if (hi < 0 || lo < 0) {
                        free(out);
                        return NULL;
                }
                *o++ = (char)(hi << 4 | lo);
                i += 2;
        }
        *o = '\0';
        return out;
}

void kiln_url_done(struct kiln_url *u)
{
        free(u->scheme);
        free(u->type);
        free(u->sub);
        free(u->host);
        free(u->port);
        free(u->path);
        free(u->query);
        *u = (struct kiln_url){0};
}

static int bad(struct kiln_url *u, const char *s, const char *why, struct kiln_error **err)
{
        kiln_url_done(u);
        _cleanup_free_ char *q = kiln_quote(s, strlen(s), 512);
        return kiln_error_set(err, EINVAL, "invalid URL '%s': %s", q, why);
}

int kiln_url_parse(const char *s, struct kiln_url *ret, struct kiln_error **err)
{
        struct kiln_url u = {0};
        const char *colon = strchr(s, ':');
        if (!colon || colon == s || !isalpha((unsigned char)s[0]))
                return bad(&u, s, "no scheme", err);
        for (const char *p = s; p < colon; p++)
                if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
                        return bad(&u, s, "bad scheme", err);

        u.scheme = strndup(s, (size_t)(colon - s));
        for (char *p = u.scheme; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        char *plus = strchr(u.scheme, '+');
        u.type = plus ? strndup(u.scheme, (size_t)(plus - u.scheme)) : kiln_strdup(u.scheme);
        u.sub = plus ? kiln_strdup(plus + 1) : NULL;

        const char *rest = colon + 1;
        const char *end = rest + strcspn(rest, "?#");
        if (!strncmp(rest, "//", 2)) {
                const char *auth = rest + 2;
                const char *auth_end = auth + strcspn(auth, "/?#");
                if (auth_end > end)
                        auth_end = end;
                const char *host_end = auth_end;
                if (*auth == '[') {
                        const char *rb = memchr(auth, ']', (size_t)(auth_end - auth));
                        if (!rb)
                                goto bad_host;
                        host_end = rb + 1;
                        if (host_end < auth_end && *host_end != ':')
                                goto bad_host;
                } else {
                        const char *c = memchr(auth, ':', (size_t)(auth_end - auth));
                        if (c)
                                host_end = c;
                }
                if (memchr(auth, '@', (size_t)(auth_end - auth)))
                        goto bad_host;
                if (host_end > auth)
                        u.host = strndup(auth, (size_t)(host_end - auth));
                if (host_end < auth_end) {
                        const char *port = host_end + 1;
                        size_t plen = (size_t)(auth_end - port);
                        for (size_t i = 0; i < plen; i++)
                                if (!isdigit((unsigned char)port[i]))
                                        goto bad_port;
                        if (plen > 5 || (plen > 0 && atoi(port) > 65535))
                                goto bad_port;
                        if (plen > 0)
                                u.port = strndup(port, plen);
                }
                rest = auth_end;
        }
        u.path = pct_decode(rest, (size_t)(end - rest));
        if (!u.path)
                return bad(&u, s, "bad percent escape", err);
        if (*end == '?') {
                const char *q = end + 1;
                u.query = strndup(q, strcspn(q, "#"));
        }
        *ret = u;
        return 0;

bad_host:
        return bad(&u, s, "bad host", err);
bad_port:
        return bad(&u, s, "bad port", err);
}

char *kiln_url_query_get(const struct kiln_url *u, const char *key)
{
        if (!u->query)
                return NULL;
        size_t klen = strlen(key);
        const char *p = u->query;
        while (*p) {
                size_t n = strcspn(p, "&");
                const char *eq = memchr(p, '=', n);
                size_t name_len = eq ? (size_t)(eq - p) : n;
                if (name_len == klen && !memcmp(p, key, klen)) {
                        if (!eq)
                                return kiln_strdup("");
                        char *v = pct_decode(eq + 1, n - name_len - 1);
                        return v ? v : kiln_strdup("");
                }
                p += n;
                if (*p == '&')
                        p++;
        }
        return NULL;
}

int kiln_url_query_check(const struct kiln_url *u, const char *const *allowed, const char *what,
                         struct kiln_error **err)
{
        if (!u->query)
                return 0;
        const char *p = u->query;
        while (*p) {
                size_t n = strcspn(p, "&");
                size_t name_len = strcspn(p, "=&");
                bool ok = name_len == 0;
                for (const char *const *a = allowed; *a && !ok; a++)
                        ok = strlen(*a) == name_len && !memcmp(*a, p, name_len);
                if (!ok)
                        return kiln_error_set(err, EINVAL, "%s: unknown parameter '%.*s'", what,
                                              (int)name_len, p);
                p += n;
                if (*p == '&')
                        p++;
        }
        return 0;
}
