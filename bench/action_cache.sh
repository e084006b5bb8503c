#!/bin/sh
# Action cache (run by hand): a DoBuild answered from the action cache
# against the same trivial build run (`:` under /bin/sh, one small input, one
# output directory) through a running `kiln daemon` on sandbox://, both over
# one Python grpcio channel: RUNS requests never seen before (an environment
# variable tells them apart), then RUNS times one built earlier; prints the
# medians and their ratio (goal: at most 0.05). Then 200
# identical requests at once against one build of the same kind alone (a
# trivial one, and one of a second): one build runs (the daemon's log says
# the 199 others joined it or were answered from the cache) and the last
# answer arrives within 1.2× that build's time (goal).
# usage: bench/action_cache.sh [RUNS] (BACKEND=oci://… for another backend)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-30}
kiln=$PWD/build/kiln
work=$(mktemp -d /var/tmp/kiln-bench-ac.XXXXXX)
chmod 711 "$work" # builds are set up as unprivileged ids, which must reach the bundles
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
export KILN_HOME=$work/home
backend=${BACKEND:-sandbox://$work/bundles}

KILN_LOG=debug "$kiln" daemon -l "$work/kiln.sock" --build-service-addr "$backend" \
	>"$work/daemon.out" 2>"$work/daemon.err" &
daemon=$!
while ! grep -q '^listening' "$work/daemon.out"; do
	kill -0 $daemon 2>/dev/null || { cat "$work/daemon.err" >&2; exit 1; }
	sleep 0.05
done

/usr/bin/python3 - "unix:$work/kiln.sock" "$PWD/proto" "$work/py" "$runs" <<'PY'
import os, statistics, sys, time
TARGET, PROTO_ROOT, WORK, N = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path[:0] = [os.path.join(os.getcwd(), "tests", "integration"), os.path.join(os.getcwd(), "bench")]
import kiln_stubs
kiln_stubs.generate(PROTO_ROOT, WORK)
import grpc
from tvix.build.protos import rpc_build_pb2_grpc
import trivial

channel = grpc.insecure_channel(TARGET)
builds = rpc_build_pb2_grpc.BuildServiceStub(channel)
digest = trivial.put_input(channel)

def req(salt, script=": > /out/f"):
    return trivial.request(digest, salt, script)

def timed(r):
    t = time.monotonic()
    b = builds.DoBuild(r, timeout=60)
    return time.monotonic() - t, b

pid = os.getpid()
_, first = timed(req("warm-%d" % pid))       # warm up: a build, remembered
# N builds of requests never seen, then N times the remembered one (in two
# phases: a hit right after a build would share the CPUs with its teardown).
built = [timed(req("%d-%d" % (pid, i)))[0] for i in range(N)]
hit = []
for i in range(N):
    t, b = timed(req("warm-%d" % pid))
    assert b.outputs == first.outputs
    hit.append(t)
mb, mh = statistics.median(built), statistics.median(hit)
print("trivial build run: median %.2f ms; answered from the action cache: median %.3f ms; "
      "ratio %.4f (goal <= 0.05)" % (mb * 1e3, mh * 1e3, mh / mb))

# 200 identical requests at once, against one build of the same request
# alone (median of 3 each): a trivial build, and one that takes a second.
for name, script in [("trivial", ": > /out/f"), ("1 s", "sleep 1; : > /out/f")]:
    alone, crowd = [], []
    for k in range(3):
        alone.append(timed(req("alone-%d-%d" % (pid, k), script))[0])
        r = req("crowd-%d-%d" % (pid, k), script)
        t = time.monotonic()
        futs = [builds.DoBuild.future(r, timeout=120) for _ in range(200)]
        outs = [f.result().outputs for f in futs]
        crowd.append(time.monotonic() - t)
        assert all(o == outs[0] for o in outs)
    ma, mc = statistics.median(alone), statistics.median(crowd)
    print("%s build alone: median %.2f ms; 200 identical at once, all answered: median %.2f ms; "
          "ratio %.2f (goal <= 1.2)" % (name, ma * 1e3, mc * 1e3, mc / ma))
PY
shared=$(grep -c "joined an identical build\|cache hit" "$work/daemon.err" || true)
echo "one build per 200 identical requests: $shared of $((6 * 199 + runs)) answers were shared or cached (want all)"
