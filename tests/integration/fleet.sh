#!/bin/sh
# A build fleet on one machine: one store daemon and three builder daemons
# (sandbox://, concurrency 1, a memory:// action cache), each in a network namespace
# of its own with its own address on a bridge this test makes, the builders
# using the store daemon through the read-through caches
# (cache+grpc+http://store?near=…), and haproxy in front (mode http, proto
# h2, balance leastconn, health checks that are grpc.health.v1 Check calls).
#
# - 60 distinct builds through haproxy all succeed and spread over all three
#   builders (their metrics say how many each ran); the input is fetched
#   from the store daemon once per builder, not once per build;
# - 30 identical builds through a second frontend that balances on the
#   kiln-action header (the request's identity) run once;
# - a builder killed (SIGKILL) in the middle of builds is taken out by the
#   health check; the calls it had break (haproxy resets their streams) and
#   kiln's client sends them again, so every build succeeds, and the builds
#   after it run on the other two;
# - restarted, it is put back by the health check and builds again.
#
# Only addresses this test made (10.X.Y.0/24 on its own bridge) are
# contacted. Needs root, haproxy, ip and nsenter.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }
for c in haproxy ip nsenter; do command -v $c >/dev/null || fail "$c is not installed"; done

# --- the network: a bridge, four namespaces with one veth each ---
id=$$
net="10.$((100 + id / 256 % 100)).$((id % 256))"
ip -4 addr show | grep -q "inet $net\." && fail "$net.0/24 is in use here"
ip -4 route show | grep -q "^$net\." && fail "$net.0/24 is routed here"
br=kfb$id
ip link add "$br" type bridge || fail "cannot make a bridge (no network namespaces here?)"
cleanup_hooks="ip link del $br 2>/dev/null || true; $cleanup_hooks"
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
# node NAME HOSTPART: a namespace kiln-fleet-$id-NAME with address $net.HOSTPART
node() {
	ns=kiln-fleet-$id-$1
	ip netns add "$ns"
	cleanup_hooks="ip netns del $ns 2>/dev/null || true; $cleanup_hooks"
	ip link add "kv$id$1" type veth peer name eth0 netns "$ns"
	ip link set "kv$id$1" master "$br" up
	ip -n "$ns" addr add "$net.$2/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
}
node s 10
# the builders' cgroups (sandbox://…&cgroup=), removed depth-first once the
# daemons are gone (hooks run last-registered first)
cleanup_hooks="find /sys/fs/cgroup/*/kiln-fleet-$id-* -depth -type d -exec rmdir {} + 2>/dev/null || true; $cleanup_hooks"
for n in 1 2 3; do node $n 1$n; done

# start_node NAME ARGS...: kiln daemon ARGS in the network namespace NAME
# (nothing else of it: nsenter --net, exec'd so that $! is the daemon), waits
# for "listening on". Sets PID_<NAME>.
start_node() {
	name=$1; shift
	mkdir -p "$T/$name"
	KILN_HOME="$T/$name" exec nsenter --net=/run/netns/kiln-fleet-$id-$name -- \
		"$KILN_BIN" daemon "$@" >"$T/$name/daemon.out" 2>>"$T/$name/daemon.err" &
	pid=$!
	eval "PID_$name=$pid"
	cleanup_hooks="stop_daemon $pid || true; $cleanup_hooks"
	i=0
	while ! grep -q '^listening on ' "$T/$name/daemon.out" 2>/dev/null; do
		kill -0 $pid 2>/dev/null || fail "daemon $name exited: $(cat "$T/$name/daemon.err")"
		i=$((i + 1)); [ $i -lt 200 ] || fail "daemon $name did not start listening"
		sleep 0.05
	done
}
store="grpc+http://$net.10:8000"
start_node s -l "$net.10:8000" --metrics-listen "$net.10:9100" \
	--blob-service-addr "objectstore+file://$T/s/blobs" \
	--directory-service-addr "lmdb://$T/s/directories" --build-service-addr dummy://
start_builder() {
	start_node $1 -l "$net.1$1:8000" --metrics-listen "$net.1$1:9100" --action-cache memory:// \
		--blob-service-addr "cache+$store?near=objectstore+file://$T/$1/blobs" \
		--directory-service-addr "cache+$store?near=lmdb://$T/$1/directories" \
		--build-service-addr "sandbox://$T/$1/bundles?concurrency=1&cgroup=kiln-fleet-$id-$1"
}
for n in 1 2 3; do start_builder $n; done

# metric NODE NAME: the sum of a metric's samples on that daemon (0 if none)
metric() {
	$PY - "$net.$( [ "$1" = s ] && echo 10 || echo 1$1)" "$2" <<'PY'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 9100, timeout=5)
c.request("GET", "/metrics")
total = 0
for line in c.getresponse().read().decode().splitlines():
    name = line.split("{")[0].split(" ")[0]
    if name == sys.argv[2]:
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

