#!/usr/bin/python3
"""A third-party client (Python grpcio, stubs generated at test time from
kiln's own .proto files) calling every method of a running kiln daemon.

usage: grpc_client.py TARGET PROTO_ROOT WORKDIR
TARGET is a grpc target ("unix:/path" or "127.0.0.1:port"). Prints one line
per test and "N passed, N failed" at the end; exits non-zero on a failure.
"""
import os
import subprocess
import sys
import threading
import time
import traceback

TARGET, PROTO_ROOT, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)
STUBS = os.path.join(WORK, "stubs")

import grpc  # noqa: E402
from kiln_health import health_pb2, health_pb2_grpc  # noqa: E402
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc  # noqa: E402
from tvix.castore.protos import (castore_pb2, rpc_blobstore_pb2,  # noqa: E402
                                 rpc_blobstore_pb2_grpc, rpc_directory_pb2,
                                 rpc_directory_pb2_grpc)

SC = grpc.StatusCode
TIMEOUT = 60  # seconds for any one call
MiB = 1 << 20

channel = grpc.insecure_channel(TARGET, options=[("grpc.max_receive_message_length", 16 * MiB)])
blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(channel)
dirs = rpc_directory_pb2_grpc.DirectoryServiceStub(channel)
builds = rpc_build_pb2_grpc.BuildServiceStub(channel)
health = health_pb2_grpc.HealthStub(channel)


b3 = kiln_stubs.b3


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def expect_status(fn, code, contains=None):
    """fn() must fail with `code` (and a message containing `contains`)."""
    try:
        r = fn()
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
            list(r)
    except grpc.RpcError as e:
        check(e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details()))
        if contains:
            check(contains in (e.details() or ""),
                  "expected %r in the message, got %r" % (contains, e.details()))
        return e
    raise Fail("expected %s, the call succeeded" % code)


def chunks_of(data, sizes):
    """Splits data into messages of the given sizes (cycled), with an empty message first."""
    yield rpc_blobstore_pb2.BlobChunk(data=b"")
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield rpc_blobstore_pb2.BlobChunk(data=data[pos:pos + n])
        pos += n
        i += 1


def put_blob(data, sizes=(777777,)):
    return blobs.Put(chunks_of(data, sizes), timeout=TIMEOUT).digest


def read_blob(digest):
    parts = []
    for m in blobs.Read(rpc_blobstore_pb2.ReadBlobRequest(digest=digest), timeout=TIMEOUT):
        check(len(m.data) <= MiB, "message of %d bytes (more than 1 MiB)" % len(m.data))
        parts.append(m.data)
    return b"".join(parts)


# --- tests -----------------------------------------------------------------

def test_health():
    r = health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    check(r.status == health_pb2.HealthCheckResponse.SERVING, "not SERVING: %s" % r.status)
    r = health.Check(health_pb2.HealthCheckRequest(service="tvix.castore.v1.BlobService"),
                     timeout=TIMEOUT)
    check(r.status == health_pb2.HealthCheckResponse.SERVING, "BlobService not SERVING")
    expect_status(lambda: health.Check(health_pb2.HealthCheckRequest(service="no.Such"),
                                       timeout=TIMEOUT), SC.NOT_FOUND)


def test_unknown_method():
    for method in ["/tvix.castore.v1.BlobService/Nope", "/no.such.Service/Call",
                   "/grpc.health.v1.Health/Watch"]:
        t0 = time.monotonic()
        expect_status(lambda: channel.unary_unary(method)(b"", timeout=30), SC.UNIMPLEMENTED)
        dt = time.monotonic() - t0
        check(dt < 5, "%s took %.1f s to fail" % (method, dt))
    # a streaming call to an unknown method fails at once as well
    t0 = time.monotonic()
    expect_status(lambda: channel.stream_stream("/no.such.Service/Stream")(
        iter([b"x"]), timeout=30), SC.UNIMPLEMENTED)
    check(time.monotonic() - t0 < 5, "streaming unknown method slow")


