#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A small agent that runs as another uid and does what it is told on the
mount at argv[1], one JSON request a line on stdin, one JSON answer a line on
stdout (capshm_test.Agent speaks to it; the `agents` fixture starts it):

  ["mint"] -> name                   ["create", mode, size] -> name (held open)
  ["create_named", name, mode]       ["open", name, flags] -> fd (held open)
  ["close", name]                    ["chmod", name, mode]
  ["listdir"] -> names               ["mine"] -> the names in .mine
  ["read", name, off, len] -> hex    ["getxattr", name, key]
  ["setxattr", name, key, value]     ["unlink", name]
  ["stats"] -> .stats

The answer is {"ok": value} or {"errno": "EACCES"}; the first line is
{"ok": "ready"}.  Run as a script from a copy other uids can read (the
checkout may be in a directory they cannot enter): standard library only.
"""
import errno
import json
import os
import sys

mnt = sys.argv[1]
fds = {}        # name -> the fds held open on it


def p(name):
    return os.path.join(mnt, name)


def do(req):
    op = req[0]
    if op == "mint":
        with open(p(".new")) as f:
            return f.read().strip()
    if op == "create":
        with open(p(".new")) as f:
            name = f.read().strip()
        fd = os.open(p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, req[1])
        if req[2]:
            os.ftruncate(fd, req[2])
        fds.setdefault(name, []).append(fd)
        return name
    if op == "create_named":
        fd = os.open(p(req[1]), os.O_RDWR | os.O_CREAT | os.O_EXCL, req[2])
        fds.setdefault(req[1], []).append(fd)
        return req[1]
    if op == "open":
        fd = os.open(p(req[1]), req[2])
        fds.setdefault(req[1], []).append(fd)
        return fd
    if op == "close":
        for fd in fds.pop(req[1], []):
            os.close(fd)
        return None
    if op == "chmod":
        os.chmod(p(req[1]), req[2])
        return None
    if op == "listdir":
        return sorted(os.listdir(mnt))
    if op == "mine":
        with open(p(".mine")) as f:
            return sorted(f.read().split())
    if op == "read":
        fd = os.open(p(req[1]), os.O_RDONLY)
        try:
            return os.pread(fd, req[3], req[2]).hex()
        finally:
            os.close(fd)
    if op == "getxattr":
        return os.getxattr(p(req[1]), req[2]).decode()
    if op == "setxattr":
        os.setxattr(p(req[1]), req[2], req[3].encode())
        return None
    if op == "unlink":
        os.unlink(p(req[1]))
        return None
    if op == "stats":
        with open(p(".stats")) as f:
            return json.load(f)
    raise ValueError("unknown op %r" % op)


print(json.dumps({"ok": "ready"}), flush=True)
for line in sys.stdin:
    try:
        ans = {"ok": do(json.loads(line))}
    except OSError as e:
        ans = {"errno": errno.errorcode.get(e.errno, str(e.errno))}
    print(json.dumps(ans), flush=True)
