/* The proto3 JSON mapping of castore messages (the rules are in
 * <kiln/util/json.h>). */
#pragma once

#include <jansson.h>

#include <kiln/castore/castore.h>
#include <kiln/util/json.h>

/* New references; never NULL. */
KILN_PUBLIC json_t *kiln_node_to_json(const struct kiln_node *n);
KILN_PUBLIC json_t *kiln_directory_to_json(const struct kiln_directory *d);

/* Parse and validate. A Node is validated per `naming`; a Directory as received ones are. */
KILN_PUBLIC int kiln_node_from_json(const json_t *j, enum kiln_node_naming naming,
                                    struct kiln_node *ret, struct kiln_error **err);
KILN_PUBLIC int kiln_directory_from_json(const json_t *j, struct kiln_directory *ret,
                                         struct kiln_error **err);

/* Parses text (one JSON value) into a Node; also accepts "b3:<digest>" (or a
 * JSON string holding it) meaning an anonymous directory node with that digest
 * and size 0 (for CLI arguments). */
KILN_PUBLIC int kiln_node_parse_arg(const char *text, struct kiln_node *ret,
                                    struct kiln_error **err);
