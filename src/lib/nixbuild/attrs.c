/* Structured attributes files as Nix 2.8 writes them: .attrs.json is the
 * JSON library's compact dump (object keys in byte order, strings escaping
 * only '"', '\\' and control characters, numbers in their shortest form) and
 * .attrs.sh declares every attribute bash can hold (parsed-derivations.cc). */
#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include <kiln/nixbuild/nixbuild.h>

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* An object's keys in byte order (jansson keeps insertion order). */
static const char **sorted_keys(const json_t *o, size_t *ret_n)
{
        size_t n = json_object_size(o), i = 0;
        const char **keys = kiln_calloc(n ? n : 1, sizeof(*keys));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)o, k, v)
                keys[i++] = k;
        qsort(keys, n, sizeof(*keys), cmp_str);
        *ret_n = n;
        return keys;
}

static void put_str(const char *s, size_t n, struct kiln_buf *out)
{
        kiln_buf_append_byte(out, '"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                const char *esc = NULL;
                switch (c) {
                case '"': esc = "\\\""; break;
                case '\\': esc = "\\\\"; break;
                case '\b': esc = "\\b"; break;
                case '\f': esc = "\\f"; break;
                case '\n': esc = "\\n"; break;
                case '\r': esc = "\\r"; break;
                case '\t': esc = "\\t"; break;
                }
                if (esc) {
                        kiln_buf_append(out, esc, strlen(esc));
                } else if (c < 0x20) {
                        char u[8];
                        snprintf(u, sizeof(u), "\\u%04x", c);
                        kiln_buf_append(out, u, 6);
                } else {
                        kiln_buf_append_byte(out, c);
                }
        }
        kiln_buf_append_byte(out, '"');
}

/* The shortest text that reads back as the same double, with ".0" added
 * when it would look like an integer. */
static void put_real(double d, struct kiln_buf *out)
{
        char s[40];
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(s, sizeof(s), "%.*g", prec, d);
                if (strtod(s, NULL) == d)
                        break;
        }
        kiln_buf_append(out, s, strlen(s));
        if (!strpbrk(s, ".eEn"))
                kiln_buf_append(out, ".0", 2);
}

static int dump(const json_t *j, struct kiln_buf *out, struct kiln_error **err)
{
        char num[32];
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                size_t n;
                _cleanup_free_ const char **keys = sorted_keys(j, &n);
                kiln_buf_append_byte(out, '{');
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                kiln_buf_append_byte(out, ',');
                        put_str(keys[i], strlen(keys[i]), out);
                        kiln_buf_append_byte(out, ':');
                        int r = dump(json_object_get(j, keys[i]), out, err);
                        if (r < 0)
                                return r;
                }
                kiln_buf_append_byte(out, '}');
                return 0;
        }
        case JSON_ARRAY:
                kiln_buf_append_byte(out, '[');
                for (size_t i = 0; i < json_array_size(j); i++) {
                        if (i)
                                kiln_buf_append_byte(out, ',');
                        int r = dump(json_array_get(j, i), out, err);
                        if (r < 0)
                                return r;
                }
                kiln_buf_append_byte(out, ']');
                return 0;
        case JSON_STRING:
                put_str(json_string_value(j), json_string_length(j), out);
                return 0;
        case JSON_INTEGER:
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
                kiln_buf_append(out, num, strlen(num));
                return 0;
        case JSON_REAL:
                if (!isfinite(json_real_value(j)))
                        return kiln_error_set(err, EINVAL, "a number is not finite");
                put_real(json_real_value(j), out);
                return 0;
        case JSON_TRUE:
                kiln_buf_append(out, "true", 4);
                return 0;
        case JSON_FALSE:
                kiln_buf_append(out, "false", 5);
                return 0;
        case JSON_NULL:
                kiln_buf_append(out, "null", 4);
                return 0;
        }
        return kiln_error_set(err, EINVAL, "unknown JSON value");
}

