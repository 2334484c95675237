# SPDX-License-Identifier: MIT
"""Finding capshmfs processes and mounts: the one place that reads /proc for
the test tooling.

Used by the integration tests (conftest's watchdog and teardown, test_bench,
test_daemon...), by tests/supervise.py (scripts/test's clean-up of earlier
runs and of each suite) and by scripts/stop (`procs.py daemons PATH`).  No
side effects on import; standard library only.

A "daemon" is a process running capshmfs: with wrapped=False, one whose
argv[0] is capshmfs; with wrapped=True, also one that runs it under a
wrapper such as valgrind (an argument's base name is capshmfs, and it is not
an assignment such as CAPSHMFS=/path/capshmfs).
"""
import fnmatch
import os
import re
import signal
import subprocess
import sys
import time

DAEMON = "capshmfs"
HELPER = "shm-helper"       # the integration tests' helper program


# --- processes ------------------------------------------------------------------

def pids():
    """Every process id in /proc."""
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def argv(pid):
    """The arguments of @pid as a list of str (empty for a kernel thread or a
    zombie), or None when it cannot be read (gone, or not ours to read)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return []
    return [a.decode(errors="surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]


def processes():
    """(pid, argv) of every process whose arguments can be read."""
    for pid in pids():
        args = argv(pid)
        if args is not None:
            yield pid, args


def stat(pid):
    """The fields of /proc/PID/stat after the command name, as a list whose
    index 0 is field 3 (state): the command name may contain spaces and ")",
    so it is cut off at its last ")".  None when @pid is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid):
    """@pid exists and is not a zombie."""
    st = stat(pid)
    return bool(st) and st[0] != "Z"


def parent(pid):
    """The parent of @pid, or None when @pid is gone."""
    st = stat(pid)
    return int(st[1]) if st else None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def boot_ticks():
    """Now, in clock ticks since boot (what start_ticks counts in)."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * CLK_TCK


def start_ticks(pid):
    """When @pid started, in clock ticks since boot; None when it is gone."""
    st = stat(pid)
    try:
        return int(st[19])
    except (TypeError, IndexError, ValueError):
        return None


def mount_ns(pid="self"):
    """The mount namespace of @pid ("mnt:[N]"), or None."""
    try:
        return os.readlink("/proc/%s/ns/mnt" % pid)
    except OSError:
        return None


def environ_has(pid, entry):
    """@pid's environment holds exactly @entry ("VAR=value")."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False


def with_environ(entry):
    """Every process but us whose environment holds exactly @entry."""
    me = os.getpid()
    return [pid for pid in pids() if pid != me and environ_has(pid, entry)]


def has_ancestor(pid, pred, depth=30):
    """Some ancestor of @pid (not @pid itself, not init) has arguments that
    satisfy pred(argv)."""
    for _ in range(depth):
        pid = parent(pid)
        if pid is None or pid <= 1:
            return False
        args = argv(pid)
        if args is None:
            return False
        if pred(args):
            return True
    return False


def under_pytest(pid):
    """Some ancestor of @pid is a live pytest (a test run that is still going,
    maybe someone else's)."""
    return has_ancestor(pid, lambda args: "pytest" in " ".join(args))


def _runs(args, program, wrapped):
    if wrapped:
        # An argument that sets something ("CAPSHMFS=/x/capshmfs",
        # "--daemon=/x/capshmfs") names the program without running it.
        return any(os.path.basename(a) == program and "=" not in a for a in args)
    return bool(args) and os.path.basename(args[0]) == program


def daemons(match=None, wrapped=False, since=None, ns=None):
    """pids of capshmfs processes whose argv (a list of str) satisfies
    match(argv) (any, without @match); @wrapped: also under a wrapper;
    @since: started at or after that many clock ticks since boot (one tick
    of slack); @ns: only those in that mount namespace (as mount_ns() gives
    it; mount_ns() itself: ours, whose mounts are the ones we see)."""
    me = os.getpid()
    out = []
    for pid, args in processes():
        if pid == me or not _runs(args, DAEMON, wrapped):
            continue
        if match is not None and not match(args):
            continue
        if since is not None and (start_ticks(pid) or 0) < since - 1:
            continue
        if ns is not None and mount_ns(pid) != ns:
            continue
        out.append(pid)
    return out


def daemon_pids(path):
    """pids of capshmfs processes whose command line names @path."""
    return daemons(lambda args: path in args)


def test_processes(pattern):
    """Processes of test runs in our mount namespace: every capshmfs daemon
    (wrapped too) with an argument matching the glob @pattern, and every
    shm-helper with such an argument, or, when @pattern is empty, every
    shm-helper."""
    ns = mount_ns()
    me = os.getpid()
    out = []
    for pid, args in processes():
        if pid == me or not args or mount_ns(pid) != ns:
            continue
        isd = _runs(args, DAEMON, True)
        ish = _runs(args, HELPER, True)
        hit = bool(pattern) and any(fnmatch.fnmatchcase(a, pattern) for a in args)
        if (isd and hit) or (ish and not isd and (hit or not pattern)):
            out.append(pid)
    return out


def kill_and_wait(pids, timeout=5.0):
    """SIGKILL @pids, then wait until they are gone; True if they are."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


# --- mounts ---------------------------------------------------------------------

def _unescape(field):
    # mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class MountEntry:
    """One line of mountinfo: point, fstype, source, options (per mount)."""

    def __init__(self, line):
        left, right = line.split(" - ", 1)
        fields, rfields = left.split(), right.split()
        self.point = _unescape(fields[4])
        self.options = fields[5]
        self.fstype = rfields[0]
        self.source = _unescape(rfields[1]) if len(rfields) > 1 else ""


def mounts(pid="self"):
    """The mount table of @pid's mount namespace, in order."""
    with open("/proc/%s/mountinfo" % pid) as f:
        return [MountEntry(line) for line in f]


def mounted(path):
    """Something is mounted at @path."""
    return any(m.point == path for m in mounts())


def fstype(path):
    """The type of the topmost mount at @path, or None."""
    types = [m.fstype for m in mounts() if m.point == path]
    return types[-1] if types else None


def fuse_mounts():
    """The mountpoint of every FUSE mount in our mount namespace."""
    return [m.point for m in mounts() if m.fstype.startswith("fuse")]


def mounts_under(directory):
    """Mountpoints strictly below @directory."""
    prefix = directory.rstrip("/") + "/"
    return [m.point for m in mounts() if m.point.startswith(prefix)]


def unmount(path):
    """Detach the mount at @path now (lazily), whatever serves it."""
    for cmd in (["umount", "-l", path], ["fusermount3", "-uz", path]):
        try:
            if subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return True
        except OSError:
            pass
    return False


# --- as a command, for shell scripts ------------------------------------------------

def main(args):
    """procs.py daemons PATH: the pid of every capshmfs daemon (wrapped too)
    in our mount namespace whose arguments name PATH (or PATH/), one a line."""
    if len(args) == 2 and args[0] == "daemons":
        path = args[1].rstrip("/") or "/"
        for pid in daemons(lambda a: path in a or path + "/" in a, wrapped=True, ns=mount_ns()):
            print(pid)
        return 0
    print("usage: procs.py daemons PATH", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
