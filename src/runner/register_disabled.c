/* Built without FUSE: there is no OCI runner to register. */
#include <kiln/runner.h>

void kiln_runner_register(void)
{
}
