/* The action cache stores' constructors (called by action_cache.c only). */
#pragma once

#include <kiln/build/action_cache.h>
#include <kiln/util/url.h>

int kiln_action_cache_memory_new(uint64_t max_entries, struct kiln_action_cache **ret,
                                 struct kiln_error **err);
/* dir: absolute; created if missing. */
int kiln_action_cache_lmdb_new(const char *dir, uint64_t max_entries,
                               struct kiln_action_cache **ret, struct kiln_error **err);
/* grpc+unix/http/https, u already checked by kiln_grpc_url_check(); -ENOTSUP
 * in builds without the grpc feature (grpc_disabled.c). */
int kiln_action_cache_grpc_new(const struct kiln_url *u, const char *url,
                               struct kiln_action_cache **ret, struct kiln_error **err);
