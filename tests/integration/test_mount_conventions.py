# SPDX-License-Identifier: MIT
"""mount(8) and /etc/fstab conventions (capshmfs(8) SYNOPSIS): `mount -t
fuse.capshmfs capshm MNT` and an fstab line start capshmfs through
mount.fuse3, umount(8) unmounts, and the daemon then exits.

How the build under test is found: mount(8) runs its helpers with a
sanitized environment (util-linux drops PATH), and mount.fuse3 starts
`capshmfs` through /bin/sh, so the shell's default PATH applies
(/usr/local/sbin first).  Putting the build directory on PATH therefore
cannot work.  Instead each test runs its mount commands in a private mount
namespace in which a directory holding a `capshmfs` link to CAPSHMFS is
bind-mounted over /usr/local/sbin.  The FUSE mounts then exist only in that
namespace: the test reaches them through /proc/HOLDER/root, where HOLDER is
a process that keeps the namespace alive.  Teardown kills every process in
the namespace, which also drops its mounts.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import procs
from capshm_test import CAPSHMFS

SHELL_PATH_FIRST = "/usr/local/sbin"


class MountNamespace:
    """A private mount namespace where `capshmfs` resolves to CAPSHMFS."""

    def __init__(self, tmp_path):
        self.bindir = tmp_path / "bin"
        self.bindir.mkdir()
        os.symlink(os.path.realpath(CAPSHMFS), str(self.bindir / "capshmfs"))
        script = 'mount --bind "$1" "$2" && echo ready && exec sleep 600'
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             "/bin/sh", "-c", script, "sh", str(self.bindir), SHELL_PATH_FIRST],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("mount namespace setup failed: %r %r" %
                               (line, self.holder.stderr.read()))
        self.ns = procs.mount_ns(self.holder.pid)
        self.cleanup_dirs = []
        assert self.ns and self.ns != procs.mount_ns(os.getpid())

    def run(self, argv, **kw):
        """Run argv inside the namespace (text output captured)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(["nsenter", "--target", str(self.holder.pid), "--mount", "--"] + argv, **kw)

    def path(self, p):
        """p as seen from inside the namespace."""
        return "/proc/%d/root%s" % (self.holder.pid, p)

    def mounts(self):
        """{mountpoint: (fstype, source, per-mount options)} inside the namespace."""
        return {m.point: (m.fstype, m.source, m.options) for m in procs.mounts(self.holder.pid)}

    def processes(self):
        """Pids of the processes in the namespace, the holder excluded."""
        return [p for p in procs.pids() if p != self.holder.pid and procs.mount_ns(p) == self.ns]

    def daemons(self):
        real = os.path.realpath(CAPSHMFS)
        pids = []
        for pid in self.processes():
            try:
                if os.readlink("/proc/%d/exe" % pid) == real:
                    pids.append(pid)
            except OSError:
                pass
        return pids

    def close(self):
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(self.holder.pid, signal.SIGKILL)
        except OSError:
            pass
        self.holder.wait()
        self.holder.stdout.close()
        self.holder.stderr.close()
        for d in self.cleanup_dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mountns(tmp_path):
    ns = MountNamespace(tmp_path)
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture
def mountpoint(mountns):
    """An empty directory; torn down after the namespace (and its mounts) are gone."""
    d = tempfile.mkdtemp(prefix="capshm-conv-")
    os.chmod(d, 0o755)
    mountns.cleanup_dirs.append(d)
    return d


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))


def check_mounted_and_working(ns, mnt, datapath):
    fstype, source, _ = ns.mounts()[mnt]
    assert (fstype, source) == ("fuse.capshmfs", "capshm")
    with open(ns.path(mnt) + "/.stats") as f:
        st = json.load(f)
    assert st["datapath"] == datapath
    assert st["linger"] == 5
    # A region made through the mount reads back.
    with open(ns.path(mnt) + "/.new") as f:
        name = f.read().strip()
    fd = os.open(ns.path(mnt) + "/" + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.pwrite(fd, b"conventions", 0)
        assert os.pread(fd, 11, 0) == b"conventions"
    finally:
        os.close(fd)
    daemons = ns.daemons()
    assert len(daemons) == 1, "expected one capshmfs from the build under test, got %s" % daemons
    return daemons[0]


def umount_and_check_exit(ns, mnt, daemon):
    r = ns.run(["umount", mnt])
    assert r.returncode == 0, r.stderr
    assert mnt not in ns.mounts()
    wait_until(lambda: not os.path.exists("/proc/%d" % daemon) or
               open("/proc/%d/stat" % daemon).read().split(") ")[1][0] == "Z",
               10, "capshmfs to exit after umount")


def test_mount_t_fuse_capshmfs(mountns, mountpoint, datapath):
    r = mountns.run(["mount", "-t", "fuse.capshmfs", "capshm", mountpoint,
                     "-o", "linger=5,datapath=" + datapath])
    assert r.returncode == 0, r.stderr
    daemon = check_mounted_and_working(mountns, mountpoint, datapath)
    umount_and_check_exit(mountns, mountpoint, daemon)


def test_fstab_line(mountns, mountpoint, datapath, tmp_path):
    # The options a real fstab line would carry: mount.fuse3 drops noauto,
    # nofail, _netdev and x-* itself; nosuid,nodev reach the kernel.
    fstab = tmp_path / "fstab"
    fstab.write_text("# capshm, as in /etc/fstab\n"
                     "capshm %s fuse.capshmfs "
                     "nosuid,nodev,noauto,nofail,_netdev,x-systemd.after=local-fs.target,"
                     "linger=5,datapath=%s 0 0\n" % (mountpoint, datapath))
    r = mountns.run(["mount", "-T", str(fstab), mountpoint])
    assert r.returncode == 0, r.stderr
    daemon = check_mounted_and_working(mountns, mountpoint, datapath)
    flags = mountns.mounts()[mountpoint][2].split(",")
    assert "nosuid" in flags and "nodev" in flags
    umount_and_check_exit(mountns, mountpoint, daemon)


def test_mount_with_a_bad_option_fails_cleanly(mountns, mountpoint):
    r = mountns.run(["mount", "-t", "fuse.capshmfs", "capshm", mountpoint, "-o", "linger=soon"])
    assert r.returncode != 0
    assert "linger" in r.stderr
    assert mountpoint not in mountns.mounts()
    wait_until(lambda: not mountns.daemons(), 5, "no capshmfs left running")
