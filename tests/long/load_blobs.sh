#!/bin/sh
# 8 clients putting and reading 1 GiB each at once (load_blobs.py) through
# the daemon, on the default persistent store (8 GiB on disk, removed at the
# end; the test says skip when the disk has less than 12 GiB free).
. "$(dirname "$0")/../integration/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
export T
need=$(( ${CLIENTS:-8} * ${SIZE:-1073741824} / 1024 + 4194304 ))
free=$(df -k --output=avail "$T" | tail -1)
if [ "$free" -lt "$need" ]; then
	[ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs $need KiB free, $free free"
	echo "skip: $free KiB free, $need needed"; exit 77
fi
timeout 1500 $PY "$(dirname "$0")/load_blobs.py" || fail "8 x 1 GiB"
echo ok
