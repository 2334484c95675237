# SPDX-License-Identifier: MIT
"""The daemon dies (SIGKILL) while regions are mapped (capshmfs(8) LIFETIME
and DATA PATHS).

- passthrough: existing mappings keep working after the kill, for reading
  and writing, and stay coherent between the processes that map them;
- either path: the mountpoint answers ENOTCONN once the daemon is gone
  (ECONNABORTED for a request the kernel had queued on an io_uring that
  was torn down with the daemon);
- starting capshmfs again on the same mountpoint detects the dead mount,
  clears it and mounts, saying so in exactly one log line;
- cache: a mapped page that was never read in is SIGBUS for the toucher,
  not a hang.
Every mount and process is cleaned up whatever happens.
"""
import errno
import os
import signal
import subprocess

import pytest

import procs
from capshm_test import DATAPATHS, DEAD, USER_A, Mount, errno_of, mounted

PAGE = os.sysconf("SC_PAGE_SIZE")
STALE_LINE = "cleared a stale mount left by a daemon that died"

# A process that maps a region and then obeys commands on stdin, one per
# line: "check BYTE" (every byte of the mapping is BYTE), "fill BYTE",
# "touch N" (read page N), "close" (drop its fd, keep the mapping).
MAPPER = r'''
import mmap, os, sys
path, size, keep_fd = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, size)
m.madvise(mmap.MADV_RANDOM)   # no readahead: "touch" faults in one page
if not keep_fd:
    os.close(fd)
print("ready", flush=True)
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "check":
        want = bytes([int(arg)]) * size
        print("ok" if m[:] == want else "bad %r" % m[:16], flush=True)
    elif cmd == "fill":
        m[:] = bytes([int(arg)]) * size
        print("ok", flush=True)
    elif cmd == "touch":
        n = int(arg)
        print("ok %d" % m[n * mmap.PAGESIZE], flush=True)
'''


def kill_daemon(m):
    """SIGKILL the daemon and wait until it is gone (not even a zombie)."""
    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait(10)


@pytest.fixture
def crashmnt(mount_factory, tmp_path):
    """mount_factory plus cleanup of the daemons restarted by a test."""
    restarted = []

    def make(datapath, *opts):
        return mount_factory(datapath, *opts)

    def again(m):
        """A second daemon on m's mountpoint; returns its Mount."""
        m2 = Mount(m.path, m.datapath, m.opts, str(tmp_path / ("restarted%d.log" % len(restarted))))
        restarted.append(m2)          # cleaned up even if start() fails
        return m2.start()

    make.restart = again
    yield make
    for m2 in restarted:
        m2.stop(signal.SIGKILL if m2.proc and m2.proc.poll() is None else signal.SIGTERM)
        if mounted(m2.path):
            subprocess.run(["umount", "-l", m2.path], stderr=subprocess.DEVNULL)


@pytest.mark.skipif("passthrough" not in DATAPATHS, reason="passthrough is not under test")
def test_passthrough_mappings_survive_daemon_kill(crashmnt, children):
    m = crashmnt("passthrough", "linger=1")
    size = 4 * PAGE
    name, fd = m.create(size, 0o666)
    os.pwrite(fd, b"\x11" * size, 0)
    os.close(fd)
    path = m.p(name)
    # A writer (root, fd closed: the mapping alone holds it) and a reader
    # of another uid that keeps its fd.
    w = children(["/usr/bin/python3", "-c", MAPPER, path, size, 0]).expect("ready")
    r = children(["/usr/bin/python3", "-c", MAPPER, path, size, 1], uid=USER_A).expect("ready")
    assert w.cmd("check 17") == "ok" and r.cmd("check 17") == "ok"

    kill_daemon(m)

    # The mappings are the memfd itself: they keep working, both ways.
    assert r.cmd("check 17") == "ok"
    assert w.cmd("fill 34") == "ok"
    assert r.cmd("check 34") == "ok"
    assert r.cmd("fill 51") == "ok"
    assert w.cmd("check 51") == "ok"
    # The mount itself is dead.  (stat() of the root itself may still be
    # answered from the kernel's attribute cache; statfs never is.)
    assert errno_of(lambda: os.statvfs(m.path)) in DEAD
    assert errno_of(lambda: os.open(path, os.O_RDONLY)) in DEAD
    assert errno_of(lambda: os.listdir(m.path)) in DEAD

    # A new daemon on the same mountpoint clears the dead mount itself.
    m2 = crashmnt.restart(m)
    log = m2.log()
    assert log.count(STALE_LINE) == 1, log
    assert [ln for ln in log.splitlines() if STALE_LINE in ln][0].startswith(
        "capshmfs: info: %s: " % m.path), log
    st = m2.stats()
    assert st["regions"] == 0 and st["datapath"] == "passthrough"
    assert errno_of(lambda: os.stat(path)) == errno.ENOENT   # old names died with the daemon
    # The old mappings still work, and the new mount works.
    assert w.cmd("fill 68") == "ok" and r.cmd("check 68") == "ok"
    name2, fd2 = m2.create(PAGE, 0o600)
    os.pwrite(fd2, b"new", 0)
    assert os.pread(fd2, 3, 0) == b"new"
    os.close(fd2)
    w.kill()
    r.kill()


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_restart_clears_stale_mount(crashmnt, datapath):
    m = crashmnt(datapath, "linger=1")
    name, fd = m.create(PAGE, 0o600)
    os.close(fd)
    # Cache the root's attributes (an hour's timeout): afterwards stat() of
    # the dead root still succeeds, so detection must not rely on it.
    os.stat(m.path)
    kill_daemon(m)
    assert errno_of(lambda: os.statvfs(m.path)) in DEAD
    assert mounted(m.path)                       # dead, but still in the mount table
    m2 = crashmnt.restart(m)
    assert m2.log().count(STALE_LINE) == 1, m2.log()
    # Exactly one mount of ours is left on the mountpoint: the new one.
    ours = [e.point for e in procs.mounts() if e.point == m.path]
    assert len(ours) == 1, ours
    assert m2.stats()["datapath"] == datapath
    name2, fd2 = m2.create(PAGE)
    os.close(fd2)
    # A clean stop leaves nothing mounted, and says nothing about stale mounts.
    assert m2.stop() == 0
    assert not mounted(m.path)


def test_no_stale_line_on_a_clean_mountpoint(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1")
    assert STALE_LINE not in m.log()


@pytest.mark.skipif("cache" not in DATAPATHS, reason="cache is not under test")
def test_cache_untouched_page_is_sigbus_not_a_hang(crashmnt, children):
    m = crashmnt("cache", "linger=1")
    size = 64 * PAGE
    name, fd = m.create(size, 0o666)   # sized, never written: nothing in the page cache
    os.close(fd)
    c = children(["/usr/bin/python3", "-c", MAPPER, m.p(name), size, 1]).expect("ready")
    assert c.cmd("touch 0") == "ok 0"          # page 0 is now in the page cache
    kill_daemon(m)
    assert c.cmd("touch 0") == "ok 0"          # cached pages still read
    c.send("touch 63")                         # page 63 never was read in
    try:
        status = c.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail("touching an uncached page of a dead cache mount hangs (or answered %r)"
                    % c.readline(1))
    assert status == -signal.SIGBUS
    assert errno_of(lambda: os.statvfs(m.path)) in DEAD
