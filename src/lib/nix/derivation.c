/* Nix derivations: the model, the strict ATerm parser and the printer.
 *
 * Nix prints some fields quoted but unescaped (output names and paths, hash
 * algorithms and hashes, input paths and output names, the system) and the
 * others escaped (builder, arguments, environment), escaping only " \ and
 * newline, carriage return and tab. The parser mirrors that exactly: an
 * unescaped field may not hold a backslash (Nix would have written it bare
 * and could not read it back), and an escaped field may not hold a raw
 * newline, carriage return or tab, or an escape other than those five. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#include <kiln/nix/derivation.h>

#include "quote.h"

#define DRV_FILE_MAX (256u << 20)

struct kiln_nix_derivation *kiln_nix_derivation_new(void)
{
        return kiln_calloc(1, sizeof(struct kiln_nix_derivation));
}

static void free_strv(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void kiln_nix_derivation_free(struct kiln_nix_derivation *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n_outputs; i++)
                free(d->outputs[i].name);
        free(d->outputs);
        for (size_t i = 0; i < d->n_input_drvs; i++)
                free_strv(d->input_drvs[i].outputs, d->input_drvs[i].n_outputs);
        free(d->input_drvs);
        free(d->input_srcs);
        free(d->system);
        free(d->builder);
        free_strv(d->args, d->n_args);
        for (size_t i = 0; i < d->n_env; i++) {
                free(d->env[i].name);
                free(d->env[i].value);
        }
        free(d->env);
        free(d);
}

/* --- parsing --- */

struct parser {
        const char *s;
        size_t len;
        size_t pos;
        struct kiln_error **err;
};

static int fail_at(struct parser *p, size_t at, const char *fmt, ...) _printf_(3, 4);
static int fail_at(struct parser *p, size_t at, const char *fmt, ...)
{
        va_list ap;
        char *msg;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                abort();
        va_end(ap);
        int r = kiln_error_set(p->err, EINVAL, "invalid derivation at byte %zu: %s", at, msg);
        free(msg);
        return r;
}

static int expect(struct parser *p, const char *lit)
{
        size_t n = strlen(lit);
        for (size_t i = 0; i < n; i++) {
                if (p->pos + i >= p->len)
                        return fail_at(p, p->pos + i, "expected '%s', found the end", lit);
                if (p->s[p->pos + i] != lit[i]) {
                        _cleanup_free_ char *q = kiln_nix_quote(p->s + p->pos + i, 1);
                        return fail_at(p, p->pos + i, "expected '%s', found '%s'", lit, q);
                }
        }
        p->pos += n;
        return 0;
}

static bool peek(const struct parser *p, char c)
{
        return p->pos < p->len && p->s[p->pos] == c;
}

/* A quoted string; `escaped` selects the field kind (see the top). *ret is a
 * heap string. */
static int parse_string(struct parser *p, bool escaped, const char *what, char **ret)
{
        int r = expect(p, "\"");
        if (r < 0)
                return r;
        size_t start = p->pos, out_len = 0, i = start;
        /* First pass: find the end, check, count. */
        for (;; i++) {
                if (i >= p->len)
                        return fail_at(p, start - 1, "unterminated string in %s", what);
                char c = p->s[i];
                if (c == '"')
                        break;
                if (c == '\0')
                        return fail_at(p, i, "NUL byte in %s", what);
                if (c == '\\') {
                        if (!escaped)
                                return fail_at(p, i, "backslash in %s, which Nix writes unescaped",
                                               what);
                        if (i + 1 >= p->len)
                                return fail_at(p, start - 1, "unterminated string in %s", what);
                        char e = p->s[i + 1];
                        if (e != '"' && e != '\\' && e != 'n' && e != 'r' && e != 't') {
                                _cleanup_free_ char *q = kiln_nix_quote(&e, 1);
                                return fail_at(p, i, "invalid escape '\\%s' in %s", q, what);
                        }
                        i++;
                } else if (escaped && (c == '\n' || c == '\r' || c == '\t')) {
                        return fail_at(p, i, "unescaped %s in %s",
                                       c == '\n'   ? "newline"
                                       : c == '\r' ? "carriage return"
                                                   : "tab",
                                       what);
                }
                out_len++;
        }
        char *out = kiln_malloc(out_len + 1), *o = out;
        for (size_t k = start; k < i; k++) {
                char c = p->s[k];
                if (c == '\\') {
                        c = p->s[++k];
                        c = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
                }
                *o++ = c;
        }
        *o = '\0';
        p->pos = i + 1;
        *ret = out;
        return 0;
}

