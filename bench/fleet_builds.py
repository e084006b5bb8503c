#!/usr/bin/python3
"""The client of bench/fleet.sh: trivial builds over Python grpcio, all of a
batch submitted at once on one channel.

usage: fleet_builds.py PROTO_ROOT WORK ROUNDS N PROXY SOLO AFFINE METRICS...
(PROXY: haproxy's leastconn frontend, SOLO: one builder of concurrency 3,
AFFINE: haproxy's hdr(kiln-action) frontend, METRICS: the /metrics
host:port of each builder behind haproxy)"""
import http.client
import os
import statistics
import sys
import time

PROTO_ROOT, WORK = sys.argv[1], sys.argv[2]
ROUNDS, N = int(sys.argv[3]), int(sys.argv[4])
PROXY, SOLO, AFFINE = sys.argv[5:8]
METRICS = sys.argv[8:]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)
import grpc  # noqa: E402
from tvix.build.protos import rpc_build_pb2_grpc  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trivial  # noqa: E402

proxy = grpc.insecure_channel(PROXY)
digest = trivial.put_input(proxy)


def req(salt, script=": > /out/f"):
    return trivial.request(digest, salt, script)


def batch(stub, reqs, metadata=None):
    """Seconds until every answer of reqs, all sent at once, has arrived."""
    t = time.monotonic()
    futs = [stub.DoBuild.future(r, timeout=600, metadata=metadata) for r in reqs]
    outs = [f.result().outputs for f in futs]
    return time.monotonic() - t, outs


def builds_run():
    """Builds the builders behind haproxy have run (not answered otherwise)."""
    total = 0
    for hostport in METRICS:
        c = http.client.HTTPConnection(hostport, timeout=5)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith("kiln_build_duration_seconds_count"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


stubs = {name: rpc_build_pb2_grpc.BuildServiceStub(grpc.insecure_channel(target))
         for name, target in [("proxy", PROXY), ("solo", SOLO), ("affine", AFFINE)]}
pid = os.getpid()
for name in stubs:  # warm up: each builder fetches the input once
    batch(stubs[name], [req("warm-%s-%d-%d" % (name, pid, i)) for i in range(6)])

print("1. %d distinct trivial builds at once (builds/s)" % N)
print("round   3 builders via haproxy   1 builder x3 direct   ratio")
ratios = []
for k in range(ROUNDS):
    rate = {}
    for name in ("proxy", "solo") if k % 2 == 0 else ("solo", "proxy"):
        t, _ = batch(stubs[name], [req("d-%s-%d-%d-%d" % (name, pid, k, i)) for i in range(N)])
        rate[name] = N / t
    ratios.append(rate["proxy"] / rate["solo"])
    print("%-7d %24.1f %21.1f %7.2f" % (k + 1, rate["proxy"], rate["solo"], ratios[-1]))
print("median ratio %.2f (goal >= 0.9)" % statistics.median(ratios))

print("2. 200 identical requests at once through hdr(kiln-action), against one build alone")
for what, script in [("trivial", ": > /out/f"), ("1 s", "sleep 1; : > /out/f")]:
    alone, crowd, hits, ran = [], [], [], []
    for k in range(3):
        t, _ = batch(stubs["affine"], [req("alone-%d-%d" % (pid, k), script)])
        alone.append(t)
        r = req("crowd-%d-%d" % (pid, k), script)
        # kiln's client sends the request's identity; equal requests, equal value
        md = [("kiln-action", "crowd-%d-%d" % (pid, k))]
        before = builds_run()
        t, outs = batch(stubs["affine"], [r] * 200, md)
        ran.append(builds_run() - before)
        assert all(o == outs[0] for o in outs)
        crowd.append(t)
        # the same 200 again, all answered from the action cache: what 200
        # calls cost through this client and haproxy with no build at all
        hits.append(batch(stubs["affine"], [r] * 200, md)[0])
    ma, mc, mh = statistics.median(alone), statistics.median(crowd), statistics.median(hits)
    print("%s build alone: median %.1f ms; 200 identical, all answered: median %.1f ms "
          "(builds run: %s); ratio %.2f (goal <= 1.2); the 200 again from the cache: "
          "%.1f ms" % (what, ma * 1e3, mc * 1e3, "/".join(map(str, ran)), mc / ma, mh * 1e3))
