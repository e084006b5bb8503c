#!/usr/bin/python3
"""A host-side witness for the sandbox attack battery.

    listen.py tcp LOG             listens on 127.0.0.1 (an ephemeral port)
    listen.py abstract NAME LOG   listens on the abstract unix socket @NAME

Writes "ready PORT-or-NAME" as the first line of LOG once listening, then one
line per connection: "conn uid=U gid=G pid=P" (SO_PEERCRED, unix only) or
"conn from=ADDR". Stops by itself after 10 minutes so it never outlives a
test that forgot it.
"""
import os
import socket
import struct
import sys
import threading

threading.Timer(600, lambda: os._exit(0)).start()
mode = sys.argv[1]
if mode == "tcp":
    log = sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    where = str(s.getsockname()[1])
else:
    name, log = sys.argv[2], sys.argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + name)
    where = name
s.listen(16)
with open(log, "a") as f:
    f.write("ready %s\n" % where)
while True:
    c, addr = s.accept()
    if mode == "tcp":
        line = "conn from=%s:%d" % addr
    else:
        pid, uid, gid = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        line = "conn uid=%d gid=%d pid=%d" % (uid, gid, pid)
    with open(log, "a") as f:
        f.write(line + "\n")
    c.close()
