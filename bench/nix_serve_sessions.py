#!/usr/bin/python3
"""The builder's side of bench/nix_serve.sh alone: for each derivation of
DRVS.json (`nix show-derivation` output; its input sources are INPUT), one
session of the serve protocol as Nix 2.8's build hook speaks it (handshake,
QueryValidPaths of the input, AddToStoreNar of it when missing,
BuildDerivation, QueryPathInfos and DumpStorePath of the outputs), spoken
directly to each PROGRAM in turn (a new process per session, as sshd starts
one; the first program rotates), with no ssh and no client Nix. Prints the
median milliseconds of a session for each program.

usage: bench/nix_serve_sessions.py DRVS.json INPUT INPUT.nar -- PROGRAM ARGS... [-- PROGRAM ARGS...]..."""
import hashlib
import json
import struct
import subprocess
import sys
import time


def u(n):
    return struct.pack('<Q', n)


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return u(len(b)) + b + b'\0' * (-len(b) % 8)


def sv(items):
    return u(len(items)) + b''.join(s(x) for x in items)


class Conn:
    def __init__(self, p):
        self.p = p

    def read(self, n):
        b = b''
        while len(b) < n:
            x = self.p.stdout.read(n - len(b))
            if not x:
                raise EOFError('the server closed the connection')
            b += x
        return b

    def u64(self):
        return struct.unpack('<Q', self.read(8))[0]

    def str(self):
        n = self.u64()
        b = self.read(n)
        self.read(-n % 8)
        return b

    def strs(self):
        return [self.str() for _ in range(self.u64())]

    def send(self, b):
        self.p.stdin.write(b)
        self.p.stdin.flush()


def session(prog, drv_path, d, src, src_nar):
    p = subprocess.Popen(prog + ['--serve', '--write'], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    c = Conn(p)
    c.send(u(0x390c9deb) + u(0x206))
    assert c.u64() == 0x5452eecb
    c.u64()
    c.send(u(1) + u(0) + u(0) + sv([src]))
    if not c.strs():
        c.send(u(9) + s(src) + s('') + s(hashlib.sha256(src_nar).hexdigest()) + sv([]) + u(0)
               + u(len(src_nar)) + u(1) + sv([]) + s('') + src_nar)
        assert c.u64() == 1
    m = u(8) + s(drv_path) + u(len(d['outputs']))
    for name, o in sorted(d['outputs'].items()):
        m += s(name) + s(o['path']) + s(o.get('hashAlgo', '')) + s(o.get('hash', ''))
    m += sv(sorted(d['inputSrcs'])) + s(d['system']) + s(d['builder']) + sv(d['args'])
    m += u(len(d['env'])) + b''.join(s(k) + s(v) for k, v in sorted(d['env'].items()))
    m += u(0) * 5  # maxSilentTime, buildTimeout, maxLogSize, buildRepeat, enforceDeterminism
    c.send(m)
    status, msg = c.u64(), c.str()
    c.u64(), c.u64(), c.u64(), c.u64()
    for _ in range(c.u64()):  # builtOutputs
        c.str(), c.str()
    if status != 0:
        sys.exit('build of %s failed: %r' % (drv_path, msg))
    outs = [o['path'] for o in d['outputs'].values()]
    c.send(u(2) + sv(outs))
    while c.str():
        c.str(), c.strs(), c.u64(), c.u64(), c.str(), c.str(), c.strs()
    for o in outs:
        c.send(u(3) + s(o))
        depth = 0
        while True:  # the NAR, token by token
            t = c.str()
            if t == b'(':
                depth += 1
            elif t == b')':
                depth -= 1
                if depth == 0:
                    break
            elif t == b'contents':
                c.str()
    p.stdin.close()
    if p.wait() != 0:
        sys.exit('the server failed')


def main():
    if len(sys.argv) < 6 or sys.argv[4] != '--':
        sys.exit(__doc__)
    drvs = json.load(open(sys.argv[1]))
    src, src_nar = sys.argv[2], open(sys.argv[3], 'rb').read()
    progs = [[]]
    for a in sys.argv[5:]:
        if a == '--':
            progs.append([])
        else:
            progs[-1].append(a)
    times = [[] for _ in progs]
    for k, (drv_path, d) in enumerate(sorted(drvs.items())):
        for j in range(len(progs)):
            i = (j + k) % len(progs)
            t0 = time.time()
            session(progs[i], drv_path, d, src, src_nar)
            times[i].append((time.time() - t0) * 1000)
    for prog, t in zip(progs, times):
        t.sort()
        print('%.0f' % t[len(t) // 2])


main()
