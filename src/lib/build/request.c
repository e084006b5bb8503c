/* BuildRequest and Build: domain model, validation and the
 * protobuf wire form. Decoding goes wire → protobuf-c → domain, validating
 * in upstream's order so the first failure is the one upstream reports. */
#include <stdio.h>

#include <kiln/build/build.h>

#include "build.pb-c.h"
#include <kiln/util/proto_check.h>

static void strv_copy(struct kiln_strv *dst, const struct kiln_strv *src)
{
        *dst = (struct kiln_strv){0};
        for (size_t i = 0; i < src->n; i++)
                kiln_strv_push(dst, src->v[i]);
}

void kiln_build_request_done(struct kiln_build_request *r)
{
        for (size_t i = 0; i < r->n_inputs; i++)
                kiln_node_done(&r->inputs[i]);
        free(r->inputs);
        kiln_strv_done(&r->command_args);
        free(r->working_dir);
        kiln_strv_done(&r->scratch_paths);
        free(r->inputs_dir);
        kiln_strv_done(&r->outputs);
        for (size_t i = 0; i < r->n_env; i++) {
                free(r->env[i].key);
                free(r->env[i].value);
        }
        free(r->env);
        free(r->constraints.system);
        kiln_strv_done(&r->constraints.ro_paths);
        for (size_t i = 0; i < r->n_files; i++) {
                free(r->files[i].path);
                free(r->files[i].contents);
        }
        free(r->files);
        kiln_strv_done(&r->needles);
        *r = (struct kiln_build_request){0};
}

static char *dup_or_empty(const char *s)
{
        return kiln_strdup(s ? s : "");
}

void kiln_build_request_copy(struct kiln_build_request *dst, const struct kiln_build_request *src)
{
        *dst = (struct kiln_build_request){0};
        dst->inputs = kiln_calloc(src->n_inputs, sizeof(*dst->inputs));
        dst->n_inputs = src->n_inputs;
        for (size_t i = 0; i < src->n_inputs; i++)
                kiln_node_copy(&dst->inputs[i], &src->inputs[i]);
        strv_copy(&dst->command_args, &src->command_args);
        dst->working_dir = dup_or_empty(src->working_dir);
        strv_copy(&dst->scratch_paths, &src->scratch_paths);
        dst->inputs_dir = dup_or_empty(src->inputs_dir);
        strv_copy(&dst->outputs, &src->outputs);
        dst->env = kiln_calloc(src->n_env, sizeof(*dst->env));
        dst->n_env = src->n_env;
        for (size_t i = 0; i < src->n_env; i++) {
                dst->env[i].key = kiln_strdup(src->env[i].key);
                dst->env[i].value = kiln_memdup(src->env[i].value, src->env[i].value_len);
                dst->env[i].value_len = src->env[i].value_len;
        }
        dst->constraints = src->constraints;
        dst->constraints.system = src->constraints.system ? kiln_strdup(src->constraints.system)
                                                          : NULL;
        strv_copy(&dst->constraints.ro_paths, &src->constraints.ro_paths);
        dst->files = kiln_calloc(src->n_files, sizeof(*dst->files));
        dst->n_files = src->n_files;
        for (size_t i = 0; i < src->n_files; i++) {
                dst->files[i].path = kiln_strdup(src->files[i].path);
                dst->files[i].contents = kiln_memdup(src->files[i].contents, src->files[i].len);
                dst->files[i].len = src->files[i].len;
        }
        strv_copy(&dst->needles, &src->needles);
}

void kiln_build_done(struct kiln_build *b)
{
        kiln_build_request_done(&b->request);
        for (size_t i = 0; i < b->n_outputs; i++) {
                kiln_node_done(&b->outputs[i].node);
                free(b->outputs[i].needles);
        }
        free(b->outputs);
        *b = (struct kiln_build){0};
}

/* --- checks --- */

/* One or more segments joined by single '/', none empty, "." or "..". */
static bool clean_segments(const char *p)
{
        if (!*p)
                return false;
        for (;;) {
                size_t n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p += n;
                if (!*p)
                        return true;
                p++; /* a trailing '/' leaves an empty last segment: rejected above */
        }
}

