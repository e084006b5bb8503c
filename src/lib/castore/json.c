/* proto3 JSON mapping for castore messages. */
#include <ctype.h>
#include <kiln/util/base64.h>
#include <kiln/castore/json.h>

static json_t *node_body_to_json(const struct kiln_node *n)
{
        json_t *o = json_object();
        if (n->name.len)
                json_object_set_new(o, "name", kiln_json_bytes(n->name.data, n->name.len));
        switch (n->kind) {
        case KILN_NODE_DIRECTORY:
        case KILN_NODE_FILE:
                json_object_set_new(o, "digest", kiln_json_bytes(n->digest.b, KILN_DIGEST_LEN));
                if (n->size)
                        json_object_set_new(o, "size", kiln_json_u64(n->size));
                if (n->kind == KILN_NODE_FILE && n->executable)
                        json_object_set_new(o, "executable", json_true());
                break;
        case KILN_NODE_SYMLINK:
                if (n->target.len)
                        json_object_set_new(o, "target",
                                            kiln_json_bytes(n->target.data, n->target.len));
                break;
        }
        return o;
}

json_t *kiln_node_to_json(const struct kiln_node *n)
{
        json_t *o = json_object();
        json_object_set_new(o, kiln_node_kind_name(n->kind), node_body_to_json(n));
        return o;
}

json_t *kiln_directory_to_json(const struct kiln_directory *d)
{
        json_t *o = json_object();
        static const struct {
                enum kiln_node_kind kind;
                const char *field;
        } lists[] = {
                {KILN_NODE_DIRECTORY, "directories"},
                {KILN_NODE_FILE, "files"},
                {KILN_NODE_SYMLINK, "symlinks"},
        };
        for (size_t k = 0; k < KILN_ARRAY_SIZE(lists); k++) {
                json_t *a = NULL;
                for (size_t i = 0; i < d->n; i++) {
                        if (d->nodes[i].kind != lists[k].kind)
                                continue;
                        if (!a)
                                a = json_array();
                        json_array_append_new(a, node_body_to_json(&d->nodes[i]));
                }
                if (a)
                        json_object_set_new(o, lists[k].field, a);
        }
        return o;
}

/* Reads one DirectoryNode/FileNode/SymlinkNode body into a wire node. */
static int wire_node_from_json(const json_t *j, enum kiln_node_kind kind,
                               struct kiln_wire_node *ret, struct kiln_error **err)
{
        static const char *const dir_fields[] = {"name", "digest", "size", NULL};
        static const char *const file_fields[] = {"name", "digest", "size", "executable", NULL};
        static const char *const link_fields[] = {"name", "target", NULL};
        const char *const *fields = kind == KILN_NODE_DIRECTORY ? dir_fields
                                    : kind == KILN_NODE_FILE    ? file_fields
                                                                : link_fields;
        int r = kiln_json_check_fields(j, kiln_node_kind_name(kind), fields, err);
        if (r < 0)
                return r;

        struct kiln_wire_node w = {.node = {.kind = kind}};
        r = kiln_json_get_bytes(j, "name", &w.node.name.data, &w.node.name.len, err);
        if (r < 0)
                goto fail;
        if (kind == KILN_NODE_SYMLINK) {
                r = kiln_json_get_bytes(j, "target", &w.node.target.data, &w.node.target.len,
                                        err);
                if (r < 0)
                        goto fail;
        } else {
                _cleanup_free_ uint8_t *digest = NULL;
                r = kiln_json_get_bytes(j, "digest", &digest, &w.digest_len, err);
                if (r < 0)
                        goto fail;
                if (w.digest_len == KILN_DIGEST_LEN)
                        memcpy(w.node.digest.b, digest, KILN_DIGEST_LEN);
                r = kiln_json_get_u64(j, "size", &w.node.size, err);
                if (r < 0)
                        goto fail;
                if (kind == KILN_NODE_FILE) {
                        r = kiln_json_get_bool(j, "executable", &w.node.executable, err);
                        if (r < 0)
                                goto fail;
                }
        }
        *ret = w;
        return 0;
fail:
        kiln_node_done(&w.node);
        return r;
}

int kiln_node_from_json(const json_t *j, enum kiln_node_naming naming, struct kiln_node *ret,
                        struct kiln_error **err)
{
        static const char *const fields[] = {"directory", "file", "symlink", NULL};
        int r = kiln_json_check_fields(j, "Node", fields, err);
        if (r < 0)
                return r;
        if (json_object_size(j) != 1)
                return kiln_error_set(err, EINVAL,
                                      json_object_size(j) ? "Node: more than one node set"
                                                          : "No node set");
        const char *key = json_object_iter_key(json_object_iter((json_t *)j));
        enum kiln_node_kind kind = !strcmp(key, "directory") ? KILN_NODE_DIRECTORY
                                   : !strcmp(key, "file")    ? KILN_NODE_FILE
                                                             : KILN_NODE_SYMLINK;
        struct kiln_wire_node w;
        r = wire_node_from_json(json_object_get(j, key), kind, &w, err);
        if (r < 0)
                return r;
        r = kiln_wire_node_validate(&w, naming, err);
        if (r < 0) {
                kiln_node_done(&w.node);
                return r;
        }
        *ret = w.node;
        return 0;
}

int kiln_directory_from_json(const json_t *j, struct kiln_directory *ret,
                             struct kiln_error **err)
{
        static const char *const fields[] = {"directories", "files", "symlinks", NULL};
        int r = kiln_json_check_fields(j, "Directory", fields, err);
        if (r < 0)
                return r;

        _cleanup_(kiln_directory_lists_done) struct kiln_directory_lists l = {0};
        struct kiln_wire_node **lists[] = {&l.dirs, &l.files, &l.symlinks};
        size_t *counts[] = {&l.n_dirs, &l.n_files, &l.n_symlinks};
        for (size_t k = 0; k < 3; k++) {
                json_t *a = kiln_json_field(j, fields[k]);
                if (!a)
                        continue;
                if (!json_is_array(a))
                        return kiln_error_set(err, EINVAL, "field %s: expected an array",
                                              fields[k]);
                *lists[k] = kiln_calloc(json_array_size(a), sizeof(struct kiln_wire_node));
                for (size_t i = 0; i < json_array_size(a); i++) {
                        r = wire_node_from_json(json_array_get(a, i), (enum kiln_node_kind)(k + 1),
                                                &(*lists[k])[i], err);
                        if (r < 0)
                                return kiln_error_prefix(err, r, "%s[%zu]", fields[k], i);
                        (*counts[k])++;
                }
        }
        return kiln_directory_from_lists(&l, ret, err);
}

int kiln_node_parse_arg(const char *text, struct kiln_node *ret, struct kiln_error **err)
{
        const char *s = text;
        while (isspace((unsigned char)*s))
                s++;
        if (!strncmp(s, "b3:", 3) || !strncmp(s, "blake3-", 7)) {
                struct kiln_digest d;
                int r = kiln_digest_parse(s, &d, err);
                if (r < 0)
                        return r;
                *ret = (struct kiln_node){.kind = KILN_NODE_DIRECTORY, .digest = d};
                return 0;
        }
        json_error_t jerr;
        json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);
        if (!j)
                return kiln_error_set(err, EINVAL, "invalid node '%s': %s", text, jerr.text);
        int r;
        if (json_is_string(j))
                r = kiln_node_parse_arg(json_string_value(j), ret, err);
        else
                r = kiln_node_from_json(j, KILN_NODE_ANONYMOUS, ret, err);
        json_decref(j);
        return r;
}