int kiln_nixbuild_attrs_json(const json_t *attrs, struct kiln_buf *out, struct kiln_error **err)
{
        return dump(attrs, out, err);
}

/* Nix's shellEscape: single quotes, a quote as '\''. */
static void sh_quote(const char *s, struct kiln_buf *out)
{
        kiln_buf_append_byte(out, '\'');
        for (; *s; s++) {
                if (*s == '\'')
                        kiln_buf_append(out, "'\\''", 4);
                else
                        kiln_buf_append_byte(out, (uint8_t)*s);
        }
        kiln_buf_append_byte(out, '\'');
}

/* Strings, integral numbers, null and Booleans; false for anything else. */
static bool sh_simple(const json_t *v, struct kiln_buf *out)
{
        char num[32];
        switch (json_typeof(v)) {
        case JSON_STRING:
                sh_quote(json_string_value(v), out);
                return true;
        case JSON_INTEGER:
        case JSON_REAL: {
                /* As Nix: the value read as a float must be integral, and is
                 * then printed as an int. */
                double d = json_number_value(v);
                float f = (float)d;
                if (ceilf(f) != f)
                        return false;
                int i = json_is_integer(v) ? (int)json_integer_value(v) : (int)d;
                snprintf(num, sizeof(num), "%d", i);
                kiln_buf_append(out, num, strlen(num));
                return true;
        }
        case JSON_NULL:
                kiln_buf_append(out, "''", 2);
                return true;
        case JSON_TRUE:
                kiln_buf_append_byte(out, '1');
                return true;
        case JSON_FALSE:
                return true;
        default:
                return false;
        }
}

static bool sh_name(const char *k)
{
        if (!(isalpha((unsigned char)*k) || *k == '_'))
                return false;
        for (k++; *k; k++)
                if (!(isalnum((unsigned char)*k) || *k == '_'))
                        return false;
        return true;
}

void kiln_nixbuild_attrs_sh(const json_t *attrs, struct kiln_buf *out)
{
        size_t n;
        _cleanup_free_ const char **keys = sorted_keys(attrs, &n);
        struct kiln_buf v = KILN_BUF_INIT;
        for (size_t i = 0; i < n; i++) {
                if (!sh_name(keys[i]))
                        continue;
                const json_t *val = json_object_get(attrs, keys[i]);
                const char *decl = NULL;
                bool good = true;
                v.len = 0;
                if (sh_simple(val, &v)) {
                        decl = "declare %s=";
                } else if (json_is_array(val)) {
                        decl = "declare -a %s=";
                        kiln_buf_append_byte(&v, '(');
                        for (size_t k = 0; good && k < json_array_size(val); k++) {
                                good = sh_simple(json_array_get(val, k), &v);
                                kiln_buf_append_byte(&v, ' ');
                        }
                        kiln_buf_append_byte(&v, ')');
                } else if (json_is_object(val)) {
                        decl = "declare -A %s=";
                        size_t m;
                        _cleanup_free_ const char **k2 = sorted_keys(val, &m);
                        kiln_buf_append_byte(&v, '(');
                        for (size_t k = 0; good && k < m; k++) {
                                kiln_buf_append_byte(&v, '[');
                                sh_quote(k2[k], &v);
                                kiln_buf_append(&v, "]=", 2);
                                good = sh_simple(json_object_get(val, k2[k]), &v);
                                kiln_buf_append_byte(&v, ' ');
                        }
                        kiln_buf_append_byte(&v, ')');
                }
                if (!decl || !good)
                        continue;
                char head[300];
                int hn = snprintf(head, sizeof(head), decl, keys[i]);
                if (hn < 0 || (size_t)hn >= sizeof(head))
                        continue;
                kiln_buf_append(out, head, (size_t)hn);
                kiln_buf_append(out, v.data, v.len);
                kiln_buf_append_byte(out, '\n');
        }
        kiln_buf_done(&v);
}
