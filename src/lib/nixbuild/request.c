/* Derivation → BuildRequest, so that a build sees what Nix 2.8's sandbox
 * shows it (local-derivation-goal.cc): the store at /nix/store holding the
 * input closure, /build as the working and temporary directory, and the
 * environment Nix composes:
 *
 *   PATH=/path-not-set HOME=/homeless-shelter NIX_STORE NIX_BUILD_CORES
 *   then the derivation's variables (they may override those four), with
 *   passAsFile attributes as files /build/.attr-<hash> and <name>Path, or
 *   in structured mode (__json) none of them but .attrs.json / .attrs.sh
 *   then NIX_BUILD_TOP TMPDIR TEMPDIR TMP TEMP PWD (all /build),
 *   NIX_OUTPUT_CHECKED=1 and impureEnvVars for fixed-output derivations,
 *   NIX_LOG_FD=2 TERM=xterm-256color
 *
 * and every output placeholder (hashPlaceholder) replaced by the output's
 * path in arguments, values and files. */
#include <ctype.h>
#include <inttypes.h>

#include <kiln/nix/nixbase32.h>
#include <kiln/nixbuild/nixbuild.h>

#define BUILD_DIR "/build"

void kiln_nixbuild_plan_done(struct kiln_nixbuild_plan *p)
{
        kiln_build_request_done(&p->req);
        kiln_strv_done(&p->output_names);
        kiln_strv_done(&p->needle_paths);
}

/* --- environment --- */

struct env {
        struct kiln_strv keys, values;
};

static void env_set(struct env *e, const char *k, const char *v)
{
        for (size_t i = 0; i < e->keys.n; i++)
                if (!strcmp(e->keys.v[i], k)) {
                        free(e->values.v[i]);
                        e->values.v[i] = kiln_strdup(v);
                        return;
                }
        kiln_strv_push(&e->keys, k);
        kiln_strv_push(&e->values, v);
}

static void env_done(struct env *e)
{
        kiln_strv_done(&e->keys);
        kiln_strv_done(&e->values);
}

/* --- placeholders --- */

/* "/" + nixbase32(sha256("nix-output:" + name)), Nix's hashPlaceholder. */
static char *placeholder(const char *output)
{
        _cleanup_free_ char *s = kiln_asprintf("nix-output:%s", output);
        uint8_t h[32];
        kiln_nix_sha256(s, strlen(s), h);
        char b32[64];
        size_t n = kiln_nixbase32_encode(h, 32, b32);
        return kiln_asprintf("/%.*s", (int)n, b32);
}

struct rewrites {
        struct kiln_strv from, to;
};

/* Every occurrence of each rewrite, left to right, as Nix's rewriteStrings. */
static char *rewrite(const struct rewrites *rw, const char *s)
{
        char *cur = kiln_strdup(s);
        for (size_t i = 0; i < rw->from.n; i++) {
                const char *from = rw->from.v[i], *to = rw->to.v[i];
                size_t fl = strlen(from), tl = strlen(to);
                if (!strstr(cur, from))
                        continue;
                struct kiln_buf b = KILN_BUF_INIT;
                const char *p = cur, *q;
                while ((q = strstr(p, from))) {
                        kiln_buf_append(&b, p, (size_t)(q - p));
                        kiln_buf_append(&b, to, tl);
                        p = q + fl;
                }
                kiln_buf_append(&b, p, strlen(p) + 1);
                free(cur);
                cur = (char *)kiln_buf_steal(&b, NULL);
        }
        return cur;
}

/* --- the pieces of the request --- */

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Nix's tokenizeString: words separated by runs of whitespace. */
static void tokenize(const char *s, struct kiln_strv *ret)
{
        while (*s) {
                while (is_space(*s))
                        s++;
                const char *e = s;
                while (*e && !is_space(*e))
                        e++;
                if (e > s) {
                        _cleanup_free_ char *w = strndup(s, (size_t)(e - s));
                        kiln_strv_push(ret, w);
                }
                s = e;
        }
}

static bool strv_has(const struct kiln_strv *v, const char *s)
{
        for (size_t i = 0; i < v->n; i++)
                if (!strcmp(v->v[i], s))
                        return true;
        return false;
}

static void add_file(struct kiln_build_request *r, const char *path, const void *p, size_t n)
{
        r->files = kiln_reallocarray(r->files, r->n_files + 1, sizeof(*r->files));
        r->files[r->n_files++] = (struct kiln_additional_file){
                .path = kiln_strdup(path),
                .contents = kiln_memdup(p, n ? n : 1),
                .len = n,
        };
}