def test_blobs():
    sizes_list = [(1,), (777777,), (3 * MiB + 5, 1, 65537), (4 * MiB,)]
    for size, sizes in [(0, (1,)), (1, (1,)), (5 * MiB + 1, (777777, 1, 3 * MiB + 5)),
                        (100 * MiB, (3 * MiB + 7, 1, 999999, 65536))]:
        data = os.urandom(size)
        want = b3(data)
        got = put_blob(data, sizes)
        check(got == want, "Put of %d bytes returned %s, want %s" % (size, got.hex(), want.hex()))
        st = blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=want), timeout=TIMEOUT)
        check(len(st.chunks) == 0, "Stat without send_chunks listed chunks")
        st = blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=want, send_chunks=True),
                        timeout=TIMEOUT)
        check(sum(c.size for c in st.chunks) in (0, size), "chunk sizes do not add up")
        back = read_blob(want)
        check(len(back) == size, "Read returned %d bytes, want %d" % (len(back), size))
        check(b3(back) == want, "Read data does not match the digest (size %d)" % size)
        del data, back
    del sizes_list
    # the same bytes again: deduplicated, same digest
    check(put_blob(b"Hello World!") == bytes.fromhex(
        "5ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c"), "HELLOWORLD")
    # the empty stream stores the empty blob
    d = blobs.Put(iter([]), timeout=TIMEOUT).digest
    check(d == bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
          "empty Put stream: %s" % d.hex())
    check(read_blob(d) == b"", "empty blob read")


def test_blob_not_found():
    absent = b"\x00" * 32
    expect_status(lambda: blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=absent),
                                     timeout=TIMEOUT),
                  SC.NOT_FOUND, "blob b3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= not found")
    expect_status(lambda: read_blob(absent), SC.NOT_FOUND, "not found")
    expect_status(lambda: blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=absent,
                                                                      send_chunks=True),
                                     timeout=TIMEOUT), SC.NOT_FOUND)


def test_malformed_digests():
    for bad in [b"", b"\x01" * 31, b"\x01" * 33]:
        expect_status(lambda: blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=bad),
                                         timeout=TIMEOUT),
                      SC.INVALID_ARGUMENT, "invalid digest length")
        expect_status(lambda: read_blob(bad), SC.INVALID_ARGUMENT, "invalid digest length")
        expect_status(lambda: list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=bad),
                                            timeout=TIMEOUT)),
                      SC.INVALID_ARGUMENT, "invalid digest length")
    expect_status(lambda: list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(), timeout=TIMEOUT)),
                  SC.INVALID_ARGUMENT, "invalid by_what")
    # bytes that are not a protobuf message at all
    raw = channel.unary_unary("/tvix.castore.v1.BlobService/Stat")
    expect_status(lambda: raw(b"\xff\xff\xff", timeout=TIMEOUT), SC.INVALID_ARGUMENT)
    raw_put = channel.stream_unary("/tvix.castore.v1.BlobService/Put")
    expect_status(lambda: raw_put(iter([b"\x0a\x05ab"]), timeout=TIMEOUT), SC.INVALID_ARGUMENT)


# the upstream fixture Directories
E = bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
D_A = castore_pb2.Directory()
D_WITH_KEEP = castore_pb2.Directory(files=[castore_pb2.FileNode(name=b".keep", digest=E)])
D_B = castore_pb2.Directory(directories=[castore_pb2.DirectoryNode(name=b"a", digest=E)])
D_C = castore_pb2.Directory(directories=[castore_pb2.DirectoryNode(name=b"a", digest=E),
                                         castore_pb2.DirectoryNode(name=b"a'", digest=E)])
DIG_B = bytes.fromhex("8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc")
DIG_WK = bytes.fromhex("8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e")
D_D = castore_pb2.Directory(directories=[castore_pb2.DirectoryNode(name=b"a", digest=E),
                                         castore_pb2.DirectoryNode(name=b"b", digest=DIG_B,
                                                                   size=2)])
D_COMPLICATED = castore_pb2.Directory(
    directories=[castore_pb2.DirectoryNode(name=b"keep", digest=DIG_WK, size=2)],
    files=[castore_pb2.FileNode(name=b".keep", digest=E)],
    symlinks=[castore_pb2.SymlinkNode(name=b"aa", target=b"/nix/store/somewhereelse")])
FIXTURES = [
    ([D_A], "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
    ([D_WITH_KEEP], "8b5b5d642b646bb8ed504b0862c39413e87e57491497de7bd075953f7b83810e"),
    ([D_A, D_B], "8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc"),
    ([D_A, D_C], "78eb200ae0cc95d4ea954655fbcf91e285013a261310e161927f2401d2bca803"),
    ([D_A, D_B, D_D], "76cd8b55b37333961c1778ba997e57df92e219926ae5a66c414b810331a77603"),
    ([D_WITH_KEEP, D_COMPLICATED],
     "424a7f6ce08d805d15b428062faae96299a1675d708c3a39261afe38cdd04feb"),
    ([D_A, D_A, D_C], "78eb200ae0cc95d4ea954655fbcf91e285013a261310e161927f2401d2bca803"),
]


def put_dirs(ds):
    return dirs.Put(iter(ds), timeout=TIMEOUT).root_digest


def test_directory_put_fixtures():
    for ds, want in FIXTURES:
        got = put_dirs(ds)
        check(got.hex() == want, "Put returned %s, want %s" % (got.hex(), want))
        one = list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=got), timeout=TIMEOUT))
        check(len(one) == 1 and one[0] == ds[-1], "Get of %s" % want)


