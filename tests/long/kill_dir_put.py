"""kill -9 of `kiln import` and of the daemon while a big tree is imported
through the daemon (blobs, then the Directory Put stream), on a persistent
directory store (STORE_ARGS).

After every kill: each directory of the tree that the store holds has its
whole closure there (a recursive Get returns every descendant, each with the
digest its parent names, and every file blob it names exists): nothing
dangling is reachable. After all kills, a re-import gives the reference root."""
import os
import random
import subprocess
import threading
import sys
import time

from longlib import (Daemon, KILN, SC, T, b3, castore_pb2, grpc, log, rpc_blobstore_pb2,  # noqa: F401
                     rpc_blobstore_pb2_grpc, rpc_directory_pb2, rpc_directory_pb2_grpc)

CYCLES = int(os.environ.get("CYCLES", "6"))
STORE_ARGS = sys.argv[1:]
SEED = int(os.environ.get("SEED", str(int(time.time()))))
rng = random.Random(SEED)
log("seed", SEED, "store", STORE_ARGS)

# the tree: 30 × 40 directories of a few files each, some shared contents
tree = os.path.join(T, "tree")
if not os.path.isdir(tree):
    g = random.Random(7)
    for i in range(30):
        for j in range(40):
            p = os.path.join(tree, "d%02d" % i, "e%02d" % j)
            os.makedirs(p)
            for k in range(g.randrange(1, 4)):
                with open(os.path.join(p, "f%d" % k), "wb") as f:
                    f.write(g.randbytes(g.choice([0, 10, 3000, 70000])))
        os.symlink("../d00", os.path.join(tree, "d%02d" % i, "link"))


def walk(stub, digest):
    """All directories of a closure through one recursive Get, by digest: each
    message must be, byte for byte, one of the tree's directories (the
    reference's, hashed once with b3sum), which is its digest check."""
    got = {}
    for m in stub.Get(rpc_directory_pb2.GetDirectoryRequest(digest=digest, recursive=True),
                      timeout=120):
        raw = m.SerializeToString(deterministic=True)
        if BY_BYTES is None:
            got[len(got)] = (raw, m)
            continue
        assert raw in BY_BYTES, "a Get returned a directory that is not the tree's"
        got[BY_BYTES[raw]] = m
    if BY_BYTES is None:
        # the reference: every message hashed by one b3sum run
        tmp = os.path.join(T, "ref-dirs")
        os.makedirs(tmp, exist_ok=True)
        names = []
        for i, (raw, m) in got.items():
            names.append(os.path.join(tmp, str(i)))
            with open(names[-1], "wb") as f:
                f.write(raw)
        out = subprocess.run(["b3sum", "--no-names"] + names, stdout=subprocess.PIPE,
                             check=True).stdout.split()
        got = {bytes.fromhex(h.decode()): got[i][1] for i, h in enumerate(out)}
    return got


BY_BYTES = None


