/* The action cache stores' constructors (called by action_cache.c only). */
#pragma once

#include <kiln/build/action_cache.h>

int kiln_action_cache_memory_new(uint64_t max_entries, struct kiln_action_cache **ret,
                                 struct kiln_error **err);
/* dir: absolute; created if missing. */
int kiln_action_cache_lmdb_new(const char *dir, uint64_t max_entries,
                               struct kiln_action_cache **ret, struct kiln_error **err);
