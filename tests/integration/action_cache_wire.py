#!/usr/bin/python3
"""kiln.build.v1.ActionCache through a running `kiln daemon
--serve-action-cache`, driven by Python grpcio with stubs generated now from
proto/kiln: Count, a Get of an identity never put (NOT_FOUND), a Put and the
same Build back, a replaced record, Remove (removed, then not), and bad
input (an identity of the wrong length, a Build that fails validation, a
Put without a Build, a malformed message), each INVALID_ARGUMENT; health
reports the service. With "unserved" as the last argument: every method is
UNIMPLEMENTED, saying how to serve it, and health says NOT_FOUND.

usage: action_cache_wire.py TARGET PROTO_ROOT WORKDIR [unserved]
Prints the Count it found first.
"""
import os
import sys

TARGET, PROTO_ROOT, WORK = sys.argv[1:4]
UNSERVED = sys.argv[4:] == ["unserved"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_stubs  # noqa: E402

kiln_stubs.generate(PROTO_ROOT, WORK)

import grpc  # noqa: E402
from kiln.build.v1 import action_cache_pb2 as ac, action_cache_pb2_grpc  # noqa: E402
from kiln_health import health_pb2, health_pb2_grpc  # noqa: E402
from tvix.build.protos import build_pb2  # noqa: E402
from tvix.castore.protos import castore_pb2  # noqa: E402

SC = grpc.StatusCode
channel = grpc.insecure_channel(TARGET)
stub = action_cache_pb2_grpc.ActionCacheStub(channel)
health = health_pb2_grpc.HealthStub(channel)


def status(call, msg):
    """(code, details) of a call; (OK, response) when it succeeds."""
    try:
        return SC.OK, call(msg, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()


def expect(code, what, call, msg):
    got, detail = status(call, msg)
    assert got == code, "%s: %s %r, want %s" % (what, got, detail, code)
    return detail


check = ac.CountActionsRequest()
ID1, ID2 = bytes(range(32)), bytes(range(1, 33))
if UNSERVED:
    for name, call, msg in [("Get", stub.Get, ac.GetActionRequest(identity=ID1)),
                            ("Put", stub.Put, ac.PutActionRequest(identity=ID1)),
                            ("Remove", stub.Remove, ac.RemoveActionRequest(identity=ID1)),
                            ("Count", stub.Count, check)]:
        d = expect(SC.UNIMPLEMENTED, name, call, msg)
        assert "--serve-action-cache" in d, d
    expect(SC.NOT_FOUND, "health", health.Check,
           health_pb2.HealthCheckRequest(service="kiln.build.v1.ActionCache"))
    print("unserved")
    sys.exit(0)

h = health.Check(health_pb2.HealthCheckRequest(service="kiln.build.v1.ActionCache"), timeout=10)
assert h.status == health_pb2.HealthCheckResponse.SERVING, h
first = stub.Count(check, timeout=10).count


def node(name, digest=bytes(32)):
    return castore_pb2.Node(file=castore_pb2.FileNode(name=name, digest=digest, size=3))


b1 = build_pb2.Build(outputs=[node(b"x-out")],
                     outputs_needles=[build_pb2.Build.OutputNeedles(needles=[0])])
b2 = build_pb2.Build(outputs=[node(b"y-out", bytes([7]) * 32)])

expect(SC.NOT_FOUND, "Get of an identity never put", stub.Get, ac.GetActionRequest(identity=ID1))
stub.Put(ac.PutActionRequest(identity=ID1, build=b1), timeout=10)
got = stub.Get(ac.GetActionRequest(identity=ID1), timeout=10)
assert got.outputs == b1.outputs and got.outputs_needles == b1.outputs_needles, got
assert stub.Count(check, timeout=10).count == first + 1
stub.Put(ac.PutActionRequest(identity=ID1, build=b2), timeout=10)  # replaces
got = stub.Get(ac.GetActionRequest(identity=ID1), timeout=10)
assert got.outputs == b2.outputs, got
assert stub.Count(check, timeout=10).count == first + 1
assert stub.Remove(ac.RemoveActionRequest(identity=ID1), timeout=10).removed
assert not stub.Remove(ac.RemoveActionRequest(identity=ID1), timeout=10).removed
expect(SC.NOT_FOUND, "Get after Remove", stub.Get, ac.GetActionRequest(identity=ID1))
assert stub.Count(check, timeout=10).count == first

# bad input: one status each, nothing stored
d = expect(SC.INVALID_ARGUMENT, "short identity", stub.Get, ac.GetActionRequest(identity=b"x" * 31))
assert "31 bytes" in d, d
expect(SC.INVALID_ARGUMENT, "empty identity", stub.Remove, ac.RemoveActionRequest())
expect(SC.INVALID_ARGUMENT, "Put without a Build", stub.Put, ac.PutActionRequest(identity=ID2))
bad = build_pb2.Build(outputs=[node(b"x-out")],
                      outputs_needles=[build_pb2.Build.OutputNeedles()] * 2)
d = expect(SC.INVALID_ARGUMENT, "needles mismatch", stub.Put, ac.PutActionRequest(identity=ID2, build=bad))
assert "invalid Build" in d, d
bad = build_pb2.Build(outputs=[node(b"a/b")])
expect(SC.INVALID_ARGUMENT, "output named a/b", stub.Put, ac.PutActionRequest(identity=ID2, build=bad))
bad = build_pb2.Build(outputs=[node(b"x", b"short")])
expect(SC.INVALID_ARGUMENT, "digest of 5 bytes", stub.Put, ac.PutActionRequest(identity=ID2, build=bad))
raw = channel.unary_unary("/kiln.build.v1.ActionCache/Put")
expect(SC.INVALID_ARGUMENT, "malformed PutActionRequest", raw, b"\x0a\xff\xff\xff")
expect(SC.NOT_FOUND, "Get after refused Puts", stub.Get, ac.GetActionRequest(identity=ID2))
assert stub.Count(check, timeout=10).count == first
print(first)
