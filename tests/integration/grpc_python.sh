#!/bin/sh
# A third-party client (Python grpcio, stubs generated now from proto/) calls
# every method of a running kiln daemon, over a unix socket and over TCP on
# 127.0.0.1 (see grpc_client.py for the cases).
. "$(dirname "$0")/lib.sh"
: "${KILN_SOURCE_ROOT:?}"

start_daemon -l "$T/kiln.sock" -l 127.0.0.1:0 \
	--blob-service-addr memory:// --directory-service-addr memory:// --build-service-addr dummy://
tcp=$(echo "$DAEMON_LISTEN" | sed 's/.*, //')
[ "$(echo "$DAEMON_LISTEN" | sed 's/, .*//')" = "unix:$T/kiln.sock" ] || fail "listen line: $DAEMON_LISTEN"

for target in "unix:$T/kiln.sock" "$tcp"; do
	echo "== $target"
	timeout 300 $PY "$KILN_SOURCE_ROOT/tests/integration/grpc_client.py" "$target" \
		"$KILN_SOURCE_ROOT/proto" "$T/py" || { tail -20 "$DAEMON_ERR" >&2; fail "python client on $target"; }
done
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
echo ok