# --- haproxy: castore calls to the store daemon, builds to the builders ---
# The health checks are grpc.health.v1.Health/Check calls, spoken as raw
# HTTP/2 by tcp-check (contrib/haproxy/grpc-health-check says why).
check=$(dirname "$0")/../../contrib/haproxy/grpc-health-check
# the sample configuration users copy is valid and checks with these calls
sample=$(dirname "$0")/../../contrib/haproxy/haproxy.cfg
haproxy -c -f "$sample" >/dev/null 2>&1 || fail "contrib/haproxy/haproxy.cfg is not valid: $(haproxy -c -f "$sample" 2>&1 | head -3)"
for svc in tvix.build.v1.BuildService tvix.castore.v1.BlobService; do
	$check $svc | grep send-binary | grep -qxF -f /dev/stdin "$sample" ||
		fail "contrib/haproxy/haproxy.cfg lacks the health check of $svc"
done
cat >"$T/haproxy.cfg" <<CFG
global
  log stderr format raw local0 info
  stats socket $T/haproxy.sock level admin
defaults
  mode http
  log global
  option log-health-checks
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  timeout check 1s
frontend kiln
  bind $net.1:8000 proto h2
  use_backend store if { path_beg /tvix.castore.v1. /snix.castore.v1. }
  default_backend builders
backend builders
  balance leastconn
  retries 3
  option redispatch 1
$($check tvix.build.v1.BuildService)
  default-server proto h2 check inter 300ms fall 2 rise 2
  server b1 $net.11:8000
  server b2 $net.12:8000
  server b3 $net.13:8000
# the same builders chosen by the request's identity (the kiln-action
# header of kiln's client): identical builds meet on one builder
frontend kiln-affine
  bind $net.1:8001 proto h2
  use_backend store if { path_beg /tvix.castore.v1. /snix.castore.v1. }
  default_backend builders-affine
backend builders-affine
  balance hdr(kiln-action)
  hash-type consistent
$($check tvix.build.v1.BuildService)
  default-server proto h2 check inter 300ms fall 2 rise 2
  server b1 $net.11:8000
  server b2 $net.12:8000
  server b3 $net.13:8000
backend store
$($check tvix.castore.v1.BlobService)
  server store $net.10:8000 proto h2 check inter 1s
CFG
haproxy -c -f "$T/haproxy.cfg" >"$T/haproxy.check" 2>&1 || fail "haproxy.cfg: $(cat "$T/haproxy.check")"
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
hpid=$!
cleanup_hooks="kill $hpid 2>/dev/null || true; $cleanup_hooks"
# state SERVER: UP, DOWN, ... as haproxy's stats say
state() {
	$PY - "$T/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
for line in data.decode().splitlines():
    f = line.split(",")
    want = sys.argv[2].split("/")
    if len(f) > 17 and f[1] == want[-1] and (len(want) == 1 or f[0] == want[0]):
        print(f[17].split(" ")[0])
        break
PY
}
# wait_state SERVER STATE: at most 10 s
wait_state() {
	i=0
	until [ "$(state "$1" 2>/dev/null)" = "$2" ]; do
		i=$((i + 1)); [ $i -lt 200 ] || fail "$1 is $(state "$1") after 10 s, not $2: $(tail -5 "$T/haproxy.log")"
		sleep 0.05
	done
}
for s in b1 b2 b3 store; do wait_state $s UP; done
for s in b1 b2 b3; do wait_state builders-affine/$s UP; done

# --- requests ---
A="grpc+http://$net.1:8000"
bbnode=$(kiln import --blob-service-addr "$A" --directory-service-addr "$A" /bin/busybox |
	json node | sed 's/"file": {/"file": {"name": "YnVzeWJveA==", /')
# request FILE TAG SECONDS: a distinct build that sleeps, then writes TAG
request() {
	cat >"$1" <<JSON
{"inputs": [$bbnode], "commandArgs": ["/nix/store/busybox", "sh", "-c", "/nix/store/busybox sleep $3; echo $2 > \$out"],
 "workingDir": "build", "scratchPaths": ["build", "nix/store"], "inputsDir": "nix/store",
 "outputs": ["nix/store/x-out"],
 "environmentVars": [{"key": "PATH", "value": "L2Jpbg=="}, {"key": "out", "value": "L25peC9zdG9yZS94LW91dA=="}],
 "constraints": {"system": "x86_64-linux"}}
JSON
}
# submit PREFIX N SECONDS [TAG [ADDR]]: N builds at once through haproxy
# (distinct ones, or all writing TAG); waits for all, leaves
# PREFIX.$i.{out,err,rc}
submit() {
	pids=
	i=0
	while [ $i -lt "$2" ]; do
		request "$T/$1.$i.json" "${4:-$1-$i-$id}" "$3"
		( rc=0; kiln build --no-cache --build-service-addr "${5:-$A}" "$T/$1.$i.json" \
			>"$T/$1.$i.out" 2>"$T/$1.$i.err" || rc=$?; echo $rc >"$T/$1.$i.rc" ) &
		pids="$pids $!"
		i=$((i + 1))
	done
	for p in $pids; do wait $p; done
}
# count PREFIX N: how many of the builds succeeded
count_ok() { n=0; i=0; while [ $i -lt "$2" ]; do [ "$(cat "$T/$1.$i.rc")" = 0 ] && n=$((n + 1)); i=$((i + 1)); done; echo $n; }
builds() { metric "$1" kiln_builds_total; }

