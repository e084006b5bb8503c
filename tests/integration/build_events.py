#!/usr/bin/python3
"""kiln.build.v1.BuildEvents/Build through a running `kiln daemon`
(sandbox backend, concurrency 1), driven by Python grpcio with stubs
generated now from proto/kiln: the events of a build in order, queue
positions, a failure's status and log tail, a cancelled stream, a bad
request; and kiln's own client falling back to DoBuild against a server
(grpcio) that has only tvix.build.v1.

usage: build_events.py TARGET PROTO_ROOT WORKDIR BUNDLE_ROOT KILN_BIN
"""
import json
import os
import subprocess
import sys
import threading
import time
from concurrent import futures

TARGET, PROTO_ROOT, WORK, BUNDLES, KILN = sys.argv[1:6]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)

import grpc  # noqa: E402
from kiln.build.v1 import events_pb2, events_pb2_grpc  # noqa: E402
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc  # noqa: E402
from tvix.castore.protos import castore_pb2, rpc_blobstore_pb2, rpc_blobstore_pb2_grpc  # noqa: E402

SC = grpc.StatusCode
BE = events_pb2.BuildEvent
BR = build_pb2.BuildRequest
channel = grpc.insecure_channel(TARGET)
events = events_pb2_grpc.BuildEventsStub(channel)
builds = rpc_build_pb2_grpc.BuildServiceStub(channel)
blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(channel)

with open("/bin/busybox", "rb") as f:
    BUSYBOX = f.read()
BB_DIGEST = blobs.Put(iter([rpc_blobstore_pb2.BlobChunk(data=BUSYBOX)]), timeout=60).digest
BB = castore_pb2.Node(file=castore_pb2.FileNode(name=b"busybox", digest=BB_DIGEST,
                                                size=len(BUSYBOX), executable=True))
SALT = b"%d" % time.time_ns()


def request(script, tag):
    """A request running `script` (busybox at /nix/store/busybox); tag makes it distinct."""
    return BR(inputs=[BB], command_args=["/nix/store/busybox", "sh", "-c", script],
              working_dir="build", scratch_paths=["build", "nix/store"], inputs_dir="nix/store",
              outputs=["nix/store/x-out"],
              environment_vars=[BR.EnvVar(key="PATH", value=b"/bin"),
                                BR.EnvVar(key="TAG", value=SALT + tag)],
              constraints=BR.BuildConstraints(system="x86_64-linux"))


def kinds(evs):
    return [e.WhichOneof("event") for e in evs]


def test_events_in_order():
    req = request("echo out-line; echo err-line >&2; echo done > /nix/store/x-out", b"order")
    evs = list(events.Build(req, timeout=120))
    k = kinds(evs)
    assert k[0] == "started" and k[-2:] == ["refscan", "completed"], k
    assert set(k[1:-2]) == {"log"}, k
    logs = {}
    for e in evs:
        if e.HasField("log"):
            logs[e.log.stream] = logs.get(e.log.stream, b"") + e.log.data
    assert logs == {BE.STDOUT: b"out-line\n", BE.STDERR: b"err-line\n"}, logs
    done = evs[-1].completed
    assert not done.cached and done.build.build_request == req
    assert done.build.outputs[0].file.name == b"x-out"
    # the same request again: the action cache answers, a single Completed
    again = list(events.Build(req, timeout=120))
    assert kinds(again) == ["completed"] and again[0].completed.cached, again
    assert again[0].completed.build.outputs == done.build.outputs
    # and DoBuild agrees
    assert builds.DoBuild(req, timeout=120).outputs == done.build.outputs


def test_queue_positions():
    blocker = builds.DoBuild.future(request("/nix/store/busybox sleep 3; echo > /nix/store/x-out",
                                            b"blocker"), timeout=120)
    time.sleep(0.7)
    second = []
    t2 = threading.Thread(target=lambda: second.extend(events.Build(
        request("echo 2 > /nix/store/x-out", b"q2"), timeout=120)))
    t2.start()
    time.sleep(0.5)
    third = list(events.Build(request("echo 3 > /nix/store/x-out", b"q3"), timeout=120))
    t2.join()
    blocker.result()
    pos2 = [e.queued.position for e in second if e.HasField("queued")]
    pos3 = [e.queued.position for e in third if e.HasField("queued")]
    assert pos2 == [0], pos2
    assert pos3 == [1, 0], pos3
    assert kinds(third)[-1] == "completed" and kinds(second)[-1] == "completed"
    assert kinds(third).index("started") > kinds(third).index("queued")


def test_failure():
    evs = list(events.Build(request("echo the-tail; exit 3", b"fail"), timeout=120))
    assert kinds(evs)[-1] == "failed", kinds(evs)
    f = evs[-1].failed
    assert f.code == SC.INTERNAL.value[0], f
    assert "status 3" in f.message, f.message
    assert b"the-tail" in f.log_tail, f.log_tail


def leftovers():
    return [b for b in os.listdir(BUNDLES) if not b.startswith(".")]


def test_cancel():
    it = events.Build(request("echo started; /nix/store/busybox sleep 60", b"cancel"), timeout=120)
    for e in it:
        if e.HasField("log"):
            break
    it.cancel()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and leftovers():
        time.sleep(0.2)
    assert not leftovers(), leftovers()


def test_bad_request():
    bad = request("true", b"bad")
    bad.working_dir = "/abs"
    try:
        list(events.Build(bad, timeout=60))
    except grpc.RpcError as e:
        assert e.code() == SC.INVALID_ARGUMENT and "invalid working_dir" in e.details(), e
        return
    raise AssertionError("a bad request streamed events")


class OnlyDoBuild(rpc_build_pb2_grpc.BuildServiceServicer):
    """A tvix.build.v1 server without kiln's events (as upstream is)."""

    def DoBuild(self, req, context):
        return build_pb2.Build(build_request=req, outputs=[castore_pb2.Node(
            file=castore_pb2.FileNode(name=b"x-out", digest=b"\x07" * 32, size=5))],
            outputs_needles=[build_pb2.Build.OutputNeedles()])


def test_fallback_to_dobuild():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc_build_pb2_grpc.add_BuildServiceServicer_to_server(OnlyDoBuild(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        req = os.path.join(WORK, "fallback.json")
        with open(req, "w") as f:
            f.write(json.dumps({"inputs": [], "commandArgs": ["/bin/true"], "workingDir": "build",
                                "scratchPaths": ["build"], "inputsDir": "nix/store",
                                "outputs": ["x-out"],
                                "constraints": {"system": "x86_64-linux"}}))
        p = subprocess.run([KILN, "build", "--json", "--build-service-addr",
                            "grpc+http://127.0.0.1:%d" % port, req], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        out = p.stdout.decode().splitlines()
        last = json.loads(out[-1])
        assert last["completed"]["build"]["outputs"][0]["file"]["name"] == "eC1vdXQ=", out
    finally:
        server.stop(0)


for name, fn in list(globals().items()):
    if name.startswith("test_") and callable(fn):
        print("==", name, flush=True)
        fn()
print("ok")
