# SPDX-License-Identifier: MIT
"""What the capshm integration tests share, apart from their fixtures
(conftest.py): the build under test, the copies of programs other uids run,
a Mount (one daemon, one mountpoint), running things as other users, errno
helpers, a Child spoken to line by line, and the Agent.  Processes and
mounts are found by procs.py.

Environment (set by scripts/test; defaults point at an in-tree build/):
  CAPSHMFS          path of the capshmfs daemon binary
  CAPSHM_CLI        path of the capshm command-line tool
  CAPSHM_HELPER     path of tests/integration/helpers/shm-helper
  CAPSHM_POSIX_HELPER  path of tests/integration/helpers/posix-shm (default:
                    next to CAPSHM_HELPER)
  CAPSHM_DATAPATHS  comma-separated data paths to test: "passthrough,cache"
                    (a libfuse 3.14 build sets "cache")
  CAPSHM_IO_URING   passed on to the daemons: "off" tests the /dev/fuse
                    transport with a build that could use io_uring
  CAPSHM_DAEMON_WRAPPER  a command the daemons run under (valgrind ...)

The CLI, the helpers and the agent are run from copies in a world-readable
directory (STAGE), because tests run them as other uids and the checkout
need not be reachable by those; see "what other uids execute" below.

Every mount checks that it got the transport it should: io_uring when the
build has it (libfuse >= 3.18) and CAPSHM_IO_URING is not off, which needs
the kernel's fuse.enable_uring switched on (scripts/test does that).
"""
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import procs
from procs import alive as pid_alive, daemon_pids, mounted  # noqa: F401  (for the tests)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The build under test: $CAPSHM_BUILD, else the one $CAPSHMFS lives in, else build/.
BUILD = os.environ.get("CAPSHM_BUILD") or (
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(os.environ["CAPSHMFS"]))))
    if os.environ.get("CAPSHMFS") else os.path.join(ROOT, "build"))


def _san_cflags():
    """The sanitizer flags the build under test was configured with: programs
    the tests compile against its libcapshm must use the same."""
    try:
        with open(os.path.join(BUILD, "Makefile")) as f:
            for line in f:
                if line.startswith("SAN_CFLAGS = "):
                    return line.split("=", 1)[1].split()
    except OSError:
        pass
    return []


SAN_CFLAGS = _san_cflags()
CAPSHMFS = os.environ.get("CAPSHMFS", os.path.join(BUILD, "src/daemon/capshmfs"))
# The build tree's libcapshm, for compiling (and, as root, running) programs
# against it: nothing needs capshm to be installed.
LIBDIR = os.path.join(BUILD, "src/lib/.libs")
INCDIR = os.path.join(ROOT, "src/lib")

DATAPATHS = [d for d in os.environ.get("CAPSHM_DATAPATHS", "passthrough,cache").split(",") if d]


def _build_defines(macro):
    try:
        with open(os.path.join(BUILD, "config.h")) as f:
            return ("#define %s 1\n" % macro) in f.read()
    except OSError:
        return False


URING_BUILD = _build_defines("HAVE_FUSE_URING")
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def expected_transport(env=None):
    """The transport a daemon started with extra environment @env must use."""
    want = (env or {}).get("CAPSHM_IO_URING", os.environ.get("CAPSHM_IO_URING", "auto"))
    return "io_uring" if URING_BUILD and want != "off" else "device"


# Extra command prefix for the daemon, e.g. "valgrind --error-exitcode=99".
DAEMON_WRAPPER = os.environ.get("CAPSHM_DAEMON_WRAPPER", "").split()

