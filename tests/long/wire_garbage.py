"""Garbage on the wire: random, truncated and mutated messages to every
method of a running daemon, as raw bytes (grpcio with identity
serializers), plus raw HTTP/2-level garbage on its socket.

Each call must end with a proper status (never UNAVAILABLE: that would be a
dead or disconnected daemon), the daemon must stay alive and keep serving
correct requests, and its RSS afterwards stays within 2x of before."""
import os
import random
import socket
import sys
import time

from longlib import (Daemon, SC, T, b3, build_pb2, castore_pb2, grpc, log, put_blob,  # noqa: F401
                     read_blob, rpc_blobstore_pb2, rpc_blobstore_pb2_grpc,
                     rpc_directory_pb2, rpc_directory_pb2_grpc)

N = int(os.environ.get("N", "2400"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
rng = random.Random(SEED)
log("seed", SEED)

sock = os.path.join(T, "garbage.sock")
d = Daemon(sock, ["--blob-service-addr", "memory://", "--directory-service-addr", "memory://",
                  "--build-service-addr", sys.argv[1], "--action-cache", "memory://",
                  "--serve-action-cache"], name="garbaged").start()
ch = d.channel()
ident = dict(request_serializer=None, response_deserializer=None)
M = {
    "stat": ch.unary_unary("/tvix.castore.v1.BlobService/Stat", **ident),
    "read": ch.unary_stream("/tvix.castore.v1.BlobService/Read", **ident),
    "put": ch.stream_unary("/tvix.castore.v1.BlobService/Put", **ident),
    "dget": ch.unary_stream("/tvix.castore.v1.DirectoryService/Get", **ident),
    "dput": ch.stream_unary("/tvix.castore.v1.DirectoryService/Put", **ident),
    "build": ch.unary_unary("/tvix.build.v1.BuildService/DoBuild", **ident),
    "health": ch.unary_unary("/grpc.health.v1.Health/Check", **ident),
    "watch": ch.unary_stream("/grpc.health.v1.Health/Watch", **ident),
    "events": ch.unary_stream("/kiln.build.v1.BuildEvents/Build", **ident),
    "acget": ch.unary_unary("/kiln.build.v1.ActionCache/Get", **ident),
    "acput": ch.unary_unary("/kiln.build.v1.ActionCache/Put", **ident),
}

# valid building blocks, then mutated
GOOD_BLOB = b"garbage test blob"
GOOD_DIGEST = b3(GOOD_BLOB)
with d.channel() as c2:
    assert put_blob(rpc_blobstore_pb2_grpc.BlobServiceStub(c2), GOOD_BLOB) == GOOD_DIGEST


def fnode(name, digest=GOOD_DIGEST, size=len(GOOD_BLOB)):
    return castore_pb2.FileNode(name=name, digest=digest, size=size)


def valid_dir():
    return castore_pb2.Directory(files=[fnode(b"a"), fnode(b"b")],
                                 symlinks=[castore_pb2.SymlinkNode(name=b"l", target=b"a")])


def bad_dirs():
    """Directories that must be refused."""
    yield castore_pb2.Directory(files=[fnode(b"a\x00b")])
    yield castore_pb2.Directory(files=[fnode(b"a/b")])
    yield castore_pb2.Directory(files=[fnode(b"..")])
    yield castore_pb2.Directory(files=[fnode(b".")])
    yield castore_pb2.Directory(files=[fnode(b"")])
    yield castore_pb2.Directory(files=[fnode(b"b"), fnode(b"a")])  # unsorted
    yield castore_pb2.Directory(files=[fnode(b"a"), fnode(b"a")])  # duplicate
    yield castore_pb2.Directory(files=[fnode(b"a", digest=b"short")])
    yield castore_pb2.Directory(directories=[castore_pb2.DirectoryNode(
        name=b"x", digest=os.urandom(32), size=1)])  # dangling child
    yield castore_pb2.Directory(symlinks=[castore_pb2.SymlinkNode(name=b"l", target=b"")])


def wide_dir(n):
    return castore_pb2.Directory(files=[fnode(b"f%07d" % i) for i in range(n)])


def req_valid(kind):
    if kind == "stat":
        return rpc_blobstore_pb2.StatBlobRequest(digest=GOOD_DIGEST).SerializeToString()
    if kind in ("read",):
        return rpc_blobstore_pb2.ReadBlobRequest(digest=GOOD_DIGEST).SerializeToString()
    if kind == "dget":
        return rpc_directory_pb2.GetDirectoryRequest(digest=os.urandom(32),
                                                     recursive=True).SerializeToString()
    if kind in ("put",):
        return rpc_blobstore_pb2.BlobChunk(data=os.urandom(100)).SerializeToString()
    if kind == "dput":
        return valid_dir().SerializeToString()
    if kind == "acget":  # GetActionRequest {identity}
        return b"\x0a\x20" + os.urandom(32)
    if kind == "acput":  # PutActionRequest {identity, build {outputs: [a file]}}
        out = build_pb2.Build(outputs=[castore_pb2.Node(file=fnode(b"x"))]).SerializeToString()
        return b"\x0a\x20" + os.urandom(32) + b"\x12" + varint(len(out)) + out
    if kind in ("build", "events"):
        node = castore_pb2.Node(file=fnode(b"busybox"))
        BR = build_pb2.BuildRequest
        return BR(inputs=[node], command_args=["/nix/store/busybox", "true"],
                  working_dir="build", scratch_paths=["build", "nix/store"],
                  inputs_dir="nix/store", outputs=["nix/store/x"],
                  constraints=BR.BuildConstraints(system="x86_64-linux")).SerializeToString()
    return b""  # health: an empty HealthCheckRequest


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def mutate(b):
    """One of: random bytes, truncation, bit flips, inserted huge length
    prefixes, repeated fields, unknown fields."""
    k = rng.randrange(8)
    if k == 0 or not b:
        return os.urandom(rng.randrange(0, 300))
    if k == 1:
        return b[:rng.randrange(len(b))]
    if k == 2:
        a = bytearray(b)
        for _ in range(rng.randrange(1, 6)):
            a[rng.randrange(len(a))] ^= 1 << rng.randrange(8)
        return bytes(a)
    if k == 3:  # a length-delimited field claiming a huge length
        return b + bytes([rng.choice([0x0A, 0x12, 0x1A, 0x22])]) + varint(rng.choice(
            [2**31, 2**32 - 1, 2**63, 2**64 - 1, 10**9])) + b"xx"
    if k == 4:  # an over-long varint
        return b + b"\x08" + b"\xff" * rng.randrange(10, 40)
    if k == 5:  # unknown fields of every wire type
        return b + b"\xf8\x07\x01" + b"\xfd\x07abcd" + b"\xf9\x07abcdefgh" + b"\xfa\x07\x03abc"
    if k == 6:  # start/end group wire types
        return b + bytes([rng.choice([0x0B, 0x0C, 0x13, 0x14])])
    return b * rng.randrange(2, 5)


codes = {}
OK_CODES = {SC.OK, SC.INVALID_ARGUMENT, SC.NOT_FOUND, SC.FAILED_PRECONDITION, SC.INTERNAL,
            SC.RESOURCE_EXHAUSTED, SC.UNIMPLEMENTED, SC.OUT_OF_RANGE, SC.DEADLINE_EXCEEDED}


def call(kind, msgs, timeout=20):
    try:
        if kind in ("put", "dput"):
            M[kind](iter(msgs), timeout=timeout)
        elif kind in ("read", "dget", "watch", "events"):
            for i, _ in enumerate(M[kind](msgs[0], timeout=timeout if kind != "watch" else 0.5)):
                if i > 10000:
                    break
        else:
            M[kind](msgs[0], timeout=timeout)
        code = SC.OK
    except grpc.RpcError as e:
        code = e.code()
        if kind == "watch" and code == SC.DEADLINE_EXCEEDED:
            code = SC.OK  # Watch streams until the deadline
        assert "\n" not in (e.details() or ""), e.details()
    assert code in OK_CODES, "%s answered %s" % (kind, code)
    assert d.alive(), "the daemon died on %s: %s" % (kind, d.stderr())
    codes[(kind, code.name)] = codes.get((kind, code.name), 0) + 1
    return code


def alive_check():
    with d.channel() as c2:
        s = rpc_blobstore_pb2_grpc.BlobServiceStub(c2)
        payload = os.urandom(rng.randrange(1, 200000))
        dg = put_blob(s, payload)
        assert dg == b3(payload) and read_blob(s, dg) == payload
        dirs = rpc_directory_pb2_grpc.DirectoryServiceStub(c2)
        vd = valid_dir()
        root = dirs.Put(iter([vd]), timeout=20).root_digest
        assert root == b3(vd.SerializeToString(deterministic=True))
        got = list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=root), timeout=20))
        assert got == [vd], got


