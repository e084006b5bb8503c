/* proto3 JSON: the field helpers every message mapping uses. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>

#include <kiln/util/base64.h>
#include <kiln/util/json.h>

json_t *kiln_json_bytes(const void *p, size_t len)
{
        _cleanup_free_ char *s = kiln_base64_encode_alloc(p, len);
        return json_string(s);
}

json_t *kiln_json_u64(uint64_t v)
{
        char buf[24];
        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return json_string(buf);
}

char *kiln_json_dumps(const json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
                abort();
        return s;
}

/* "command_args" → "commandArgs" */
static void camel(const char *proto_name, char *out, size_t size)
{
        size_t o = 0;
        bool up = false;
        for (const char *p = proto_name; *p && o + 1 < size; p++) {
                if (*p == '_') {
                        up = true;
                        continue;
                }
                out[o++] = up ? (char)toupper((unsigned char)*p) : *p;
                up = false;
        }
        out[o] = '\0';
}

json_t *kiln_json_field(const json_t *obj, const char *proto_name)
{
        json_t *v = json_object_get(obj, proto_name);
        if (!v) {
                char c[64];
                camel(proto_name, c, sizeof(c));
                v = json_object_get(obj, c);
        }
        return json_is_null(v) ? NULL : v;
}

int kiln_json_check_fields(const json_t *obj, const char *what, const char *const *proto_names,
                           struct kiln_error **err)
{
        if (!json_is_object(obj))
                return kiln_error_set(err, EINVAL, "%s: expected a JSON object", what);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)obj, key, v) {
                bool known = false;
                for (const char *const *n = proto_names; *n && !known; n++) {
                        char c[64];
                        camel(*n, c, sizeof(c));
                        known = !strcmp(key, *n) || !strcmp(key, c);
                }
                if (!known)
                        return kiln_error_set(err, EINVAL, "%s: unknown field \"%s\"", what, key);
        }
        return 0;
}

int kiln_json_get_bytes(const json_t *obj, const char *field, uint8_t **ret, size_t *ret_len,
                        struct kiln_error **err)
{
        json_t *v = kiln_json_field(obj, field);
        if (!v) {
                *ret = NULL;
                *ret_len = 0;
                return 0;
        }
        if (!json_is_string(v))
                return kiln_error_set(err, EINVAL, "field %s: expected a base64 string", field);
        uint8_t *p;
        size_t n;
        if (kiln_base64_decode(json_string_value(v), json_string_length(v), &p, &n) < 0)
                return kiln_error_set(err, EINVAL, "field %s: invalid base64", field);
        if (n == 0) {
                free(p);
                p = NULL;
        }
        *ret = p;
        *ret_len = n;
        return 0;
}

int kiln_json_get_u64(const json_t *obj, const char *field, uint64_t *ret,
                      struct kiln_error **err)
{
        json_t *v = kiln_json_field(obj, field);
        if (!v) {
                *ret = 0;
                return 0;
        }
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);
                if (i < 0)
                        return kiln_error_set(err, EINVAL, "field %s: negative value", field);
                *ret = (uint64_t)i;
                return 0;
        }
        if (json_is_string(v)) {
                const char *s = json_string_value(v);
                char *end;
                if (!*s || !isdigit((unsigned char)*s))
                        goto bad;
                errno = 0;
                unsigned long long u = strtoull(s, &end, 10);
                if (errno || *end)
                        goto bad;
                *ret = u;
                return 0;
        }
bad:
        return kiln_error_set(err, EINVAL, "field %s: expected an unsigned 64-bit integer",
                              field);
}

int kiln_json_get_bool(const json_t *obj, const char *field, bool *ret, struct kiln_error **err)
{
        json_t *v = kiln_json_field(obj, field);
        if (!v) {
                *ret = false;
                return 0;
        }
        if (!json_is_boolean(v))
                return kiln_error_set(err, EINVAL, "field %s: expected true or false", field);
        *ret = json_is_true(v);
        return 0;
}

int kiln_json_get_string(const json_t *obj, const char *field, char **ret, size_t *ret_len,
                         struct kiln_error **err)
{
        json_t *v = kiln_json_field(obj, field);
        if (!v) {
                *ret = kiln_strdup("");
                *ret_len = 0;
                return 0;
        }
        if (!json_is_string(v))
                return kiln_error_set(err, EINVAL, "field %s: expected a string", field);
        size_t n = json_string_length(v);
        char *s = kiln_malloc(n + 1);
        memcpy(s, json_string_value(v), n);
        s[n] = '\0';
        *ret = s;
        *ret_len = n;
        return 0;
}