bool kiln_path_is_clean_relative(const char *p)
{
        return *p == '\0' || (*p != '/' && clean_segments(p));
}

bool kiln_path_is_clean_absolute(const char *p)
{
        return p[0] == '/' && (p[1] == '\0' || clean_segments(p + 1));
}

static bool strv_sorted(const struct kiln_strv *s)
{
        for (size_t i = 1; i < s->n; i++)
                if (strcmp(s->v[i - 1], s->v[i]) > 0)
                        return false;
        return true;
}

/* The checks after the inputs, in upstream's order (inputs are checked as they are converted). */
static int validate_rest(struct kiln_build_request *r, struct kiln_error **err)
{
        if (!kiln_path_is_clean_relative(r->working_dir))
                return kiln_error_set(err, EINVAL, "invalid working_dir");
        for (size_t i = 0; i < r->scratch_paths.n; i++)
                if (!kiln_path_is_clean_relative(r->scratch_paths.v[i]))
                        return kiln_error_set(err, EINVAL, "invalid scratch path at position %zu",
                                              i);
        if (!strv_sorted(&r->scratch_paths))
                return kiln_error_set(err, EINVAL, "scratch_paths not sorted");
        if (!kiln_path_is_clean_relative(r->inputs_dir))
                return kiln_error_set(err, EINVAL, "invalid inputs_dir");
        for (size_t i = 0; i < r->outputs.n; i++)
                if (!kiln_path_is_clean_relative(r->outputs.v[i]))
                        return kiln_error_set(err, EINVAL, "invalid output path at position %zu",
                                              i);
        if (!strv_sorted(&r->outputs))
                return kiln_error_set(err, EINVAL, "outputs not sorted");
        for (size_t i = 0; i < r->n_env; i++) {
                const struct kiln_env_var *e = &r->env[i];
                const char *why = NULL;
                if (!e->key[0] || strchr(e->key, '='))
                        why = "";
                else if (e->value_len && memchr(e->value, 0, e->value_len))
                        why = ": value contains a NUL byte";
                else if (!kiln_utf8_valid(e->value, e->value_len))
                        why = ": value is not valid UTF-8";
                if (why)
                        return kiln_error_set(err, EINVAL,
                                              "invalid environment variable at position %zu%s", i,
                                              why);
        }
        for (size_t i = 1; i < r->n_env; i++)
                if (strcmp(r->env[i - 1].key, r->env[i].key) > 0)
                        return kiln_error_set(err, EINVAL, "EnvVar not sorted by their keys");
        struct kiln_build_constraints *c = &r->constraints;
        if (c->present) {
                if (!c->system || !c->system[0])
                        return kiln_error_set(err, EINVAL,
                                              "invalid build constraints: invalid system");
                for (size_t i = 0; i < c->ro_paths.n; i++)
                        if (!kiln_path_is_clean_absolute(c->ro_paths.v[i]))
                                return kiln_error_set(err, EINVAL,
                                                      "invalid build constraints: invalid "
                                                      "available_ro_paths at position %zu",
                                                      i);
                if (!strv_sorted(&c->ro_paths))
                        return kiln_error_set(err, EINVAL, "invalid build constraints: "
                                                           "available_ro_paths not sorted");
                /* A set in the domain: drop duplicates so the echo stays valid. */
                size_t o = 0;
                for (size_t i = 0; i < c->ro_paths.n; i++) {
                        if (o > 0 && !strcmp(c->ro_paths.v[o - 1], c->ro_paths.v[i]))
                                free(c->ro_paths.v[i]);
                        else
                                c->ro_paths.v[o++] = c->ro_paths.v[i];
                }
                c->ro_paths.n = o;
        }
        for (size_t i = 0; i < r->n_files; i++)
                if (!kiln_path_is_clean_relative(r->files[i].path))
                        return kiln_error_set(err, EINVAL,
                                              "invalid additional file path at position: %zu", i);
        for (size_t i = 1; i < r->n_files; i++)
                if (strcmp(r->files[i - 1].path, r->files[i].path) > 0)
                        return kiln_error_set(err, EINVAL, "additional_files not sorted");
        return 0;
}

