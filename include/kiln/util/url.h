/* Service addresses: the subset of WHATWG URL parsing the castore needs
 * (as WHATWG non-special schemes). */
#pragma once

#include <kiln/util/error.h>

struct kiln_url {
        char *scheme; /* "objectstore+file" */
        char *type;   /* before the first '+': "objectstore" */
        char *sub;    /* after the first '+': "file", or NULL */
        char *host;   /* NULL when absent or empty ("x://" has no host) */
        char *port;   /* NULL when absent */
        char *path;   /* "" when empty; percent-decoded */
        char *query;  /* NULL when absent; without the '?' */
};

/* Parses "scheme:[//[host][:port]]path[?query][#fragment]". -EINVAL naming
 * the problem (no scheme, bad port, bad percent escape). */
KILN_PUBLIC int kiln_url_parse(const char *s, struct kiln_url *ret, struct kiln_error **err);
KILN_PUBLIC void kiln_url_done(struct kiln_url *u);
/* Value of the first `key=value` pair in the query (percent-decoded, heap
 * string), or NULL. "key" without '=' gives "". */
KILN_PUBLIC char *kiln_url_query_get(const struct kiln_url *u, const char *key);
/* Fails with -EINVAL naming the first query key not in the NULL-terminated
 * list `allowed`. */
KILN_PUBLIC int kiln_url_query_check(const struct kiln_url *u, const char *const *allowed,
                                     const char *what, struct kiln_error **err);