/* passAsFile: the attribute's value in /build/.attr-<nixbase32(sha256(name))>. */
static void pass_as_file(struct kiln_build_request *r, struct env *e, const char *name,
                         const char *value)
{
        uint8_t h[32];
        kiln_nix_sha256(name, strlen(name), h);
        char b32[64];
        size_t n = kiln_nixbase32_encode(h, 32, b32);
        _cleanup_free_ char *file = kiln_asprintf("build/.attr-%.*s", (int)n, b32);
        add_file(r, file, value, strlen(value));
        _cleanup_free_ char *var = kiln_asprintf("%sPath", name);
        _cleanup_free_ char *path = kiln_asprintf("/%s", file);
        env_set(e, var, path);
}

/* Structured attributes: __json with "outputs" set, as two files. */
static int structured_attrs(const struct kiln_nix_derivation *d, const char *drv_path,
                            const char *json_text, const struct rewrites *rw,
                            const struct kiln_strv *out_paths, struct kiln_build_request *r,
                            struct env *e, json_t **ret_attrs, struct kiln_error **err)
{
        json_error_t je;
        json_t *j = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!j || !json_is_object(j)) {
                json_decref(j);
                return kiln_error_set(err, EINVAL, "cannot process __json attribute of '%s': %s",
                                      drv_path, j ? "not a JSON object" : je.text);
        }
        if (json_object_get(j, "exportReferencesGraph")) {
                json_decref(j);
                return kiln_error_set(err, ENOTSUP,
                                      "%s: exportReferencesGraph is not supported by kiln",
                                      drv_path);
        }
        json_t *outputs = json_object();
        for (size_t i = 0; i < d->n_outputs; i++)
                json_object_set_new(outputs, d->outputs[i].name, json_string(out_paths->v[i]));
        json_object_set_new(j, "outputs", outputs);

        struct kiln_buf js = KILN_BUF_INIT, sh = KILN_BUF_INIT;
        int rc = kiln_nixbuild_attrs_json(j, &js, err);
        if (rc < 0) {
                json_decref(j);
                kiln_buf_done(&js);
                return kiln_error_prefix(err, rc, "%s: __json", drv_path);
        }
        kiln_nixbuild_attrs_sh(j, &sh);
        kiln_buf_append_byte(&js, 0);
        kiln_buf_append_byte(&sh, 0);
        _cleanup_free_ char *js2 = rewrite(rw, (const char *)js.data);
        _cleanup_free_ char *sh2 = rewrite(rw, (const char *)sh.data);
        kiln_buf_done(&js);
        kiln_buf_done(&sh);
        add_file(r, "build/.attrs.json", js2, strlen(js2));
        add_file(r, "build/.attrs.sh", sh2, strlen(sh2));
        /* Nix 2.8 names the files by their path outside the sandbox, which
         * no build can open; kiln names them where the build finds them. */
        env_set(e, "NIX_ATTRS_JSON_FILE", BUILD_DIR "/.attrs.json");
        env_set(e, "NIX_ATTRS_SH_FILE", BUILD_DIR "/.attrs.sh");
        *ret_attrs = j;
        return 0;
}

