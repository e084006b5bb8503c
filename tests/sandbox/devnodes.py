#!/usr/bin/python3
"""The host's device nodes that builds get bind-mounted, for the sandbox
attack battery: nothing done inside a build may change them.

    devnodes.py snapshot FILE        record type, mode, owner, mtime of each node
    devnodes.py check FILE           compare with FILE; print one line per node that
                                     differs, put it back as recorded, exit 1 if
                                     anything differed
    devnodes.py repair               fix owner and mode of nodes that an earlier
                                     build left owned by a non-root id (prints
                                     what it fixed)
"""
import json
import os
import stat
import sys

NODES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
# What Debian creates: (major, minor); all 0666 root:root.
DEVS = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7),
        "/dev/random": (1, 8), "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}


def state(p):
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    return {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
            "gid": st.st_gid, "rdev": st.st_rdev, "mtime_ns": st.st_mtime_ns,
            "atime_ns": st.st_atime_ns}


def describe(s):
    if s is None:
        return "missing"
    kind = "char device" if s["type"] == stat.S_IFCHR else "type %o" % s["type"]
    return "%s %04o %d:%d mtime %d.%09d" % (kind, s["mode"], s["uid"], s["gid"],
                                           s["mtime_ns"] // 10**9, s["mtime_ns"] % 10**9)


def restore(p, want):
    cur = state(p)
    if cur is None or cur["type"] != want["type"] or cur["rdev"] != want["rdev"]:
        if cur is not None:
            os.unlink(p)
        os.mknod(p, want["type"] | want["mode"], want["rdev"])
    os.chown(p, want["uid"], want["gid"])
    os.chmod(p, want["mode"])
    os.utime(p, ns=(want["atime_ns"], want["mtime_ns"]))


def main():
    cmd = sys.argv[1]
    if cmd == "snapshot":
        with open(sys.argv[2], "w") as f:
            json.dump({p: state(p) for p in NODES}, f)
        return 0
    if cmd == "check":
        with open(sys.argv[2]) as f:
            want = json.load(f)
        bad = 0
        for p in NODES:
            cur = state(p)
            w = want[p]
            # atime moves whenever anybody reads the node: not compared
            if cur is not None and w is not None and all(
                    cur[k] == w[k] for k in ("type", "mode", "uid", "gid", "rdev", "mtime_ns")):
                continue
            print("host %s changed: was %s, now %s" % (p, describe(w), describe(cur)))
            bad = 1
            if w is not None:
                restore(p, w)
        return bad
    if cmd == "repair":
        for p, (ma, mi) in DEVS.items():
            cur = state(p)
            if cur is None or cur["type"] != stat.S_IFCHR or cur["rdev"] != os.makedev(ma, mi):
                continue
            if cur["uid"] != 0 or cur["gid"] != 0 or cur["mode"] != 0o666:
                print("host %s was %s (left so by an earlier build); restored to 0666 0:0"
                      % (p, describe(cur)))
                os.chown(p, 0, 0)
                os.chmod(p, 0o666)
        return 0
    return 2


sys.exit(main())