def import_via(sock, **kw):
    addr = "grpc+unix://" + sock
    return subprocess.Popen([KILN, "import", "--blob-service-addr", addr,
                             "--directory-service-addr", addr, tree],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# the reference: the same tree through a daemon on another (default) store
ref = Daemon(os.path.join(T, "ref.sock"), [], env={"KILN_HOME": os.path.join(T, "ref-home")},
             name="refd").start()
t0 = time.monotonic()
p = import_via(ref.sock)
out, err = p.communicate(timeout=300)
import_time = time.monotonic() - t0
assert p.returncode == 0, err
import json  # noqa: E402
ROOT = __import__("base64").b64decode(json.loads(out)["node"]["directory"]["digest"])
with ref.channel() as ch:
    ALL = walk(rpc_directory_pb2_grpc.DirectoryServiceStub(ch), ROOT)
ref.stop()
ORDER = list(reversed(ALL.values()))  # Get's order is root first
BY_BYTES = {m.SerializeToString(deterministic=True): dg for dg, m in ALL.items()}
log("tree: %d directories, root %s, import %.2f s" % (len(ALL), ROOT.hex(), import_time))

sock = os.path.join(T, "dirs.sock")
d = Daemon(sock, STORE_ARGS, name="dird")
figures = dict(checked=0, walked=0)
OBJECTSTORE = any("objectstore" in a for a in STORE_ARGS)
ALL_BYTES = {dg: m.SerializeToString(deterministic=True) for dg, m in ALL.items()}


def check_no_dangling():
    """Every directory of the tree that the store has: its children are there
    too (a Get of each), and a recursive Get of the root and of a sample
    returns a complete closure whose file blobs exist."""
    with d.channel() as ch:
        dirs = rpc_directory_pb2_grpc.DirectoryServiceStub(ch)
        blobs = rpc_blobstore_pb2_grpc.BlobServiceStub(ch)
        present = set()
        for dg in ALL:
            try:
                first = list(dirs.Get(rpc_directory_pb2.GetDirectoryRequest(digest=dg),
                                      timeout=60))
            except grpc.RpcError as e:
                assert e.code() == SC.NOT_FOUND, e
                continue
            assert len(first) == 1 and first[0].SerializeToString(deterministic=True) == \
                ALL_BYTES[dg], "Get %s returned something else" % dg.hex()
            present.add(dg)
        sample = sorted(present)
        sample = ([ROOT] if ROOT in present else []) + rng.sample(sample, min(len(sample), 10))
        stat_done = set()
        for dg in sample:
            closure = walk(dirs, dg)
            assert dg in closure
            for m in closure.values():
                for c in m.directories:
                    assert c.digest in closure, "dangling: %s names %s, missing" % (
                        dg.hex(), c.digest.hex())
                for f in m.files:
                    if f.digest not in stat_done:
                        blobs.Stat(rpc_blobstore_pb2.StatBlobRequest(digest=f.digest),
                                   timeout=60)
                        stat_done.add(f.digest)
        for dg in present:
            for c in ALL[dg].directories:
                # an objectstore directory store holds closures under their
                # root: a child is reachable through it, not on its own
                assert c.digest in present or OBJECTSTORE, "dangling: %s names %s, missing" % (
                    dg.hex(), c.digest.hex())
        figures["checked"] += 1
        figures["walked"] += len(sample)
        return len(present)


kills = []
for cyc in range(CYCLES * 2):
    # each cycle on a fresh store (the same kind), so that every kill cuts an
    # import that still has everything to write
    victim = "import" if cyc % 2 == 0 else "daemon"
    d.args = [x.replace("{cyc}", str(cyc)) for x in STORE_ARGS]
    d.env = {"KILN_HOME": os.path.join(T, "home.%d" % cyc)}
    d.start()
    if victim == "import":
        p = import_via(d.sock)
        # every other one late, where the import sends its Directory Put
        lo = 0.05 if cyc % 4 == 0 else import_time * 0.8
        delay = rng.uniform(lo, max(0.1, import_time * 1.05))
        time.sleep(delay)
        finished = p.poll() is not None
        if not finished:
            p.kill()
        p.communicate(timeout=120)
    else:
        # the blobs first (directories to memory://), then a Directory Put
        # of the tree, leaves to root, with the daemon killed after a random
        # number of messages
        addr = "grpc+unix://" + d.sock
        subprocess.run([KILN, "import", "--blob-service-addr", addr, "--directory-service-addr",
                        "memory://", tree], stdout=subprocess.DEVNULL, check=True, timeout=300)
        delay = rng.randrange(1, len(ORDER))
        sent, killed = threading.Event(), threading.Event()

        def gen():
            for i, m in enumerate(ORDER):
                if i == delay:
                    sent.set()
                    killed.wait(30)
                yield m

        def put():
            with d.channel() as ch:
                try:
                    rpc_directory_pb2_grpc.DirectoryServiceStub(ch).Put(gen(), timeout=120)
                    res.append("acknowledged")
                except grpc.RpcError as e:
                    res.append(e.code())
        res = []
        th = threading.Thread(target=put)
        th.start()
        assert sent.wait(60)
        time.sleep(0.3)  # let the daemon take what was sent
        d.kill9()
        killed.set()
        th.join(60)
        assert res and res[0] != "acknowledged", res
        finished = False
    if not d.alive():
        d.start()
    n = check_no_dangling()
    # the same import again: the same root, everything there
    p = import_via(d.sock)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    root = __import__("base64").b64decode(json.loads(out)["node"]["directory"]["digest"])
    assert root == ROOT, "re-import gives another root"
    assert check_no_dangling() == (1 if OBJECTSTORE else len(ALL))
    with d.channel() as ch:
        assert set(walk(rpc_directory_pb2_grpc.DirectoryServiceStub(ch), ROOT)) == set(ALL)
    assert d.stop() == 0
    kills.append((victim, round(delay, 2), finished, n))
    log("cycle %d: killed %s after %s%s; %d of %d directories stored, none dangling; "
        "re-import: the same root" %
        (cyc + 1, victim, ("%.2f s" % delay) if victim == "import" else
         ("%d of %d Directory messages" % (delay, len(ORDER))), " (import had finished)" if finished else "", n, len(ALL)))

log("RESULT kill_dir_put %s: %d kills of kiln import, %d of the daemon (%d while the import "
    "ran, the daemon's in the middle of a Directory Put stream; stored then: %s of %d directories); after each kill 0 dangling (%d closures walked "
    "recursively), each re-import gives root %s" % (
        STORE_ARGS[1].split(":")[0] if STORE_ARGS else "lmdb (default)",
        sum(1 for k in kills if k[0] == "import"),
        sum(1 for k in kills if k[0] == "daemon"), sum(1 for k in kills if not k[2]),
        ",".join(str(k[3]) for k in kills), len(ALL), figures["walked"], ROOT.hex()[:16]))
