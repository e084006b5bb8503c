#!/bin/sh
# The action cache and the deduplication of identical builds in flight,
# through the real daemon (sandbox backend) and the CLI: a second identical
# DoBuild is answered from the cache (the daemon says so with
# KILN_LOG=debug), ten identical DoBuilds at once run one build, an output
# gone from the store means a new build, a waiter sees the log of the build
# it joined, --action-cache none and kiln build
# --no-cache turn the cache off; two builders share one daemon's action cache
# over kiln.build.v1.ActionCache (action_cache_wire.py checks the wire).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }

cg=kiln-test-$$
svc="sandbox://$T/bundles?concurrency=4&cgroup=$cg"
bb=/bin/busybox
bbnode=$(kiln import $bb | json node | sed 's/"file": {/"file": {"name": "YnVzeWJveA==", /')
# request FILE SCRIPT: a request whose output (a file) is what SCRIPT writes
# to $out; /proc/uptime makes two runs of the same script differ.
request() {
	script=$(printf '%s' "$2" | $PY -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
	cat >"$1" <<JSON
{"inputs": [$bbnode], "commandArgs": ["/nix/store/busybox", "sh", "-c", $script],
 "workingDir": "build", "scratchPaths": ["build", "nix/store"], "inputsDir": "nix/store",
 "outputs": ["nix/store/x-out"],
 "environmentVars": [{"key": "PATH", "value": "L2Jpbg=="}, {"key": "out", "value": "L25peC9zdG9yZS94LW91dA=="}],
 "constraints": {"system": "x86_64-linux"}}
JSON
}
UPTIME='/nix/store/busybox cut -d" " -f1 /proc/uptime > $out'
request "$T/r1.json" "$UPTIME"

export KILN_LOG=debug
start_daemon -l "$T/kiln.sock" --build-service-addr "$svc"
D="--build-service-addr grpc+unix://$T/kiln.sock"
hits() { grep -c "cache hit" "$DAEMON_ERR" || true; }
joined() { grep -c "joined an identical build" "$DAEMON_ERR" || true; }

# The second identical DoBuild: the same Build, from the cache.
kiln build $D "$T/r1.json" >"$T/b1.json"
[ "$(hits)" = 0 ] || fail "a first build was a cache hit"
kiln build $D "$T/r1.json" >"$T/b2.json"
[ "$(hits)" = 1 ] || { cat "$DAEMON_ERR" >&2; fail "the second identical build was not a cache hit"; }
cmp -s "$T/b1.json" "$T/b2.json" || fail "the cached Build differs: $(cat "$T/b1.json" "$T/b2.json")"
grep "cache hit" "$DAEMON_ERR" | grep -q "DoBuild b3:" || fail "the log line names no request"
# kiln-no-cache: 1 (what kiln's client sends for the repeats of Nix's
# --repeat): the daemon builds although its cache holds the answer, and
# keeps nothing of it. Python grpcio, so the header is the wire's.
$PY - "unix:$T/kiln.sock" "$KILN_SOURCE_ROOT/proto" "$T/py" "$T/r1.json" <<'PY' >"$T/b3.out" ||
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_ROOT"], "tests", "integration"))
import kiln_stubs
kiln_stubs.generate(sys.argv[2], sys.argv[3])
import grpc
from google.protobuf import json_format
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc
req = json_format.Parse(open(sys.argv[4]).read(), build_pb2.BuildRequest())
stub = rpc_build_pb2_grpc.BuildServiceStub(grpc.insecure_channel(sys.argv[1]))
b = stub.DoBuild(req, timeout=60, metadata=[("kiln-no-cache", "1")])
print(b.outputs[0].file.digest.hex())
PY
	fail "DoBuild with kiln-no-cache: 1 failed"
[ "$(hits)" = 1 ] || fail "a DoBuild with kiln-no-cache: 1 was answered from the cache"
[ "$(cat "$T/b3.out")" != "$($PY -c 'import base64,json,sys; print(base64.b64decode(json.load(open(sys.argv[1]))["outputs"][0]["file"]["digest"]).hex())' "$T/b1.json")" ] ||
	fail "a DoBuild with kiln-no-cache: 1 did not build again"
kiln build $D "$T/r1.json" >"$T/b4.json"
cmp -s "$T/b1.json" "$T/b4.json" || fail "a kiln-no-cache build replaced the cached Build"

# Ten identical DoBuilds at once: one build, ten equal answers.
request "$T/r10.json" "/nix/store/busybox sleep 1; $UPTIME"
h0=$(hits)
j0=$(joined)
pids=
for i in 0 1 2 3 4 5 6 7 8 9; do
	kiln build $D "$T/r10.json" >"$T/c$i.json" 2>"$T/c$i.err" &
	pids="$pids $!"
done
for p in $pids; do wait $p || fail "a build failed: $(cat "$T"/c*.err)"; done
for i in 1 2 3 4 5 6 7 8 9; do
	cmp -s "$T/c0.json" "$T/c$i.json" || fail "answer $i differs: $(cat "$T/c0.json" "$T/c$i.json" "$T/c$i.err")"
done
[ $(($(hits) - h0 + $(joined) - j0)) = 9 ] ||
	fail "10 identical builds: $(($(joined) - j0)) joined, $(($(hits) - h0)) cache hits (want 9 in all)"
[ $(($(joined) - j0)) -ge 1 ] || fail "no build joined an identical one in flight"

# A build joined by identical ones: each caller sees its log as it comes
# (kiln build -L, through BuildEvents), the ones who joined late included.
request "$T/rl.json" "echo early-line >&2; /nix/store/busybox sleep 1; echo late-line >&2; $UPTIME"
j0=$(joined)
kiln build -L $D "$T/rl.json" >"$T/l0.json" 2>"$T/l0.err" &
p0=$!
sleep 0.5
kiln build -L $D "$T/rl.json" >"$T/l1.json" 2>"$T/l1.err" || fail "the joining build failed: $(cat "$T/l1.err")"
wait $p0 || fail "the first build failed: $(cat "$T/l0.err")"
[ $(($(joined) - j0)) = 1 ] || fail "the second build did not join the first"
for i in 0 1; do
	grep -q early-line "$T/l$i.err" && grep -q late-line "$T/l$i.err" ||
		fail "caller $i did not see the whole log: $(cat "$T/l$i.err")"
done
cmp -s "$T/l0.json" "$T/l1.json" || fail "the joined build answered another Build"

# A failure is shared by the builds waiting for it and never remembered.
request "$T/rf.json" "/nix/store/busybox sleep 1; echo failing-build >&2; exit 3"
pids=
for i in 0 1 2; do
	kiln build $D "$T/rf.json" >/dev/null 2>"$T/f$i.err" &
	pids="$pids $!"
done
for p in $pids; do wait $p && fail "a failing build succeeded"; done
for i in 0 1 2; do
	grep -q "exited with status 3" "$T/f$i.err" || fail "waiter $i: $(cat "$T/f$i.err")"
	grep -q "failing-build" "$T/f$i.err" || fail "waiter $i lacks the log tail: $(cat "$T/f$i.err")"
done
h0=$(hits)
expect_fail "exited with status 3" kiln build $D "$T/rf.json"
[ "$(hits)" = "$h0" ] || fail "a failed build was remembered"

# kiln build -K sends kiln-keep-failed: 1 (as grpcio does below): the daemon
# keeps the failed build's bundle and the failure names it; without it,
# nothing is kept.
kept_dir() { sed -n "s/.*note: keeping build directory '\([^']*\)'.*/\1/p" "$1" | head -1; }
check_kept() { # ERRFILE
	k=$(kept_dir "$1")
	[ -n "$k" ] && [ -e "$k/kept-failed" ] || fail "no kept bundle named in: $(cat "$1")"
	grep -q failing-build "$k/stderr.log" || fail "the kept bundle $k has no log"
	umount "$k/scratch" 2>/dev/null || true
	rm -rf "$k"
}
expect_fail "exited with status 3" kiln build $D "$T/rf.json"
[ -z "$(kept_dir "$T/.stderr")" ] || fail "a failed build was kept without -K"
request "$T/rk.json" "echo failing-build >&2; exit 3"
expect_fail "note: keeping build directory" kiln build -K $D "$T/rk.json"
check_kept "$T/.stderr"
$PY - "unix:$T/kiln.sock" "$KILN_SOURCE_ROOT/proto" "$T/py" "$T/rk.json" <<'PY' >"$T/keep.out" 2>&1 ||
import json, os, sys
sys.path.insert(0, os.path.join(os.environ["KILN_SOURCE_ROOT"], "tests", "integration"))
import kiln_stubs
kiln_stubs.generate(sys.argv[2], sys.argv[3])
import grpc
from google.protobuf import json_format
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc
req = json_format.Parse(open(sys.argv[4]).read(), build_pb2.BuildRequest())
stub = rpc_build_pb2_grpc.BuildServiceStub(grpc.insecure_channel(sys.argv[1]))
try:
    stub.DoBuild(req, timeout=60, metadata=[("kiln-keep-failed", "1")])
except grpc.RpcError as e:
    print(e.details())
    sys.exit(0)
sys.exit("the failing build succeeded")
PY
	fail "DoBuild with kiln-keep-failed: 1: $(cat "$T/keep.out")"
check_kept "$T/keep.out"

# An output blob gone from the store: built again, not answered.
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
hex=$(json outputs.0.file.digest <"$T/b1.json" | $PY -c 'import base64,sys; print(base64.b64decode(sys.stdin.read()).hex())')
[ -n "$(find "$KILN_HOME/blobs" -type f -name "*$hex*")" ] || fail "no file of blob $hex in the store"
find "$KILN_HOME/blobs" -type f -name "*$hex*" -delete
start_daemon -l "$T/kiln.sock" --build-service-addr "$svc"
kiln build $D "$T/r1.json" >"$T/b3.json"
[ "$(hits)" = 0 ] || fail "answered from the cache with the output gone"
cmp -s "$T/b1.json" "$T/b3.json" && fail "the output gone, yet the same uptime: not rebuilt"
kiln build $D "$T/r1.json" >"$T/b4.json"
[ "$(hits)" = 1 ] || fail "the rebuilt output was not remembered"
cmp -s "$T/b3.json" "$T/b4.json" || fail "the cache answered another Build"
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"

# --action-cache none: every build runs (identical ones in flight still once).
start_daemon -l "$T/kiln.sock" --build-service-addr "$svc" --action-cache none
kiln build $D "$T/r1.json" >"$T/n1.json"
kiln build $D "$T/r1.json" >"$T/n2.json"
[ "$(hits)" = 0 ] || fail "--action-cache none answered from a cache"
cmp -s "$T/n1.json" "$T/n2.json" && fail "--action-cache none: the second build did not run"
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"

# Another store: memory://, bounded; a bad URL is one line.
start_daemon -l "$T/kiln.sock" --build-service-addr "$svc" --action-cache "memory://?max-entries=1"
kiln build $D "$T/r1.json" >/dev/null
kiln build $D "$T/r1.json" >/dev/null
[ "$(hits)" = 1 ] || fail "memory:// action cache: no hit"
stop_daemon "$DAEMON_PID" || fail "daemon exit status $?"
expect_fail "invalid action cache URL 'memory://?max-entries=0': max-entries must be a positive number" \
	kiln daemon -l "$T/x.sock" --action-cache "memory://?max-entries=0"
[ "$(wc -l <"$T/.stderr")" = 1 ] || fail "more than one line: $(cat "$T/.stderr")"

# A shared action cache: one daemon serves its own (--serve-action-cache),
# two builders use it over gRPC: what one built, the other answers.
start_daemon -l "$T/ac.sock" --build-service-addr dummy:// --action-cache memory:// --serve-action-cache
wire() { timeout 120 $PY "$KILN_SOURCE_ROOT/tests/integration/action_cache_wire.py" "$1" "$KILN_SOURCE_ROOT/proto" "$T/py" ${2:-}; }
[ "$(wire "unix:$T/ac.sock")" = 0 ] || fail "a new shared action cache is not empty"
builders=""
for n in 1 2; do
	start_daemon -l "$T/b$n.sock" --build-service-addr "sandbox://$T/bundles$n?concurrency=2&cgroup=$cg-$n" \
		--action-cache "grpc+unix://$T/ac.sock"
	builders="$builders $DAEMON_PID"
done
request "$T/rs.json" "echo shared; $UPTIME"
kiln build --build-service-addr "grpc+unix://$T/b1.sock" "$T/rs.json" >"$T/s1.json"
[ "$(wire "unix:$T/ac.sock")" = 1 ] || fail "builder 1's build is not in the shared action cache"
kiln build --build-service-addr "grpc+unix://$T/b2.sock" "$T/rs.json" >"$T/s2.json"
cmp -s "$T/s1.json" "$T/s2.json" || fail "builder 2 built again what builder 1 had built: $(cat "$T/s1.json" "$T/s2.json")"
[ "$(hits)" = 1 ] || fail "builder 2 does not say it answered from the cache"
# not served: UNIMPLEMENTED, saying how; nothing to serve: one line
wire "unix:$T/b1.sock" unserved >/dev/null || fail "a daemon without --serve-action-cache serves it"
expect_fail "kiln: --serve-action-cache: this daemon has no action cache to serve" \
	kiln daemon -l "$T/x.sock" --action-cache none --serve-action-cache
[ "$(wc -l <"$T/.stderr")" = 1 ] || fail "more than one line: $(cat "$T/.stderr")"
expect_fail "invalid URL 'grpc+gopher://x': unsupported transport grpc+gopher" kiln daemon -l "$T/x.sock" --action-cache grpc+gopher://x

# The CLI's embedded build service: cached by default, --no-cache builds.
unset KILN_LOG
kiln build --build-service-addr "$svc" "$T/r1.json" >"$T/l1.json"
kiln build --build-service-addr "$svc" "$T/r1.json" >"$T/l2.json"
cmp -s "$T/l1.json" "$T/l2.json" || fail "kiln build: the second identical build was not cached"
kiln build --no-cache --build-service-addr "$svc" "$T/r1.json" >"$T/l3.json"
cmp -s "$T/l1.json" "$T/l3.json" && fail "kiln build --no-cache: answered from the cache"
[ -f "$KILN_HOME/action-cache/data.mdb" ] || fail "no action cache under \$KILN_HOME"
out1=$(kiln run --input busybox=$bb --output out -- /inputs/busybox sh -c 'cut -d" " -f1 /proc/uptime > /out/t')
out2=$(kiln run --input busybox=$bb --output out -- /inputs/busybox sh -c 'cut -d" " -f1 /proc/uptime > /out/t')
[ "$out1" = "$out2" ] || fail "kiln run: not cached"
out3=$(kiln run --no-cache --input busybox=$bb --output out -- /inputs/busybox sh -c 'cut -d" " -f1 /proc/uptime > /out/t')
[ "$out1" != "$out3" ] || fail "kiln run --no-cache: answered from the cache"

# a stopped builder leaves nothing mounted (its inputs view goes with it)
for p in $builders; do stop_daemon "$p" || fail "builder exit status $?"; done
rmdir /sys/fs/cgroup/*/$cg /sys/fs/cgroup/*/$cg-1 /sys/fs/cgroup/*/$cg-2 2>/dev/null || true
grep -q "$T" /proc/mounts && fail "mounts left: $(grep "$T" /proc/mounts)"
echo ok
