"""Fixtures for capshm integration tests: real mounts, real processes.

Environment (set by scripts/test; defaults point at an in-tree build/):
  CAPSHMFS          path of the capshmfs daemon binary
  CAPSHM_CLI        path of the capshm command-line tool
  CAPSHM_HELPER     path of tests/integration/helpers/shm-helper
  CAPSHM_DATAPATHS  comma-separated data paths to test: "passthrough,cache"
                    (a libfuse 3.14 build sets "cache")

Every mount is made by the `mount` factory fixture and is always unmounted
and its daemon killed at teardown, even when the test fails.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
CAPSHMFS = os.environ.get("CAPSHMFS", os.path.join(BUILD, "src/daemon/capshmfs"))
CAPSHM_CLI = os.environ.get("CAPSHM_CLI", os.path.join(BUILD, "src/cli/capshm"))
HELPER = os.environ.get("CAPSHM_HELPER", os.path.join(BUILD, "tests/integration/helpers/shm-helper"))
DATAPATHS = [d for d in os.environ.get("CAPSHM_DATAPATHS", "passthrough,cache").split(",") if d]
# Extra command prefix for the daemon, e.g. "valgrind --error-exitcode=99".
DAEMON_WRAPPER = os.environ.get("CAPSHM_DAEMON_WRAPPER", "").split()

# An unprivileged uid/gid pair for tests that switch users.
USER_A = 4001
USER_B = 4002


def pytest_collection_modifyitems(config, items):
    if not os.path.exists("/dev/fuse"):
        skip = pytest.mark.skip(reason="/dev/fuse is absent")
        for item in items:
            item.add_marker(skip)


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


class Mount:
    """One capshmfs daemon serving one mountpoint."""

    def __init__(self, path, datapath, opts, log):
        self.path = path
        self.datapath = datapath
        self.opts = opts
        self.log_path = log
        self.proc = None

    def p(self, name):
        return os.path.join(self.path, name)

    def start(self):
        o = ",".join(["datapath=" + self.datapath] + self.opts)
        cmd = DAEMON_WRAPPER + [CAPSHMFS, self.path, "-f", "-o", o]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("capshmfs exited with %s:\n%s" % (self.proc.returncode, self.log()))
            if mounted(self.path):
                try:
                    st = self.stats()
                    if st["datapath"] != self.datapath:
                        raise RuntimeError("asked for datapath=%s, got %s" % (self.datapath, st["datapath"]))
                    return self
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError("capshmfs did not mount within 20 s:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stats(self):
        with open(self.p(".stats")) as f:
            return json.load(f)

    def new_name(self):
        with open(self.p(".new")) as f:
            return f.read().strip()

    def create(self, size=0, mode=0o600, name=None):
        """Mint (unless name given), create and size a region; returns (name, fd).
        The region gets exactly `mode` (the umask is overridden with fchmod)."""
        name = name or self.new_name()
        fd = os.open(self.p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)
        if size:
            os.ftruncate(fd, size)
        return name, fd

    def wait_for(self, pred, timeout=10.0, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError("timed out after %.1fs waiting for %s; stats=%s" %
                             (timeout, what, self.stats()))

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stop the daemon; returns its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        status = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            status = self.proc.returncode
        if mounted(self.path):
            subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)
        self._log.close()
        self.proc = None
        return status


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(datapath, *opts) -> Mount; all are torn down after the test."""
    mounts = []

    def make(datapath, *opts):
        mnt = tempfile.mkdtemp(prefix="capshm-mnt-")
        os.chmod(mnt, 0o755)
        m = Mount(mnt, datapath, list(opts), str(tmp_path / ("daemon%d.log" % len(mounts))))
        mounts.append(m)
        return m.start()

    yield make
    for m in mounts:
        m.stop(signal.SIGKILL if m.proc and m.proc.poll() is None else signal.SIGTERM)
        if mounted(m.path):
            subprocess.run(["umount", "-l", m.path], stderr=subprocess.DEVNULL)
        shutil.rmtree(m.path, ignore_errors=True)


@pytest.fixture(params=DATAPATHS)
def datapath(request):
    return request.param


@pytest.fixture
def mnt(mount_factory, datapath):
    """A mount with a short linger and mint_ttl, on each data path under test."""
    return mount_factory(datapath, "linger=1", "mint_ttl=5")


def as_user(uid, argv, **kw):
    """Run argv as uid (gid = uid, no supplementary groups)."""
    return subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid),
                           "--clear-groups", "--"] + argv, **kw)


def py_as_user(uid, code, *args, **kw):
    """Run a Python snippet as uid; returns CompletedProcess with text output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    return as_user(uid, ["/usr/bin/python3", "-c", code] + [str(a) for a in args], **kw)
