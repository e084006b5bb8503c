#!/bin/sh
# kiln daemon's lifecycle: listen addresses, refusing a socket or port that a
# live daemon holds, replacing a stale socket, clean exit on SIGTERM (also
# with a call in flight), and socket activation (sd-listen).
. "$(dirname "$0")/lib.sh"
: "${KILN_SOURCE_ROOT:?}"
MEM="--blob-service-addr memory:// --directory-service-addr memory://"
printf 'lifecycle' >"$T/f"

# store and fetch one blob through a URL
roundtrip() {
	d=$(kiln import --blob-service-addr "$1" --directory-service-addr "$1" "$T/f" | json node.file.digest)
	[ "$(kiln cat --blob-service-addr "$1" "b3:$d")" = lifecycle ] || fail "round trip through $1"
}

# a live daemon's socket is refused, and the live daemon keeps serving
# shellcheck disable=SC2086
start_daemon -l "$T/s.sock" $MEM
first=$DAEMON_PID
[ -S "$T/s.sock" ] || fail "no socket file"
expect_fail "another server is listening there" kiln daemon -l "$T/s.sock" $MEM
roundtrip "grpc+unix://$T/s.sock"

# SIGTERM: exit 0, socket removed
stop_daemon "$first" || fail "exit status $? after SIGTERM"
[ ! -e "$T/s.sock" ] || fail "socket left behind"

# a stale socket file (nobody listening) is replaced; a regular file is not
$PY -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/s.sock"
[ -S "$T/s.sock" ] || fail "could not make a stale socket"
# shellcheck disable=SC2086
start_daemon -l "$T/s.sock" $MEM
roundtrip "grpc+unix://$T/s.sock"
stop_daemon "$DAEMON_PID" || fail "exit status $?"
: >"$T/plain"
expect_fail "exists and is not a socket" kiln daemon -l "$T/plain" $MEM

# a TCP port another daemon holds is refused (no SO_REUSEPORT sharing)
# shellcheck disable=SC2086
start_daemon -l 127.0.0.1:0 $MEM
port=$(port_of "$DAEMON_LISTEN")
expect_fail "cannot listen on 127.0.0.1:$port" kiln daemon -l "127.0.0.1:$port" $MEM
roundtrip "grpc+http://127.0.0.1:$port"

# SIGTERM with a call in flight: the upload is cancelled after the grace
# period and the daemon still exits 0, quickly
$PY - "127.0.0.1:$port" "$KILN_SOURCE_ROOT/proto" "$T/stubs" >"$T/slow.out" 2>&1 <<'PYEOF' &
import os, subprocess, sys, time
target, proto, stubs = sys.argv[1:4]
os.makedirs(stubs, exist_ok=True)
subprocess.run(["protoc", "-I", proto, "--python_out=" + stubs, "--grpc_python_out=" + stubs,
                "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                "tvix/castore/protos/rpc_blobstore.proto"], check=True)
sys.path.insert(0, stubs)
import grpc
from tvix.castore.protos import rpc_blobstore_pb2, rpc_blobstore_pb2_grpc
stub = rpc_blobstore_pb2_grpc.BlobServiceStub(grpc.insecure_channel(target))
def gen():
    yield rpc_blobstore_pb2.BlobChunk(data=b"x" * 1000)
    print("streaming", flush=True)
    time.sleep(30)
try:
    stub.Put(gen(), timeout=40)
    print("unexpected success")
except grpc.RpcError as e:
    print("ended:", e.code())
PYEOF
slow=$!
cleanup_hooks="kill $slow 2>/dev/null || true; $cleanup_hooks"
i=0
until grep -q streaming "$T/slow.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 200 ] || fail "slow client did not start: $(cat "$T/slow.out")"
	sleep 0.05
done
sleep 0.2
t0=$(date +%s)
stop_daemon "$DAEMON_PID" || fail "exit status $? with a call in flight"
t1=$(date +%s)
[ $((t1 - t0)) -le 8 ] || fail "shutdown with a call in flight took $((t1 - t0)) s"
wait "$slow" || true
grep -q "ended:" "$T/slow.out" || fail "in-flight client: $(cat "$T/slow.out")"

# socket activation: a unix socket and a TCP socket passed as fd 3
# shellcheck disable=SC2086
start_daemon_sd() {
	info=$1; shift
	daemon_n=$((daemon_n + 1))
	dlog="$T/daemon.$daemon_n"
	$PY "$KILN_SOURCE_ROOT/tests/integration/sd_launcher.py" "$@" "$info" \
		"$KILN_BIN" daemon -l sd-listen $MEM >"$dlog.out" 2>"$dlog.err" &
	DAEMON_PID=$!
	cleanup_hooks="stop_daemon $DAEMON_PID || true; $cleanup_hooks"
	i=0
	until grep -q "^listening on " "$dlog.out" 2>/dev/null; do
		kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$dlog.err" >&2; fail "sd-listen daemon exited"; }
		i=$((i + 1)); [ $i -lt 200 ] || fail "sd-listen daemon did not start"
		sleep 0.05
	done
	DAEMON_LISTEN=$(sed -n 's/^listening on //p' "$dlog.out")
}
start_daemon_sd "$T/sd.info" "unix:$T/sd.sock"
echo "$DAEMON_LISTEN" | grep -q "^sd-listen (fd 3 unix:$T/sd.sock)$" || fail "listen line: $DAEMON_LISTEN"
roundtrip "grpc+unix://$T/sd.sock"
roundtrip "grpc+unix://$T/sd.sock?wait-connect=1"
stop_daemon "$DAEMON_PID" || fail "sd-listen daemon exit status $?"

start_daemon_sd "$T/sd2.info" "tcp:127.0.0.1:0"
roundtrip "grpc+http://$(cat "$T/sd2.info")"
stop_daemon "$DAEMON_PID" || fail "sd-listen daemon exit status $?"

# bad addresses
# shellcheck disable=SC2086
expect_fail "no sockets were passed" kiln daemon -l sd-listen $MEM
# shellcheck disable=SC2086
expect_fail "invalid listen address 'nonsense'" kiln daemon -l nonsense $MEM
echo ok
