/* proto3 JSON mapping of BuildRequest and Build (see json.h for the rules). */
#include <stdio.h>

#include <kiln/build/build.h>
#include <kiln/castore/json.h>

static json_t *strv_json(const struct kiln_strv *s)
{
        json_t *a = json_array();
        for (size_t i = 0; i < s->n; i++)
                json_array_append_new(a, json_string(s->v[i]));
        return a;
}

static void set_nonempty(json_t *o, const char *key, json_t *v)
{
        if ((json_is_array(v) && json_array_size(v) == 0) ||
            (json_is_string(v) && json_string_length(v) == 0) ||
            (json_is_object(v) && json_object_size(v) == 0))
                json_decref(v);
        else
                json_object_set_new(o, key, v);
}

json_t *kiln_build_request_to_json(const struct kiln_build_request *r)
{
        json_t *o = json_object();
        json_t *inputs = json_array();
        for (size_t i = 0; i < r->n_inputs; i++)
                json_array_append_new(inputs, kiln_node_to_json(&r->inputs[i]));
        set_nonempty(o, "inputs", inputs);
        set_nonempty(o, "commandArgs", strv_json(&r->command_args));
        set_nonempty(o, "workingDir", json_string(r->working_dir ? r->working_dir : ""));
        set_nonempty(o, "scratchPaths", strv_json(&r->scratch_paths));
        set_nonempty(o, "inputsDir", json_string(r->inputs_dir ? r->inputs_dir : ""));
        set_nonempty(o, "outputs", strv_json(&r->outputs));
        json_t *env = json_array();
        for (size_t i = 0; i < r->n_env; i++) {
                json_t *e = json_object();
                json_object_set_new(e, "key", json_string(r->env[i].key));
                if (r->env[i].value_len)
                        json_object_set_new(e, "value",
                                            kiln_json_bytes(r->env[i].value, r->env[i].value_len));
                json_array_append_new(env, e);
        }
        set_nonempty(o, "environmentVars", env);
        if (r->constraints.present) {
                const struct kiln_build_constraints *c = &r->constraints;
                json_t *cj = json_object();
                set_nonempty(cj, "system", json_string(c->system ? c->system : ""));
                if (c->min_memory)
                        json_object_set_new(cj, "minMemory", kiln_json_u64(c->min_memory));
                set_nonempty(cj, "availableRoPaths", strv_json(&c->ro_paths));
                if (c->network_access)
                        json_object_set_new(cj, "networkAccess", json_true());
                if (c->provide_bin_sh)
                        json_object_set_new(cj, "provideBinSh", json_true());
                /* Presence matters: an all-default message is still sent. */
                json_object_set_new(o, "constraints", cj);
        }
        json_t *files = json_array();
        for (size_t i = 0; i < r->n_files; i++) {
                json_t *f = json_object();
                json_object_set_new(f, "path", json_string(r->files[i].path));
                if (r->files[i].len)
                        json_object_set_new(f, "contents",
                                            kiln_json_bytes(r->files[i].contents, r->files[i].len));
                json_array_append_new(files, f);
        }
        set_nonempty(o, "additionalFiles", files);
        set_nonempty(o, "refscanNeedles", strv_json(&r->needles));
        return o;
}

json_t *kiln_build_to_json(const struct kiln_build *b)
{
        json_t *o = json_object();
        json_object_set_new(o, "buildRequest", kiln_build_request_to_json(&b->request));
        json_t *outs = json_array(), *needles = json_array();
        for (size_t i = 0; i < b->n_outputs; i++) {
                json_array_append_new(outs, kiln_node_to_json(&b->outputs[i].node));
                json_t *n = json_object();
                json_t *a = json_array();
                for (size_t k = 0; k < b->outputs[i].n_needles; k++)
                        json_array_append_new(a, kiln_json_u64(b->outputs[i].needles[k]));
                set_nonempty(n, "needles", a);
                json_array_append_new(needles, n);
        }
        set_nonempty(o, "outputs", outs);
        set_nonempty(o, "outputsNeedles", needles);
        return o;
}

/* A string field that must not hold NUL (a C string cannot). */
static int get_cstring(const json_t *obj, const char *field, char **ret, struct kiln_error **err)
{
        size_t len;
        char *s;
        int r = kiln_json_get_string(obj, field, &s, &len, err);
        if (r < 0)
                return r;
        if (strlen(s) != len) {
                free(s);
                return kiln_error_set(err, EINVAL, "field %s: contains a NUL byte", field);
        }
        *ret = s;
        return 0;
}

