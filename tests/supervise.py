#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The process supervision of scripts/test, in one place.

  supervise.py clean-stale
      Leftovers of earlier runs that were killed: capshmfs daemons and
      shm-helpers of tests whose pytest is gone, their mounts, the scratch
      directories of dead scripts/test runs.  A test run that is still going
      (someone else's) and any mount outside capshm-mnt-* directories (e.g.
      /run/capshm from scripts/start) are left alone.

  supervise.py run --log LOG --result FILE [--scratch DIR]
                   (--unit | --junit XML [--selected]) -- CMD...
      Run one suite: CMD in a session of its own (so that everything it
      starts can be killed as a group), its output to LOG and, as it comes,
      to our stdout.  When it ends, what is left in its process group is
      killed, and with --scratch what it left under DIR, as reap does
      (warnings say so).  Then its counts go to FILE as one line
      "PASSED FAILED SKIPPED<TAB>NOTE": from its last line "unit-tests: N
      passed, N failed[, N skipped]" (--unit), or from pytest's JUnit XML
      and exit status (--junit; --selected: tests were chosen with -k, so
      none collected is no news).  On SIGTERM, SIGHUP or SIGINT the suite is
      stopped (SIGTERM to its group, SIGKILL 2 s later), cleaned up after
      as above, and we exit 128+signal without writing FILE.

  supervise.py reap DIR
      Kill the capshmfs daemons and shm-helpers left running under DIR, and
      any process still running with TMPDIR=DIR, and unmount what they left
      there (warnings say so).

