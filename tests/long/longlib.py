"""Helpers of the long fault and load tests (tests/long/): a real `kiln daemon`
started, killed and restarted as a subprocess, Python grpcio stubs generated
from proto/, seeded blob data that is regenerated rather than kept, and the
daemon's memory and descriptor figures from /proc."""
import os
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import kiln_stubs  # noqa: E402

KILN = os.environ["KILN_BIN"]
SRC = os.environ["KILN_SOURCE_ROOT"]
T = os.environ["T"]  # the shell's scratch dir (tests/integration/lib.sh)

kiln_stubs.generate(os.path.join(SRC, "proto"), os.path.join(T, "py"))

import grpc  # noqa: E402,F401
from tvix.castore.protos import (castore_pb2, rpc_blobstore_pb2,  # noqa: E402,F401
                                 rpc_blobstore_pb2_grpc, rpc_directory_pb2,
                                 rpc_directory_pb2_grpc)
from tvix.build.protos import build_pb2, rpc_build_pb2_grpc  # noqa: E402,F401

SC = grpc.StatusCode
b3 = kiln_stubs.b3
CHANNEL_OPTS = [("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20)]


def log(*a):
    print(*a, flush=True)


class Daemon:
    """`kiln daemon -l SOCK ARGS...`; start() waits for its listening line."""

    def __init__(self, sock, args, env=None, name="daemon"):
        self.sock, self.args, self.env, self.name = sock, list(args), env, name
        self.proc, self.n = None, 0

    def start(self, timeout=20):
        self.n += 1
        base = os.path.join(T, "%s.%d" % (self.name, self.n))
        self.err_path = base + ".err"
        out = open(base + ".out", "w+")
        err = open(self.err_path, "w")
        env = dict(os.environ)
        env.update(self.env or {})
        self.proc = subprocess.Popen([KILN, "daemon", "-l", self.sock] + self.args,
                                     stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out.seek(0)
            if "listening on" in out.read():
                return self
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited (%s) before listening: %s" %
                                     (self.proc.returncode, self.stderr()))
            time.sleep(0.02)
        raise AssertionError("daemon did not listen within %d s" % timeout)

    def stderr(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()[-4000:]

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self):
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def channel(self):
        return grpc.insecure_channel("unix:" + self.sock, options=CHANNEL_OPTS)

    def status(self, field):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
        raise KeyError(field)

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


def data(seed, size):
    """The blob of a seed: the same bytes every time, never stored."""
    return random.Random(seed).randbytes(size)


def put_blob(stub, payload, piece=1 << 20, timeout=60):
    it = (rpc_blobstore_pb2.BlobChunk(data=payload[i:i + piece])
          for i in range(0, max(len(payload), 1), piece))
    return stub.Put(it, timeout=timeout).digest


def read_blob(stub, digest, timeout=60):
    return b"".join(m.data for m in stub.Read(rpc_blobstore_pb2.ReadBlobRequest(digest=digest),
                                              timeout=timeout))


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)