static int get_strv(const json_t *obj, const char *field, struct kiln_strv *ret,
                    struct kiln_error **err)
{
        json_t *a = kiln_json_field(obj, field);
        if (!a)
                return 0;
        if (!json_is_array(a))
                return kiln_error_set(err, EINVAL, "field %s: expected an array of strings", field);
        for (size_t i = 0; i < json_array_size(a); i++) {
                json_t *s = json_array_get(a, i);
                if (!json_is_string(s))
                        return kiln_error_set(err, EINVAL, "field %s[%zu]: expected a string",
                                              field, i);
                if (strlen(json_string_value(s)) != json_string_length(s))
                        return kiln_error_set(err, EINVAL, "field %s[%zu]: contains a NUL byte",
                                              field, i);
                kiln_strv_push(ret, json_string_value(s));
        }
        return 0;
}

static json_t *get_array(const json_t *obj, const char *field, struct kiln_error **err, int *r)
{
        json_t *a = kiln_json_field(obj, field);
        *r = 0;
        if (a && !json_is_array(a)) {
                *r = kiln_error_set(err, EINVAL, "field %s: expected an array", field);
                return NULL;
        }
        return a;
}

static int request_fields(const json_t *j, struct kiln_build_request *r, struct kiln_error **err)
{
        static const char *const fields[] = {
                "inputs", "command_args", "working_dir", "scratch_paths",
                "inputs_dir", "outputs", "environment_vars", "constraints",
                "additional_files", "refscan_needles", NULL,
        };
        int rr = kiln_json_check_fields(j, "BuildRequest", fields, err);
        if (rr < 0)
                return rr;

        json_t *inputs = get_array(j, "inputs", err, &rr);
        if (rr < 0)
                return rr;
        r->inputs = kiln_calloc(json_array_size(inputs), sizeof(*r->inputs));
        for (size_t i = 0; inputs && i < json_array_size(inputs); i++) {
                struct kiln_node n;
                rr = kiln_node_from_json(json_array_get(inputs, i), KILN_NODE_NAMED, &n, err);
                if (rr < 0)
                        return kiln_error_prefix(err, rr, "invalid input node at position %zu",
                                                 i);
                r->inputs[r->n_inputs++] = n;
        }
        if ((rr = get_strv(j, "command_args", &r->command_args, err)) < 0 ||
            (rr = get_cstring(j, "working_dir", &r->working_dir, err)) < 0 ||
            (rr = get_strv(j, "scratch_paths", &r->scratch_paths, err)) < 0 ||
            (rr = get_cstring(j, "inputs_dir", &r->inputs_dir, err)) < 0 ||
            (rr = get_strv(j, "outputs", &r->outputs, err)) < 0 ||
            (rr = get_strv(j, "refscan_needles", &r->needles, err)) < 0)
                return rr;

        json_t *env = get_array(j, "environment_vars", err, &rr);
        if (rr < 0)
                return rr;
        r->env = kiln_calloc(json_array_size(env), sizeof(*r->env));
        for (size_t i = 0; env && i < json_array_size(env); i++) {
                static const char *const ef[] = {"key", "value", NULL};
                json_t *e = json_array_get(env, i);
                struct kiln_env_var *v = &r->env[r->n_env];
                if ((rr = kiln_json_check_fields(e, "EnvVar", ef, err)) < 0 ||
                    (rr = get_cstring(e, "key", &v->key, err)) < 0)
                        return kiln_error_prefix(err, rr, "environment_vars[%zu]", i);
                r->n_env++;
                if ((rr = kiln_json_get_bytes(e, "value", &v->value, &v->value_len, err)) < 0)
                        return kiln_error_prefix(err, rr, "environment_vars[%zu]", i);
        }

        json_t *c = kiln_json_field(j, "constraints");
        if (c) {
                static const char *const cf[] = {"system", "min_memory", "available_ro_paths",
                                                 "network_access", "provide_bin_sh", NULL};
                struct kiln_build_constraints *bc = &r->constraints;
                bc->present = true;
                if ((rr = kiln_json_check_fields(c, "BuildConstraints", cf, err)) < 0 ||
                    (rr = get_cstring(c, "system", &bc->system, err)) < 0 ||
                    (rr = kiln_json_get_u64(c, "min_memory", &bc->min_memory, err)) < 0 ||
                    (rr = get_strv(c, "available_ro_paths", &bc->ro_paths, err)) < 0 ||
                    (rr = kiln_json_get_bool(c, "network_access", &bc->network_access, err)) < 0 ||
                    (rr = kiln_json_get_bool(c, "provide_bin_sh", &bc->provide_bin_sh, err)) < 0)
                        return kiln_error_prefix(err, rr, "constraints");
        }

        json_t *files = get_array(j, "additional_files", err, &rr);
        if (rr < 0)
                return rr;
        r->files = kiln_calloc(json_array_size(files), sizeof(*r->files));
        for (size_t i = 0; files && i < json_array_size(files); i++) {
                static const char *const ff[] = {"path", "contents", NULL};
                json_t *f = json_array_get(files, i);
                struct kiln_additional_file *af = &r->files[r->n_files];
                if ((rr = kiln_json_check_fields(f, "AdditionalFile", ff, err)) < 0 ||
                    (rr = get_cstring(f, "path", &af->path, err)) < 0)
                        return kiln_error_prefix(err, rr, "additional_files[%zu]", i);
                r->n_files++;
                if ((rr = kiln_json_get_bytes(f, "contents", &af->contents, &af->len, err)) < 0)
                        return kiln_error_prefix(err, rr, "additional_files[%zu]", i);
        }
        return 0;
}

