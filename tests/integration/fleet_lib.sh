# A build fleet on this machine, shared by tests/integration/fleet.sh and
# bench/fleet.sh. Source it after lib.sh. It makes a bridge of its own with
# the address $net.1, where haproxy listens; each kiln daemon runs in a
# network namespace of its own (node NAME HOSTPART) with $net.HOSTPART:
# the store daemon is s (.10), builder N is .1N. Only addresses made here
# are contacted. Needs root, haproxy, ip and nsenter.
[ "$(id -u)" = 0 ] || { [ "${KILN_TEST_MUST_RUN:-}" = 1 ] && fail "needs root"; echo "skip: needs root"; exit 77; }
for c in haproxy ip nsenter; do command -v $c >/dev/null || fail "$c is not installed"; done
fleet_src=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$fleet_src/contrib" ] || fleet_src=$(dirname "$fleet_src")

# --- the network: a bridge, namespaces with one veth each ---
id=$$
net="10.$((100 + id / 256 % 100)).$((id % 256))"
ip -4 addr show | grep -q "inet $net\." && fail "$net.0/24 is in use here"
ip -4 route show | grep -q "^$net\." && fail "$net.0/24 is routed here"
br=kfb$id
ip link add "$br" type bridge || fail "cannot make a bridge (no network namespaces here?)"
cleanup_hooks="ip link del $br 2>/dev/null || true; $cleanup_hooks"
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
# the builders' cgroups (sandbox://…&cgroup=), removed depth-first once the
# daemons are gone (hooks run last-registered first)
cleanup_hooks="find /sys/fs/cgroup/*/kiln-fleet-$id-* -depth -type d -exec rmdir {} + 2>/dev/null || true; $cleanup_hooks"

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
# addr NAME: the node's address
addr() { [ "$1" = s ] && echo "$net.10" || echo "$net.1$1"; }

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
# start_store: the store daemon: the castore, and the action cache the
# builders share (it runs no builds)
start_store() {
	node s 10
	start_node s -l "$net.10:8000" --metrics-listen "$net.10:9100" \
		--blob-service-addr "objectstore+file://$T/s/blobs" \
		--directory-service-addr "lmdb://$T/s/directories" --build-service-addr dummy:// \
		--action-cache "lmdb://$T/s/action-cache" --serve-action-cache
}
# start_builder N [CONCURRENCY]: builder N on the store daemon through
# read-through caches and its action cache; its namespace is made once
start_builder() {
	[ -e "/run/netns/kiln-fleet-$id-$1" ] || node "$1" "1$1"
	start_node "$1" -l "$net.1$1:8000" --metrics-listen "$net.1$1:9100" --action-cache "$store" \
		--blob-service-addr "cache+$store?near=objectstore+file://$T/$1/blobs" \
		--directory-service-addr "cache+$store?near=lmdb://$T/$1/directories" \
		--build-service-addr "sandbox://$T/$1/bundles?concurrency=${2:-1}&cgroup=kiln-fleet-$id-$1"
}

# metric NODE NAME: the sum of a metric's samples on that daemon (0 if none)
metric() {
	$PY - "$(addr "$1")" "$2" <<'PY'
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
check=$fleet_src/contrib/haproxy/grpc-health-check
# start_haproxy BUILDER...: haproxy on $net.1 in front of the store daemon
# and those builders: port 8000 balances builds by leastconn, port 8001 by
# the kiln-action header (the request's identity: identical builds meet on
# one builder). $FLEET_HAPROXY_GLOBAL adds lines to its global section.
start_haproxy() {
	servers=
	for b in "$@"; do servers="$servers
  server b$b $net.1$b:8000"; done
	cat >"$T/haproxy.cfg" <<CFG
global
  log stderr format raw local0 info
  stats socket $T/haproxy.sock level admin
${FLEET_HAPROXY_GLOBAL:-}
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
  default-server proto h2 check inter 300ms fall 2 rise 2$servers
frontend kiln-affine
  bind $net.1:8001 proto h2
  use_backend store if { path_beg /tvix.castore.v1. /snix.castore.v1. }
  default_backend builders-affine
backend builders-affine
  balance hdr(kiln-action)
  hash-type consistent
$($check tvix.build.v1.BuildService)
  default-server proto h2 check inter 300ms fall 2 rise 2$servers
backend store
$($check tvix.castore.v1.BlobService)
  server store $net.10:8000 proto h2 check inter 1s
CFG
	haproxy -c -f "$T/haproxy.cfg" >"$T/haproxy.check" 2>&1 || fail "haproxy.cfg: $(cat "$T/haproxy.check")"
	haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.log" 2>&1 &
	hpid=$!
	cleanup_hooks="kill $hpid 2>/dev/null || true; $cleanup_hooks"
	for b in "$@"; do wait_state "b$b" UP; wait_state "builders-affine/b$b" UP; done
	wait_state store UP
}
# state [BACKEND/]SERVER: UP, DOWN, ... as haproxy's stats say
state() {
	$PY - "$T/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
want = sys.argv[2].split("/")
for line in data.decode().splitlines():
    f = line.split(",")
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