/* Before an item of a list: 1 when there is one (after a ',' unless it is the
 * first), 0 at the closing ']' (consumed). */
static int list_next(struct parser *p, size_t index)
{
        if (peek(p, ']')) {
                p->pos++;
                return 0;
        }
        if (index == 0)
                return 1;
        int r = expect(p, ",");
        return r < 0 ? r : 1;
}

static int parse_store_path(struct parser *p, const char *what, struct kiln_nix_store_path *ret)
{
        size_t at = p->pos + 1;
        _cleanup_free_ char *s = NULL;
        int r = parse_string(p, false, what, &s);
        if (r < 0)
                return r;
        struct kiln_error *e = NULL;
        r = kiln_nix_store_path_parse(s, strlen(s), ret, &e);
        if (r < 0) {
                r = fail_at(p, at, "%s: %s", what, kiln_error_msg(e));
                kiln_error_free(e);
        }
        return r;
}

static int parse_output(struct parser *p, struct kiln_nix_drv_output *o)
{
        size_t at_path, at_algo, at_hash;
        _cleanup_free_ char *path = NULL, *algo = NULL, *hash = NULL;
        /* The name is the parser's input: quoted, so a message stays one line. */
        _cleanup_free_ char *name = kiln_nix_quote(o->name, strlen(o->name));
        int r = expect(p, ",");
        at_path = p->pos + 1;
        if (r >= 0)
                r = parse_string(p, false, "an output path", &path);
        if (r >= 0)
                r = expect(p, ",");
        at_algo = p->pos + 1;
        if (r >= 0)
                r = parse_string(p, false, "an output hash algorithm", &algo);
        if (r >= 0)
                r = expect(p, ",");
        at_hash = p->pos + 1;
        if (r >= 0)
                r = parse_string(p, false, "an output hash", &hash);
        if (r >= 0)
                r = expect(p, ")");
        if (r < 0)
                return r;

        struct kiln_error *e = NULL;
        if (!*algo) {
                if (*hash)
                        return fail_at(p, at_hash, "output '%s' has a hash but no hash algorithm",
                                       name);
                if (!*path) {
                        o->kind = KILN_NIX_OUTPUT_DEFERRED;
                        return 0;
                }
                o->kind = KILN_NIX_OUTPUT_INPUT_ADDRESSED;
        } else {
                const char *a = algo;
                o->method = KILN_NIX_FLAT;
                if (!strncmp(a, "r:", 2)) {
                        o->method = KILN_NIX_RECURSIVE;
                        a += 2;
                }
                enum kiln_nix_hash_algo ha;
                if (kiln_nix_hash_algo_parse(a, strlen(a), &ha, &e) < 0)
                        goto semantic;
                o->hash = (struct kiln_nix_hash){.algo = ha};
                if (!strcmp(hash, "impure") || !*hash) {
                        o->kind = *hash ? KILN_NIX_OUTPUT_IMPURE : KILN_NIX_OUTPUT_FLOATING;
                        if (*path)
                                return fail_at(p, at_path, "output '%s' is %s but has a path",
                                               name,
                                               *hash ? "impure" : "content-addressed (floating)");
                        return 0;
                }
                /* Nix writes the hash in lowercase hex, whatever the expression gave. */
                size_t n = strlen(hash);
                for (size_t i = 0; i < n; i++)
                        if (!((hash[i] >= '0' && hash[i] <= '9') ||
                              (hash[i] >= 'a' && hash[i] <= 'f')))
                                return fail_at(p, at_hash + i,
                                               "output '%s': hash is not lowercase base16",
                                               name);
                if (kiln_nix_hash_parse_bare(hash, n, ha, &o->hash, &e) < 0) {
                        at_algo = at_hash;
                        goto semantic;
                }
                if (!*path)
                        return fail_at(p, at_path, "fixed output '%s' has no path", name);
                o->kind = KILN_NIX_OUTPUT_FIXED;
        }
        r = kiln_nix_store_path_parse(path, strlen(path), &o->path, &e);
        if (r >= 0)
                return 0;
        at_algo = at_path;
semantic:
        r = fail_at(p, at_algo, "output '%s': %s", name, kiln_error_msg(e));
        kiln_error_free(e);
        return r;
}

