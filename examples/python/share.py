#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""share.py — two processes share memory through a capshm region.

    terminal 1:  python3 share.py create          prints the region's name, waits for a reply
    terminal 2:  python3 share.py attach          reads NAME from stdin (or
                                                  $CAPSHM_NAME), reads the message,
                                                  writes a reply

The name is the key to the region: it travels on stdin or in the
environment, never on the command line (/proc/PID/cmdline is public).

Only the standard library: the region is a file, so os.open and mmap are
all it takes.  The mount is $CAPSHM_DIR, else /run/capshm.  Layout (shared
by every example): offset 0 the creator's message, offset 2048 the reply,
offset 4095 set to 1 once the reply is complete.
"""
import mmap
import os
import sys
import time

DIR = os.environ.get("CAPSHM_DIR") or "/run/capshm"
SIZE, MSG, REPLY, DONE = 4096, 0, 2048, 4095


def text_at(m, off):
    """The NUL-terminated string at offset off."""
    end = m.find(b"\0", off)
    return m[off:end].decode()


def create():
    # 1. Mint a name: every read of .new gives a fresh, unguessable one.
    with open(os.path.join(DIR, ".new")) as f:
        name = f.read().strip()
    # 2. Create the region under that name and give it a size.
    fd = os.open(os.path.join(DIR, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, SIZE)
    m = mmap.mmap(fd, SIZE)  # MAP_SHARED, read-write
    os.close(fd)             # the mapping alone keeps the region alive

    msg = b"hello from Python, pid %d\0" % os.getpid()
    m[MSG:MSG + len(msg)] = msg
    print(name, flush=True)  # the name is the capability: pass it on

    for _ in range(6000):    # wait up to a minute for the reply
        if m[DONE] == 1:
            print("reply:", text_at(m, REPLY))
            return 0
        time.sleep(0.01)
    print("share.py: no reply within 60 s", file=sys.stderr)
    return 1


def attach(name):
    fd = os.open(os.path.join(DIR, name), os.O_RDWR)
    m = mmap.mmap(fd, SIZE)
    os.close(fd)
    print("message:", text_at(m, MSG))
    reply = b"thanks from Python, pid %d\0" % os.getpid()
    m[REPLY:REPLY + len(reply)] = reply
    m[DONE] = 1              # last: the reply is complete
    m.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["create"]:
        sys.exit(create())
    if sys.argv[1:] == ["attach"]:
        name = os.environ.get("CAPSHM_NAME") or sys.stdin.readline().strip()
        if not name:
            print("share.py: no NAME on stdin or in CAPSHM_NAME", file=sys.stderr)
            sys.exit(2)
        sys.exit(attach(name))
    print("usage: share.py create | share.py attach  (NAME on stdin or in CAPSHM_NAME)",
          file=sys.stderr)
    sys.exit(2)