static int cmp_node_name(const void *a, const void *b)
{
        const struct kiln_node *x = a, *y = b;
        return kiln_bytes_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

static int cmp_env_key(const void *a, const void *b)
{
        return strcmp(((const struct kiln_env_var *)a)->key, ((const struct kiln_env_var *)b)->key);
}

static int cmp_file_path(const void *a, const void *b)
{
        return strcmp(((const struct kiln_additional_file *)a)->path,
                      ((const struct kiln_additional_file *)b)->path);
}

static char *hash_part(const char *abs)
{
        return strndup(strrchr(abs, '/') + 1, KILN_NIX_HASH_PART_LEN);
}

/* Outputs sorted by path (the request's order), with their names. */
static void set_outputs(const struct kiln_strv *paths, const struct kiln_nix_derivation *d,
                        struct kiln_nixbuild_plan *p)
{
        size_t n = d->n_outputs;
        size_t *idx = kiln_calloc(n, sizeof(*idx));
        for (size_t i = 0; i < n; i++)
                idx[i] = i;
        for (size_t i = 1; i < n; i++)
                for (size_t k = i; k > 0 && strcmp(paths->v[idx[k - 1]], paths->v[idx[k]]) > 0; k--) {
                        size_t t = idx[k];
                        idx[k] = idx[k - 1];
                        idx[k - 1] = t;
                }
        for (size_t i = 0; i < n; i++) {
                kiln_strv_push(&p->req.outputs, paths->v[idx[i]] + 1);
                kiln_strv_push(&p->output_names, d->outputs[idx[i]].name);
        }
        free(idx);
}

static int check_outputs(const struct kiln_nix_derivation *d, const char *drv_path,
                         struct kiln_strv *paths, struct kiln_error **err)
{
        for (size_t i = 0; i < d->n_outputs; i++) {
                const struct kiln_nix_drv_output *o = &d->outputs[i];
                if (o->kind != KILN_NIX_OUTPUT_INPUT_ADDRESSED && o->kind != KILN_NIX_OUTPUT_FIXED)
                        return kiln_error_set(err, ENOTSUP,
                                              "%s: output '%s' has no path yet (content-addressed "
                                              "and impure derivations are not supported)",
                                              drv_path, o->name);
                _cleanup_free_ char *s = kiln_nix_store_path_to_string(&o->path);
                kiln_strv_push(paths, s);
        }
        return 0;
}

static bool is_fixed_output(const struct kiln_nix_derivation *d)
{
        return d->n_outputs == 1 && d->outputs[0].kind == KILN_NIX_OUTPUT_FIXED;
}

/* The derivation's own variables, in the mode it asks for. */
static int drv_env(const struct kiln_nix_derivation *d, const char *drv_path,
                   const struct rewrites *rw, const struct kiln_strv *out_paths,
                   struct kiln_build_request *r, struct env *e, json_t **attrs,
                   struct kiln_error **err)
{
        const char *json_text = kiln_nix_derivation_env_get(d, "__json");
        if (json_text)
                return structured_attrs(d, drv_path, json_text, rw, out_paths, r, e, attrs, err);
        struct kiln_strv pass = {0};
        const char *paf = kiln_nix_derivation_env_get(d, "passAsFile");
        if (paf)
                tokenize(paf, &pass);
        for (size_t i = 0; i < d->n_env; i++) {
                const struct kiln_nix_drv_env *v = &d->env[i];
                if (strv_has(&pass, v->name)) {
                        _cleanup_free_ char *val = rewrite(rw, v->value);
                        pass_as_file(r, e, v->name, val);
                } else {
                        env_set(e, v->name, v->value);
                }
        }
        kiln_strv_done(&pass);
        if (kiln_nix_derivation_env_get(d, "exportReferencesGraph"))
                return kiln_error_set(err, ENOTSUP,
                                      "%s: exportReferencesGraph is not supported by kiln",
                                      drv_path);
        return 0;
}

/* impureEnvVars of a fixed-output derivation: taken from kiln's own
 * environment, as Nix takes them from its. */
static void impure_env(const struct kiln_nix_derivation *d, const json_t *attrs, struct env *e)
{
        struct kiln_strv names = {0};
        if (attrs) {
                json_t *a = json_object_get(attrs, "impureEnvVars");
                size_t i;
                json_t *v;
                json_array_foreach(a, i, v)
                        if (json_is_string(v))
                                kiln_strv_push(&names, json_string_value(v));
        } else {
                const char *s = kiln_nix_derivation_env_get(d, "impureEnvVars");
                if (s)
                        tokenize(s, &names);
        }
        for (size_t i = 0; i < names.n; i++) {
                const char *v = getenv(names.v[i]);
                env_set(e, names.v[i], v ? v : "");
        }
        kiln_strv_done(&names);
}

static int env_to_request(struct env *e, const struct rewrites *rw, const char *drv_path,
                          struct kiln_build_request *r, struct kiln_error **err)
{
        r->env = kiln_calloc(e->keys.n, sizeof(*r->env));
        for (size_t i = 0; i < e->keys.n; i++) {
                char *v = rewrite(rw, e->values.v[i]);
                r->env[r->n_env++] = (struct kiln_env_var){
                        .key = kiln_strdup(e->keys.v[i]),
                        .value = (uint8_t *)v,
                        .value_len = strlen(v),
                };
                if (!kiln_utf8_valid(v, strlen(v)))
                        return kiln_error_set(err, EINVAL,
                                              "%s: the value of '%s' is not UTF-8, which kiln's "
                                              "build protocol cannot carry",
                                              drv_path, e->keys.v[i]);
        }
        qsort(r->env, r->n_env, sizeof(*r->env), cmp_env_key);
        return 0;
}

/* The whole environment, in Nix's order of assignments (see the top). */
static int compose_env(const struct kiln_nix_derivation *d, const char *drv_path,
                       const struct kiln_nixbuild_request_options *o, const struct rewrites *rw,
                       const struct kiln_strv *out_paths, struct kiln_build_request *r,
                       struct env *e, json_t **attrs, struct kiln_error **err)
{
        env_set(e, "PATH", "/path-not-set");
        env_set(e, "HOME", "/homeless-shelter");
        env_set(e, "NIX_STORE", "/nix/store");
        char cores[24];
        snprintf(cores, sizeof(cores), "%u", o->cores);
        env_set(e, "NIX_BUILD_CORES", cores);
        int rc = drv_env(d, drv_path, rw, out_paths, r, e, attrs, err);
        if (rc < 0)
                return rc;
        static const char *const tmp_vars[] = {"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP",
                                               "TEMP", "PWD"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(tmp_vars); i++)
                env_set(e, tmp_vars[i], BUILD_DIR);
        if (is_fixed_output(d)) {
                env_set(e, "NIX_OUTPUT_CHECKED", "1");
                impure_env(d, *attrs, e);
        }
        env_set(e, "NIX_LOG_FD", "2");
        env_set(e, "TERM", "xterm-256color");
        return env_to_request(e, rw, drv_path, r, err);
}

/* The inputs, sorted by name, and the needles: the outputs (by name), then
 * the inputs (by path). */
static void set_inputs(struct kiln_nixbuild_plan *p, const struct kiln_node *inputs,
                       size_t n_inputs, const struct kiln_strv *out_paths)
{
        struct kiln_build_request *r = &p->req;
        r->inputs = kiln_calloc(n_inputs ? n_inputs : 1, sizeof(*r->inputs));
        for (size_t i = 0; i < n_inputs; i++)
                kiln_node_copy(&r->inputs[i], &inputs[i]);
        r->n_inputs = n_inputs;
        qsort(r->inputs, r->n_inputs, sizeof(*r->inputs), cmp_node_name);
        for (size_t i = 0; i < out_paths->n; i++)
                kiln_strv_push(&p->needle_paths, out_paths->v[i]);
        for (size_t i = 0; i < r->n_inputs; i++) {
                _cleanup_free_ char *abs = kiln_asprintf(
                        "/nix/store/%.*s", (int)r->inputs[i].name.len,
                        (const char *)r->inputs[i].name.data);
                kiln_strv_push(&p->needle_paths, abs);
        }
        for (size_t i = 0; i < p->needle_paths.n; i++) {
                _cleanup_free_ char *h = hash_part(p->needle_paths.v[i]);
                kiln_strv_push(&r->needles, h);
        }
}

int kiln_nixbuild_request(const struct kiln_nix_derivation *d, const char *drv_path,
                          const struct kiln_node *inputs, size_t n_inputs,
                          const struct kiln_nixbuild_request_options *o,
                          struct kiln_nixbuild_plan *ret, struct kiln_error **err)
{
        struct kiln_nixbuild_plan p = {0};
        struct kiln_build_request *r = &p.req;
        struct kiln_strv out_paths = {0};
        struct rewrites rw = {0};
        struct env e = {0};
        json_t *attrs = NULL;
        int rc = check_outputs(d, drv_path, &out_paths, err);
        if (rc == 0 && !strncmp(d->builder, "builtin:", 8))
                rc = kiln_error_set(err, ENOTSUP, "%s: the builtin builder '%s' is not supported",
                                    drv_path, d->builder);
        if (rc < 0)
                goto out;
        for (size_t i = 0; i < d->n_outputs; i++) {
                _cleanup_free_ char *ph = placeholder(d->outputs[i].name);
                kiln_strv_push(&rw.from, ph);
                kiln_strv_push(&rw.to, out_paths.v[i]);
        }

        rc = compose_env(d, drv_path, o, &rw, &out_paths, r, &e, &attrs, err);
        if (rc < 0)
                goto out;

        kiln_strv_push(&r->command_args, d->builder);
        for (size_t i = 0; i < d->n_args; i++) {
                _cleanup_free_ char *a = rewrite(&rw, d->args[i]);
                kiln_strv_push(&r->command_args, a);
        }
        r->working_dir = kiln_strdup("build");
        r->inputs_dir = kiln_strdup("nix/store");
        kiln_strv_push(&r->scratch_paths, "build");
        kiln_strv_push(&r->scratch_paths, "nix/store");
        set_outputs(&out_paths, d, &p);
        r->constraints = (struct kiln_build_constraints){
                .present = true,
                .system = kiln_strdup(d->system),
                .network_access = is_fixed_output(d),
                .provide_bin_sh = o->provide_bin_sh,
        };
        if (r->n_files)
                qsort(r->files, r->n_files, sizeof(*r->files), cmp_file_path);

        set_inputs(&p, inputs, n_inputs, &out_paths);
        rc = kiln_build_request_validate(r, err);
        if (rc < 0)
                rc = kiln_error_prefix(err, rc, "%s: the build request", drv_path);
out:
        json_decref(attrs);
        kiln_strv_done(&out_paths);
        kiln_strv_done(&rw.from);
        kiln_strv_done(&rw.to);
        env_done(&e);
        if (rc < 0) {
                kiln_nixbuild_plan_done(&p);
                return rc;
        }
        *ret = p;
        return 0;
}