/* Checks that items come in strictly increasing order. */
static int check_order(struct parser *p, size_t at, int cmp, const char *what, const char *item)
{
        if (cmp < 0)
                return 0;
        _cleanup_free_ char *q = kiln_nix_quote(item, strlen(item));
        return fail_at(p, at, "%s '%s' is %s", what, q, cmp == 0 ? "repeated" : "out of order");
}

static int parse_outputs(struct parser *p, struct kiln_nix_derivation *d)
{
        size_t cap = 0;
        for (size_t i = 0;; i++) {
                int r = list_next(p, i);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = expect(p, "(");
                if (r < 0)
                        return r;
                if (d->n_outputs == cap) {
                        cap = cap ? 2 * cap : 4;
                        d->outputs = kiln_reallocarray(d->outputs, cap, sizeof(*d->outputs));
                }
                struct kiln_nix_drv_output *o = &d->outputs[d->n_outputs];
                *o = (struct kiln_nix_drv_output){0};
                size_t at = p->pos + 1;
                r = parse_string(p, false, "an output name", &o->name);
                if (r < 0)
                        return r;
                d->n_outputs++;
                if (!*o->name)
                        return fail_at(p, at, "empty output name");
                if (i > 0) {
                        r = check_order(p, at, strcmp(d->outputs[i - 1].name, o->name), "output",
                                        o->name);
                        if (r < 0)
                                return r;
                }
                r = parse_output(p, o);
                if (r < 0)
                        return r;
        }
        if (d->n_outputs == 0)
                return fail_at(p, p->pos - 1, "a derivation needs at least one output");
        return 0;
}

static int parse_strings(struct parser *p, bool escaped, const char *what, char ***ret,
                         size_t *ret_n, bool sorted)
{
        size_t cap = 0;
        for (size_t i = 0;; i++) {
                int r = list_next(p, i);
                if (r < 0)
                        return r;
                if (r == 0)
                        return 0;
                if (*ret_n == cap) {
                        cap = cap ? 2 * cap : 4;
                        *ret = kiln_reallocarray(*ret, cap, sizeof(**ret));
                }
                size_t at = p->pos + 1;
                r = parse_string(p, escaped, what, &(*ret)[*ret_n]);
                if (r < 0)
                        return r;
                (*ret_n)++;
                if (sorted && i > 0) {
                        r = check_order(p, at, strcmp((*ret)[i - 1], (*ret)[i]), what, (*ret)[i]);
                        if (r < 0)
                                return r;
                }
        }
}

static int parse_input_drvs(struct parser *p, struct kiln_nix_derivation *d)
{
        size_t cap = 0;
        for (size_t i = 0;; i++) {
                int r = list_next(p, i);
                if (r <= 0)
                        return r;
                r = expect(p, "(");
                if (r < 0)
                        return r;
                if (d->n_input_drvs == cap) {
                        cap = cap ? 2 * cap : 4;
                        d->input_drvs =
                            kiln_reallocarray(d->input_drvs, cap, sizeof(*d->input_drvs));
                }
                struct kiln_nix_drv_input *in = &d->input_drvs[d->n_input_drvs];
                memset(in, 0, sizeof(*in));
                d->n_input_drvs++;
                size_t at = p->pos + 1;
                r = parse_store_path(p, "an input derivation", &in->drv);
                if (r < 0)
                        return r;
                if (i > 0) {
                        r = check_order(
                            p, at, kiln_nix_store_path_cmp(&d->input_drvs[i - 1].drv, &in->drv),
                            "input derivation", KILN_NIX_STORE_PATH_STR(&in->drv));
                        if (r < 0)
                                return r;
                }
                r = expect(p, ",[");
                if (r >= 0)
                        r = parse_strings(p, false, "an input derivation output", &in->outputs,
                                          &in->n_outputs, true);
                if (r >= 0)
                        r = expect(p, ")");
                if (r < 0)
                        return r;
        }
}

