/* The action cache front end: a request's identity, opening a store by URL,
 * and the record format (a Build message without its request echo). */
#include <stdio.h>
#include <stdlib.h>

#include <kiln/build/action_cache.h>
#include <kiln/rpc/url.h>
#include <kiln/util/url.h>

#include "action_cache_backends.h"

/* --- identity --- */

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_node(const void *a, const void *b)
{
        const struct kiln_node *x = a, *y = b;
        return kiln_bytes_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

static int cmp_env(const void *a, const void *b)
{
        const struct kiln_env_var *x = a, *y = b;
        return strcmp(x->key, y->key);
}

static int cmp_file(const void *a, const void *b)
{
        const struct kiln_additional_file *x = a, *y = b;
        return strcmp(x->path, y->path);
}

static void sort_strv(struct kiln_strv *s)
{
        if (s->n > 1)
                qsort(s->v, s->n, sizeof(*s->v), cmp_str);
}

void kiln_build_request_identity(const struct kiln_build_request *r, struct kiln_digest *ret)
{
        /* A validated request is already in this form (validation refuses
         * unsorted sets); sorting a copy makes the identity a property of
         * the request's meaning for requests made in code too. qsort is not
         * stable, but equal keys are refused by validation and sorting
         * keys that compare equal cannot change the encoding of a valid
         * request. */
        struct kiln_build_request c;
        kiln_build_request_copy(&c, r);
        if (c.n_inputs > 1)
                qsort(c.inputs, c.n_inputs, sizeof(*c.inputs), cmp_node);
        sort_strv(&c.scratch_paths);
        sort_strv(&c.outputs);
        if (c.n_env > 1)
                qsort(c.env, c.n_env, sizeof(*c.env), cmp_env);
        if (c.n_files > 1)
                qsort(c.files, c.n_files, sizeof(*c.files), cmp_file);
        struct kiln_strv *ro = &c.constraints.ro_paths;
        sort_strv(ro);
        size_t o = 0;
        for (size_t i = 0; i < ro->n; i++) {
                if (o > 0 && !strcmp(ro->v[o - 1], ro->v[i]))
                        free(ro->v[i]);
                else
                        ro->v[o++] = ro->v[i];
        }
        ro->n = o;
        struct kiln_buf b = KILN_BUF_INIT;
        kiln_build_request_encode(&c, &b);
        kiln_digest_of(b.data, b.len, ret);
        kiln_buf_done(&b);
        kiln_build_request_done(&c);
}

/* --- opening by URL --- */

static int parse_max_entries(const struct kiln_url *u, const char *url, uint64_t *ret,
                             struct kiln_error **err)
{
        static const char *const allowed[] = {"max-entries", NULL};
        int r = kiln_url_query_check(u, allowed, url, err);
        if (r < 0)
                return r;
        *ret = KILN_ACTION_CACHE_MAX_ENTRIES;
        _cleanup_free_ char *v = kiln_url_query_get(u, "max-entries");
        if (!v)
                return 0;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (!*v || *end || errno || n == 0 || v[0] == '-')
                return kiln_error_set(err, EINVAL,
                                      "invalid action cache URL '%s': max-entries must be a "
                                      "positive number",
                                      url);
        *ret = n;
        return 0;
}

int kiln_action_cache_open(const char *url, struct kiln_action_cache **ret,
                           struct kiln_error **err)
{
        _cleanup_(kiln_url_done) struct kiln_url u = {0};
        int r = kiln_url_parse(url, &u, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "invalid action cache URL '%s'", url);
        uint64_t max;
        if (!strcmp(u.scheme, "memory")) {
                if (u.host || u.path[0])
                        return kiln_error_set(err, EINVAL,
                                              "invalid action cache URL '%s': memory:// takes "
                                              "no host or path",
                                              url);
                r = parse_max_entries(&u, url, &max, err);
                return r < 0 ? r : kiln_action_cache_memory_new(max, ret, err);
        }
        if (!strcmp(u.scheme, "lmdb")) {
                if (u.host || u.path[0] != '/')
                        return kiln_error_set(err, EINVAL,
                                              "invalid action cache URL '%s': lmdb:// needs an "
                                              "absolute path and no host",
                                              url);
                r = parse_max_entries(&u, url, &max, err);
                return r < 0 ? r : kiln_action_cache_lmdb_new(u.path, max, ret, err);
        }
        if (!strcmp(u.type, "grpc")) {
                /* a daemon's, which bounds it itself */
                r = kiln_grpc_url_check(&u, url, err);
                return r < 0 ? r : kiln_action_cache_grpc_new(&u, url, ret, err);
        }
        return kiln_error_set(err, EINVAL,
                              "invalid action cache URL '%s': unknown scheme %s (memory://, "
                              "lmdb:///abs/path or a daemon's grpc+…)",
                              url, u.scheme);
}

void kiln_action_cache_free(struct kiln_action_cache *c)
{
        if (c)
                c->ops->free(c);
}

char *kiln_default_action_cache_url(void)
{
        _cleanup_free_ char *h = kiln_home();
        struct kiln_buf b = KILN_BUF_INIT;
        for (const char *p = h; *p; p++) {
                if (*p == '%' || *p == '?' || *p == '#') {
                        char esc[4];
                        snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*p);
                        kiln_buf_append(&b, esc, 3);
                } else {
                        kiln_buf_append_byte(&b, (uint8_t)*p);
                }
        }
        kiln_buf_append_byte(&b, 0);
        _cleanup_free_ char *p = (char *)kiln_buf_steal(&b, NULL);
        return kiln_asprintf("lmdb://%s/action-cache", p);
}

/* --- records --- */

int kiln_action_cache_lookup(struct kiln_action_cache *c, const struct kiln_digest *key,
                             struct kiln_build *ret, struct kiln_error **err)
{
        _cleanup_(kiln_buf_done) struct kiln_buf rec = KILN_BUF_INIT;
        int r = c->ops->get(c, key, &rec, err);
        if (r <= 0)
                return r;
        struct kiln_build b = {0};
        _cleanup_(kiln_error_freep) struct kiln_error *why = NULL;
        r = kiln_build_decode(rec.data, rec.len, &b, &why);
        if (r < 0)
                return kiln_error_set(err, EBADMSG, "action cache %s: record %s: %s",
                                      c->ops->name, KILN_DIGEST_B64(key), kiln_error_msg(why));
        kiln_build_request_done(&b.request);
        *ret = b;
        return 1;
}

int kiln_action_cache_store(struct kiln_action_cache *c, const struct kiln_digest *key,
                            const struct kiln_build *b, struct kiln_error **err)
{
        struct kiln_build rec = {.outputs = b->outputs, .n_outputs = b->n_outputs};
        _cleanup_(kiln_buf_done) struct kiln_buf out = KILN_BUF_INIT;
        kiln_build_encode(&rec, &out);
        return c->ops->put(c, key, out.data, out.len, err);
}

int kiln_action_cache_remove(struct kiln_action_cache *c, const struct kiln_digest *key,
                             struct kiln_error **err)
{
        return c->ops->remove(c, key, err);
}

int kiln_action_cache_count(struct kiln_action_cache *c, uint64_t *ret, struct kiln_error **err)
{
        return c->ops->count(c, ret, err);
}
