#!/bin/sh
# Snix clients (Python grpcio, stubs from proto/snix) against the daemon that
# also serves tvix.*: castore and builds under both package names, over the
# same stores (see grpc_snix.py).
. "$(dirname "$0")/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

start_daemon -l "$T/kiln.sock" --blob-service-addr memory:// --directory-service-addr memory:// \
	--build-service-addr "oci://$T/bundles?concurrency=1&scratch-size=33554432"
timeout 300 $PY "$KILN_SOURCE_ROOT/tests/integration/grpc_snix.py" "unix:$T/kiln.sock" \
	"$KILN_SOURCE_ROOT/proto" "$T/py" || { tail -20 "$DAEMON_ERR" >&2; fail "snix client"; }
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
echo ok
