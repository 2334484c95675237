# SPDX-License-Identifier: MIT
"""How requests reach the daemon: FUSE over io_uring or /dev/fuse.

- CAPSHM_IO_URING=auto (the default) uses io_uring when the build has it
  (libfuse >= 3.18) and the kernel allows it (fuse.enable_uring): .stats
  says "transport": "io_uring" and the daemon has one ring thread per CPU,
  scheduled SCHED_BATCH;
- off: /dev/fuse, no ring threads; on: io_uring or the mount fails with a
  one-line reason; anything else is refused;
- on io_uring, clients on every CPU at once are served by the ring thread
  of their own CPU, with every answer right (the core lock), and the daemon
  stops cleanly on SIGTERM in the middle of it.
"""
import os
import signal
import subprocess
import time

import pytest

from capshm_test import (CAPSHMFS, DAEMON_WRAPPER, DATAPATHS, URING_BUILD, URING_PARAM,
                      expected_transport, mounted)

NCPU = os.cpu_count() or 1
needs_uring = pytest.mark.skipif(not URING_BUILD, reason="built against libfuse < 3.18")
# The io_uring tests ask for it themselves: the suite may run with
# CAPSHM_IO_URING=off (scripts/test's integration-device).  Not under a
# daemon wrapper: valgrind cannot follow the rings (its daemon hangs).
AUTO = {"CAPSHM_IO_URING": "auto"}
needs_uring_daemon = pytest.mark.skipif(not URING_BUILD or bool(DAEMON_WRAPPER),
                                        reason="libfuse < 3.18, or the daemon runs under a wrapper")


def threads_of(pid):
    """{tid: comm} of a process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                out[int(tid)] = f.read().strip()
        except OSError:
            pass
    return out


def ring_threads(pid):
    return {tid: c for tid, c in threads_of(pid).items() if c.startswith("fuse-ring-")}


def cpu_ns(pid, tid):
    with open("/proc/%d/task/%d/schedstat" % (pid, tid)) as f:
        return int(f.read().split()[0])


class uring_param:
    """Set the kernel's fuse.enable_uring for a while, then put it back."""

    def __init__(self, value):
        self.value = value

    def __enter__(self):
        with open(URING_PARAM) as f:
            self.old = f.read().strip()
        with open(URING_PARAM, "w") as f:
            f.write(self.value)

    def __exit__(self, *exc):
        with open(URING_PARAM, "w") as f:
            f.write(self.old)


