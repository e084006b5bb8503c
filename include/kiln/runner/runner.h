/* The local build services (docs/SANDBOX.md): oci:///abs/root
 * runs builds in containers of an OCI runtime (runc, crun), sandbox:///abs/root
 * in kiln's own sandbox (no runtime). They live outside libkiln (they need
 * FUSE and, for sandbox://, the kiln-sandbox program) and register
 * themselves with kiln_build_service_register(). */
#pragma once

#include <kiln/build/service.h>

/* Registers the "oci" and "sandbox" schemes. Call once at startup, before
 * opening services. */
KILN_PUBLIC void kiln_runner_register(void);

/* The build service to use when none is given, for the bundle root `root`:
 * sandbox://root where this host can run kiln's sandbox (user namespaces
 * enabled, kiln-sandbox installed), else oci://root. Newly allocated. */
KILN_PUBLIC char *kiln_runner_default_url(const char *root);
