/* Built without FUSE: there is no local build service to register. */
#include <kiln/runner/runner.h>
#include <kiln/util/util.h>

void kiln_runner_register(void)
{
}

char *kiln_runner_default_url(const char *root)
{
        return kiln_asprintf("oci://%s", root);
}
