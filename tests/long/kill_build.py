"""kill -9 of the daemon while builds run (and one waits for a slot), on the
build service URL argv[1] (oci:// or sandbox://, with its own cgroup name).

Right after the kill, what the dead daemon left is recorded; once a new
daemon listens on the same bundle root there must be none of it: no mount
under the bundle root (/proc/self/mountinfo), no container in the runtime's
state, no bundle directory, no slot lock held, no build process, no cgroup;
and the next build works."""
import glob
import fcntl
import os
import subprocess
import sys
import threading
import time

from longlib import (SC, Daemon, T, b3, build_pb2, castore_pb2, grpc, log,  # noqa: F401
                     put_blob, rpc_blobstore_pb2_grpc, rpc_build_pb2_grpc, wait_for)

URL = sys.argv[1]
BUNDLES = URL.split("://", 1)[1].split("?")[0]
CGROUP = [kv.split("=")[1] for kv in URL.split("?")[1].split("&") if kv.startswith("cgroup=")][0]
CYCLES = int(os.environ.get("CYCLES", "3"))
MARK = "31415%d" % os.getpid()   # the builds' `sleep` argument, to find them
BR = build_pb2.BuildRequest


def mounts():
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(BUNDLES + "/")]


def containers():
    out = []
    for rt in ("runc", "crun"):
        root = os.path.join(BUNDLES, ".state", rt)
        if os.path.isdir(root):
            r = subprocess.run([rt, "--root", root, "list", "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            out += [rt + ":" + c for c in r.stdout.split()]
    return out


def bundles():
    if not os.path.isdir(BUNDLES):
        return []
    return sorted(e for e in os.listdir(BUNDLES) if e != ".state")


def held_locks():
    held = []
    for p in glob.glob(os.path.join(BUNDLES, ".state", "slot-*")):
        with open(p) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            except BlockingIOError:
                held.append(os.path.basename(p))
    return held


def procs():
    r = subprocess.run(["pgrep", "-f", "sleep " + MARK], stdout=subprocess.PIPE, text=True)
    return r.stdout.split()


def cgroups():
    return [p for p in glob.glob("/sys/fs/cgroup/**/%s/*" % CGROUP, recursive=True)
            if os.path.isdir(p)]


def leftovers():
    return dict(mounts=mounts(), containers=containers(), bundles=bundles(),
                locks=held_locks(), procs=procs(), cgroups=cgroups())


with open("/bin/busybox", "rb") as f:
    BUSYBOX = f.read()


def request(script, out="nix/store/x"):
    node = castore_pb2.Node(file=castore_pb2.FileNode(
        name=b"busybox", digest=b3(BUSYBOX), size=len(BUSYBOX), executable=True))
    return BR(inputs=[node], command_args=["/nix/store/busybox", "sh", "-c", script],
              working_dir="build", scratch_paths=["build", "nix/store"], inputs_dir="nix/store",
              outputs=[out], environment_vars=[BR.EnvVar(key="PATH", value=b"/bin")],
              constraints=BR.BuildConstraints(system="x86_64-linux"))


d = Daemon(os.path.join(T, "build.sock"), ["--build-service-addr", URL], name="buildd")
seen = {k: 0 for k in leftovers()}
t0 = time.monotonic()
for cyc in range(CYCLES):
    d.start()
    with d.channel() as ch:
        assert put_blob(rpc_blobstore_pb2_grpc.BlobServiceStub(ch), BUSYBOX) == b3(BUSYBOX)
    ch = d.channel()
    stub = rpc_build_pb2_grpc.BuildServiceStub(ch)
    results = []

    def one(i):
        try:
            stub.DoBuild(request("/nix/store/busybox sleep %s; echo %d > /nix/store/x" %
                                 (MARK, i)), timeout=120)
            results.append("ok")
        except grpc.RpcError as e:
            results.append(e.code())
    # concurrency 2: two run, the third waits for a slot
    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(procs()) >= 2, 60, "two builds running")
    time.sleep(0.3)
    d.kill9()
    for t in threads:
        t.join(60)
    ch.close()
    assert results and all(r != "ok" for r in results), results
    left = leftovers()
    for k, v in left.items():
        seen[k] += len(v)
    # (sandbox:// builds die with the daemon, PR_SET_PDEATHSIG; an OCI
    # runtime's containers live on until the next daemon removes them)
    d.start()
    try:
        wait_for(lambda: not any(leftovers().values()), 10, "no leftovers")
    except AssertionError:
        raise AssertionError("after a restart: %s (dead daemon left %s)" % (leftovers(), left))
    with d.channel() as ch:
        b = rpc_build_pb2_grpc.BuildServiceStub(ch).DoBuild(
            request("echo next > /nix/store/x"), timeout=120)
        assert b.outputs[0].file.size == 5, b
    assert d.stop() == 0, d.stderr()
    assert not any(leftovers().values()), leftovers()
    log("cycle %d: killed with 2 builds running and 1 waiting; the dead daemon left %s; "
        "after the restart nothing, and the next build works" %
        (cyc + 1, {k: len(v) for k, v in left.items() if v}))
log("RESULT kill_build %s: %d kills with builds running; left by the dead daemons: %s; "
    "after each restart 0 mounts, containers, bundles, slot locks, processes, cgroups; "
    "next build OK; %.0f s" % (URL.split(":")[0], CYCLES, seen, time.monotonic() - t0))
