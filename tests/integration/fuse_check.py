#!/usr/bin/python3
"""Checks of a kiln FUSE mount that are awkward in shell (used by fuse_mount.sh).

fuse_check.py compare SRC MNT      tree, modes, nlink, sizes, inode sharing
fuse_check.py xattr PATH NAME VAL  getxattr/listxattr incl. size 0 and ERANGE
fuse_check.py no-xattr PATH        xattrs disabled: ENOTSUP
fuse_check.py erofs DIR FILE       every modifying call fails with EROFS
fuse_check.py enoent PATH...       lookups fail with ENOENT
fuse_check.py getdents DIR N       listing with tiny getdents64 buffers equals
                                   os.listdir, N entries, no duplicates,
                                   offsets stable when resuming
fuse_check.py errno ERRNO CMD PATH open+read PATH fails with ERRNO
"""
import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
import sys

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
SYS_getdents64 = 217  # x86-64


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def expect_errno(code, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        if e.errno != code:
            fail(f"{fn.__name__}{args}: errno {errno.errorcode.get(e.errno)}, want {errno.errorcode[code]}")
        return
    fail(f"{fn.__name__}{args} succeeded, want {errno.errorcode[code]}")


def digest_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.digest()
            h.update(b)


def compare(src, mnt):
    src, mnt = os.fsencode(src), os.fsencode(mnt)
    by_content = {}  # (sha256, exec) -> inode
    inodes = {}  # inode -> (sha256, exec)
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        m = os.path.normpath(os.path.join(mnt, rel))
        entries = sorted(os.listdir(dirpath))
        if sorted(os.listdir(m)) != entries:
            fail(f"listing of {m!r} differs")
        st = os.lstat(m)
        subdirs = sum(1 for n in entries if stat.S_ISDIR(os.lstat(os.path.join(dirpath, n)).st_mode))
        if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != 0o555:
            fail(f"{m!r}: mode {oct(st.st_mode)}")
        if st.st_nlink != 2 + subdirs:
            fail(f"{m!r}: nlink {st.st_nlink}, want {2 + subdirs}")
        if st.st_size != len(entries):
            fail(f"{m!r}: size {st.st_size}, want {len(entries)} entries")
        for name in entries:
            s = os.lstat(os.path.join(dirpath, name))
            p = os.path.join(m, name)
            t = os.lstat(p)
            count += 1
            if t.st_uid != 0 or t.st_gid != 0 or t.st_mtime != 0:
                fail(f"{p!r}: owner/time {t.st_uid}:{t.st_gid} {t.st_mtime}")
            if stat.S_ISLNK(s.st_mode):
                if not stat.S_ISLNK(t.st_mode) or os.readlink(p) != os.readlink(os.path.join(dirpath, name)):
                    fail(f"{p!r}: symlink differs")
                if t.st_nlink != 1:
                    fail(f"{p!r}: symlink nlink {t.st_nlink}")
            elif stat.S_ISREG(s.st_mode):
                ex = bool(s.st_mode & stat.S_IXUSR)
                want = 0o555 if ex else 0o444
                if not stat.S_ISREG(t.st_mode) or stat.S_IMODE(t.st_mode) != want:
                    fail(f"{p!r}: mode {oct(t.st_mode)}, want {oct(want)}")
                if t.st_nlink != 1 or t.st_size != s.st_size:
                    fail(f"{p!r}: nlink {t.st_nlink} size {t.st_size}")
                key = (digest_of(os.path.join(dirpath, name)), ex)
                if by_content.setdefault(key, t.st_ino) != t.st_ino:
                    fail(f"{p!r}: inode {t.st_ino}, same content had {by_content[key]}")
                if inodes.setdefault(t.st_ino, key) != key:
                    fail(f"{p!r}: inode {t.st_ino} shared by different content or mode")
            elif not stat.S_ISDIR(t.st_mode):
                fail(f"{p!r}: type differs")
    print(f"compared {count} entries")


def raw_getxattr(path, name, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    n = libc.getxattr(os.fsencode(path), name.encode(), buf if size else None, ctypes.c_size_t(size))
    if n < 0:
        return -ctypes.get_errno(), b""
    return n, buf.raw[:n] if size else b""


def xattr(path, name, value):
    got = os.getxattr(path, name)
    if got != value.encode():
        fail(f"{path}: {name} = {got!r}, want {value!r}")
    n, _ = raw_getxattr(path, name, 0)
    if n != len(value):
        fail(f"{path}: size query gave {n}, want {len(value)}")
    n, _ = raw_getxattr(path, name, 10)
    if n != -errno.ERANGE:
        fail(f"{path}: small buffer gave {n}, want -ERANGE")
    expect_errno(errno.ENODATA, os.getxattr, path, "user.nope")
    if os.listxattr(path) != [name]:
        fail(f"{path}: listxattr {os.listxattr(path)}")


def no_xattr(path):
    expect_errno(errno.ENOTSUP, os.getxattr, path, "user.tvix.castore.blob.digest")


def erofs(d, f):
    E = errno.EROFS
    expect_errno(E, os.open, f, os.O_WRONLY)
    expect_errno(E, os.open, f, os.O_RDWR)
    expect_errno(E, os.open, os.path.join(d, "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    expect_errno(E, os.mkdir, os.path.join(d, "newdir"))
    expect_errno(E, os.rename, f, os.path.join(d, "renamed"))
    expect_errno(E, os.unlink, f)
    expect_errno(E, os.rmdir, d)
    expect_errno(E, os.chmod, f, 0o777)
    expect_errno(E, os.chown, f, 1, 1)
    expect_errno(E, os.utime, f, (1, 1))
    expect_errno(E, os.truncate, f, 0)
    expect_errno(E, os.symlink, "x", os.path.join(d, "newlink"))
    expect_errno(E, os.link, f, os.path.join(d, "newhard"))
    expect_errno(E, os.mknod, os.path.join(d, "fifo"), 0o644 | stat.S_IFIFO)
    expect_errno(E, os.setxattr, f, "user.x", b"1")
    expect_errno(E, os.removexattr, f, "user.tvix.castore.blob.digest")


def enoent(*paths):
    for p in paths:
        expect_errno(errno.ENOENT, os.lstat, p)


def getdents(d, bufsize, start=0):
    """[(name, d_off)] read with getdents64 into bufsize-byte buffers."""
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        buf = ctypes.create_string_buffer(bufsize)
        out = []
        while True:
            n = libc.syscall(SYS_getdents64, fd, buf, bufsize)
            if n < 0:
                fail(f"getdents64: {os.strerror(ctypes.get_errno())}")
            if n == 0:
                return out
            raw = buf.raw[:n]
            pos = 0
            while pos < n:
                off = int.from_bytes(raw[pos + 8:pos + 16], "little", signed=True)
                reclen = int.from_bytes(raw[pos + 16:pos + 18], "little")
                name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0]
                out.append((name, off))
                pos += reclen
    finally:
        os.close(fd)


def check_getdents(d, n):
    n = int(n)
    want = sorted(os.listdir(os.fsencode(d)))
    if len(want) != n:
        fail(f"os.listdir gave {len(want)} entries, want {n}")
    full = getdents(d, 65536)
    for bufsize in (48, 100, 1024):
        small = getdents(d, bufsize)
        if small != full:
            fail(f"getdents with {bufsize}-byte buffers differs from 64 KiB buffers")
    names = [x for x, _ in full if x not in (b".", b"..")]
    if len(names) != len(set(names)):
        fail("duplicate entries")
    if sorted(names) != want:
        fail("getdents names differ from os.listdir")
    # resume at each of a few reported offsets: exactly the rest follows
    for i in (0, 1, len(full) // 3, len(full) - 2):
        rest = getdents(d, 512, full[i][1])
        if rest != full[i + 1:]:
            fail(f"resuming at offset {full[i][1]} (entry {i}) does not give the rest")
    print(f"getdents ok: {len(names)} entries")


def check_errno(code, path):
    code = getattr(errno, code)

    def open_read(p):
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass

    expect_errno(code, open_read, path)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "compare": compare,
        "xattr": xattr,
        "no-xattr": no_xattr,
        "erofs": erofs,
        "enoent": enoent,
        "getdents": check_getdents,
        "errno": check_errno,
    }[cmd](*args)


if __name__ == "__main__":
    main()