alive_check()
time.sleep(0.5)
rss_start = d.status("VmRSS")
t0 = time.monotonic()
n = 0
# 1. the specials: bad directories, a 100,000-entry one, deep chains,
#    huge Stat digests, a Put of many empty messages
for bd in bad_dirs():
    assert call("dput", [bd.SerializeToString()]) == SC.INVALID_ARGUMENT, bd
    n += 1
    assert call("dput", [valid_dir().SerializeToString(), bd.SerializeToString()]) == \
        SC.INVALID_ARGUMENT
    n += 1
wide = wide_dir(100_000).SerializeToString()
log("100,000-entry Directory: %d bytes" % len(wide))
call("dput", [wide])
n += 1
call("dput", [wide_dir(100_000).SerializeToString()[:-7]])
n += 1
# a chain 3000 deep, each naming its child by the right digest
chain, prev = [], None
for i in range(3000):
    dd = castore_pb2.Directory()
    if prev is None:
        dd.files.append(fnode(b"leaf"))
    else:
        raw = prev.SerializeToString(deterministic=True)
        dd.directories.append(castore_pb2.DirectoryNode(name=b"d", digest=b"\0" * 32,
                                                        size=i))
    chain.append(dd)
    prev = dd
# digests by one b3sum run
raws = []
for i in range(len(chain)):
    if i:
        chain[i].directories[0].digest = b3(raws[-1]) if i < 40 else chain[i].directories[0].digest
    raws.append(chain[i].SerializeToString(deterministic=True))
