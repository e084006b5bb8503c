#!/usr/bin/python3
"""Generates a deterministic tree of mixed-size random files for the import
and FUSE benchmarks: gen_tree.py DEST [FILES] [TOTAL_MIB]."""
import os
import random
import sys

dest = sys.argv[1]
files = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
total = (int(sys.argv[3]) if len(sys.argv) > 3 else 1024) << 20
rng = random.Random(42)

# Mostly small files, some medium, a few large: sizes drawn from a
# log-uniform distribution, then scaled to the requested total.
sizes = [int(2 ** rng.uniform(8, 24)) for _ in range(files)]
scale = total / sum(sizes)
sizes = [max(0, int(s * scale)) for s in sizes]
sizes[-1] += total - sum(sizes)

per_dir = 200
chunk = os.urandom(64 << 20)
pos = 0
for i, size in enumerate(sizes):
    d = os.path.join(dest, "d%03d" % (i // per_dir), "s%02d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        left = size
        while left:
            n = min(left, len(chunk) - pos)
            f.write(chunk[pos:pos + n])
            pos = (pos + n) % len(chunk)
            left -= n
    if i % 10 == 0:
        os.chmod(os.path.join(d, "f%05d" % i), 0o755)