# 1. 60 distinct builds, spread over all three builders
submit w 60 0.2
[ "$(count_ok w 60)" = 60 ] || fail "$((60 - $(count_ok w 60))) of 60 builds failed: $(cat "$T"/w.*.err | sort | uniq -c | head -5)"
b1=$(builds 1) b2=$(builds 2) b3=$(builds 3)
echo "60 builds: b1 $b1, b2 $b2, b3 $b3"
[ $((b1 + b2 + b3)) = 60 ] || fail "the builders ran $((b1 + b2 + b3)) builds, not 60"
for b in $b1 $b2 $b3; do [ "$b" -ge 10 ] || fail "not spread over all builders: $b1 $b2 $b3"; done
# busybox came from the store daemon once per builder at most
reads=$(metric s kiln_blobs_read_total)
[ "$reads" -le 3 ] || fail "the store daemon sent $reads blobs for 60 builds (want one per builder)"
# each output is in the store daemon (written through the builders' caches)
out=$(json outputs.0.file.digest <"$T/w.7.out")
[ "$(kiln cat --blob-service-addr "$A" "b3:$out")" = "w-7-$id" ] || fail "output of build 7 not in the store"

# 2. 30 identical builds through the affine frontend: one build runs, on one
# builder, and every caller gets its result
ran() { echo $(( $(metric 1 kiln_build_duration_seconds_count) + $(metric 2 kiln_build_duration_seconds_count) + $(metric 3 kiln_build_duration_seconds_count) )); }
before=$(ran)
submit same 30 1 "same-$id" "grpc+http://$net.1:8001"
[ "$(count_ok same 30)" = 30 ] || fail "identical builds failed: $(cat "$T"/same.*.err | head -3)"
[ $(( $(ran) - before )) = 1 ] || fail "30 identical builds ran $(( $(ran) - before )) times through hdr(kiln-action), not once"
[ "$(json outputs.0.file.digest <"$T/same.0.out")" = "$(json outputs.0.file.digest <"$T/same.29.out")" ] ||
	fail "identical builds answered differently"
echo "30 identical builds through hdr(kiln-action): one ran"

# 3. a builder killed in the middle of builds: the calls it had are sent
# again by the client (UNAVAILABLE, or a stream haproxy reset), and all
# succeed on the other two
(sleep 1.5; kill -KILL $PID_2) &
killer=$!
submit k 18 1
wait $killer || true
ok=$(count_ok k 18)
again=$(grep -l "sending the build again" "$T"/k.*.err | wc -l)
echo "killed b2: $ok of 18 builds succeeded, $again of them sent again, as in:"
grep -h "sending the build again" "$T"/k.*.err | head -1
[ "$ok" = 18 ] || fail "$((18 - ok)) of 18 builds failed with b2 killed: $(cat "$T"/k.*.err | grep -v 'sending the build again' | sort | uniq -c | head -5)"
[ "$again" -ge 1 ] || fail "no build was sent again when b2 was killed (did b2 take none?)"
grep -h "sending the build again" "$T"/k.*.err | grep -q "UNAVAILABLE\|UNKNOWN: Stream removed" ||
	fail "the retries do not say why: $(grep -h 'sending the build again' "$T"/k.*.err | head -2)"
wait_state b2 DOWN
before=$(( $(builds 1) + $(builds 3) ))
submit d 12 0.2
[ "$(count_ok d 12)" = 12 ] || fail "builds failed with b2 down: $(cat "$T"/d.*.err | head -3)"
[ $(( $(builds 1) + $(builds 3) - before )) = 12 ] || fail "with b2 down, b1 and b3 did not run all 12"

# 4. restarted, b2 rejoins (with its near store as it was)
start_builder 2
wait_state b2 UP
submit r 12 0.3
[ "$(count_ok r 12)" = 12 ] || fail "builds failed after b2 came back: $(cat "$T"/r.*.err | head -3)"
[ "$(builds 2)" -ge 1 ] || fail "the restarted b2 took no build"
echo "after the restart: b2 ran $(builds 2) of 12"
grep -q "b2 is DOWN\|Server builders/b2 is DOWN" "$T/haproxy.log" || fail "haproxy did not log b2 down"
echo ok
