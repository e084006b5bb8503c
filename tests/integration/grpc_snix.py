#!/usr/bin/python3
"""Snix clients: the same daemon answers snix.castore.v1 and snix.build.v1
(Python grpcio stubs generated now from proto/snix) beside tvix.*, over the
same store: what one package name puts the other reads, and a build through
snix.build.v1 answers Snix's BuildResponse with the outputs and needles that
tvix.build.v1 puts in its Build.

usage: grpc_snix.py TARGET PROTO_ROOT WORKDIR
"""
import os
import sys

TARGET, PROTO_ROOT, WORK = sys.argv[1:4]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)

import grpc  # noqa: E402
from kiln_health import health_pb2, health_pb2_grpc  # noqa: E402
from snix.build.protos import build_pb2 as sbuild, rpc_build_pb2_grpc as sbuild_grpc  # noqa: E402
from snix.castore.protos import castore_pb2 as scas  # noqa: E402
from snix.castore.protos import rpc_blobstore_pb2 as sblob, rpc_blobstore_pb2_grpc as sblob_grpc  # noqa: E402
from snix.castore.protos import rpc_directory_pb2 as sdir, rpc_directory_pb2_grpc as sdir_grpc  # noqa: E402
from tvix.build.protos import build_pb2 as tbuild, rpc_build_pb2_grpc as tbuild_grpc  # noqa: E402
from tvix.castore.protos import castore_pb2 as tcas  # noqa: E402
from tvix.castore.protos import rpc_blobstore_pb2 as tblob, rpc_blobstore_pb2_grpc as tblob_grpc  # noqa: E402
from tvix.castore.protos import rpc_directory_pb2 as tdir, rpc_directory_pb2_grpc as tdir_grpc  # noqa: E402

SC = grpc.StatusCode
b3 = kiln_stubs.b3
channel = grpc.insecure_channel(TARGET)
T = 120


def expect(fn, code, contains=""):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details())
        assert contains in (e.details() or ""), "%r not in %r" % (contains, e.details())
        return e.details()
    raise AssertionError("expected %s, the call succeeded" % code)


def test_health():
    health = health_pb2_grpc.HealthStub(channel)
    for svc in ["snix.castore.v1.BlobService", "snix.castore.v1.DirectoryService",
                "snix.build.v1.BuildService"]:
        r = health.Check(health_pb2.HealthCheckRequest(service=svc), timeout=T)
        assert r.status == health_pb2.HealthCheckResponse.SERVING, svc
    expect(lambda: channel.unary_unary("/snix.castore.v1.BlobService/Nope")(b"", timeout=30),
           SC.UNIMPLEMENTED)


def test_castore():
    sb, tb = sblob_grpc.BlobServiceStub(channel), tblob_grpc.BlobServiceStub(channel)
    data = os.urandom(3 * 1024 * 1024 + 5)
    d = sb.Put(iter([sblob.BlobChunk(data=data[:1000]), sblob.BlobChunk(data=data[1000:])]),
               timeout=T).digest
    assert d == b3(data)
    tb.Stat(tblob.StatBlobRequest(digest=d), timeout=T)
    for stub, req in [(sb, sblob.ReadBlobRequest(digest=d)), (tb, tblob.ReadBlobRequest(digest=d))]:
        assert b"".join(m.data for m in stub.Read(req, timeout=T)) == data
    expect(lambda: sb.Stat(sblob.StatBlobRequest(digest=b"short"), timeout=T),
           SC.INVALID_ARGUMENT, "invalid digest length")

    sd, td = sdir_grpc.DirectoryServiceStub(channel), tdir_grpc.DirectoryServiceStub(channel)
    leaf = scas.Directory(files=[scas.FileEntry(name=b"f", digest=d, size=len(data))])
    leaf_digest = b3(leaf.SerializeToString())
    root = scas.Directory(directories=[scas.DirectoryEntry(
        name=b"sub", digest=leaf_digest, size=2)])  # 2 x entries + child sizes
    root_digest = sd.Put(iter([leaf, root]), timeout=T).root_digest
    assert root_digest == b3(root.SerializeToString())
    got = list(td.Get(tdir.GetDirectoryRequest(digest=root_digest, recursive=True), timeout=T))
    assert [g.SerializeToString() for g in got] == [root.SerializeToString(),
                                                     leaf.SerializeToString()]
    got = list(sd.Get(sdir.GetDirectoryRequest(digest=leaf_digest), timeout=T))
    assert got == [leaf]
    # an incomplete closure is refused under either name
    orphan = scas.Directory(directories=[scas.DirectoryEntry(name=b"x", digest=b"\x01" * 32,
                                                             size=1)])
    expect(lambda: sd.Put(iter([orphan]), timeout=T), SC.INVALID_ARGUMENT)


def test_build():
    sb = sblob_grpc.BlobServiceStub(channel)
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    digest = sb.Put(iter([sblob.BlobChunk(data=busybox)]), timeout=T).digest
    script = ("echo hello > /nix/store/aaaa-out; ln -s /nix/store/busybox /nix/store/bbbb-link; "
              "mkdir /nix/store/cccc-dir; echo ref dddddddd > /nix/store/cccc-dir/f")
    outputs = ["nix/store/aaaa-out", "nix/store/bbbb-link", "nix/store/cccc-dir"]
    needles = ["busybox", "dddddddd", "hello", "nothere"]

    def request(mod, cas, env):
        return mod.BuildRequest(
            inputs=[cas(file=(scas.FileEntry if cas is scas.Entry else tcas.FileNode)(
                name=b"busybox", digest=digest, size=len(busybox), executable=True))],
            command_args=["/nix/store/busybox", "sh", "-c", script], working_dir="build",
            scratch_paths=["build", "nix/store"], inputs_dir="nix/store", outputs=outputs,
            refscan_needles=needles,
            environment_vars=[mod.BuildRequest.EnvVar(key="PATH", value=b"/bin"),
                              mod.BuildRequest.EnvVar(key="WHO", value=env)],
            constraints=mod.BuildRequest.BuildConstraints(system="x86_64-linux"))

    # Distinct requests (WHO), so each really builds rather than hitting the cache.
    sresp = sbuild_grpc.BuildServiceStub(channel).DoBuild(request(sbuild, scas.Entry, b"snix"),
                                                          timeout=T)
    tresp = tbuild_grpc.BuildServiceStub(channel).DoBuild(request(tbuild, tcas.Node, b"tvix"),
                                                          timeout=T)
    assert isinstance(sresp, sbuild.BuildResponse)
    kinds = [o.output.WhichOneof("entry") for o in sresp.outputs]
    assert kinds == ["file", "symlink", "directory"], kinds
    assert [o.output.SerializeToString() for o in sresp.outputs] == \
        [o.SerializeToString() for o in tresp.outputs], "outputs differ between snix and tvix"
    assert [list(o.needles) for o in sresp.outputs] == \
        [list(n.needles) for n in tresp.outputs_needles] == [[2], [0], [1]]

    bad = request(sbuild, scas.Entry, b"x")
    bad.working_dir = "/abs"
    expect(lambda: sbuild_grpc.BuildServiceStub(channel).DoBuild(bad, timeout=T),
           SC.INVALID_ARGUMENT, "invalid working_dir")


for name, fn in sorted(globals().items()):
    if name.startswith("test_") and callable(fn):
        print("==", name, flush=True)
        fn()
print("ok")