def dn(name, digest=E, size=0):
    return castore_pb2.DirectoryNode(name=name, digest=digest, size=size)


def test_directory_put_invalid():
    cases = [
        # upload sequences (closure checks)
        ([D_B], "unknown directory was referenced"),
        ([D_A, D_C, D_B], "disconnected roots"),
        ([D_A, castore_pb2.Directory(directories=[dn(b"foo", size=42)])], "wrong size"),
        ([], "got no directories"),
        # invalid Directories
        ([castore_pb2.Directory(directories=[dn(b"\x00")])], "invalid name"),
        ([castore_pb2.Directory(directories=[dn(b".")])], "invalid name"),
        ([castore_pb2.Directory(files=[castore_pb2.FileNode(name=b"..", digest=E)])],
         "invalid name"),
        ([castore_pb2.Directory(symlinks=[castore_pb2.SymlinkNode(name=b"\x00", target=b"x")])],
         "invalid name"),
        ([castore_pb2.Directory(symlinks=[castore_pb2.SymlinkNode(name=b"foo/bar",
                                                                  target=b"x")])],
         "invalid name"),
        ([castore_pb2.Directory(symlinks=[castore_pb2.SymlinkNode(name=b"a" * 500,
                                                                  target=b"x")])],
         "invalid name"),
        ([castore_pb2.Directory(directories=[dn(b"a", digest=b"\x00\x01")])],
         "invalid digest length: 2"),
        ([D_A, castore_pb2.Directory(directories=[dn(b"b"), dn(b"a")])], '"a" is not sorted'),
        ([D_A, castore_pb2.Directory(directories=[dn(b"a"), dn(b"a")])],
         '"a" is a duplicate name'),
        ([D_A, castore_pb2.Directory(directories=[dn(b"a")],
                                     symlinks=[castore_pb2.SymlinkNode(name=b"a", target=b"x")])],
         '"a" is a duplicate name'),
        ([castore_pb2.Directory(symlinks=[castore_pb2.SymlinkNode(name=b"a", target=b"")])],
         "target"),
        ([D_A, castore_pb2.Directory(directories=[dn(b"a", size=2**64 - 1),
                                                  dn(b"b", size=2**64 - 1)])], ""),
    ]
    for ds, msg in cases:
        expect_status(lambda: put_dirs(ds), SC.INVALID_ARGUMENT, msg)
    raw = channel.stream_unary("/tvix.castore.v1.DirectoryService/Put")
    expect_status(lambda: raw(iter([b"\x0a\xff"]), timeout=TIMEOUT), SC.INVALID_ARGUMENT)
    # accepted: directories=[b,c] with symlinks=[a]
    ok = castore_pb2.Directory(directories=[dn(b"b"), dn(b"c")],
                               symlinks=[castore_pb2.SymlinkNode(name=b"a", target=b"x")])
    put_dirs([D_A, ok])


def test_directory_get_recursive():
    # a closure with sharing: D -> {a: A, b: B}, B -> {a: A}; COMPLICATED -> WITH_KEEP
    top = castore_pb2.Directory(directories=[
        dn(b"c", digest=bytes.fromhex(FIXTURES[5][1]), size=8),
        dn(b"d", digest=bytes.fromhex(FIXTURES[4][1]), size=6)])
    root = put_dirs([D_A, D_B, D_D, D_WITH_KEEP, D_COMPLICATED, top])
    got = list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=root, recursive=True),
                        timeout=TIMEOUT))
    digests = [b3(d.SerializeToString()) for d in got]
    check(digests[0] == root, "the root is not first")
    check(len(set(digests)) == len(digests), "a Directory came twice")
    check(len(digests) == 6, "expected 6 Directories, got %d" % len(digests))
    seen = set()
    for d, dig in zip(got, digests):
        check(dig == root or dig in seen, "%s came before a Directory referring to it" % dig.hex())
        for child in d.directories:
            seen.add(child.digest)
    # a missing root: OK and no messages
    none = list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=b"\x07" * 32,
                                                                recursive=True), timeout=TIMEOUT))
    check(none == [], "recursive Get of a missing root returned messages")
    expect_status(lambda: list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(
        digest=b"\x07" * 32), timeout=TIMEOUT)), SC.NOT_FOUND, "directory b3:")