int kiln_build_request_from_json(const json_t *j, struct kiln_build_request *ret,
                                 struct kiln_error **err)
{
        struct kiln_build_request r = {0};
        int rr = request_fields(j, &r, err);
        if (rr == 0) {
                /* Input names and order are checked here, in upstream's order. */
                rr = kiln_build_request_validate(&r, err);
        }
        if (rr < 0) {
                kiln_build_request_done(&r);
                return rr;
        }
        *ret = r;
        return 0;
}

int kiln_build_from_json(const json_t *j, struct kiln_build *ret, struct kiln_error **err)
{
        static const char *const fields[] = {"build_request", "outputs", "outputs_needles", NULL};
        int rr = kiln_json_check_fields(j, "Build", fields, err);
        if (rr < 0)
                return rr;
        struct kiln_build b = {0};
        json_t *req = kiln_json_field(j, "build_request");
        if (req && (rr = kiln_build_request_from_json(req, &b.request, err)) < 0)
                return kiln_error_prefix(err, rr, "build_request");
        json_t *outs = get_array(j, "outputs", err, &rr);
        json_t *needles = rr == 0 ? get_array(j, "outputs_needles", err, &rr) : NULL;
        if (rr < 0)
                goto fail;
        if (json_array_size(needles) && json_array_size(needles) != json_array_size(outs)) {
                rr = kiln_error_set(err, EINVAL, "Build has %zu outputs but %zu outputs_needles",
                                    json_array_size(outs), json_array_size(needles));
                goto fail;
        }
        b.outputs = kiln_calloc(json_array_size(outs), sizeof(*b.outputs));
        for (size_t i = 0; outs && i < json_array_size(outs); i++) {
                struct kiln_build_output *o = &b.outputs[b.n_outputs];
                rr = kiln_node_from_json(json_array_get(outs, i), KILN_NODE_NAMED, &o->node, err);
                if (rr < 0) {
                        kiln_error_prefix(err, rr, "invalid output node at position %zu", i);
                        goto fail;
                }
                b.n_outputs++;
                json_t *n = needles ? kiln_json_field(json_array_get(needles, i), "needles") : NULL;
                for (size_t k = 0; n && json_is_array(n) && k < json_array_size(n); k++) {
                        json_t *holder = json_object();
                        json_object_set(holder, "v", json_array_get(n, k));
                        uint64_t v;
                        rr = kiln_json_get_u64(holder, "v", &v, err);
                        json_decref(holder);
                        if (rr < 0) {
                                kiln_error_prefix(err, rr, "outputs_needles[%zu]", i);
                                goto fail;
                        }
                        o->needles = kiln_reallocarray(o->needles, o->n_needles + 1,
                                                       sizeof(uint64_t));
                        o->needles[o->n_needles++] = v;
                }
        }
        *ret = b;
        return 0;
fail:
        kiln_build_done(&b);
        return rr;
}
