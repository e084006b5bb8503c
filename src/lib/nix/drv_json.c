/* nix show-derivation's JSON (src/nix/show-derivation.cc and
 * src/libutil/json.cc of Nix 2.8). jansson's own dumper escapes differently
 * (\b, \f) and refuses invalid UTF-8, so the printing is ours. */
#include <stdio.h>

#include <kiln/nix/drv_json.h>

static json_t *str(const char *s)
{
        return json_stringn_nocheck(s, strlen(s));
}

static void set(json_t *obj, const char *key, json_t *value)
{
        json_object_setn_new_nocheck(obj, key, strlen(key), value);
}

static json_t *path_str(const struct kiln_nix_store_path *p)
{
        return str(KILN_NIX_STORE_PATH_STR(p));
}

json_t *kiln_nix_derivation_to_json(const struct kiln_nix_derivation *d)
{
        json_t *j = json_object();
        json_t *outputs = json_object();
        for (size_t i = 0; i < d->n_outputs; i++) {
                const struct kiln_nix_drv_output *o = &d->outputs[i];
                json_t *oj = json_object();
                char algo[16];
                switch (o->kind) {
                case KILN_NIX_OUTPUT_INPUT_ADDRESSED:
                        set(oj, "path", path_str(&o->path));
                        break;
                case KILN_NIX_OUTPUT_FIXED:
                        set(oj, "path", path_str(&o->path));
                        set(oj, "hashAlgo", str(kiln_nix_output_hash_algo(o, algo)));
                        set(oj, "hash", str(KILN_NIX_HASH_STR(&o->hash, KILN_NIX_BASE16, false)));
                        break;
                case KILN_NIX_OUTPUT_FLOATING:
                        set(oj, "hashAlgo", str(kiln_nix_output_hash_algo(o, algo)));
                        break;
                case KILN_NIX_OUTPUT_IMPURE:
                        set(oj, "hashAlgo", str(kiln_nix_output_hash_algo(o, algo)));
                        set(oj, "impure", json_true());
                        break;
                case KILN_NIX_OUTPUT_DEFERRED:
                        break;
                }
                set(outputs, o->name, oj);
        }
        set(j, "outputs", outputs);

        json_t *srcs = json_array();
        for (size_t i = 0; i < d->n_input_srcs; i++)
                json_array_append_new(srcs, path_str(&d->input_srcs[i]));
        set(j, "inputSrcs", srcs);

        json_t *drvs = json_object();
        for (size_t i = 0; i < d->n_input_drvs; i++) {
                json_t *outs = json_array();
                for (size_t k = 0; k < d->input_drvs[i].n_outputs; k++)
                        json_array_append_new(outs, str(d->input_drvs[i].outputs[k]));
                set(drvs, KILN_NIX_STORE_PATH_STR(&d->input_drvs[i].drv), outs);
        }
        set(j, "inputDrvs", drvs);

        set(j, "system", str(d->system));
        set(j, "builder", str(d->builder));
        json_t *args = json_array();
        for (size_t i = 0; i < d->n_args; i++)
                json_array_append_new(args, str(d->args[i]));
        set(j, "args", args);
        json_t *env = json_object();
        for (size_t i = 0; i < d->n_env; i++)
                set(env, d->env[i].name, str(d->env[i].value));
        set(j, "env", env);
        return j;
}

static void put_string(struct kiln_buf *b, const char *s, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        kiln_buf_reserve(b, 6 * n + 2);
        uint8_t *o = b->data + b->len;
        *o++ = '"';
        for (size_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c == '"' || c == '\\') {
                        *o++ = '\\';
                        *o++ = c;
                } else if (c == '\n') {
                        *o++ = '\\';
                        *o++ = 'n';
                } else if (c == '\r') {
                        *o++ = '\\';
                        *o++ = 'r';
                } else if (c == '\t') {
                        *o++ = '\\';
                        *o++ = 't';
                } else if (c < 0x20) {
                        memcpy(o, "\\u00", 4);
                        o += 4;
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                } else {
                        *o++ = c;
                }
        }
        *o++ = '"';
        b->len = (size_t)(o - b->data);
}

static void newline(struct kiln_buf *b, unsigned depth)
{
        kiln_buf_append_byte(b, '\n');
        for (unsigned i = 0; i < depth; i++)
                kiln_buf_append(b, "  ", 2);
}

static void print_value(const json_t *j, unsigned depth, struct kiln_buf *b)
{
        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                kiln_buf_append_byte(b, '{');
                bool first = true;
                for (void *it = json_object_iter((json_t *)j); it;
                     it = json_object_iter_next((json_t *)j, it)) {
                        if (!first)
                                kiln_buf_append_byte(b, ',');
                        first = false;
                        newline(b, depth + 1);
                        put_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
                        kiln_buf_append(b, ": ", 2);
                        print_value(json_object_iter_value(it), depth + 1, b);
                }
                if (!first)
                        newline(b, depth);
                kiln_buf_append_byte(b, '}');
                break;
        }
        case JSON_ARRAY: {
                kiln_buf_append_byte(b, '[');
                size_t n = json_array_size(j);
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                kiln_buf_append_byte(b, ',');
                        newline(b, depth + 1);
                        print_value(json_array_get(j, i), depth + 1, b);
                }
                if (n)
                        newline(b, depth);
                kiln_buf_append_byte(b, ']');
                break;
        }
        case JSON_STRING:
                put_string(b, json_string_value(j), json_string_length(j));
                break;
        case JSON_INTEGER: {
                char num[32];
                int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
                kiln_buf_append(b, num, (size_t)n);
                break;
        }
        case JSON_REAL: {
                /* Nix prints doubles with the stream default (%g). */
                char num[64];
                int n = snprintf(num, sizeof(num), "%g", json_real_value(j));
                kiln_buf_append(b, num, (size_t)n);
                break;
        }
        case JSON_TRUE:
                kiln_buf_append(b, "true", 4);
                break;
        case JSON_FALSE:
                kiln_buf_append(b, "false", 5);
                break;
        case JSON_NULL:
                kiln_buf_append(b, "null", 4);
                break;
        }
}

void kiln_nix_json_print(const json_t *j, struct kiln_buf *out)
{
        print_value(j, 0, out);
}
