/* Shared libraries that only some daemons need, opened when first used.
 * libmicrohttpd (with gnutls and its dozen libraries behind it) and
 * libsystemd took 7 ms of loading and constructors from every kiln-core
 * start, half of it, for verbs that never serve /metrics or take sockets
 * from systemd. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include <kiln/util/error.h>

struct lazy_lib {
        const char *soname;
        const char *const *names; /* the symbols, NULL-terminated */
        void **ptrs;              /* where each goes, in the same order */
        pthread_mutex_t lock;
        bool loaded;
};

#define LAZY_LIB_INIT(so, n, p)                                                                    \
        {                                                                                          \
                .soname = (so), .names = (n), .ptrs = (p), .lock = PTHREAD_MUTEX_INITIALIZER       \
        }

/* Opens the library and resolves every symbol, once per process (the
 * library stays loaded); later calls return at once. 0, or -ELIBACC with
 * one line naming the library or the missing symbol. */
int lazy_lib_load(struct lazy_lib *l, struct kiln_error **err);
