"""Python stubs for kiln's protocols, generated at test time from the
project's own .proto files (protoc + Debian's grpc_python_plugin)."""
import os
import subprocess
import sys

PROTOS = [
    "tvix/castore/protos/castore.proto",
    "tvix/castore/protos/rpc_blobstore.proto",
    "tvix/castore/protos/rpc_directory.proto",
    "tvix/build/protos/build.proto",
    "tvix/build/protos/rpc_build.proto",
    # Snix's names for the same services (package snix.*, Node -> Entry)
    "snix/castore/protos/castore.proto",
    "snix/castore/protos/rpc_blobstore.proto",
    "snix/castore/protos/rpc_directory.proto",
    "snix/build/protos/build.proto",
    "snix/build/protos/rpc_build.proto",
    # kiln's own: builds with live events
    "kiln/build/v1/events.proto",
    "kiln/build/v1/action_cache.proto",
]
PLUGIN = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"


def generate(proto_root, work):
    """Generates the stubs under work/stubs and puts them on sys.path."""
    stubs = os.path.join(work, "stubs")
    os.makedirs(stubs, exist_ok=True)
    subprocess.run(["protoc", "-I", proto_root, "--python_out=" + stubs,
                    "--grpc_python_out=" + stubs, PLUGIN] + PROTOS, check=True)
    # grpc/health/v1/health.proto would generate a module path inside the grpc
    # package itself; generate it under another path (the proto package, and so
    # the method names, stay grpc.health.v1).
    health = os.path.join(work, "health-proto")
    os.makedirs(os.path.join(health, "kiln_health"), exist_ok=True)
    with open(os.path.join(proto_root, "grpc/health/v1/health.proto"), "rb") as src, \
            open(os.path.join(health, "kiln_health/health.proto"), "wb") as dst:
        dst.write(src.read())
    subprocess.run(["protoc", "-I", health, "--python_out=" + stubs, "--grpc_python_out=" + stubs,
                    PLUGIN, "kiln_health/health.proto"], check=True)
    sys.path.insert(0, stubs)


def b3(data):
    """BLAKE3 through the reference tool (b3sum)."""
    out = subprocess.run(["b3sum", "--no-names", "--raw"], input=data, stdout=subprocess.PIPE,
                         check=True).stdout
    assert len(out) == 32
    return out
