#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora into OUTDIR/<target>/: small valid
(and a few nearly valid) inputs built from the repository's test vectors and
from hand-encoded examples of each format, so that every fuzzer starts from
inputs its decoder accepts. Deterministic; run by `make fuzz` and the smoke
run of `make check`.

usage: fuzz/seeds.py OUTDIR"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1]


def varint(v):
    b = bytearray()
    while v >= 0x80:
        b.append(v & 0x7F | 0x80)
        v >>= 7
    b.append(v)
    return bytes(b)


def field(num, payload):  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vfield(num, v):  # varint
    return varint(num << 3) + varint(v)


D = bytes(range(32))  # some digest
DIR_DIGEST = bytes.fromhex("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")


def file_node(name, size=3, exe=False):
    return field(1, name) + field(2, D) + vfield(3, size) + (vfield(4, 1) if exe else b"")


def dir_node(name, size=0):
    return field(1, name) + field(2, DIR_DIGEST) + (vfield(3, size) if size else b"")


def link_node(name, target):
    return field(1, name) + field(2, target)


def node(kind, body):
    return field({"dir": 1, "file": 2, "link": 3}[kind], body)


seeds = {t: [] for t in ["directory", "node", "build_request", "json", "url", "aterm", "nar", "blake3"]}
seeds.update({t: [] for t in ["closure", "fastcdc", "blob_index"]})

seeds["directory"] += [
    b"",
    field(2, file_node(b"a")),
    field(1, dir_node(b"d", 2)) + field(2, file_node(b"f", 10, True)) + field(3, link_node(b"l", b"f")),
    field(2, file_node(b"b")) + field(2, file_node(b"a")),  # out of order
    field(3, link_node(b"x", b"")),  # empty target
]
seeds["node"] += [
    b"\0" + node("file", file_node(b"hello")),
    b"\1" + node("dir", dir_node(b"")),
    b"\0" + node("link", link_node(b"l", b"../x")),
    b"\0" + node("dir", dir_node(b"..")),
]
inputs = node("dir", dir_node(b"src"))
req = (field(1, inputs) + field(2, b"/bin/sh") + field(2, b"-c") + field(2, b"echo hi > $out")
       + field(3, b"build") + field(4, b"build") + field(5, b"inputs") + field(6, b"out")
       + field(7, field(1, b"PATH") + field(2, b"/bin")) + field(8, field(1, b"x86_64-linux") + vfield(5, 1))
       + field(9, field(1, b"etc/f") + field(2, b"x")) + field(10, b"abc"))
seeds["build_request"] += [b"\0" + req, b"\0" + field(2, b"true"),
                           b"\1" + field(1, req) + field(2, node("file", file_node(b"out"))) + field(3, vfield(1, 0)),
                           # found by fuzzing (2026-12-07): outputs without outputs_needles
                           # are accepted, and re-encode with one (empty) per output
                           b"\1" + field(1, req) + field(2, node("file", file_node(b"out")))]

seeds["json"] += [
    b'\0{"file":{"name":"YQ==","digest":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","size":"3"}}',
    b'\1{"symlink":{"name":"","target":"eA=="}}',
    b'\2{"directories":[],"files":[{"name":"YQ==","digest":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","size":"1","executable":true}],"symlinks":[]}',
    b'\3{"commandArgs":["/bin/sh","-c","true"],"workingDir":"build","scratchPaths":["build"],"inputsDir":"inputs","outputs":["out"],"environmentVars":[{"key":"A","value":"Yg=="}]}',
    b'\4{"buildRequest":{"commandArgs":["true"]},"outputs":[],"outputsNeedles":[]}',
]

seeds["url"] += [b"\1" + u for u in [b"memory://", b"objectstore+file:///var/lib/kiln/blobs",
                                     b"grpc+unix:///run/kiln.sock?wait-connected=1", b"grpc+http://[::1]:8000",
                                     b"lmdb:///x/y", b"oci:///tmp/bundles?slots=2", b"x://h:99999/p%zz"]]
seeds["url"] += [b"\2" + u for u in [b"memory://", b"objectstore+memory://?avg_chunk_size=65536",
                                     b"memory://host", b"memory:///x"]]
seeds["url"] += [b"\0" + d for d in [b"b3:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                                     b"blake3-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                                     D.hex().encode(), b"b3:AAEC"]]

out_path = b"/nix/store/1rz4g4znpzjwh1xymhjpm42vipw92pr7-hello"
seeds["aterm"] += [
    b'Derive([("out","' + out_path + b'","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo hi > $out"],'
    b'[("builder","/bin/sh"),("name","hello"),("out","' + out_path + b'"),("system","x86_64-linux")])',
    b'Derive([("out","/nix/store/2rz4g4znpzjwh1xymhjpm42vipw92pr7-f","r:sha256","' + b"0" * 64 + b'")],'
    b'[("/nix/store/3rz4g4znpzjwh1xymhjpm42vipw92pr7-a.drv",["dev","out"])],["/nix/store/4rz4g4znpzjwh1xymhjpm42vipw92pr7-s"],'
    b'"x86_64-linux","/bin/sh",["-c","a\\nb\\"c\\\\"],[("a",""),("b","\\t")])',
    # A fixed output's hash in nixbase32, which the parser takes and prints in base16 (found by
    # fuzz_aterm when its property was still "prints back byte for byte").
    b'Derive([("out","/nix/store/2rz4g4znpzjwh1xymhjpm42vipw92pr7-f","r:sha256","' + b"0" * 52 + b'")],'
    b'[],[],"x86_64-linux","/bin/sh",[],[])',
]

