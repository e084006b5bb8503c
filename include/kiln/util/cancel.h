/* Cancellation of long operations (builds, calls). */
#pragma once

#include <kiln/util/util.h>

/* A cancellation token: an eventfd that becomes readable once triggered, so
 * a runner can poll it beside its child process. Thread-safe. */
struct kiln_cancel;
KILN_PUBLIC struct kiln_cancel *kiln_cancel_new(void);
KILN_PUBLIC void kiln_cancel_free(struct kiln_cancel *c);
DEFINE_CLEANUP_FUNC(struct kiln_cancel, kiln_cancel_free)
KILN_PUBLIC void kiln_cancel_trigger(struct kiln_cancel *c);
KILN_PUBLIC bool kiln_cancel_is_set(const struct kiln_cancel *c);
/* Readable (POLLIN) once triggered. */
KILN_PUBLIC int kiln_cancel_fd(const struct kiln_cancel *c);