/* Step 1 for one input: a valid named node with a UTF-8 name, after the
 * previous one. */
static int check_input(const struct kiln_wire_node *w, size_t i, const struct kiln_node *prev,
                       struct kiln_error **err)
{
        int r = kiln_wire_node_validate(w, KILN_NODE_NAMED, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "invalid input node at position %zu", i);
        if (!kiln_utf8_valid(w->node.name.data, w->node.name.len))
                return kiln_error_set(err, EINVAL,
                                      "invalid input node at position %zu: name is not valid UTF-8",
                                      i);
        if (prev && kiln_bytes_cmp(w->node.name.data, w->node.name.len, prev->name.data,
                                   prev->name.len) <= 0)
                return kiln_error_set(err, EINVAL, "input nodes are not sorted by name");
        return 0;
}

int kiln_build_request_validate(struct kiln_build_request *r, struct kiln_error **err)
{
        for (size_t i = 0; i < r->n_inputs; i++) {
                struct kiln_wire_node w = {.node = r->inputs[i], .digest_len = KILN_DIGEST_LEN};
                int rr = check_input(&w, i, i ? &r->inputs[i - 1] : NULL, err);
                if (rr < 0)
                        return rr;
        }
        if (!r->working_dir)
                r->working_dir = kiln_strdup("");
        if (!r->inputs_dir)
                r->inputs_dir = kiln_strdup("");
        return validate_rest(r, err);
}

/* --- protobuf-c conversions --- */

typedef Tvix__Castore__V1__Node PNode;
typedef Tvix__Build__V1__BuildRequest PRequest;

static void bin_dup(uint8_t **dst, size_t *dst_len, const ProtobufCBinaryData *b)
{
        *dst = kiln_memdup(b->data, b->len);
        *dst_len = b->len;
}

static void strv_from(struct kiln_strv *dst, char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                kiln_strv_push(dst, v[i]);
}

/* protobuf-c Node → wire node (unvalidated). */
static void wire_from_pnode(const PNode *p, struct kiln_wire_node *w)
{
        *w = (struct kiln_wire_node){0};
        const ProtobufCBinaryData *name = NULL, *digest = NULL;
        switch (p->node_case) {
        case TVIX__CASTORE__V1__NODE__NODE_DIRECTORY:
                w->node.kind = KILN_NODE_DIRECTORY;
                name = &p->directory->name;
                digest = &p->directory->digest;
                w->node.size = p->directory->size;
                break;
        case TVIX__CASTORE__V1__NODE__NODE_FILE:
                w->node.kind = KILN_NODE_FILE;
                name = &p->file->name;
                digest = &p->file->digest;
                w->node.size = p->file->size;
                w->node.executable = p->file->executable;
                break;
        case TVIX__CASTORE__V1__NODE__NODE_SYMLINK:
                w->node.kind = KILN_NODE_SYMLINK;
                name = &p->symlink->name;
                bin_dup(&w->node.target.data, &w->node.target.len, &p->symlink->target);
                break;
        default:
                return; /* kind 0: "No node set" at validation */
        }
        bin_dup(&w->node.name.data, &w->node.name.len, name);
        if (digest) {
                w->digest_len = digest->len;
                if (digest->len == KILN_DIGEST_LEN)
                        memcpy(w->node.digest.b, digest->data, KILN_DIGEST_LEN);
        }
}

