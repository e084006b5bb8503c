"""kill -9 of the daemon at random moments while several clients Put blobs
and read back what was acknowledged, for CYCLES cycles, on one persistent
store (STORE_ARGS, the daemon's store options).

After each restart: every acknowledged blob reads back with the same bytes
and digest; every Put that was cut off is either NOT_FOUND or complete and
correct (Stat and Read agree); no Read, before or after a kill, ever
returned wrong bytes."""
import os
import random
import sys
import threading
import time

from longlib import (Daemon, SC, b3, data, grpc, log, put_blob, read_blob,  # noqa: F401
                     rpc_blobstore_pb2, rpc_blobstore_pb2_grpc, T)

CYCLES = int(os.environ.get("CYCLES", "24"))
CLIENTS = int(os.environ.get("CLIENTS", "4"))
STORE_ARGS = sys.argv[1:]
SEED = int(os.environ.get("SEED", str(int(time.time()))))
log("seed", SEED, "store", STORE_ARGS)
rng = random.Random(SEED)

acked = {}      # digest -> (seed, size)
cut = {}        # digest -> (seed, size): Puts without an acknowledgement
lock = threading.Lock()
wrong = []      # reads that returned wrong bytes
stats = dict(puts=0, reads_during=0, half_visible=0, cut_absent=0)


def blob_size(r):
    # mostly small, some spanning several chunks and several messages
    return r.choice([0, 1, 100, 4096, 65536, 300_000, 1 << 20, 3 << 20, 5 << 20 | 12345])


def client(n, sock, stop, cyc):
    r = random.Random(SEED * 1000 + cyc * 10 + n)
    ch = grpc.insecure_channel("unix:" + sock)
    stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
    for _ in range(10_000):
        if stop.is_set():
            break
        s, size = r.getrandbits(48), blob_size(r)
        payload = data(s, size)
        want = b3(payload)
        with lock:
            cut[want] = (s, size)
        try:
            got = put_blob(stub, payload, piece=r.choice([1 << 16, 1 << 20]), timeout=30)
        except grpc.RpcError:
            continue
        if got != want:
            wrong.append(("put digest", want.hex(), got.hex()))
            continue
        with lock:
            acked[want] = (s, size)
            cut.pop(want, None)
            stats["puts"] += 1
            old = r.choice(list(acked.items()))
        # read back an acknowledged blob while the daemon may be killed
        try:
            back = read_blob(stub, old[0], timeout=30)
        except grpc.RpcError:
            continue
        stats["reads_during"] += 1
        if back != data(*old[1]):
            wrong.append(("read during", old[0].hex(), len(back)))
    ch.close()


def verify(d, which):
    ch = d.channel()
    stub = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
    for digest in which:
        seed, size = acked[digest]
        back = read_blob(stub, digest)
        assert back == data(seed, size) and b3(back) == digest, \
            "acknowledged blob %s (%d bytes) reads back wrong (%d bytes)" % (digest.hex(), size,
                                                                             len(back))
    for digest, (seed, size) in list(cut.items()):
        try:
            stub.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=digest), timeout=30)
        except grpc.RpcError as e:
            assert e.code() == SC.NOT_FOUND, e
            try:
                read_blob(stub, digest)
                raise AssertionError("Stat NOT_FOUND but Read works: %s" % digest.hex())
            except grpc.RpcError as e2:
                assert e2.code() == SC.NOT_FOUND, e2
            stats["cut_absent"] += 1
            continue
        back = read_blob(stub, digest)
        assert back == data(seed, size), "half-written blob %s visible" % digest.hex()
        stats["half_visible"] += 1  # complete and correct: its commit beat the kill
    cut.clear()
    ch.close()


t0 = time.monotonic()
sock = os.path.join(T, "kill.sock")
d = Daemon(sock, STORE_ARGS, name="blobd")
for cyc in range(CYCLES):
    d.start()
    before = set(acked)
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(i, sock, stop, cyc)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.2, 2.0))
    d.kill9()
    stop.set()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "client hangs"
    assert not wrong, wrong
    d.start()
    # this cycle's blobs all, and a sample of the earlier ones
    new = [x for x in acked if x not in before]
    verify(d, new + rng.sample(sorted(before), min(len(before), 30)))
    d.stop()
    log("cycle %d: %d acknowledged (%d new)" % (cyc + 1, len(acked), len(new)))
d.start()
verify(d, list(acked))
rss = d.status("VmHWM")
assert d.stop() == 0, d.stderr()
assert not wrong, wrong
# nothing half-written lies around in the objectstore either
leftover = [os.path.join(p, f) for p, _, fs in os.walk(os.path.join(os.environ["KILN_HOME"]))
            for f in fs if ".tmp" in f]
assert not leftover, leftover[:5]
log("RESULT kill_blob_put: %d cycles, %d clients, %d acknowledged blobs verified, %d reads during "
    "the run verified, cut-off Puts: %d absent, %d complete; 0 wrong reads; %.0f s" %
    (CYCLES, CLIENTS, len(acked), stats["reads_during"], stats["cut_absent"],
     stats["half_visible"], time.monotonic() - t0))
assert len(acked) >= CYCLES, "too few acknowledged Puts to mean anything"
