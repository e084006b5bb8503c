#!/usr/bin/python3
"""Builds through a running `kiln daemon` (OCI runner) driven by a third-party
client: Python grpcio with stubs generated now from kiln's .proto files.

usage: build_grpc.py TARGET PROTO_ROOT WORKDIR BUNDLE_ROOT
"""
import os
import subprocess
import sys
import threading
import time

TARGET, PROTO_ROOT, WORK, BUNDLES = sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)

import grpc  # noqa: E402
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc  # noqa: E402
from tvix.castore.protos import (castore_pb2, rpc_blobstore_pb2,  # noqa: E402
                                 rpc_blobstore_pb2_grpc)

SC = grpc.StatusCode
b3 = kiln_stubs.b3
channel = grpc.insecure_channel(TARGET)
blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(channel)
builds = rpc_build_pb2_grpc.BuildServiceStub(channel)
BR = build_pb2.BuildRequest

with open("/bin/busybox", "rb") as f:
    BUSYBOX = f.read()
BB_DIGEST = blobs.Put(iter([rpc_blobstore_pb2.BlobChunk(data=BUSYBOX)]), timeout=60).digest
assert BB_DIGEST == b3(BUSYBOX)
BB = castore_pb2.Node(file=castore_pb2.FileNode(name=b"busybox", digest=BB_DIGEST,
                                                size=len(BUSYBOX), executable=True))


def request(script, outputs, needles=(), constraints=None, **kw):
    """A Nix-shaped request running `script` with busybox at /nix/store/busybox."""
    fields = dict(inputs=[BB], command_args=["/nix/store/busybox", "sh", "-c", script],
                  working_dir="build", scratch_paths=["build", "nix/store"],
                  inputs_dir="nix/store", outputs=sorted(outputs), refscan_needles=list(needles),
                  environment_vars=[BR.EnvVar(key="PATH", value=b"/bin")],
                  constraints=constraints or BR.BuildConstraints(system="x86_64-linux"))
    fields.update(kw)
    return BR(**fields)


def expect(fn, code, contains):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details())
        assert contains in e.details(), "%r not in %r" % (contains, e.details())
        return
    raise AssertionError("expected %s, the call succeeded" % code)


def read_blob(digest):
    return b"".join(m.data for m in blobs.Read(rpc_blobstore_pb2.ReadBlobRequest(digest=digest),
                                                timeout=60))


def leftovers():
    """What builds left in the bundle root; the service's inputs view
    (.view-*, a FUSE mount) lives as long as the daemon, which the caller
    checks is gone once it stops."""
    bundles = sorted(os.listdir(BUNDLES))
    state = os.listdir(os.path.join(BUNDLES, ".state", "runc"))
    with open("/proc/mounts") as f:
        mounts = [l for l in f if BUNDLES in l and "/.view-" not in l]
    return [b for b in bundles if b != ".state" and not b.startswith(".view-")], state, mounts


def test_success():
    req = request("echo hello > /nix/store/aaaa-out; "
                  "ln -s /nix/store/busybox /nix/store/bbbb-link; "
                  "mkdir /nix/store/cccc-dir; echo ref dddddddd > /nix/store/cccc-dir/f",
                  ["nix/store/aaaa-out", "nix/store/bbbb-link", "nix/store/cccc-dir"],
                  needles=["busybox", "dddddddd", "hello", "nothere"])
    b = builds.DoBuild(req, timeout=120)
    assert b.build_request == req, "echo differs"
    names = [o.WhichOneof("node") for o in b.outputs]
    assert names == ["file", "symlink", "directory"], names
    f = b.outputs[0].file
    assert f.name == b"aaaa-out" and f.size == 6 and f.digest == b3(b"hello\n"), f
    assert read_blob(f.digest) == b"hello\n"
    assert b.outputs[1].symlink.target == b"/nix/store/busybox"
    assert b.outputs[2].directory.name == b"cccc-dir"
    needles = [list(n.needles) for n in b.outputs_needles]
    assert needles == [[2], [0], [1]], needles