# Lines that must never appear in a daemon's log.
DAEMON_LOG_ALARMS = ("capshmfs: critical:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "== Invalid ", "definitely lost")

# An unprivileged uid/gid pair for tests that switch users.
USER_A = 4001
USER_B = 4002

# --- what other uids execute ----------------------------------------------------
# Tests run the CLI, the helpers and the agent as unprivileged uids (setpriv).  The
# checkout may be in a directory those uids cannot enter (root's home, a
# `mktemp -d`), so the programs are copied into a world-readable directory
# made for this session (STAGE, removed when the session ends), with the
# build's libcapshm next to them in STAGE/lib.  Programs the tests compile
# against the build tree's library get STAGE/lib as their rpath
# (RUN_CFLAGS), so they run for any uid, without LD_LIBRARY_PATH.

def _real_program(path):
    """The ELF file behind @path: @path itself, or the program in .libs/ a
    libtool wrapper script runs."""
    with open(path, "rb") as f:
        if f.read(4) == b"\x7fELF":
            return path
    d, base = os.path.split(path)
    for cand in (os.path.join(d, ".libs", base), os.path.join(d, ".libs", "lt-" + base)):
        if os.path.exists(cand):
            return cand
    raise RuntimeError("%s is neither a program nor a libtool wrapper of one" % path)


def _stage_program(src, stage):
    """Copy program @src into @stage (0755); returns the path to run."""
    real = _real_program(src)
    base = os.path.basename(src)
    with open(real, "rb") as f:
        needs_lib = b"libcapshm.so" in f.read()
    if not needs_lib:
        dst = os.path.join(stage, base)
        shutil.copy2(real, dst)
        os.chmod(dst, 0o755)
        return dst
    # Linked against libcapshm: run the copy with STAGE/lib on its library path.
    shutil.copy2(real, os.path.join(stage, "lib", base))
    os.chmod(os.path.join(stage, "lib", base), 0o755)
    dst = os.path.join(stage, base)
    with open(dst, "w") as f:
        f.write('#!/bin/sh\nLD_LIBRARY_PATH=%s/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} '
                'exec %s/lib/%s "$@"\n' % (stage, stage, base))
    os.chmod(dst, 0o755)
    return dst


def _make_stage():
    stage = tempfile.mkdtemp(prefix="capshm-exec-")
    os.chmod(stage, 0o755)
    os.mkdir(os.path.join(stage, "lib"), 0o755)
    if os.path.isdir(LIBDIR):
        for f in os.listdir(LIBDIR):
            if f.startswith("libcapshm.so"):
                shutil.copy2(os.path.join(LIBDIR, f), os.path.join(stage, "lib", f),
                             follow_symlinks=False)
    return stage


STAGE = _make_stage()
STAGE_LIBDIR = os.path.join(STAGE, "lib")
RUN_CFLAGS = ["-I", INCDIR, "-L", LIBDIR, "-Wl,-rpath," + STAGE_LIBDIR]


def _staged(var, default):
    path = os.environ.get(var, default)
    if not os.path.exists(path):
        return path     # the tests that need it fail and say which path
    staged = _stage_program(path, STAGE)
    os.environ[var] = staged    # for child processes that read it
    return staged


def _staged_script(path):
    """Copy script @path into STAGE (0755); returns the path to run."""
    dst = os.path.join(STAGE, os.path.basename(path))
    shutil.copy2(path, dst)
    os.chmod(dst, 0o755)
    return dst


def remove_stage():
    """Remove STAGE (when the test session ends)."""
    shutil.rmtree(STAGE, ignore_errors=True)


_HELPERS = os.path.dirname(os.path.abspath(os.environ.get(
    "CAPSHM_HELPER", os.path.join(BUILD, "tests/integration/helpers/shm-helper"))))
CAPSHM_CLI = _staged("CAPSHM_CLI", os.path.join(BUILD, "src/cli/capshm"))
HELPER = _staged("CAPSHM_HELPER", os.path.join(_HELPERS, "shm-helper"))
POSIX_HELPER = _staged("CAPSHM_POSIX_HELPER", os.path.join(_HELPERS, "posix-shm"))
ATTACK_HELPER = _staged("CAPSHM_ATTACK_HELPER", os.path.join(_HELPERS, "attack-helper"))
AGENT = _staged_script(os.path.join(HERE, "agent.py"))


# --- one daemon, one mountpoint ----------------------------------------------------

class Mount:
    """One capshmfs daemon serving one mountpoint."""

    def __init__(self, path, datapath, opts, log, env=None, prefix=()):
        self.path = path
        self.datapath = datapath
        self.opts = opts
        self.log_path = log
        self.env = env          # extra environment variables for the daemon
        self.prefix = list(prefix)  # e.g. ["prlimit", "--nofile=256"]
        self.proc = None

    def p(self, name):
        return os.path.join(self.path, name)

    def start(self):
        o = ",".join(["datapath=" + self.datapath] + self.opts)
        cmd = self.prefix + DAEMON_WRAPPER + [CAPSHMFS, self.path, "-f", "-o", o]
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("capshmfs exited with %s:\n%s" % (self.proc.returncode, self.log()))
            if procs.mounted(self.path):
                try:
                    st = self.stats()
                    if st["datapath"] != self.datapath:
                        raise RuntimeError("asked for datapath=%s, got %s" % (self.datapath, st["datapath"]))
                    want = expected_transport(self.env)
                    if st["transport"] != want:
                        raise RuntimeError("expected transport %s, got %s (is %s Y?):\n%s"
                                           % (want, st["transport"], URING_PARAM, self.log()))
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
        if procs.mounted(self.path):
            subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)
        self._log.close()
        self.proc = None
        return status

    def teardown(self):
        """Stop the daemon, unmount, remove the mountpoint; returns what went
        wrong: a daemon that was still serving must shut down cleanly on
        SIGTERM (valgrind and the sanitizers report through the exit status
        and the log), and no daemon may ever log a critical."""
        problems = []
        was_running = self.proc is not None and self.proc.poll() is None
        status = self.stop(signal.SIGTERM)
        if procs.mounted(self.path):
            subprocess.run(["umount", "-l", self.path], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.path, ignore_errors=True)
        log = self.log()
        if was_running and status != 0:
            problems.append("daemon exited with %s on SIGTERM" % status)
        for marker in DAEMON_LOG_ALARMS:
            if marker in log:
                problems.append("daemon log has %r" % marker)
        if problems:
            problems.append("log of %s:\n%s" % (self.path, log[-4000:]))
        return problems


