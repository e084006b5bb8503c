#!/usr/bin/python3
"""Times N trivial builds through a running kiln daemon (Python grpcio, one
channel): `:` under /bin/sh with one small input and one tiny output (the
empty output directory), interleaved with the peers' commands given after
N (each a shell command, run through subprocess). Prints one line per round:
the kiln latency, then each peer's, in seconds.

usage: build_trivial.py TARGET PROTO_ROOT WORKDIR N [PEER_COMMAND...]"""
import os
import subprocess
import sys
import time

TARGET, PROTO_ROOT, WORK, N = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PEERS = sys.argv[5:]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)
import grpc  # noqa: E402
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc  # noqa: E402
from tvix.castore.protos import castore_pb2, rpc_blobstore_pb2, rpc_blobstore_pb2_grpc  # noqa

channel = grpc.insecure_channel(TARGET)
blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(channel)
builds = rpc_build_pb2_grpc.BuildServiceStub(channel)
data = b"a small input\n" * 64
digest = blobs.Put(iter([rpc_blobstore_pb2.BlobChunk(data=data)])).digest
BR = build_pb2.BuildRequest
req = BR(inputs=[castore_pb2.Node(file=castore_pb2.FileNode(name=b"input", digest=digest,
                                                            size=len(data)))],
         command_args=["/bin/sh", "-c", ":"], working_dir="build",
         scratch_paths=["build", "out"], inputs_dir="inputs", outputs=["out"],
         constraints=BR.BuildConstraints(system="x86_64-linux", provide_bin_sh=True))
builds.DoBuild(req, timeout=60)  # warm up
for i in range(N):
    t = time.monotonic()
    builds.DoBuild(req, timeout=60)
    times = [time.monotonic() - t]
    for peer in PEERS:
        t = time.monotonic()
        subprocess.run(peer.replace("@I@", str(i)), shell=True, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.monotonic() - t)
    print(" ".join("%.6f" % x for x in times), flush=True)