static int request_from_proto(const PRequest *p, struct kiln_build_request *ret,
                              struct kiln_error **err)
{
        struct kiln_build_request r = {0};
        int rr;
        r.inputs = kiln_calloc(p->n_inputs, sizeof(*r.inputs));
        for (size_t i = 0; i < p->n_inputs; i++) {
                struct kiln_wire_node w;
                wire_from_pnode(p->inputs[i], &w);
                rr = check_input(&w, i, i ? &r.inputs[i - 1] : NULL, err);
                if (rr < 0) {
                        kiln_node_done(&w.node);
                        goto fail;
                }
                r.inputs[r.n_inputs++] = w.node;
        }
        strv_from(&r.command_args, p->command_args, p->n_command_args);
        r.working_dir = dup_or_empty(p->working_dir);
        strv_from(&r.scratch_paths, p->scratch_paths, p->n_scratch_paths);
        r.inputs_dir = dup_or_empty(p->inputs_dir);
        strv_from(&r.outputs, p->outputs, p->n_outputs);
        r.env = kiln_calloc(p->n_environment_vars, sizeof(*r.env));
        for (size_t i = 0; i < p->n_environment_vars; i++, r.n_env++) {
                r.env[i].key = dup_or_empty(p->environment_vars[i]->key);
                bin_dup(&r.env[i].value, &r.env[i].value_len, &p->environment_vars[i]->value);
        }
        if (p->constraints) {
                const Tvix__Build__V1__BuildRequest__BuildConstraints *c = p->constraints;
                r.constraints.present = true;
                r.constraints.system = dup_or_empty(c->system);
                r.constraints.min_memory = c->min_memory;
                strv_from(&r.constraints.ro_paths, c->available_ro_paths,
                          c->n_available_ro_paths);
                r.constraints.network_access = c->network_access;
                r.constraints.provide_bin_sh = c->provide_bin_sh;
        }
        r.files = kiln_calloc(p->n_additional_files, sizeof(*r.files));
        for (size_t i = 0; i < p->n_additional_files; i++, r.n_files++) {
                r.files[i].path = dup_or_empty(p->additional_files[i]->path);
                bin_dup(&r.files[i].contents, &r.files[i].len,
                        &p->additional_files[i]->contents);
        }
        strv_from(&r.needles, p->refscan_needles, p->n_refscan_needles);
        rr = validate_rest(&r, err);
        if (rr < 0)
                goto fail;
        *ret = r;
        return 0;
fail:
        kiln_build_request_done(&r);
        return rr;
}

int kiln_build_request_decode(const void *data, size_t len, struct kiln_build_request *ret,
                              struct kiln_error **err)
{
        int r = kiln_proto_check_strings(&tvix__build__v1__build_request__descriptor, data, len,
                                         err);
        if (r < 0)
                return r;
        PRequest *p = tvix__build__v1__build_request__unpack(NULL, len, data);
        if (!p)
                return kiln_error_set(err, EINVAL,
                                      "invalid BuildRequest: not a valid protobuf message");
        r = request_from_proto(p, ret, err);
        tvix__build__v1__build_request__free_unpacked(p, NULL);
        return r;
}

/* Domain → protobuf-c structs pointing into the domain data; freed with
 * pnode_done/prequest_done (which free only the scaffolding). */
struct pnode_storage {
        PNode node;
        Tvix__Castore__V1__DirectoryNode dir;
        Tvix__Castore__V1__FileNode file;
        Tvix__Castore__V1__SymlinkNode link;
};

static ProtobufCBinaryData bin(const void *p, size_t n)
{
        return (ProtobufCBinaryData){.len = n, .data = (uint8_t *)p};
}

static void pnode_fill(struct pnode_storage *s, const struct kiln_node *n)
{
        tvix__castore__v1__node__init(&s->node);
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
                tvix__castore__v1__directory_node__init(&s->dir);
                s->dir.name = bin(n->name.data, n->name.len);
                s->dir.digest = bin(n->digest.b, KILN_DIGEST_LEN);
                s->dir.size = n->size;
                s->node.node_case = TVIX__CASTORE__V1__NODE__NODE_DIRECTORY;
                s->node.directory = &s->dir;
                break;
        case KILN_NODE_FILE:
                tvix__castore__v1__file_node__init(&s->file);
                s->file.name = bin(n->name.data, n->name.len);
                s->file.digest = bin(n->digest.b, KILN_DIGEST_LEN);
                s->file.size = n->size;
                s->file.executable = n->executable;
                s->node.node_case = TVIX__CASTORE__V1__NODE__NODE_FILE;
                s->node.file = &s->file;
                break;
        case KILN_NODE_SYMLINK:
                tvix__castore__v1__symlink_node__init(&s->link);
                s->link.name = bin(n->name.data, n->name.len);
                s->link.target = bin(n->target.data, n->target.len);
                s->node.node_case = TVIX__CASTORE__V1__NODE__NODE_SYMLINK;
                s->node.symlink = &s->link;
                break;
        }
}