def start_fails(mp, env, timeout=20):
    """Start a daemon on @mp that must refuse to mount; its stderr."""
    r = subprocess.run([CAPSHMFS, mp, "-o", "datapath=" + DATAPATHS[0]],
                       env=dict(os.environ, **env), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode != 0, r
    assert not mounted(mp)
    err = r.stderr.strip()
    assert err.startswith("capshmfs: ") and "\n" not in err, r.stderr
    return err


def test_default_transport(mnt):
    """What every mount of this suite uses (conftest checks it too): on our
    machines, with a libfuse 3.18 build, that is io_uring."""
    want = expected_transport()
    assert mnt.stats()["transport"] == want
    rings = ring_threads(mnt.proc.pid)
    if want == "io_uring":
        assert sorted(rings.values()) == ["fuse-ring-%d" % i for i in range(NCPU)], rings
        # Their wake-ups do not preempt the client that sent a background
        # request (see prepare_ring_threads).
        assert all(os.sched_getscheduler(tid) == os.SCHED_BATCH for tid in rings), rings
        assert "transport=io_uring" in mnt.log()
    else:
        assert rings == {}
        assert "transport=device" in mnt.log()


def test_off_serves_through_the_device(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", env={"CAPSHM_IO_URING": "off"})
    assert m.stats()["transport"] == "device"
    assert ring_threads(m.proc.pid) == {}
    name, fd = m.create(4096)
    os.pwrite(fd, b"device", 0)
    with open(m.p(name), "rb") as f:
        assert f.read(6) == b"device"
    os.close(fd)


@pytest.mark.parametrize("value", ["yes", "1", "ON", "auto "])
def test_bad_setting_refused(bare_mountpoint, value):
    err = start_fails(bare_mountpoint, {"CAPSHM_IO_URING": value})
    assert "CAPSHM_IO_URING must be auto, on or off" in err


@pytest.mark.skipif(URING_BUILD, reason="this build has io_uring")
def test_on_without_libfuse_support_fails(bare_mountpoint):
    err = start_fails(bare_mountpoint, {"CAPSHM_IO_URING": "on"})
    assert "libfuse < 3.18" in err


@needs_uring
def test_kernel_switch_off(bare_mountpoint, datapath):
    """With fuse.enable_uring off, "on" fails naming the switch and "auto"
    falls back to /dev/fuse, saying why in the log."""
    with uring_param("N"):
        err = start_fails(bare_mountpoint, {"CAPSHM_IO_URING": "on"})
        assert "enable_uring" in err, err
        # "auto": started by hand, conftest's Mount would expect io_uring.
        proc = subprocess.Popen([CAPSHMFS, bare_mountpoint, "-f", "-o", "datapath=" + datapath],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env=dict(os.environ, **AUTO))
        try:
            deadline = time.time() + 20
            while not mounted(bare_mountpoint) and time.time() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert mounted(bare_mountpoint)
            with open(os.path.join(bare_mountpoint, ".stats")) as f:
                assert '"transport":"device"' in f.read()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "requests come through /dev/fuse (not io_uring: the kernel has FUSE over io_uring switched off" in out


# One client: a loop of create, size, write, map, read back, unlink, each
# region its own; prints "ok N" or the first error.
CLIENT = r'''
import mmap, os, sys
mnt, cpu, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
os.sched_setaffinity(0, {cpu})
import time
end = time.time() + seconds
n = 0
try:
    while time.time() < end:
        name = open(os.path.join(mnt, ".new")).read().strip()
        path = os.path.join(mnt, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(fd, 8192)
        tag = b"%d:%d:" % (cpu, n)
        os.pwrite(fd, tag, 0)
        m = mmap.mmap(fd, 8192)
        m[4096:4096 + len(tag)] = tag
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        got = os.pread(fd, len(tag), 4096)
        os.close(fd)
        m.close()
        if got != tag:
            print("mismatch %r %r" % (got, tag), flush=True)
            sys.exit(1)
        os.unlink(path)
        n += 1
except OSError as e:
    print("error %s after %d" % (e, n), flush=True)
    sys.exit(1)
print("ok %d" % n, flush=True)
'''


def run_clients(m, per_cpu, seconds):
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, m.path, str(cpu), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
             for cpu in range(NCPU) for _ in range(per_cpu)]
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        outs.append((p.returncode, out.strip()))
    return outs


@needs_uring_daemon
def test_clients_on_every_cpu_served_by_their_own_ring(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", env=AUTO)
    rings = ring_threads(m.proc.pid)
    assert len(rings) == NCPU, rings
    before = {tid: cpu_ns(m.proc.pid, tid) for tid in rings}
    outs = run_clients(m, 2, 2.0)
    bad = [o for o in outs if o[0] != 0 or not o[1].startswith("ok ")]
    assert not bad, bad
    assert all(int(o[1].split()[1]) > 0 for o in outs), outs
    # Every CPU's ring did work: requests were answered where they were sent.
    spent = {rings[tid]: cpu_ns(m.proc.pid, tid) - before[tid] for tid in rings}
    assert all(ns > 0 for ns in spent.values()), spent
    # Unlinked regions go once their mappers' exits are seen (pidfds, on
    # the main loop, under the core lock).
    deadline = time.time() + 10
    while (st := m.stats())["regions"] and time.time() < deadline:
        time.sleep(0.05)
    assert st["regions"] == 0 and st["bytes"] == 0, st


@needs_uring_daemon
def test_sigterm_while_every_ring_is_busy(mount_factory, datapath):
    """The daemon stops its ring threads (which libfuse cancels) while they
    answer requests: it exits 0 promptly and the clients see errors, not a
    hang."""
    m = mount_factory(datapath, "linger=1", env=AUTO)
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, m.path, str(cpu), "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for cpu in range(NCPU) for _ in range(2)]
    try:
        time.sleep(1.0)
        t0 = time.time()
        assert m.stop() == 0
        assert time.time() - t0 < 10
        assert not mounted(m.path)
        for p in procs:
            out, _ = p.communicate(timeout=30)
            # Either the loop hit the unmount (an error) or it was between
            # regions; never a hang, never a wrong byte.
            assert "mismatch" not in out, out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
