#!/bin/sh
# kill -9 of the daemon during builds (kill_build.py), on both local build
# services: oci:// (runc) and sandbox://. Each uses a cgroup name of its own.
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }
export T
L="$(dirname "$0")"
opts="concurrency=2&scratch-size=33554432&cgroup=kiln-long-$$"
timeout 600 $PY "$L/kill_build.py" "oci://$T/oci-bundles?$opts" || fail "oci://"
timeout 600 $PY "$L/kill_build.py" "sandbox://$T/sandbox-bundles?$opts" || fail "sandbox://"
echo ok