static int parse_input_srcs(struct parser *p, struct kiln_nix_derivation *d)
{
        size_t cap = 0;
        for (size_t i = 0;; i++) {
                int r = list_next(p, i);
                if (r <= 0)
                        return r;
                if (d->n_input_srcs == cap) {
                        cap = cap ? 2 * cap : 4;
                        d->input_srcs =
                            kiln_reallocarray(d->input_srcs, cap, sizeof(*d->input_srcs));
                }
                size_t at = p->pos + 1;
                r = parse_store_path(p, "an input source", &d->input_srcs[i]);
                if (r < 0)
                        return r;
                d->n_input_srcs++;
                if (i > 0) {
                        r = check_order(
                            p, at,
                            kiln_nix_store_path_cmp(&d->input_srcs[i - 1], &d->input_srcs[i]),
                            "input source", KILN_NIX_STORE_PATH_STR(&d->input_srcs[i]));
                        if (r < 0)
                                return r;
                }
        }
}

static int parse_env(struct parser *p, struct kiln_nix_derivation *d)
{
        size_t cap = 0;
        for (size_t i = 0;; i++) {
                int r = list_next(p, i);
                if (r <= 0)
                        return r;
                r = expect(p, "(");
                if (r < 0)
                        return r;
                if (d->n_env == cap) {
                        cap = cap ? 2 * cap : 16;
                        d->env = kiln_reallocarray(d->env, cap, sizeof(*d->env));
                }
                struct kiln_nix_drv_env *e = &d->env[d->n_env];
                *e = (struct kiln_nix_drv_env){0};
                d->n_env++;
                size_t at = p->pos + 1;
                r = parse_string(p, true, "an environment variable name", &e->name);
                if (r < 0)
                        return r;
                if (i > 0) {
                        r = check_order(p, at, strcmp(d->env[i - 1].name, e->name),
                                        "environment variable", e->name);
                        if (r < 0)
                                return r;
                }
                r = expect(p, ",");
                if (r >= 0)
                        r = parse_string(p, true, "an environment variable value", &e->value);
                if (r >= 0)
                        r = expect(p, ")");
                if (r < 0)
                        return r;
        }
}

int kiln_nix_derivation_parse(const void *text, size_t len, struct kiln_nix_derivation **ret,
                              struct kiln_error **err)
{
        struct parser p = {.s = text, .len = len, .err = err};
        _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d =
            kiln_nix_derivation_new();
        int r = expect(&p, "Derive([");
        if (r >= 0)
                r = parse_outputs(&p, d);
        if (r >= 0)
                r = expect(&p, ",[");
        if (r >= 0)
                r = parse_input_drvs(&p, d);
        if (r >= 0)
                r = expect(&p, ",[");
        if (r >= 0)
                r = parse_input_srcs(&p, d);
        if (r >= 0)
                r = expect(&p, ",");
        if (r >= 0)
                r = parse_string(&p, false, "the system", &d->system);
        if (r >= 0)
                r = expect(&p, ",");
        if (r >= 0)
                r = parse_string(&p, true, "the builder", &d->builder);
        if (r >= 0)
                r = expect(&p, ",[");
        if (r >= 0)
                r = parse_strings(&p, true, "an argument", &d->args, &d->n_args, false);
        if (r >= 0)
                r = expect(&p, ",[");
        if (r >= 0)
                r = parse_env(&p, d);
        if (r >= 0)
                r = expect(&p, ")");
        if (r < 0)
                return r;
        if (p.pos != p.len)
                return fail_at(&p, p.pos, "trailing data after the derivation");
        *ret = TAKE_PTR(d);
        return 0;
}