code = call("dput", raws[:40])  # a 40-deep chain
log("40-deep chain:", code)
n += 1
call("dput", raws)  # 3000 deep with wrong digests past 40
n += 1
call("stat", [rpc_blobstore_pb2.StatBlobRequest(digest=b"x" * 100000).SerializeToString()])
n += 1
call("put", [b""] * 5000)
n += 1
call("put", [rpc_blobstore_pb2.BlobChunk(data=b"").SerializeToString()] * 3000)
n += 1

# the baseline: what the specials left (memory:// now holds the accepted
# 100,000-entry Directory, about 40 MB with its index); growth past it over
# the bulk would be a leak
alive_check()
time.sleep(0.5)
rss0 = d.status("VmRSS")
log("VmRSS %d kB at the start, %d kB after the special messages" % (rss_start, rss0))

# 2. the bulk: random and mutated messages to every method
kinds = list(M)
while n < N:
    kind = kinds[n % len(kinds)]
    base = req_valid(kind)
    if kind in ("put", "dput"):
        msgs = [mutate(base) if rng.random() < 0.7 else base
                for _ in range(rng.randrange(1, 6))]
    else:
        msgs = [mutate(base)]
    call(kind, msgs, timeout=30 if kind in ("build", "events") else 20)
    n += 1
    if n % 500 == 0:
        alive_check()
        log("%d calls, RSS %d kB" % (n, d.status("VmRSS")))

# 3. raw HTTP/2 garbage on the socket: no preface, a bad preface, a valid
#    preface followed by random frames, huge frame lengths, abrupt closes
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
raw_n = 0
for i in range(300):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(sock)
    k = i % 5
    try:
        if k == 0:
            s.sendall(os.urandom(rng.randrange(1, 4096)))
        elif k == 1:
            s.sendall(PREFACE[:rng.randrange(len(PREFACE))] + os.urandom(64))
        elif k == 2:
            s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + os.urandom(
                rng.randrange(1, 2048)))
        elif k == 3:  # frames claiming 16 MiB, a HEADERS frame of junk
            s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
                      b"\xff\xff\xff\x01\x04\x00\x00\x00\x01" + os.urandom(1000))
        else:  # SETTINGS, then HEADERS with random HPACK, then DATA for it
            hdr = os.urandom(rng.randrange(1, 200))
            s.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
                      len(hdr).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + hdr +
                      b"\x00\x00\x05\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00")
        try:
            s.recv(65536)
        except (socket.timeout, ConnectionError):
            pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    raw_n += 1
    assert d.alive(), "the daemon died on raw garbage: %s" % d.stderr()

alive_check()
time.sleep(1)
rss1 = d.status("VmRSS")
hwm = d.status("VmHWM")
ch.close()
assert d.stop() == 0, d.stderr()
summary = ", ".join("%s %s: %d" % (k[0], k[1], v) for k, v in sorted(codes.items()))
log("answers:", summary)
log("RESULT wire_garbage: %d gRPC calls with random/truncated/mutated messages to %d methods "
    "(incl. a 100,000-entry Directory, a 3000-deep chain, names with NUL, '/', '..'), %d raw "
    "HTTP/2 garbage connections: every call answered with a status, daemon alive and serving; "
    "VmRSS %d kB at the start, %d kB after the special messages, %d kB at the end (x%.2f), "
    "VmHWM %d kB; %.0f s" %
    (n, len(M), raw_n, rss_start, rss0, rss1, rss1 / rss0, hwm, time.monotonic() - t0))
assert rss1 <= 2 * rss0, "RSS grew from %d to %d kB" % (rss0, rss1)
