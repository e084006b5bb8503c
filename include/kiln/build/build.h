/* The build protocol's domain model: BuildRequest with every
 * validation rule of upstream plus kiln's (no NUL bytes, UTF-8 where a
 * string reaches the kernel or a JSON document), and the Build response. */
#pragma once

#include <jansson.h>

#include <kiln/castore/castore.h>

struct kiln_env_var {
        char *key;      /* non-empty, no '=', no NUL */
        uint8_t *value; /* valid UTF-8, no NUL */
        size_t value_len;
};

struct kiln_additional_file {
        char *path; /* clean relative path */
        uint8_t *contents;
        size_t len;
};

/* A strings list owned by its container. */
struct kiln_build_constraints {
        bool present;                   /* false: the request had no constraints */
        char *system;                   /* non-empty when present */
        uint64_t min_memory;            /* bytes */
        struct kiln_strv ro_paths;      /* clean absolute, sorted, unique */
        bool network_access;
        bool provide_bin_sh;
};

struct kiln_build_request {
        struct kiln_node *inputs; /* named, sorted by name, unique, names UTF-8 */
        size_t n_inputs;
        struct kiln_strv command_args;
        char *working_dir;
        struct kiln_strv scratch_paths; /* sorted */
        char *inputs_dir;
        struct kiln_strv outputs; /* sorted */
        struct kiln_env_var *env; /* sorted by key */
        size_t n_env;
        struct kiln_build_constraints constraints;
        struct kiln_additional_file *files; /* sorted by path */
        size_t n_files;
        struct kiln_strv needles;
};

/* The response: the request echo, the output nodes (named by the basename of
 * their path, in request order) and, per output, the ascending indices of the
 * needles found in it. */
struct kiln_build_output {
        struct kiln_node node;
        uint64_t *needles;
        size_t n_needles;
};
struct kiln_build {
        struct kiln_build_request request;
        struct kiln_build_output *outputs;
        size_t n_outputs;
};


KILN_PUBLIC void kiln_build_request_done(struct kiln_build_request *r);
KILN_PUBLIC void kiln_build_request_copy(struct kiln_build_request *dst,
                                         const struct kiln_build_request *src);
KILN_PUBLIC void kiln_build_done(struct kiln_build *b);

/* Clean paths (docs/PROTOCOLS.md; kiln also rejects NUL, which a C string cannot hold). */
KILN_PUBLIC bool kiln_path_is_clean_relative(const char *p);
KILN_PUBLIC bool kiln_path_is_clean_absolute(const char *p);

/* Checks a request as the server checks a received one (-EINVAL with the
 * upstream's message); duplicate constraint paths are then dropped, as the domain
 * holds them as a set, so the echo of a valid request is valid too. */
KILN_PUBLIC int kiln_build_request_validate(struct kiln_build_request *r,
                                            struct kiln_error **err);

/* Wire form: decode validates everything (first failure, -EINVAL with the
 * upstream's message or a kiln message naming the field and position); encode
 * writes the canonical protobuf encoding. */
KILN_PUBLIC int kiln_build_request_decode(const void *data, size_t len,
                                          struct kiln_build_request *ret,
                                          struct kiln_error **err);
KILN_PUBLIC void kiln_build_request_encode(const struct kiln_build_request *r,
                                           struct kiln_buf *out);
KILN_PUBLIC int kiln_build_decode(const void *data, size_t len, struct kiln_build *ret,
                                  struct kiln_error **err);
KILN_PUBLIC void kiln_build_encode(const struct kiln_build *b, struct kiln_buf *out);
/* The same outcome as Snix's snix.build.v1.BuildResponse (no request in it). */
KILN_PUBLIC void kiln_build_encode_snix(const struct kiln_build *b, struct kiln_buf *out);

/* proto3 JSON (see json.h). */
KILN_PUBLIC json_t *kiln_build_request_to_json(const struct kiln_build_request *r);
KILN_PUBLIC int kiln_build_request_from_json(const json_t *j, struct kiln_build_request *ret,
                                             struct kiln_error **err);
KILN_PUBLIC json_t *kiln_build_to_json(const struct kiln_build *b);
KILN_PUBLIC int kiln_build_from_json(const json_t *j, struct kiln_build *ret,
                                     struct kiln_error **err);