int kiln_nix_derivation_read_file(int dirfd, const char *path, struct kiln_nix_derivation **ret,
                                  struct kiln_error **err)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return kiln_error_errno(err, errno, "unable to open derivation %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return kiln_error_errno(err, errno, "unable to stat derivation %s", path);
        if (!S_ISREG(st.st_mode))
                return kiln_error_set(err, EINVAL, "derivation %s is not a regular file", path);
        if ((uint64_t)st.st_size > DRV_FILE_MAX)
                return kiln_error_set(err, EFBIG, "derivation %s is larger than %u MiB", path,
                                      DRV_FILE_MAX >> 20);
        size_t size = (size_t)st.st_size;
        _cleanup_free_ char *buf = kiln_malloc(size + 1);
        ssize_t n = kiln_read_full(fd, buf, size + 1);
        if (n < 0)
                return kiln_error_errno(err, (int)-n, "unable to read derivation %s", path);
        if ((size_t)n != size)
                return kiln_error_set(err, EAGAIN, "derivation %s changed while being read", path);
        int r = kiln_nix_derivation_parse(buf, size, ret, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", path);
        return 0;
}

/* --- printing --- */

static void put_raw(struct kiln_buf *b, const char *s)
{
        kiln_buf_append_byte(b, '"');
        kiln_buf_append(b, s, strlen(s));
        kiln_buf_append_byte(b, '"');
}

static void put_escaped(struct kiln_buf *b, const char *s)
{
        size_t n = strlen(s);
        kiln_buf_reserve(b, 2 * n + 2);
        uint8_t *o = b->data + b->len;
        *o++ = '"';
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                switch (c) {
                case '"':
                case '\\':
                        *o++ = '\\';
                        *o++ = (uint8_t)c;
                        break;
                case '\n':
                        *o++ = '\\';
                        *o++ = 'n';
                        break;
                case '\r':
                        *o++ = '\\';
                        *o++ = 'r';
                        break;
                case '\t':
                        *o++ = '\\';
                        *o++ = 't';
                        break;
                default:
                        *o++ = (uint8_t)c;
                }
        }
        *o++ = '"';
        b->len = (size_t)(o - b->data);
}

static void put_str(struct kiln_buf *b, const char *s)
{
        kiln_buf_append(b, s, strlen(s));
}

static void put_path(struct kiln_buf *b, const struct kiln_nix_store_path *p)
{
        put_raw(b, KILN_NIX_STORE_PATH_STR(p));
}

char *kiln_nix_output_hash_algo(const struct kiln_nix_drv_output *o, char buf[16])
{
        snprintf(buf, 16, "%s%s", o->method == KILN_NIX_RECURSIVE ? "r:" : "",
                 kiln_nix_hash_algo_name(o->hash.algo));
        return buf;
}

static bool is_output_name(const struct kiln_nix_derivation *d, const char *name)
{
        return kiln_nix_derivation_output(d, name) != NULL;
}

/* One output tuple: (name, path, hashAlgo, hash). */
static void print_output(const struct kiln_nix_drv_output *x, bool mask, struct kiln_buf *out)
{
        char algo[16];
        kiln_buf_append_byte(out, '(');
        put_raw(out, x->name);
        kiln_buf_append_byte(out, ',');
        bool has_path = x->kind == KILN_NIX_OUTPUT_INPUT_ADDRESSED || x->kind == KILN_NIX_OUTPUT_FIXED;
        if (has_path && !mask)
                put_path(out, &x->path);
        else
                put_raw(out, "");
        kiln_buf_append_byte(out, ',');
        switch (x->kind) {
        case KILN_NIX_OUTPUT_INPUT_ADDRESSED:
        case KILN_NIX_OUTPUT_DEFERRED:
                put_str(out, "\"\",\"\"");
                break;
        case KILN_NIX_OUTPUT_FIXED:
                put_raw(out, kiln_nix_output_hash_algo(x, algo));
                kiln_buf_append_byte(out, ',');
                put_raw(out, KILN_NIX_HASH_STR(&x->hash, KILN_NIX_BASE16, false));
                break;
        case KILN_NIX_OUTPUT_FLOATING:
        case KILN_NIX_OUTPUT_IMPURE:
                put_raw(out, kiln_nix_output_hash_algo(x, algo));
                kiln_buf_append_byte(out, ',');
                put_raw(out, x->kind == KILN_NIX_OUTPUT_IMPURE ? "impure" : "");
                break;
        }
        kiln_buf_append_byte(out, ')');
}

