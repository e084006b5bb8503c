"""CLIENTS clients (processes) each putting SIZE bytes as one blob and then
reading it back, all at once, through one daemon on its default persistent
store (argv: the daemon's extra store options). The data comes from a
seeded generator in 1 MiB pieces and is never kept: each side streams it
through b3sum, and the digests are compared (the Put's answer, the
generator's, the Read's). The daemon's memory is sampled throughout."""
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time

from longlib import (Daemon, T, grpc, log, rpc_blobstore_pb2,  # noqa: F401
                     rpc_blobstore_pb2_grpc, CHANNEL_OPTS)

CLIENTS = int(os.environ.get("CLIENTS", "8"))
SIZE = int(os.environ.get("SIZE", str(1 << 30)))
PIECE = 1 << 20
STORE_ARGS = sys.argv[1:]


def pieces(seed):
    r = random.Random(seed)
    left = SIZE
    while left:
        n = min(PIECE, left)
        yield r.randbytes(n)
        left -= n


def b3sum_proc():
    return subprocess.Popen(["b3sum", "--no-names"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


def client(i, sock, q):
    try:
        ch = grpc.insecure_channel("unix:" + sock, options=CHANNEL_OPTS)
        stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
        h = b3sum_proc()
        t0 = time.monotonic()

        def gen():
            for p in pieces(1000 + i):
                h.stdin.write(p)
                yield rpc_blobstore_pb2.BlobChunk(data=p)
        digest = stub.Put(gen(), timeout=1800).digest
        h.stdin.close()
        want = bytes.fromhex(h.stdout.read().decode().strip())
        h.wait()
        t1 = time.monotonic()
        assert digest == want, "client %d: Put answered %s, the data is %s" % (
            i, digest.hex(), want.hex())
        h = b3sum_proc()
        n = 0
        for m in stub.Read(rpc_blobstore_pb2.ReadBlobRequest(digest=digest), timeout=1800):
            h.stdin.write(m.data)
            n += len(m.data)
        h.stdin.close()
        got = bytes.fromhex(h.stdout.read().decode().strip())
        h.wait()
        t2 = time.monotonic()
        assert n == SIZE and got == want, "client %d: read %d bytes, digest %s" % (i, n,
                                                                                   got.hex())
        ch.close()
        q.put((i, "ok", t1 - t0, t2 - t1))
    except BaseException as e:  # noqa: B902
        q.put((i, "error: %r" % (e,), 0, 0))


if __name__ == "__main__":
    home = os.environ["KILN_HOME"]
    sock = os.path.join(T, "blobs.sock")
    d = Daemon(sock, STORE_ARGS, name="blobload").start()
    time.sleep(0.3)
    rss0 = d.status("VmRSS")
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(d.status("VmRSS"))
            except (OSError, KeyError):
                pass
            time.sleep(0.5)
    st = threading.Thread(target=sample)
    st.start()
    q = multiprocessing.Queue()
    t0 = time.monotonic()
    procs = [multiprocessing.Process(target=client, args=(i, sock, q)) for i in range(CLIENTS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(60)
    elapsed = time.monotonic() - t0
    stop.set()
    st.join()
    hwm = d.status("VmHWM")
    du = subprocess.run(["du", "-sm", home], stdout=subprocess.PIPE,
                        text=True).stdout.split()[0]
    assert d.stop() == 0, d.stderr()
    bad = [r for r in results if r[1] != "ok"]
    assert not bad, bad
    total = CLIENTS * SIZE
    put_s = max(r[2] for r in results)
    read_s = max(r[3] for r in results)
    log("RESULT load_blobs %s: %d clients x %d MiB put and read back at once, all verified "
        "(digests of the Put, the generator, the Read); %.0f s (%.0f MB/s in and out); slowest "
        "Put %.0f s, slowest Read %.0f s; daemon VmRSS %d kB before, sampled max %d kB, VmHWM "
        "%d kB; store %s MiB on disk" %
        (STORE_ARGS[1] if STORE_ARGS else "objectstore+file (default)", CLIENTS, SIZE >> 20,
         elapsed, 2 * total / elapsed / 1e6, put_s, read_s, rss0, max(samples or [0]), hwm, du))
    assert hwm < 1024 * 1024, "the daemon's peak RSS is %d kB" % hwm
