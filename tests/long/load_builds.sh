#!/bin/sh
# 200 DoBuild calls at once, concurrency 2 (load_builds.py), on sandbox://.
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }
export T
timeout 900 $PY "$(dirname "$0")/load_builds.py" \
	"sandbox://$T/bundles?concurrency=2&scratch-size=16777216&cgroup=kiln-load-$$" || fail "200 builds"
echo ok