# NARs from Nix itself, when it is installed (it is among the test packages).
if subprocess.run(["sh", "-c", "command -v nix-store"], capture_output=True).returncode == 0:
    with tempfile.TemporaryDirectory() as t:
        os.makedirs(t + "/tree/sub")
        with open(t + "/tree/sub/file", "w") as f:
            f.write("contents\n")
        with open(t + "/tree/exe", "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(t + "/tree/exe", 0o755)
        os.symlink("sub/file", t + "/tree/link")
        os.makedirs(t + "/tree/empty")
        with open(t + "/single", "w") as f:
            f.write("x" * 1000)
        for p in ["tree", "single", "tree/link"]:
            seeds["nar"].append(subprocess.run(["nix-store", "--dump", t + "/" + p],
                                               capture_output=True, check=True).stdout)

with open(os.path.join(here, "..", "tests", "fixtures", "blake3_test_vectors.json")) as f:
    for case in json.load(f)["cases"]:
        n = case["input_len"]
        if n <= 8192:
            body = bytes(i % 251 for i in range(n))
            seeds["blake3"].append(bytes([0x80 | 3, 5, 16, 1]) + body)
            seeds["blake3"].append(b"\0" + body)

# fuzz_closure: flags (bit 0 root-to-leaves, bits 1..4 the root), the pool
# size - 1, each pool Directory as [entries, then per entry: kind byte, name
# byte, a digest byte (file) or a size byte (directory: >= 0xf0 is wrong)],
# then steps (a pool index to add, 0xf0.. want, 0xff finish).
def cl_file(name=0, digest=7):
    return bytes([0x04, name, digest])


def cl_dir(target, name=0, size=0):  # target: an earlier pool index (mod its position)
    return bytes([2 | target << 2, name, size])


cl_pool = (bytes([1]) + cl_file() + bytes([1]) + cl_dir(0)
           + bytes([2]) + cl_dir(1) + cl_dir(0) + bytes([1, 1, 0]))  # d3: one symlink
seeds["closure"] += [
    bytes([0, 3]) + cl_pool + bytes([0, 1, 2]),                 # upload, in order
    bytes([0, 3]) + cl_pool + bytes([0, 0, 1, 2, 2]),           # with duplicates
    bytes([0, 3]) + cl_pool + bytes([1, 0, 2]),                 # child after parent
    bytes([0, 3]) + cl_pool + bytes([0, 1, 2, 3]),              # disconnected
    bytes([0, 3]) + cl_pool + bytes([0, 1, 0xff, 2]),           # finished early
    bytes([1 | 2 << 1, 3]) + cl_pool + bytes([2, 1, 0]),        # download, in order
    bytes([1 | 2 << 1, 3]) + cl_pool + bytes([2, 0, 0xf1, 1]),  # BFS order, want()
    bytes([1 | 2 << 1, 3]) + cl_pool + bytes([2, 1]),           # incomplete
    bytes([1 | 15 << 1, 3]) + cl_pool + bytes([0, 1, 2]),       # a root nobody has
    # a wrong size, with a newline in the name of the edge
    bytes([0, 1]) + bytes([1]) + cl_file() + bytes([1]) + cl_dir(0, name=10, size=0xf9) + bytes([0, 1]),
    bytes([1 | 1 << 1, 1]) + bytes([1]) + cl_file() + bytes([1]) + cl_dir(0, size=0xff) + bytes([1, 0]),
]

# fuzz_fastcdc: avg and store flag, stretch, the number of update sizes,
# the update sizes, the data.
readme = open(os.path.join(here, "..", "README.md"), "rb").read()[:60000]
seeds["fastcdc"] += [
    bytes([0, 0x80 | 10, 0]) + b"seed",
    bytes([0xc, 0x84, 3, 20, 200, 0]) + bytes(range(64)),
    bytes([1, 0x7f, 0]) + bytes(16),
    bytes([0xf5, 0xff, 2, 255, 7]) + b"some bytes to seed the generator",
    bytes([6, 0, 4, 100, 3, 0, 130]) + readme,
]

# fuzz_blob_index: byte 0 even: the rest is index bytes.
def bi_index(chunks, bao=b""):
    out = b""
    for digest, size in chunks:
        out += field(2, field(1, digest) + (vfield(2, size) if size else b""))
    return out + (field(3, bao) if bao else b"")


seeds["blob_index"] += [b"\0", b"\0" + bi_index([(D, 100), (bytes(32), 7)]), b"\0" + bi_index([(D, 1)], b"bao"),
                        b"\0" + bi_index([(D, 0)]), b"\0" + bi_index([(D[:31], 5)]), b"\0\xff\xff\xff"]


# Odd byte 0: pieces ([len byte, how stored, bytes]), entries, read sizes, seeks.
def bi_built(flags, pieces, entries, tail=bytes([5, 9, 200, 1, 0, 3, 0, 40])):
    out = bytes([1 | flags, len(pieces) - 1])
    for lb, plant, fill in pieces:
        out += bytes([lb, plant]) + fill * (1 + lb * 2 % 512)
    return out + bytes([len(entries)]) + bytes(entries) + tail


seeds["blob_index"] += [
    bi_built(0, [(10, 0, b"a"), (20, 1, b"b")], [0, 1]),
    bi_built(0, [(10, 0, b"a"), (20, 3, b"b")], [0, 1]),               # garbage chunk
    bi_built(2 | 4, [(10, 2, b"a"), (20, 0, b"b")], [0, 1, 0]),        # swapped fields, bao
    bi_built(0, [(10, 0, b"a"), (20, 0, b"b")], [0, 0x80 | 1, 5]),     # wrong size
    bi_built(2 << 3, [(10, 0, b"a"), (20, 0, b"b")], [0, 1]),          # wrong blob digest
    bi_built(0, [(10, 5, b"a"), (20, 4, b"b")], [0, 1, 0x40]),         # absent, other bytes
]

# fuzz_nix_serve: whole client sessions of Nix's serve protocol (protocol
# 2.6, as Nix 2.8's build hook speaks it): queries, adds of a NAR (right and
# wrong hash), the export archive both ways, a build, and an unknown command.
def sv_u(n):
    return n.to_bytes(8, "little")


def sv_s(b):
    b = b.encode() if isinstance(b, str) else b
    return sv_u(len(b)) + b + b"\0" * (-len(b) % 8)


def sv_l(items):
    return sv_u(len(items)) + b"".join(sv_s(x) for x in items)


sv_nar = b"".join(sv_s(t) for t in ["nix-archive-1", "(", "type", "regular", "contents", "hello\n", ")"])
sv_path = "/nix/store/0rz4g4znpzjwh1xymhjpm42vipw92pr7-hello"
sv_out = "/nix/store/1rz4g4znpzjwh1xymhjpm42vipw92pr7-built"
sv_hello = sv_u(0x390C9DEB) + sv_u(0x206)


def sv_add(path, digest, refs=()):
    return (sv_u(9) + sv_s(path) + sv_s("") + sv_s("sha256:" + digest) + sv_l(list(refs))
            + sv_u(0) + sv_u(len(sv_nar)) + sv_u(1) + sv_l([]) + sv_s("") + sv_nar)


sv_good = hashlib.sha256(sv_nar).hexdigest()
sv_drv = (sv_u(8) + sv_s("/nix/store/2rz4g4znpzjwh1xymhjpm42vipw92pr7-built.drv") + sv_u(1)
          + sv_s("out") + sv_s(sv_out) + sv_s("") + sv_s("") + sv_l([sv_path]) + sv_s("x86_64-linux")
          + sv_s(sv_path) + sv_l(["-c", "echo hi > $out"]) + sv_u(2) + sv_s("out") + sv_s(sv_out)
          + sv_s("name") + sv_s("built") + sv_u(0) * 5)
sv_export = (sv_u(1) + sv_nar + sv_u(0x4558494E) + sv_s(sv_path) + sv_l([]) + sv_s("") + sv_u(0)
             + sv_u(0))
seeds["nix_serve"] = [
    sv_hello,
    sv_hello + sv_u(1) + sv_u(0) + sv_u(0) + sv_l([sv_path]) + sv_u(2) + sv_l([sv_path]),
    sv_hello + sv_add(sv_path, sv_good) + sv_u(2) + sv_l([sv_path]) + sv_u(3) + sv_s(sv_path)
    + sv_u(7) + sv_u(0) + sv_l([sv_path]) + sv_u(5) + sv_u(0) + sv_l([sv_path]),
    sv_hello + sv_add(sv_path, "0" * 64),
    sv_hello + sv_add(sv_path, sv_good, [sv_path]) + sv_add(sv_out, sv_good, [sv_path, sv_out]),
    sv_hello + sv_u(4) + sv_export + sv_u(2) + sv_l([sv_path]),
    sv_hello + sv_add(sv_path, sv_good) + sv_drv,
    sv_hello + sv_u(6) + sv_l([sv_out]) + sv_u(0) * 5,
    sv_hello + sv_u(99),
    # a second name for a held path's hash part must not replace its record,
    # which another record references (found by this target)
    sv_hello + sv_add(sv_path, sv_good) + sv_add(sv_out, sv_good, [sv_path])
    + sv_add(sv_path + "x", sv_good),
]

for target, inputs in seeds.items():
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for data in inputs:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)