def test_build():
    req = build_pb2.BuildRequest(command_args=["/bin/true"], outputs=["out"])
    expect_status(lambda: builds.DoBuild(req, timeout=TIMEOUT), SC.INTERNAL,
                  "builds are not supported with DummyBuildService")
    bad = build_pb2.BuildRequest(command_args=["/bin/true"], outputs=["b", "a"])
    expect_status(lambda: builds.DoBuild(bad, timeout=TIMEOUT), SC.INVALID_ARGUMENT,
                  "outputs not sorted")
    bad = build_pb2.BuildRequest(working_dir="/abs")
    expect_status(lambda: builds.DoBuild(bad, timeout=TIMEOUT), SC.INVALID_ARGUMENT,
                  "invalid working_dir")
    raw = channel.unary_unary("/tvix.build.v1.BuildService/DoBuild")
    expect_status(lambda: raw(b"\x0a\xff", timeout=TIMEOUT), SC.INVALID_ARGUMENT)


def test_concurrent_clients():
    errors = []

    def worker(i):
        try:
            ch = grpc.insecure_channel(TARGET)
            stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
            for j in range(3):
                data = os.urandom(2 * MiB + i * 1000 + j)
                d = stub.Put(chunks_of(data, (300001,)), timeout=TIMEOUT).digest
                back = b"".join(m.data for m in stub.Read(
                    rpc_blobstore_pb2.ReadBlobRequest(digest=d), timeout=TIMEOUT))
                if back != data:
                    errors.append("worker %d: read back differs" % i)
            ch.close()
        except Exception as e:  # noqa: BLE001
            errors.append("worker %d: %r" % (i, e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    check(not any(t.is_alive() for t in threads), "workers did not finish")
    check(not errors, "; ".join(errors))


DISCONNECT_CLIENT = r"""
import os, sys, time
sys.path.insert(0, sys.argv[2])
import grpc
from tvix.castore.protos import rpc_blobstore_pb2, rpc_blobstore_pb2_grpc
data = open(sys.argv[3], "rb").read()
ch = grpc.insecure_channel(sys.argv[1])
stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
def gen():
    yield rpc_blobstore_pb2.BlobChunk(data=data[:len(data) // 2])
    sys.stdout.write("sent\n"); sys.stdout.flush()
    time.sleep(0.5)
    os._exit(3)  # the process dies mid-stream: the connection just drops
stub.Put(gen(), timeout=30)
"""


def stat_ok(data):
    try:
        blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=b3(data)), timeout=TIMEOUT)
        return True
    except grpc.RpcError as e:
        if e.code() == SC.NOT_FOUND:
            return False
        raise


def test_disconnect_mid_put():
    data = os.urandom(6 * MiB)
    path = os.path.join(WORK, "partial.bin")
    with open(path, "wb") as f:
        f.write(data)
    p = subprocess.run([sys.executable, "-c", DISCONNECT_CLIENT, TARGET, STUBS, path],
                       stdout=subprocess.PIPE, timeout=60)
    check(p.returncode == 3 and b"sent" in p.stdout, "helper client: %r" % (p,))
    # a client that cancels its own upload
    cancel_data = os.urandom(3 * MiB)

    def gen():
        yield rpc_blobstore_pb2.BlobChunk(data=cancel_data[:MiB])
        raise RuntimeError("client gives up")

    try:
        blobs.Put(gen(), timeout=TIMEOUT)
        raise Fail("a Put whose request iterator failed succeeded")
    except grpc.RpcError:
        pass
    time.sleep(0.5)
    for what, absent in [("the whole blob", data), ("the part sent", data[:len(data) // 2]),
                         ("the cancelled blob", cancel_data),
                         ("the cancelled part", cancel_data[:MiB])]:
        check(not stat_ok(absent), "%s was stored" % what)
        expect_status(lambda: blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=b3(absent)),
                                         timeout=TIMEOUT), SC.NOT_FOUND)
    # and the daemon keeps serving
    test_health()
    check(put_blob(data[:10]) == b3(data[:10]), "Put after the disconnects")


TESTS = [test_health, test_unknown_method, test_blobs, test_blob_not_found,
         test_malformed_digests, test_directory_put_fixtures, test_directory_put_invalid,
         test_directory_get_recursive, test_build, test_concurrent_clients,
         test_disconnect_mid_put]


def main():
    passed = failed = 0
    for t in TESTS:
        t0 = time.monotonic()
        try:
            t()
            passed += 1
            print("ok   %s (%.2f s)" % (t.__name__, time.monotonic() - t0), flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            if not isinstance(e, Fail):
                traceback.print_exc()
    channel.close()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