def test_errors():
    expect(lambda: builds.DoBuild(request("true", ["nix/store/x"], working_dir="/abs"),
                                  timeout=60), SC.INVALID_ARGUMENT, "invalid working_dir")
    bad = request("true", ["nix/store/x"])
    bad.environment_vars.append(BR.EnvVar(key="X", value=b"\xff"))
    expect(lambda: builds.DoBuild(bad, timeout=60), SC.INVALID_ARGUMENT, "not valid UTF-8")
    expect(lambda: builds.DoBuild(request("true", ["nix/store/x"],
                                          constraints=BR.BuildConstraints(system="riscv64-linux")),
                                  timeout=60), SC.FAILED_PRECONDITION, "riscv64-linux")
    expect(lambda: builds.DoBuild(request("echo out-tail; echo err-tail >&2; exit 7",
                                          ["nix/store/x"]), timeout=60),
           SC.INTERNAL, "exited with status 7")
    expect(lambda: builds.DoBuild(request("true", ["nix/store/x"]), timeout=60),
           SC.INTERNAL, "output nix/store/x was not produced")


def test_deadline_and_cancel():
    t0 = time.monotonic()
    expect(lambda: builds.DoBuild(request("sleep 60", ["nix/store/x"]), timeout=2),
           SC.DEADLINE_EXCEEDED, "")
    fut = builds.DoBuild.future(request("sleep 60", ["nix/store/x"]), timeout=60)
    time.sleep(1.5)
    fut.cancel()
    # the daemon kills the container and cleans up promptly
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(leftovers()):
        time.sleep(0.2)
    assert not any(leftovers()), "left behind: %s" % (leftovers(),)
    assert time.monotonic() - t0 < 30


def test_concurrent():
    """The daemon runs with concurrency=1: builds wait in order, never overlap.
    The requests differ (an environment variable), or the daemon would run
    them as one build."""
    script = ("cut -d' ' -f1 /proc/uptime > /nix/store/t; sleep 0.5; "
              "cut -d' ' -f1 /proc/uptime >> /nix/store/t")
    results = []

    def one(i):
        env = [BR.EnvVar(key="I", value=b"%d" % i), BR.EnvVar(key="PATH", value=b"/bin")]
        b = builds.DoBuild(request(script.replace("cut", "/nix/store/busybox cut")
                                   .replace("sleep", "/nix/store/busybox sleep"),
                                   ["nix/store/t"], environment_vars=env), timeout=120)
        results.append([float(x) for x in read_blob(b.outputs[0].file.digest).split()])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3, results
    iv = sorted(results)
    assert all(a[1] <= b[0] for a, b in zip(iv, iv[1:])), iv


def test_hostile_builds():
    """Builds that leave processes behind or fill their scratch space do not
    harm the daemon: stragglers die with the build, the next build works."""
    b = builds.DoBuild(request("/nix/store/busybox sleep 1000 & /nix/store/busybox sleep 1001 & "
                               "echo done > /nix/store/x", ["nix/store/x"]), timeout=60)
    assert b.outputs[0].file.size == 5
    ps = subprocess.run(["pgrep", "-f", "sleep 100[01]"], stdout=subprocess.PIPE)
    assert ps.returncode == 1, "processes outlived their build: %r" % ps.stdout
    # the daemon gives each build 32 MiB of scratch space (scratch-size)
    expect(lambda: builds.DoBuild(request(
        "/nix/store/busybox dd if=/dev/zero of=/nix/store/x bs=1M count=64", ["nix/store/x"]),
        timeout=60), SC.INTERNAL, "No space left on device")
    b = builds.DoBuild(request("echo ok > /nix/store/x", ["nix/store/x"]), timeout=60)
    assert b.outputs[0].file.size == 3


for t in [test_success, test_errors, test_deadline_and_cancel, test_concurrent,
          test_hostile_builds]:
    t0 = time.monotonic()
    t()
    print("ok   %s (%.2f s)" % (t.__name__, time.monotonic() - t0), flush=True)
assert not any(leftovers()), "left behind: %s" % (leftovers(),)
channel.close()
print("all passed")
