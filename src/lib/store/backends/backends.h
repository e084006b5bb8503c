/* Constructors of the store backends, called by store.c after it has parsed
 * and checked the URL's scheme. Each validates the rest of the URL itself. */
#pragma once

#include <kiln/store/backend.h>
#include <kiln/util/url.h>

int kiln_blob_memory_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                         struct kiln_error **err);
/* Test hook: when set before kiln_blob_memory_new(), fresh pages always count
 * as dear, so the store's warmer runs on any machine. */
extern bool kiln_blob_memory_always_dear;

int kiln_blob_objectstore_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                              struct kiln_error **err);
/* The objectstore blob service over an object store the caller made (and
 * may have filled: tests and fuzzers plant objects in it), which it takes
 * over; avg as kiln_fastcdc_init() takes it. */
struct kiln_objstore;
struct kiln_blob_service *kiln_blob_objectstore_over(struct kiln_objstore *store, size_t avg);

int kiln_directory_memory_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                              struct kiln_error **err);
int kiln_directory_lmdb_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                            struct kiln_error **err);
int kiln_directory_objectstore_new(const struct kiln_url *u,
                                   struct kiln_directory_service **ret, struct kiln_error **err);

/* The gRPC clients, for a URL already checked by kiln_grpc_url_check(); in
 * builds without the grpc feature they fail with -ENOTSUP. */
int kiln_blob_grpc_new(const struct kiln_url *u, const char *url, struct kiln_blob_service **ret,
                       struct kiln_error **err);
int kiln_directory_grpc_new(const struct kiln_url *u, const char *url,
                            struct kiln_directory_service **ret, struct kiln_error **err);

/* The read-through caches (cache+FAR?near=NEAR): reads from near, else
 * from far with a verified copy kept in near; writes to both. They take
 * over both services. */
struct kiln_blob_service *kiln_blob_cache_over(struct kiln_blob_service *near,
                                               struct kiln_blob_service *far);
struct kiln_directory_service *kiln_directory_cache_over(struct kiln_directory_service *near,
                                                         struct kiln_directory_service *far);
