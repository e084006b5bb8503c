/* Constructors of the store backends, called by store.c after it has parsed
 * and checked the URL's scheme. Each validates the rest of the URL itself. */
#pragma once

#include <kiln/backend.h>
#include <kiln/url.h>

int kiln_blob_memory_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                         struct kiln_error **err);
int kiln_blob_objectstore_new(const struct kiln_url *u, struct kiln_blob_service **ret,
                              struct kiln_error **err);

int kiln_directory_memory_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                              struct kiln_error **err);
int kiln_directory_lmdb_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                            struct kiln_error **err);
int kiln_directory_objectstore_new(const struct kiln_url *u,
                                   struct kiln_directory_service **ret, struct kiln_error **err);

/* Checks a grpc+unix / grpc+http / grpc+https URL (SPEC §5.2). */
int kiln_grpc_url_check(const struct kiln_url *u, const char *url, struct kiln_error **err);