struct prequest_storage {
        PRequest req;
        struct pnode_storage *nodes;
        PNode **node_ptrs;
        Tvix__Build__V1__BuildRequest__EnvVar *env, **env_ptrs;
        Tvix__Build__V1__BuildRequest__BuildConstraints constraints;
        Tvix__Build__V1__BuildRequest__AdditionalFile *files, **file_ptrs;
};

static void prequest_fill(struct prequest_storage *s, const struct kiln_build_request *r)
{
        PRequest *p = &s->req;
        tvix__build__v1__build_request__init(p);
        s->nodes = kiln_calloc(r->n_inputs, sizeof(*s->nodes));
        s->node_ptrs = kiln_calloc(r->n_inputs, sizeof(*s->node_ptrs));
        for (size_t i = 0; i < r->n_inputs; i++) {
                pnode_fill(&s->nodes[i], &r->inputs[i]);
                s->node_ptrs[i] = &s->nodes[i].node;
        }
        p->n_inputs = r->n_inputs;
        p->inputs = s->node_ptrs;
        p->n_command_args = r->command_args.n;
        p->command_args = r->command_args.v;
        p->working_dir = r->working_dir ? r->working_dir : (char *)"";
        p->n_scratch_paths = r->scratch_paths.n;
        p->scratch_paths = r->scratch_paths.v;
        p->inputs_dir = r->inputs_dir ? r->inputs_dir : (char *)"";
        p->n_outputs = r->outputs.n;
        p->outputs = r->outputs.v;
        s->env = kiln_calloc(r->n_env, sizeof(*s->env));
        s->env_ptrs = kiln_calloc(r->n_env, sizeof(*s->env_ptrs));
        for (size_t i = 0; i < r->n_env; i++) {
                tvix__build__v1__build_request__env_var__init(&s->env[i]);
                s->env[i].key = r->env[i].key;
                s->env[i].value = bin(r->env[i].value, r->env[i].value_len);
                s->env_ptrs[i] = &s->env[i];
        }
        p->n_environment_vars = r->n_env;
        p->environment_vars = s->env_ptrs;
        if (r->constraints.present) {
                Tvix__Build__V1__BuildRequest__BuildConstraints *c = &s->constraints;
                tvix__build__v1__build_request__build_constraints__init(c);
                c->system = r->constraints.system ? r->constraints.system : (char *)"";
                c->min_memory = r->constraints.min_memory;
                c->n_available_ro_paths = r->constraints.ro_paths.n;
                c->available_ro_paths = r->constraints.ro_paths.v;
                c->network_access = r->constraints.network_access;
                c->provide_bin_sh = r->constraints.provide_bin_sh;
                p->constraints = c;
        }
        s->files = kiln_calloc(r->n_files, sizeof(*s->files));
        s->file_ptrs = kiln_calloc(r->n_files, sizeof(*s->file_ptrs));
        for (size_t i = 0; i < r->n_files; i++) {
                tvix__build__v1__build_request__additional_file__init(&s->files[i]);
                s->files[i].path = r->files[i].path;
                s->files[i].contents = bin(r->files[i].contents, r->files[i].len);
                s->file_ptrs[i] = &s->files[i];
        }
        p->n_additional_files = r->n_files;
        p->additional_files = s->file_ptrs;
        p->n_refscan_needles = r->needles.n;
        p->refscan_needles = r->needles.v;
}

static void prequest_done(struct prequest_storage *s)
{
        free(s->nodes);
        free(s->node_ptrs);
        free(s->env);
        free(s->env_ptrs);
        free(s->files);
        free(s->file_ptrs);
}

static void pack_into(const ProtobufCMessage *m, struct kiln_buf *out)
{
        size_t n = protobuf_c_message_get_packed_size(m);
        if (n == 0)
                return; /* an empty message; out->data may still be NULL */
        kiln_buf_reserve(out, n);
        protobuf_c_message_pack(m, out->data + out->len);
        out->len += n;
}