def clear_mountpoint(path):
    """SIGKILL any capshmfs serving @path, unmount whatever is mounted there,
    remove the directory."""
    for pid in procs.daemon_pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if procs.mounted(path):
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


# --- hang watchdog ------------------------------------------------------------
# pytest-timeout's alarm cannot interrupt a system call that waits for a FUSE
# reply (the kernel lets only SIGKILL through there), so a daemon that stops
# answering would hang the whole run.  Shortly before the timeout, SIGKILL
# every capshmfs (wrapped or not) started since the test began: the waiting
# call then fails, and the test fails instead of hanging.

def watchdog(name, limit):
    """Start the watchdog of test @name; returns the Event that calls it off."""
    done = threading.Event()
    threading.Thread(target=_watch, daemon=True,
                     args=(procs.boot_ticks(), limit, done, name)).start()
    return done


def _watch(ticks, limit, done, name):
    if done.wait(limit):
        return
    pids = procs.daemons(wrapped=True, since=ticks)
    print("\nconftest: %s still running after %.0f s: SIGKILL to its daemons %s"
          % (name, limit, pids), file=sys.stderr, flush=True)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

# --- running things, also as other users ----------------------------------------

def user_argv(uid, argv):
    """argv prefixed so that it runs as uid (gid = uid, no supplementary groups)."""
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] + list(argv)


def as_user(uid, argv, **kw):
    """Run argv as uid (gid = uid, no supplementary groups)."""
    return subprocess.run(user_argv(uid, argv), **kw)


