#!/usr/bin/python3
"""A tiny systemd-style socket activator for tests.

usage: sd_launcher.py ADDR INFO_FILE CMD ARGS...
ADDR is unix:/path or tcp:HOST:PORT (port 0 picks one). Binds and listens,
writes the bound address to INFO_FILE (unix:/path or HOST:PORT), passes the
socket as fd 3 with LISTEN_FDS=1 and LISTEN_PID set to this process (which
the exec keeps), then execs CMD.
"""
import os
import socket
import sys

addr, info, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
if addr.startswith("unix:"):
    path = addr[len("unix:"):]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    bound = "unix:" + path
elif addr.startswith("tcp:"):
    host, port = addr[len("tcp:"):].rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    bound = "%s:%d" % s.getsockname()[:2]
else:
    sys.exit("sd_launcher: bad address " + addr)
s.listen(64)
with open(info, "w") as f:
    f.write(bound + "\n")
fd = s.fileno()
if fd != 3:
    os.dup2(fd, 3)
    s.close()
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = "kiln"
os.execvp(cmd[0], cmd)
