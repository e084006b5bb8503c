"""200 DoBuild calls submitted at once to a daemon whose build service runs
2 at a time (argv[1], concurrency=2): all complete OK, they start in the
order they arrived (FIFO, within the concurrency: each build's start
timestamp is its output), the daemon's peak RSS (VmHWM) is reported and its
descriptor count returns to where it started."""
import os
import sys
import time

from longlib import (Daemon, SC, T, b3, build_pb2, castore_pb2, grpc, log,  # noqa: F401
                     put_blob, read_blob, rpc_blobstore_pb2_grpc, rpc_build_pb2_grpc, wait_for)

URL = sys.argv[1]
N = int(os.environ.get("N", "200"))
CONC = 2
# between two submissions: long enough for the daemon to take a call into
# its queue before the next one arrives (a call runs on a thread of its own,
# so calls arriving within microseconds may enter the queue in either order),
# far shorter than a build, so the queue still fills up
SPACING = float(os.environ.get("SPACING", "0.01"))
BR = build_pb2.BuildRequest
with open("/bin/busybox", "rb") as f:
    BUSYBOX = f.read()
NODE = castore_pb2.Node(file=castore_pb2.FileNode(name=b"busybox", digest=b3(BUSYBOX),
                                                  size=len(BUSYBOX), executable=True))


def request(i):
    # the build's number in its script: no two requests are the same
    script = ("read up idle < /proc/uptime; echo %d $up > /nix/store/t; "
              "/nix/store/busybox sleep 0.05" % i)
    return BR(inputs=[NODE], command_args=["/nix/store/busybox", "sh", "-c", script],
              working_dir="build", scratch_paths=["build", "nix/store"], inputs_dir="nix/store",
              outputs=["nix/store/t"], constraints=BR.BuildConstraints(system="x86_64-linux"))


d = Daemon(os.path.join(T, "load.sock"), ["--build-service-addr", URL], name="loadd").start()
ch = d.channel()
blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
builds = rpc_build_pb2_grpc.BuildServiceStub(ch)
assert put_blob(blobs, BUSYBOX) == b3(BUSYBOX)
builds.DoBuild(request(-1), timeout=120)  # warm-up
time.sleep(0.5)
fd0, rss0 = d.fds(), d.status("VmRSS")

t0 = time.monotonic()
futs = []
for i in range(N):
    futs.append(builds.DoBuild.future(request(i), timeout=900))
    time.sleep(SPACING)  # so that the arrival order is the submission order
submitted = time.monotonic() - t0
peak_fds = 0
while not all(f.done() for f in futs) and time.monotonic() - t0 < 900:
    peak_fds = max(peak_fds, d.fds())
    time.sleep(0.2)
starts = []
for i, f in enumerate(futs):
    b = f.result()  # raises on a failed build
    out = read_blob(blobs, b.outputs[0].file.digest).split()
    assert int(out[0]) == i, out
    starts.append((float(out[1]), i))
elapsed = time.monotonic() - t0
order = [i for _, i in sorted(starts)]
# FIFO within the concurrency: the slots are granted in arrival order, so a
# build starts at most CONC-1 places from its arrival place, give or take
# the time from its grant to its script's first line (bundle, FUSE mount,
# sandbox start: on a busy machine one such setup can outlast a short build),
# hence a tolerance of 2 more places; a queue out of order would show
# displacements of the queue's length. (uptime has 10 ms resolution: ties
# are sorted by arrival.)
displacement = max(abs(pos - i) for pos, i in enumerate(order))
inversions = sum(1 for a, b in zip(order, order[1:]) if a > b)
ch.close()
time.sleep(1)
fd1 = d.fds()
rss1, hwm = d.status("VmRSS"), d.status("VmHWM")
assert d.stop() == 0, d.stderr()
log("RESULT load_builds %s: %d DoBuild calls submitted in %.2f s, concurrency %d: all OK in "
    "%.1f s (%.1f builds/s); start order: max displacement %d, %d adjacent inversions; "
    "daemon fds %d before, peak %d, %d after; VmRSS %d kB before, %d kB after, VmHWM %d kB" %
    (URL.split(":")[0], N, submitted, CONC, elapsed, N / elapsed, displacement, inversions,
     fd0, peak_fds, fd1, rss0, rss1, hwm))
assert displacement <= CONC + 1, "not FIFO: %s" % order
assert fd1 <= fd0, "descriptors: %d before, %d after" % (fd0, fd1)