void kiln_build_request_encode(const struct kiln_build_request *r, struct kiln_buf *out)
{
        struct prequest_storage s;
        prequest_fill(&s, r);
        pack_into(&s.req.base, out);
        prequest_done(&s);
}

void kiln_build_encode(const struct kiln_build *b, struct kiln_buf *out)
{
        struct prequest_storage s;
        prequest_fill(&s, &b->request);
        Tvix__Build__V1__Build pb;
        tvix__build__v1__build__init(&pb);
        pb.build_request = &s.req;
        struct pnode_storage *nodes = kiln_calloc(b->n_outputs, sizeof(*nodes));
        PNode **node_ptrs = kiln_calloc(b->n_outputs, sizeof(*node_ptrs));
        Tvix__Build__V1__Build__OutputNeedles *needles = kiln_calloc(b->n_outputs,
                                                                     sizeof(*needles));
        Tvix__Build__V1__Build__OutputNeedles **needle_ptrs =
                kiln_calloc(b->n_outputs, sizeof(*needle_ptrs));
        for (size_t i = 0; i < b->n_outputs; i++) {
                pnode_fill(&nodes[i], &b->outputs[i].node);
                node_ptrs[i] = &nodes[i].node;
                tvix__build__v1__build__output_needles__init(&needles[i]);
                needles[i].n_needles = b->outputs[i].n_needles;
                needles[i].needles = b->outputs[i].needles;
                needle_ptrs[i] = &needles[i];
        }
        pb.n_outputs = b->n_outputs;
        pb.outputs = node_ptrs;
        pb.n_outputs_needles = b->n_outputs;
        pb.outputs_needles = needle_ptrs;
        pack_into(&pb.base, out);
        free(nodes);
        free(node_ptrs);
        free(needles);
        free(needle_ptrs);
        prequest_done(&s);
}

int kiln_build_decode(const void *data, size_t len, struct kiln_build *ret,
                      struct kiln_error **err)
{
        int r = kiln_proto_check_strings(&tvix__build__v1__build__descriptor, data, len, err);
        if (r < 0)
                return r;
        Tvix__Build__V1__Build *p = tvix__build__v1__build__unpack(NULL, len, data);
        if (!p)
                return kiln_error_set(err, EINVAL, "invalid Build: not a valid protobuf message");
        struct kiln_build b = {0};
        if (p->build_request) {
                r = request_from_proto(p->build_request, &b.request, err);
                if (r < 0) {
                        kiln_error_prefix(err, r, "build_request");
                        goto out;
                }
        }
        if (p->n_outputs_needles != 0 && p->n_outputs_needles != p->n_outputs) {
                r = kiln_error_set(err, EINVAL, "Build has %zu outputs but %zu outputs_needles",
                                   p->n_outputs, p->n_outputs_needles);
                goto out;
        }
        b.outputs = kiln_calloc(p->n_outputs, sizeof(*b.outputs));
        for (size_t i = 0; i < p->n_outputs; i++) {
                struct kiln_wire_node w;
                wire_from_pnode(p->outputs[i], &w);
                r = kiln_wire_node_validate(&w, KILN_NODE_NAMED, err);
                if (r < 0) {
                        kiln_node_done(&w.node);
                        kiln_error_prefix(err, r, "invalid output node at position %zu", i);
                        goto out;
                }
                b.outputs[i].node = w.node;
                b.n_outputs++;
                if (p->n_outputs_needles) {
                        const Tvix__Build__V1__Build__OutputNeedles *on = p->outputs_needles[i];
                        b.outputs[i].needles = kiln_memdup(on->needles,
                                                           on->n_needles * sizeof(uint64_t));
                        b.outputs[i].n_needles = on->n_needles;
                }
        }
        *ret = b;
        b = (struct kiln_build){0};
out:
        kiln_build_done(&b);
        tvix__build__v1__build__free_unpacked(p, NULL);
        return r < 0 ? r : 0;
}
