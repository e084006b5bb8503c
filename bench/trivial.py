"""The trivial build of the build benchmarks: `: > /out/f` (or another
script) under /bin/sh, one small input, one output directory, told apart by
an environment variable. Import after kiln_stubs.generate()."""
from tvix.build.protos import build_pb2
from tvix.castore.protos import castore_pb2, rpc_blobstore_pb2, rpc_blobstore_pb2_grpc

DATA = b"a small input\n" * 64


def put_input(channel):
    """Puts the input blob through channel; returns its digest."""
    stub = rpc_blobstore_pb2_grpc.BlobServiceStub(channel)
    return stub.Put(iter([rpc_blobstore_pb2.BlobChunk(data=DATA)])).digest


def request(digest, salt, script=": > /out/f"):
    BR = build_pb2.BuildRequest
    return BR(inputs=[castore_pb2.Node(file=castore_pb2.FileNode(name=b"input", digest=digest,
                                                                size=len(DATA)))],
              command_args=["/bin/sh", "-c", script], working_dir="build",
              scratch_paths=["build", "out"], inputs_dir="inputs", outputs=["out"],
              environment_vars=[BR.EnvVar(key="SALT", value=salt.encode())],
              constraints=BR.BuildConstraints(system="x86_64-linux", provide_bin_sh=True))