/* (key,[outputs]) of an input derivation; key is printed raw when given
 * (a replaced key), else the derivation's path. */
static void print_input_drv(const char *key, const struct kiln_nix_store_path *drv,
                            const char *const *outputs, size_t n, struct kiln_buf *out)
{
        kiln_buf_append_byte(out, '(');
        if (key)
                put_raw(out, key);
        else
                put_path(out, drv);
        put_str(out, ",[");
        for (size_t k = 0; k < n; k++) {
                if (k)
                        kiln_buf_append_byte(out, ',');
                put_raw(out, outputs[k]);
        }
        put_str(out, "])");
}

void kiln_nix_derivation_print_with(const struct kiln_nix_derivation *d,
                                    const struct kiln_nix_print_options *opt, struct kiln_buf *out)
{
        static const struct kiln_nix_print_options none = {0};
        const struct kiln_nix_print_options *o = opt ? opt : &none;

        put_str(out, "Derive([");
        for (size_t i = 0; i < d->n_outputs; i++) {
                if (i)
                        kiln_buf_append_byte(out, ',');
                print_output(&d->outputs[i], o->mask_outputs, out);
        }
        put_str(out, "],[");
        size_t n_in = o->input_drvs ? o->n_input_drvs : d->n_input_drvs;
        for (size_t i = 0; i < n_in; i++) {
                if (i)
                        kiln_buf_append_byte(out, ',');
                if (o->input_drvs)
                        print_input_drv(o->input_drvs[i].key, NULL, o->input_drvs[i].outputs,
                                        o->input_drvs[i].n_outputs, out);
                else
                        print_input_drv(NULL, &d->input_drvs[i].drv,
                                        (const char *const *)d->input_drvs[i].outputs,
                                        d->input_drvs[i].n_outputs, out);
        }
        put_str(out, "],[");
        for (size_t i = 0; i < d->n_input_srcs; i++) {
                if (i)
                        kiln_buf_append_byte(out, ',');
                put_path(out, &d->input_srcs[i]);
        }
        put_str(out, "],");
        put_raw(out, d->system);
        kiln_buf_append_byte(out, ',');
        put_escaped(out, d->builder);
        put_str(out, ",[");
        for (size_t i = 0; i < d->n_args; i++) {
                if (i)
                        kiln_buf_append_byte(out, ',');
                put_escaped(out, d->args[i]);
        }
        put_str(out, "],[");
        for (size_t i = 0; i < d->n_env; i++) {
                const struct kiln_nix_drv_env *e = &d->env[i];
                if (i)
                        kiln_buf_append_byte(out, ',');
                kiln_buf_append_byte(out, '(');
                put_escaped(out, e->name);
                kiln_buf_append_byte(out, ',');
                put_escaped(out, o->mask_outputs && is_output_name(d, e->name) ? "" : e->value);
                kiln_buf_append_byte(out, ')');
        }
        put_str(out, "])");
}

void kiln_nix_derivation_print(const struct kiln_nix_derivation *d, struct kiln_buf *out)
{
        kiln_nix_derivation_print_with(d, NULL, out);
}

const char *kiln_nix_derivation_env_get(const struct kiln_nix_derivation *d, const char *name)
{
        size_t lo = 0, hi = d->n_env;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(d->env[mid].name, name);
                if (c == 0)
                        return d->env[mid].value;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const struct kiln_nix_drv_output *kiln_nix_derivation_output(const struct kiln_nix_derivation *d,
                                                             const char *name)
{
        size_t lo = 0, hi = d->n_outputs;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(d->outputs[mid].name, name);
                if (c == 0)
                        return &d->outputs[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

int kiln_nix_drv_name_from_path(const struct kiln_nix_store_path *drv_path, char **ret,
                                struct kiln_error **err)
{
        size_t n = strlen(drv_path->name);
        if (n <= 4 || strcmp(drv_path->name + n - 4, ".drv") != 0)
                return kiln_error_set(err, EINVAL, "%s is not a derivation (no .drv suffix)",
                                      KILN_NIX_STORE_PATH_STR(drv_path));
        *ret = kiln_memdup(drv_path->name, n - 3);
        (*ret)[n - 4] = '\0';
        return 0;
}
