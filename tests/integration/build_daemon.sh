#!/bin/sh
# Builds through `kiln daemon` with the OCI runner, driven by Python grpcio.
. "$(dirname "$0")/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

bundles="$T/bundles"
start_daemon -l "$T/kiln.sock" --build-service-addr "oci://$bundles?concurrency=1"
timeout 600 $PY "$KILN_SOURCE_ROOT/tests/integration/build_grpc.py" "unix:$T/kiln.sock" \
	"$KILN_SOURCE_ROOT/proto" "$T/py" "$bundles" || { tail -20 "$DAEMON_ERR" >&2; fail "python build client"; }
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
grep -q "$T" /proc/mounts && fail "mounts left after the daemon stopped"
echo ok