Messages start with "test: ", as scripts/test's own.  Processes and mounts
are found by tests/integration/procs.py.
"""
import fnmatch
import glob
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import procs  # noqa: E402

TEST_ROOT = "/tmp"              # where scripts/test makes capshm-test.PID.XXXXXX
RUN_GLOB = TEST_ROOT + "/capshm-test.*"
MOUNT_GLOBS = (TEST_ROOT + "/capshm-mnt-*", RUN_GLOB + "/capshm-mnt-*")


def log(msg):
    print("test: " + msg, flush=True)


# --- the leftovers of earlier runs -------------------------------------------------

def _run_owner_alive(d):
    """The scripts/test that made scratch directory @d is still running."""
    owner = os.path.basename(d)[len("capshm-test."):].split(".")[0]
    return owner.isdigit() and procs.alive(int(owner))


def kill_all(pids):
    if not procs.kill_and_wait(pids):
        log("warning: could not kill %s" % " ".join(map(str, pids)))


def umount_matching(pattern):
    """Lazily unmount every FUSE mount whose path matches the glob @pattern
    and that no live capshmfs serves; remove its (empty) directory.
    Returns how many."""
    # The mounts first: a mount made after the daemons are listed (by a test
    # run that is going on) would look served by nobody.
    mounts = [m for m in procs.fuse_mounts() if fnmatch.fnmatchcase(m, pattern)]
    served = {a for pid in procs.test_processes(pattern) for a in (procs.argv(pid) or [])}
    n = 0
    for m in mounts:
        if m in served:
            continue
        procs.unmount(m)
        try:
            os.rmdir(m)
        except OSError:
            pass
        n += 1
    return n


def clean_stale():
    stale = []
    # Everything a killed scripts/test left running (pytest, its helpers and
    # daemons) carries that run's TMPDIR=/tmp/capshm-test.PID.* in its environment.
    for d in glob.glob(RUN_GLOB):
        if not os.path.isdir(d) or _run_owner_alive(d):
            continue
        stale += procs.with_environ("TMPDIR=" + d)
    for pattern in MOUNT_GLOBS + ("",):
        stale += [p for p in procs.test_processes(pattern) if not procs.under_pytest(p)]
    stale = list(dict.fromkeys(stale))
    if stale:
        log("killing %d stray capshmfs/shm-helper process(es) of an earlier run: %s"
            % (len(stale), " ".join(map(str, stale))))
        kill_all(stale)
    n = sum(umount_matching(pattern) for pattern in MOUNT_GLOBS)
    if n:
        log("unmounted %d stale capshm test mount(s)" % n)
    # Empty mount directories and scratch directories of dead scripts/test runs.
    for d in glob.glob(MOUNT_GLOBS[0]):
        if os.path.isdir(d) and not procs.mounted(d):
            try:
                os.rmdir(d)
            except OSError:
                pass
    for d in glob.glob(RUN_GLOB):
        if not os.path.isdir(d) or _run_owner_alive(d) or procs.mounts_under(d):
            continue
        subprocess.run(["rm", "-rf", "--one-file-system", d], stderr=subprocess.DEVNULL)


def reap(scratch):
    """What a suite left running and mounted under @scratch: its daemons and
    helpers, and anything else that still has TMPDIR=@scratch (the suite
    itself, should its supervisor have been killed)."""
    pattern = scratch.rstrip("/") + "/*"
    pids = list(dict.fromkeys(procs.test_processes(pattern) +
                              procs.with_environ("TMPDIR=" + scratch.rstrip("/"))))
    if pids:
        log("warning: killing %d capshmfs daemon(s) left running by the tests" % len(pids))
        kill_all(pids)
    n = umount_matching(pattern)
    if n:
        log("warning: unmounted %d mount(s) left behind by the tests" % n)


# --- one suite ----------------------------------------------------------------------

class Stop(Exception):
    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise Stop(signum)


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


class Suite:
    """CMD in its own session, its output in LOG and echoed to our stdout."""

    def __init__(self, cmd, logf):
        self.cmd = cmd
        self.log = logf
        self.proc = None
        self.follow = None
        self.echo = True

    def start(self):
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.follow = open(self.log, "rb")

    def _copy(self):
        data = self.follow.read()
        if data and self.echo:
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except OSError:
                self.echo = False   # our stdout is gone; LOG still has it all

    def wait(self):
        """Follow LOG until CMD exits; its status as a shell gives it
        (128+N when killed by signal N)."""
        while True:
            try:
                self.proc.wait(0.2)
                break
            except subprocess.TimeoutExpired:
                self._copy()
        self._copy()
        rc = self.proc.returncode
        return 128 - rc if rc < 0 else rc

    def end(self):
        """Kill what is left in CMD's process group; stop CMD first if it runs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            for _ in range(10):
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        _kill_group(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.follow:
            self.follow.close()


UNIT_LINE = re.compile(r"^unit-tests: (\d+) passed, (\d+) failed(, (\d+) skipped)?")


def unit_counts(logf, rc):
    """(passed, failed, skipped, note) from the unit tests' last line."""
    with open(logf, errors="replace") as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    m = UNIT_LINE.match(lines[-1]) if lines else None
    if not m:
        return 0, 1, 0, "crashed or printed no count (exit %d)" % rc
    p, f, s = int(m.group(1)), int(m.group(2)), int(m.group(4) or 0)
    if rc != 0 and f == 0:
        return p, 1, s, "exited %d but reported no failure" % rc
    return p, f, s, ""


def junit_counts(xml, rc, selected):
    """(passed, failed, skipped, note) from pytest's JUnit XML and status."""
    p = f = s = 0
    try:
        if os.path.getsize(xml) > 0:
            for tc in ET.parse(xml).getroot().iter("testcase"):
                tags = {c.tag for c in tc}
                if tags & {"failure", "error"}:
                    f += 1
                elif "skipped" in tags:
                    s += 1
                else:
                    p += 1
    except (OSError, ET.ParseError):
        p = f = s = 0
    note = ""
    if rc == 1:
        if f == 0:
            f, note = 1, "pytest failed (exit 1) but no test failed"
    elif rc == 5:
        if not selected:
            note = "no tests collected"
    elif rc != 0:
        f = max(f, 1)
        note = "pytest crashed or was interrupted (exit %d)" % rc
    return p, f, s, note


def run(opts, cmd):
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # An ignored SIGINT (we run in the background of a script) stays ignored.
        if sig != signal.SIGINT or signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _on_signal)
    if opts["xml"]:
        try:
            os.unlink(opts["xml"])
        except FileNotFoundError:
            pass
    suite = Suite(cmd, opts["log"])
    try:
        suite.start()
        rc = suite.wait()
    except Stop as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        suite.end()
        if opts["scratch"]:
            reap(opts["scratch"])
        return 128 + e.signum
    suite.end()
    if opts["scratch"]:
        reap(opts["scratch"])
    if opts["xml"]:
        counts = junit_counts(opts["xml"], rc, opts["selected"])
    else:
        counts = unit_counts(opts["log"], rc)
    with open(opts["result"], "w") as f:
        f.write("%d %d %d\t%s\n" % counts)
    return 0


# --- command line -------------------------------------------------------------------

def usage():
    sys.stderr.write(__doc__.split("\n\n", 1)[1].split("Messages start")[0])
    return 2


def main(args):
    if args == ["clean-stale"]:
        clean_stale()
        return 0
    if len(args) == 2 and args[0] == "reap":
        reap(args[1])
        return 0
    if not args or args[0] != "run" or "--" not in args:
        return usage()
    i = args.index("--")
    flags, cmd = args[1:i], args[i + 1:]
    opts = {"log": None, "result": None, "scratch": None, "xml": None, "unit": False,
            "selected": False}
    while flags:
        flag = flags.pop(0)
        if flag in ("--unit", "--selected"):
            opts[flag[2:]] = True
        elif flag in ("--log", "--result", "--scratch", "--junit") and flags:
            opts["xml" if flag == "--junit" else flag[2:]] = flags.pop(0)
        else:
            return usage()
    if not cmd or not opts["log"] or not opts["result"] or opts["unit"] == bool(opts["xml"]):
        return usage()
    return run(opts, cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