def py_as_user(uid, code, *args, **kw):
    """Run a Python snippet as uid; returns CompletedProcess with text output."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    return as_user(uid, ["/usr/bin/python3", "-c", code] + [str(a) for a in args], **kw)


# Exit status of a process killed by SIGBUS, as subprocess reports it.
SIGBUS_STATUS = -signal.SIGBUS


def helper_argv(*args):
    return [HELPER] + [str(a) for a in args]


def run_helper(*args, timeout=30, check=True, uid=None):
    """Run shm-helper with args; returns CompletedProcess (text).  check: rc must be 0."""
    argv = [HELPER] + [str(a) for a in args]
    if uid is not None:
        argv = user_argv(uid, argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, "shm-helper %s: rc=%s stderr=%s" % (args, r.returncode, r.stderr)
    return r


# --- errors -------------------------------------------------------------------

def gone(path):
    """True when path does not exist (ENOENT), False when it does."""
    try:
        os.stat(path)
        return False
    except FileNotFoundError:
        return True


# What a mount whose daemon is gone answers: ENOTCONN, or, for a request
# the kernel had already queued or handed out when the daemon went,
# ECONNABORTED (an io_uring torn down with the daemon, or a copy of the
# mount that saw the connection aborted) or ECANCELED (a request a killed
# daemon's ring had taken).
DEAD = (errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED)


def errno_of(fn):
    """Call fn; return the errno it raised, or 0."""
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def errno_name(fn):
    """Call fn; return the errno name it raised ("EACCES"...), or "OK"."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "OK"


# --- a child spoken to line by line, and the agent ------------------------------------

class Child:
    """A child process spoken to line by line; always SIGKILLed at teardown."""

    def __init__(self, argv, uid=None, stdin=subprocess.PIPE, **kw):
        argv = [str(a) for a in argv]
        if uid is not None:
            argv = user_argv(uid, argv)
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, **kw)
        self._buf = b""

    @property
    def pid(self):
        return self.proc.pid

    def readline(self, timeout=10.0):
        """The next stdout line (without newline); AssertionError on EOF or timeout."""
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("%s: no line within %.1fs (got %r)" % (self.argv, timeout, self._buf))
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(5)
                raise AssertionError("%s: exited (%s) before a line; stderr=%s" %
                                     (self.argv, self.proc.returncode, self.stderr()))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def expect(self, want, timeout=10.0):
        got = self.readline(timeout)
        assert got == want, "%s: expected %r, got %r" % (self.argv, want, got)
        return self

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def cmd(self, line, timeout=10.0):
        """Send one command line, return the one-line answer."""
        self.send(line)
        return self.readline(timeout)

    def wait(self, timeout=10.0):
        """Wait for exit; returns the status."""
        return self.proc.wait(timeout)

    def stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        try:
            return self.proc.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def kill(self):
        """SIGKILL and reap (no-op if already gone)."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass


class Agent:
    """agent.py running as another uid, performing file operations on request."""

    def __init__(self, child):
        self.child = child
        assert json.loads(child.readline(20)) == {"ok": "ready"}

    @staticmethod
    def argv(mount):
        """The command that runs an agent on @mount (a Mount)."""
        return ["/usr/bin/python3", AGENT, mount.path]

    def call(self, *req):
        """Returns the value, or raises OSError with the errno the agent got."""
        ans = json.loads(self.child.cmd(json.dumps(list(req)), timeout=20))
        if "errno" in ans:
            e = getattr(errno, ans["errno"], 0)
            raise OSError(e, "%s (as agent): %s" % (req[0], ans["errno"]))
        return ans["ok"]

    def errno_of(self, *req):
        """The errno name a request fails with, or "OK"."""
        return errno_name(lambda: self.call(*req))


def daemon_bug(request, reason, when=True):
    """Mark the running test as a known daemon bug (strict xfail) when `when`:
    it must fail while the bug is there, and turns red (XPASS) once fixed."""
    if when:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason="daemon bug: " + reason))
