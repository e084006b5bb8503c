/* The OCI build service backend (oci:///abs/bundle/root?...), SPEC §10. It
 * lives outside libkiln (it needs FUSE and an OCI runtime) and registers
 * itself with kiln_build_service_register(). */
#pragma once

#include <kiln/buildsvc.h>

/* Registers the "oci" scheme. Call once at startup, before opening services. */
KILN_PUBLIC void kiln_runner_register(void);
