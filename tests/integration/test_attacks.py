# SPDX-License-Identifier: MIT
"""Attacks by hostile local users (issue 12; capshmfs(8) CONTROL FILES and
LIFETIME, docs/SECURITY.md): each test attacks one promise on a real
mount, on both data paths where the promise applies.

  1. Names cannot be observed: with names=capability the root is 1733, so no
     other uid can list it, inotify- or fanotify-watch it; each uid lists its
     own regions through `.mine`; no other channel (control files, xattrs,
     mountinfo, /proc of others) shows a name.  names=any stays /dev/shm.
  2. The kernel's own counts decide who holds a region: a process whose main
     thread exited, a forked child, an SCM_RIGHTS receiver, a process in
     another pid namespace, all while the daemon may be at its fd limit; and
     quota stays charged while the memory exists.
  3. No client stalls another: 60,000 mappings, a `.stats` hammer, a
     SIGSTOPped holder; the victim's calls must complete (latencies are
     printed, never asserted).
  4. Every read path (pread, sendfile, splice, copy_file_range) sees a
     region's current bytes; control files read whole through all of them.
  5. The README and the examples never put a name on a command line; the
     CLI takes a path from stdin as `-`.
  6. `capshm ls` escapes what it prints.
  7. Write and truncating opens through a read-only name are EACCES.

The programs of the name-leak tests get region names on stdin, never in
argv (argv is readable by every uid), so those tests do not leak what they
look for.  Region memory is mapped through libc, not Python's mmap module,
whose mapping objects keep a dup() of the fd open.
"""
import errno
import json
import os
import re
import shutil
import signal
import stat
import statistics
import subprocess
import time

import pytest

from capshm_test import (CAPSHM_CLI, DATAPATHS, HELPER, ROOT, errno_name, gone,
                      helper_argv, py_as_user, user_argv)
from test_examples import argv_for, c_share, example_env, first_line  # noqa: F401 (c_share: a fixture)

pytestmark = pytest.mark.timeout(180)

from capshm_test import ATTACK_HELPER  # noqa: E402  (staged where other uids can run it)
PY = "/usr/bin/python3"

VICTIM = 1001      # owns the regions under attack
ATTACKER = 1002    # the hostile uid
THIRD = 1000       # a bystander / second attacker

LINGER = 1.0       # the `mnt` fixture mounts with linger=1
PAST_LINGER = LINGER + 2.5   # longer than linger plus the daemon's 1 s checks
NAME_RE = re.compile(r"[a-z2-7]{26}")


# --- small tools ----------------------------------------------------------------

@pytest.fixture
def one_mnt(mount_factory):
    """A mount (linger=1) on one data path only, for what does not depend on it."""
    return mount_factory(DATAPATHS[0], "linger=1", "mint_ttl=5")


def py_child(children, uid, code, *args):
    """A Python program running as uid, spoken to line by line (capshm_test.Child)."""
    return children([PY, "-c", code] + [str(a) for a in args], uid=uid)


def json_line(child, timeout=20.0):
    return json.loads(child.readline(timeout))


def wait_gone_and_released(mnt, path, what, timeout=LINGER + 4):
    mnt.wait_for(lambda: gone(path), timeout=timeout, what=what + ": name ENOENT")
    mnt.wait_for(lambda: mnt.stats()["bytes"] == 0, timeout=timeout, what=what + ": 0 bytes")


def root_reads(path, n, off=0):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, off)
    finally:
        os.close(fd)


def chown_region(mnt, name, uid):
    os.chown(mnt.p(name), uid, uid)


# Ask a process, as uid, to try every way of watching or listing a directory.
# Prints one JSON object: {"listdir": [...] or "EACCES", "inotify": "OK" or
# errno, "fanotify": "OK" or errno (of fanotify_init or fanotify_mark)}.
PROBE_CODE = r'''
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
root = sys.argv[1]
def en(e): return errno.errorcode.get(e, str(e))
out = {}
try:
    out["listdir"] = sorted(os.listdir(root))
except OSError as e:
    out["listdir"] = en(e.errno)
try:
    os.close(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
    out["open_dir"] = "OK"
except OSError as e:
    out["open_dir"] = en(e.errno)
fd = libc.inotify_init1(os.O_NONBLOCK)
w = libc.inotify_add_watch(fd, root.encode(), 0xfff)           # IN_ALL_EVENTS
out["inotify"] = "OK" if w >= 0 else en(ctypes.get_errno())
# FAN_CLASS_NOTIF | FAN_REPORT_FID; FAN_OPEN|FAN_CLOSE|FAN_ACCESS|FAN_MODIFY|FAN_EVENT_ON_CHILD
ff = libc.fanotify_init(0x200, os.O_RDONLY)
if ff < 0:
    out["fanotify"] = "init:" + en(ctypes.get_errno())
else:
    r = libc.fanotify_mark(ff, 1, 0x20 | 0x08 | 0x10 | 0x01 | 0x02 | 0x08000000, -100, root.encode())
    out["fanotify"] = "OK" if r == 0 else en(ctypes.get_errno())
print(json.dumps(out))
'''


def probe(uid, root, userns=False):
    argv = [PY, "-c", PROBE_CODE, root]
    if userns:   # a rootless sandbox: "root" in a user namespace of its own
        argv = ["unshare", "--user", "--map-root-user", "--"] + argv
    r = subprocess.run(user_argv(uid, argv), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


# --- 1. names cannot be observed -------------------------------------------------------

def test_root_is_1733_and_only_root_lists_it(mnt, agents):
    """Promise: with names=capability the mount root is mode 1733: another uid
    (also "root" of a rootless sandbox) can neither list it, nor open it as a
    directory, nor inotify- or fanotify-watch it; root still lists all."""
    st = os.stat(mnt.path)
    assert st.st_mode == stat.S_IFDIR | 0o1733, "root mode is %o, want 41733" % st.st_mode
    owner = agents(VICTIM, mnt)
    name = owner.call("create", 0o644, 4096)
    for who, userns in ((ATTACKER, False), (ATTACKER, True)):
        got = probe(who, mnt.path, userns=userns)
        label = "uid %d%s" % (who, " as root of a user namespace" if userns else "")
        assert got["listdir"] == "EACCES", "%s listed the root: %s" % (label, got["listdir"])
        assert got["open_dir"] == "EACCES", "%s opened the root for reading: %s" % (label, got)
        assert got["inotify"] == "EACCES", "%s: inotify_add_watch on the root: %s" % (label, got["inotify"])
        assert got["fanotify"] in ("EACCES", "EPERM", "init:EPERM"), \
            "%s: unprivileged fanotify on the root: %s" % (label, got["fanotify"])
    # Even the owner of regions cannot list the root (it reads .mine instead).
    got = probe(VICTIM, mnt.path)
    assert got["listdir"] == "EACCES" and got["inotify"] == "EACCES", got
    # Root may.
    assert name in os.listdir(mnt.path)


# A watcher (another uid) that tries every channel it can think of while
# another uid works, and hands back everything it could read.  Protocol: it
# prints {"ready": {...errnos...}}, collects until it reads a line on stdin,
# then prints {"text": ..., "events": N}.
WATCHER_CODE = r'''
import ctypes, errno, json, os, select, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
root = sys.argv[1]
me = os.getpid()
def en(e): return errno.errorcode.get(e, str(e))
seen = {}          # channel -> every string the watcher managed to read there
events = [0]
attempts = {}
watch_fds = []
ino = libc.inotify_init1(os.O_NONBLOCK)
w = libc.inotify_add_watch(ino, root.encode(), 0xfff)
attempts["inotify"] = "OK" if w >= 0 else en(ctypes.get_errno())
if w >= 0:
    watch_fds.append(ino)
# Report names (FAN_REPORT_DFID_NAME) if the kernel lets us, else FIDs only.
for flags, label in ((0x200 | 0x400 | 0x800, "fanotify_dfid_name"), (0x200, "fanotify_fid")):
    ff = libc.fanotify_init(flags | 0x0, os.O_RDONLY)
    if ff < 0:
        attempts[label] = "init:" + en(ctypes.get_errno()); continue
    r = libc.fanotify_mark(ff, 1, 0x20 | 0x08 | 0x10 | 0x01 | 0x02 | 0x08000000, -100, root.encode())
    attempts[label] = "OK" if r == 0 else en(ctypes.get_errno())
    if r == 0:
        os.set_blocking(ff, False); watch_fds.append(ff)
    else:
        os.close(ff)
def reader():
    while True:
        if not watch_fds:
            return
        rd, _, _ = select.select(watch_fds, [], [], 0.2)
        for fd in rd:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            events[0] += 1
            seen.setdefault("inotify" if fd == ino else "fanotify", []).append(data.decode("latin-1"))
threading.Thread(target=reader, daemon=True).start()
def grab(channel, fn):
    try:
        v = fn()
    except (OSError, ValueError):
        return
    v = v if isinstance(v, str) else repr(v)
    got = seen.setdefault(channel, [])
    if v not in got:
        got.append(v)
def readf(p, mode="r"):
    with open(p, mode) as f:
        return f.read()
def sweep():
    grab("readdir", lambda: os.listdir(root))
    for c in (".stats", ".new", ".mine"):
        grab(c, lambda: readf(os.path.join(root, c)))
    grab("mountinfo", lambda: readf("/proc/self/mountinfo"))
    grab("/proc/locks", lambda: readf("/proc/locks"))
    grab("statfs", lambda: os.statvfs(root))
    def xattrs():
        out = []
        for k in os.listxattr(root):
            out.append(k)
            try:
                out.append(os.getxattr(root, k).decode("latin-1"))
            except OSError:
                pass
        return out
    grab("root xattrs", xattrs)
    for k in ("user.capshm.pids", "user.capshm.holders", "user.capshm.ro", "user.capshm.state"):
        grab("root xattrs", lambda: os.getxattr(root, k).decode("latin-1"))
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        base = "/proc/" + d
        grab("/proc/*/cmdline", lambda: readf(base + "/cmdline", "rb").decode("latin-1"))
        grab("/proc/*/environ", lambda: readf(base + "/environ", "rb").decode("latin-1"))
        grab("/proc/*/maps", lambda: readf(base + "/maps"))
        grab("/proc/*/map_files", lambda: os.listdir(base + "/map_files"))
        def fds():
            return [os.readlink(base + "/fd/" + f) for f in os.listdir(base + "/fd")]
        grab("/proc/*/fd", fds)
print(json.dumps({"ready": attempts}), flush=True)
stop = [False]
def waiter():
    sys.stdin.readline(); stop[0] = True
threading.Thread(target=waiter, daemon=True).start()
while not stop[0]:
    sweep()
    time.sleep(0.05)
sweep()
time.sleep(0.3)
print(json.dumps({"text": {k: "\n".join(v) for k, v in seen.items()}, "events": events[0]}),
      flush=True)
'''

# The victim: creates regions (different modes), writes, reads, reopens,
# maps, reads its read-only names, unlinks one; prints the names it used
# (read-write and read-only) as one JSON list; holds the rest until stdin ends.
VICTIM_WORK_CODE = r'''
import fcntl, json, mmap, os, sys
root = sys.argv[1]
def p(n): return os.path.join(root, n)
names, held = [], []
for mode in (0o644, 0o600, 0o666, 0o640):
    with open(p(".new")) as f:
        n = f.read().strip()
    names.append(n)
    fd = os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    os.ftruncate(fd, 8192)
    os.pwrite(fd, b"secret bytes", 0)
    os.pread(fd, 12, 0)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.close(fd)
    fd = os.open(p(n), os.O_RDONLY); os.read(fd, 100); os.close(fd)
    fd = os.open(p(n), os.O_RDWR)
    m = mmap.mmap(fd, 8192); m[100:104] = b"mapd"; os.close(fd)
    held.append(m)
    os.stat(p(n))
    try:
        ro = os.getxattr(p(n), "user.capshm.ro").decode()
        names.append(ro)
        fd = os.open(p(ro), os.O_RDONLY); os.read(fd, 12); held.append(fd)
    except OSError:
        pass
    fd = os.open(p(n), os.O_RDWR); held.append(fd)
    fd2 = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY); os.close(fd2)
os.unlink(p(names[0]))
print(json.dumps(names), flush=True)
sys.stdin.read()
'''


def test_watcher_learns_nothing(mnt, children):
    """Promise: a watcher uid that tries inotify, fanotify, readdir, the
    control files, mountinfo, the root's xattrs and other processes' /proc
    entries while another uid creates, opens, reads, writes, maps and
    closes regions learns none of their names (read-write or read-only)."""
    watcher = py_child(children, THIRD, WATCHER_CODE, mnt.path)
    attempts = json_line(watcher)["ready"]
    victim = py_child(children, VICTIM, VICTIM_WORK_CODE, mnt.path)
    names = json.loads(victim.readline(30))
    assert len(names) >= 4 and all(NAME_RE.fullmatch(n) for n in names), names
    time.sleep(0.5)
    watcher.send("stop")
    got = json_line(watcher, timeout=60)
    victim.kill()
    leaked = [n for n in names if any(n in t for t in got["text"].values())]
    channels = sorted(c for c, t in got["text"].items() if any(n in t for n in names))
    assert not leaked, ("the watcher (uid %d) learned %d of %d names through %s; its watches: %s, "
                        "event batches read: %d" % (THIRD, len(leaked), len(names), channels, attempts,
                                                    got["events"]))
    assert attempts["inotify"] == "EACCES", attempts
    for k in ("fanotify_dfid_name", "fanotify_fid"):
        assert attempts[k] in ("EACCES", "EPERM", "init:EPERM", "init:EINVAL"), attempts
    assert got["events"] == 0, "the watcher read %d event batches" % got["events"]


def test_mine_lists_each_uids_own_regions(mnt, agents):
    """Promise: `.mine` (mode 0444) lists the caller's own regions, one per
    line (root: all), and `capshm ls` of a non-root uid shows exactly its
    own regions.  A uid reading `.mine` right after another uid (through
    read, sendfile, splice or mmap) never gets the other's list."""
    st = os.stat(mnt.p(".mine"))
    assert st.st_mode == stat.S_IFREG | 0o444, oct(st.st_mode)
    a, b = agents(VICTIM, mnt), agents(ATTACKER, mnt)
    mine_a = {a.call("create", 0o644, 4096) for _ in range(3)}
    mine_b = {b.call("create", 0o644, 4096)}
    code = r'''
import json, mmap, os, sys
p = sys.argv[1] + "/.mine"
out = {}
with open(p) as f:
    out["read"] = f.read()
fd = os.open(p, os.O_RDONLY); r, w = os.pipe()
try:
    n = os.sendfile(w, fd, None, 65536); out["sendfile"] = os.read(r, 65536).decode() if n else ""
except OSError as e:
    out["sendfile"] = "errno %d" % e.errno
os.close(fd); fd = os.open(p, os.O_RDONLY)
try:
    n = os.splice(fd, w, 65536); out["splice"] = os.read(r, 65536).decode() if n else ""
except OSError as e:
    out["splice"] = "errno %d" % e.errno
try:
    m = mmap.mmap(fd, 4096, prot=mmap.PROT_READ); out["mmap"] = bytes(m).rstrip(b"\0").decode(errors="replace")
except (OSError, ValueError) as e:
    out["mmap"] = ""          # no mapping is fine; a foreign list is not
print(json.dumps(out))
'''
    for who, want in ((VICTIM, mine_a), (ATTACKER, mine_b), (VICTIM, mine_a)):
        r = py_as_user(who, code, mnt.path)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert set(got["read"].split()) == want, "uid %d read .mine: %r" % (who, got["read"])
        for path, text in got.items():
            listed = set(NAME_RE.findall(text))
            foreign = listed - want
            assert not foreign, "uid %d got another uid's names through .mine (%s)" % (who, path)
    with open(mnt.p(".mine")) as f:
        assert set(f.read().split()) == mine_a | mine_b, "root's .mine is not every region"
    for who, want in ((VICTIM, mine_a), (ATTACKER, mine_b)):
        r = subprocess.run(user_argv(who, [CAPSHM_CLI, "-d", mnt.path, "ls"]), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, "capshm ls as uid %d: %s" % (who, r.stderr)
        assert set(NAME_RE.findall(r.stdout)) == want, r.stdout
        r = subprocess.run(user_argv(who, [CAPSHM_CLI, "-d", mnt.path, "ls", "--json"]),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert {o["name"] for o in json.loads(r.stdout)} == want


def test_new_never_hands_one_name_to_two_readers(mnt):
    """Promise: minting cannot be observed: two uids reading `.new` at the same
    time through read, sendfile and splice always get distinct, well-formed
    names (no page cache shared between openers of a control file)."""
    code = r'''
import json, os, sys
p = sys.argv[1] + "/.new"
names = []
r, w = os.pipe()
for i in range(40):
    fd = os.open(p, os.O_RDONLY)
    try:
        how = i % 3
        if how == 0:
            data = os.read(fd, 4096)
        elif how == 1:
            n = os.sendfile(w, fd, None, 4096); data = os.read(r, 4096) if n else b""
        else:
            n = os.splice(fd, w, 4096); data = os.read(r, 4096) if n else b""
    finally:
        os.close(fd)
    names.append(data.decode(errors="replace"))
print(json.dumps(names))
'''
    procs = [subprocess.Popen(user_argv(uid, [PY, "-c", code, mnt.path]), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for uid in (VICTIM, ATTACKER)]
    got = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            got += json.loads(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill(); p.wait()
    whole = [g for g in got if re.fullmatch(r"[a-z2-7]{26}\n", g)]
    assert len(set(whole)) == len(whole), "a name was handed out twice"
    bad = [g for g in got if g not in whole]
    assert not bad, "%d of %d reads of .new gave no whole name, e.g. %r" % (len(bad), len(got), bad[:3])


def test_names_any_root_is_1777_and_lists_like_dev_shm(mount_factory, datapath, agents):
    """Promise: names=any keeps /dev/shm behaviour (POSIX names are not
    secrets): root 1777, and any uid lists every region, also another uid's."""
    m = mount_factory(datapath, "names=any", "linger=1")
    assert os.stat(m.path).st_mode == stat.S_IFDIR | 0o1777
    a = agents(VICTIM, m)
    a.call("create_named", "posix-visible", 0o644)
    got = probe(ATTACKER, m.path)
    assert isinstance(got["listdir"], list) and "posix-visible" in got["listdir"], \
        "uid %d does not see uid %d's POSIX name: %s" % (ATTACKER, VICTIM, got["listdir"])


def test_unknown_and_foreign_names_answer_alike(mnt, agents):
    """Probe of the lookup channel: for a uid that does not own them, a
    foreign 0600 region, a foreign pending mint and a name that never existed
    must be told apart only by what knowing the full name already gives
    (stat succeeds on an existing name).  Here: getxattr/listxattr on the
    root and a pending mint of another uid answer exactly as a never-minted
    name.  Timing of hits and misses is printed, not asserted."""
    owner = agents(VICTIM, mnt)
    region = owner.call("create", 0o600, 4096)
    pending = owner.call("mint")
    never = "a" * 26
    code = r'''
import errno, json, os, sys, time
root = sys.argv[1]
def en(fn):
    try:
        fn(); return "OK"
    except OSError as e:
        return errno.errorcode[e.errno]
out = {}
for label, n in (("region", sys.argv[2]), ("pending", sys.argv[3]), ("never", sys.argv[4])):
    p = os.path.join(root, n)
    out[label] = [en(lambda: os.stat(p)), en(lambda: os.open(p, os.O_RDONLY)),
                  en(lambda: os.getxattr(p, "user.capshm.state")), en(lambda: os.listxattr(p)),
                  en(lambda: os.open(p, os.O_RDWR | os.O_CREAT, 0o600))]
    ts = []
    for i in range(200):
        t = time.perf_counter()
        try:
            os.stat(p + "")
        except OSError:
            pass
        ts.append(time.perf_counter() - t)
    ts.sort()
    out[label + "_stat_us"] = ts[len(ts) // 2] * 1e6
print(json.dumps(out))
'''
    # Names passed in argv here: this test is about lookups, not about argv.
    r = py_as_user(ATTACKER, code, mnt.path, region, pending, never)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    print("\nlookup as another uid (%s): region %s, pending mint %s, never %s; median stat: "
          "region %.1f us, pending %.1f us, never %.1f us"
          % (mnt.datapath, got["region"], got["pending"], got["never"],
             got["region_stat_us"], got["pending_stat_us"], got["never_stat_us"]))
    assert got["pending"] == got["never"], "a pending mint of another uid answers unlike an unknown name"
    assert got["never"][:4] == ["ENOENT"] * 4, got["never"]


# --- 2. lifetime decided by the kernel's own counts ----------------------------------

def test_leader_exit_keeps_region(mnt, children):
    """Promise: a mapping held by a live process keeps its region, even when
    the process's main thread has called pthread_exit (its /proc/TGID/maps
    then reads empty) and its fd is closed; the region goes after the process
    exits."""
    name, fd = mnt.create(65536, mode=0o600)
    path = mnt.p(name)
    os.pwrite(fd, b"leader-exit-bytes", 0)
    h = children([ATTACK_HELPER, "leader-exit"])
    h.send(path)
    h.expect("ready")
    deadline = time.time() + 5
    while "Z" not in h.cmd("s"):     # the leader is a zombie once pthread_exit is done
        assert time.time() < deadline, "the main thread did not exit (setup)"
        time.sleep(0.05)
    os.close(fd)
    time.sleep(PAST_LINGER)
    assert not gone(path), "the region went while a live thread maps it (its leader exited)"
    assert root_reads(path, 17) == b"leader-exit-bytes"
    assert h.cmd("w 100 " + b"thread".hex()) == "ok"
    assert root_reads(path, 6, 100) == b"thread", "the name opens other memory than the mapping"
    st = mnt.stats()
    assert st["regions"] == 1 and st["bytes"] == 65536, st
    h.send("q")
    h.wait(10)
    wait_gone_and_released(mnt, path, "the region after the process exited")


# Python's mmap.mmap() keeps a dup() of the fd for as long as the mapping
# lives (before 3.13's trackfd=False): a "mapping whose fd was closed" made
# with it is really an open file.  Programs below map through libc instead.
MAP_CODE = r'''
import ctypes
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
class Map:
    """A MAP_SHARED mapping that holds no fd: m[a:b] reads bytes, m[a:b] = b writes."""
    def __init__(self, fd, size, write=True):
        a = _libc.mmap(None, size, 3 if write else 1, 1, fd, 0)
        if a is None or a == ctypes.c_void_p(-1).value:
            e = ctypes.get_errno()
            raise OSError(e, "mmap")
        self.addr, self.size = a, size
        self.buf = (ctypes.c_char * size).from_address(a)
    def __getitem__(self, k):
        return self.buf[k]
    def __setitem__(self, k, v):
        self.buf[k] = v
    def close(self):
        if self.addr:
            _libc.munmap(self.addr, self.size); self.addr = None
'''


FORK_MAPPER_CODE = MAP_CODE + r'''
import json, mmap, os, sys
root, size, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def p(n): return os.path.join(root, n)
with open(p(".new")) as f:
    name = f.read().strip()
fd = os.open(p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, size)
m = Map(fd, size)
m[0:9] = b"forked-ok"
if how == "mapping-only":          # the child inherits the mapping, no fd
    os.close(fd)
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:                       # the child: keeps only the inherited mapping
    os.close(w)
    if how == "fd-closed-in-child":
        os.close(fd)
    os.write(w2, b"c")
    os.read(r, 1)
    ok = m[0:9] == b"forked-ok"
    os._exit(0 if ok else 3)
os.close(r)
os.read(r2, 1)
m.close()                          # the parent lets go of everything, unlinking
os.unlink(p(name))                 # before its last close
if how == "fd-closed-in-child":
    os.close(fd)
print(json.dumps({"name": name, "child": pid}), flush=True)
def create_errno():
    with open(p(".new")) as f:
        n = f.read().strip()
    try:
        fd = os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return errno_name(e)
    try:
        os.ftruncate(fd, size)
        os.close(fd)
        os.unlink(p(n))
        return "OK"
    except OSError as e:
        os.close(fd)
        os.unlink(p(n))
        return errno_name(e)
def errno_name(e):
    import errno
    return errno.errorcode.get(e.errno, str(e.errno))
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "create":
        print(json.dumps(create_errno()), flush=True)
    elif cmd == "release":
        os.write(w, b"x")
        _, status = os.waitpid(pid, 0)
        print(json.dumps(status), flush=True)
'''


FORK_HOW = ["fd-closed-in-child", "mapping-only"]


@pytest.mark.parametrize("how", FORK_HOW)
def test_forked_child_keeps_unlinked_region_charged(mnt, children, how):
    """Promise: quota and size are charged while the memory exists.  A region
    mapped by a forked child (which closed its inherited fd, or inherited
    only the mapping) while the parent unmapped, unlinked and closed stays
    charged in `.stats` (bytes and the uid's quota) until the child exits,
    then is released."""
    size = 1 << 20
    c = py_child(children, VICTIM, FORK_MAPPER_CODE, mnt.path, size, how)
    info = json_line(c)
    path = mnt.p(info["name"])
    assert gone(path)
    time.sleep(PAST_LINGER)
    st = mnt.stats()
    per_uid = {str(u["uid"]): u for u in st.get("per_uid", [])}
    assert st["bytes"] == size, "an unlinked region mapped by a forked child is not charged: %s" % st
    assert str(VICTIM) in per_uid and per_uid[str(VICTIM)]["bytes"] == size, \
        "uid %d is not charged for the memory its child maps: %s" % (VICTIM, st.get("per_uid"))
    c.send("release")
    assert json_line(c) == 0, "the child did not see the bytes through its mapping"
    mnt.wait_for(lambda: mnt.stats()["bytes"] == 0, timeout=LINGER + 4,
                 what="the bytes to be released once the child exited")


@pytest.fixture
def quota_mnt(mount_factory, datapath):
    return mount_factory(datapath, "linger=1", "mint_ttl=5", "quota=64M", "size=128M")


@pytest.mark.parametrize("how", FORK_HOW)
def test_unlinked_forked_mapping_cannot_bypass_quota(quota_mnt, children, how):
    """Promise: no quota bypass.  On quota=64M,size=128M a uid creates a 48M
    region, maps it in a forked child and unlinks it: while the child maps it,
    a second 48M region is refused with EDQUOT; after the child exits the
    second create succeeds."""
    m = quota_mnt
    size = 48 << 20
    c = py_child(children, VICTIM, FORK_MAPPER_CODE, m.path, size, how)
    json_line(c)
    time.sleep(PAST_LINGER)
    c.send("create")
    got = json_line(c)
    assert got == "EDQUOT", ("a second 48M region while a forked child maps the unlinked first: %s "
                             "(quota 64M); stats %s" % (got, m.stats()))
    c.send("release")
    assert json_line(c) == 0
    deadline = time.time() + LINGER + 5
    while True:
        c.send("create")
        got = json_line(c)
        if got == "OK" or time.time() > deadline:
            break
        time.sleep(0.3)
    assert got == "OK", "the quota was not given back after the child exited: %s" % got


SCM_RECEIVER_CODE = MAP_CODE + r'''
import json, mmap, os, socket, sys
addr = "\0" + sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(addr); s.listen(1)
print("listening", flush=True)
conn, _ = s.accept()
msg, fds, _, _ = socket.recv_fds(conn, 16, 1)
fd = fds[0]
m = Map(fd, os.fstat(fd).st_size)
os.close(fd)
conn.sendall(b"k"); conn.close(); s.close()
print("mapped", flush=True)
for line in sys.stdin:
    a = line.split()
    if a[0] == "r":
        print(m[int(a[1]):int(a[1]) + int(a[2])].hex(), flush=True)
    elif a[0] == "w":
        b = bytes.fromhex(a[2]); m[int(a[1]):int(a[1]) + len(b)] = b; print("ok", flush=True)
'''

SCM_SENDER_CODE = r'''
import os, socket, sys
root, addr, unlink = sys.argv[1], "\0" + sys.argv[2], sys.argv[3] == "unlink"
with open(os.path.join(root, ".new")) as f:
    name = f.read().strip()
fd = os.open(os.path.join(root, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, 65536)
os.pwrite(fd, b"passed-by-fd", 0)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(addr)
socket.send_fds(s, [b"x"], [fd])
s.recv(1)                     # the receiver mapped it and closed its fd
s.close()
if unlink:
    os.unlink(os.path.join(root, name))
os.close(fd)
print(name)
'''


@pytest.mark.parametrize("unlink", [False, True], ids=["kept", "unlinked"])
def test_fd_passed_over_scm_rights_keeps_region(mnt, children, unlink):
    """Promise: a mapping made through an fd that travelled over SCM_RIGHTS to
    an unrelated process of another uid (which maps it and closes the fd)
    holds the region after its creator has gone, by name; and when the
    creator unlinked it before its last close, its bytes stay charged until
    the receiver goes."""
    sock = "capshm-attack-%d-%d" % (os.getpid(), time.monotonic_ns())
    recv = py_child(children, ATTACKER, SCM_RECEIVER_CODE, sock)
    recv.expect("listening")
    r = py_as_user(VICTIM, SCM_SENDER_CODE, mnt.path, sock, "unlink" if unlink else "keep")
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip()
    path = mnt.p(name)
    recv.expect("mapped")
    time.sleep(PAST_LINGER)
    if unlink:
        st = mnt.stats()
        assert st["bytes"] == 65536, "an unlinked region mapped by an SCM_RIGHTS receiver is not charged: %s" % st
    else:
        assert not gone(path), "the region went while a process that received its fd maps it"
        assert root_reads(path, 12) == b"passed-by-fd"
        assert recv.cmd("w 200 " + b"receiver".hex()) == "ok"
        assert root_reads(path, 8, 200) == b"receiver"
        assert mnt.stats()["bytes"] == 65536
    assert recv.cmd("r 0 12") == b"passed-by-fd".hex()
    recv.kill()
    wait_gone_and_released(mnt, path, "the region after the receiver was killed")


@pytest.mark.parametrize("unlink", [False, True], ids=["kept", "unlinked"])
def test_mapper_in_another_pid_namespace_keeps_region(mnt, children, unlink):
    """Promise: a process in another pid namespace (unshare --pid --fork)
    that maps a region and closes its fd holds it (by name; or, unlinked
    before the creator's last close, its bytes stay charged)."""
    name, fd = mnt.create(16384, mode=0o600)
    path = mnt.p(name)
    os.pwrite(fd, b"pidns", 0)
    h = children(["unshare", "--pid", "--fork", "--kill-child"] + helper_argv("map-hold", path),
                 ready=True)
    if unlink:
        os.unlink(path)
        os.close(fd)
        time.sleep(PAST_LINGER)
        assert mnt.stats()["bytes"] == 16384, "an unlinked region mapped in another pid namespace " \
            "is not charged: %s" % mnt.stats()
        assert h.cmd("r 0 5") == b"pidns".hex()
        h.kill()
        mnt.wait_for(lambda: mnt.stats()["bytes"] == 0, timeout=LINGER + 4, what="bytes released")
        return
    os.close(fd)
    time.sleep(PAST_LINGER)
    assert not gone(path), "the region went while a process in another pid namespace maps it"
    assert root_reads(path, 5) == b"pidns"
    assert h.cmd("w 64 " + b"nsw".hex()) == "ok"
    assert root_reads(path, 3, 64) == b"nsw"
    h.kill()
    wait_gone_and_released(mnt, path, "the region after the pid-namespace mapper was killed")


MAPPED_HOLDER_CODE = MAP_CODE + r'''
import json, mmap, os, sys
root, count = sys.argv[1], int(sys.argv[2])
def p(n): return os.path.join(root, n)
names, maps, fds = [], [], []
for i in range(count):
    with open(p(".new")) as f:
        n = f.read().strip()
    fd = os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 8192)
    m = Map(fd, 8192)
    m[0:8] = ("bytes-%02d" % i).encode()
    names.append(n); maps.append(m); fds.append(fd)
print(json.dumps(names), flush=True)
for line in sys.stdin:
    a = line.split()
    if a[0] == "r":
        print(maps[int(a[1])][0:8].decode(errors="replace"), flush=True)
    elif a[0] == "close":             # from now on only the mappings hold
        for fd in fds:
            os.close(fd)
        fds = []
        print("closed", flush=True)
'''

# Takes every fd the daemon frees: creates regions (each costs the daemon an
# fd) until EMFILE, reports, then keeps retrying every few ms so that any fd
# the daemon frees is taken again at once.  Holds everything until killed.
FD_EATER_CODE = r'''
import errno, json, os, sys, time
root = sys.argv[1]
def p(n): return os.path.join(root, n)
fds, err, reported = [], None, False
deadline = time.time() + 120
while time.time() < deadline:
    try:
        with open(p(".new")) as f:
            n = f.read().strip()
        fds.append(os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        if len(fds) > 3000:
            break
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
        if not reported:
            print(json.dumps({"held": len(fds), "errno": err}), flush=True); reported = True
        time.sleep(0.005)
if not reported:
    print(json.dumps({"held": len(fds), "errno": err}), flush=True)
time.sleep(3600)
'''


def nofile_limits(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


def test_daemon_at_fd_limit_never_destroys_a_mapped_region(mnt, children):
    """Promise: lifetime stays right when the daemon runs out of fds.  One uid
    opens and maps regions; the daemon's RLIMIT_NOFILE is lowered to just
    above its use and a third process exhausts the daemon's fds; then the
    first uid closes its fds (only the mappings hold).  Past linger no mapped
    region is destroyed: once fds are free again every name opens and its
    bytes are intact."""
    # The process serving the mount (under valgrind, valgrind's process,
    # whose command line names valgrind, not capshmfs).
    dpid = mnt.proc.pid
    assert mnt.proc.poll() is None
    holder = py_child(children, VICTIM, MAPPED_HOLDER_CODE, mnt.path, 4)
    names = json.loads(holder.readline(30))
    soft, hard = nofile_limits(dpid)
    in_use = len(os.listdir("/proc/%d/fd" % dpid))
    limit = in_use + 4
    # Only the soft limit: raising it back needs no CAP_SYS_RESOURCE.
    subprocess.run(["prlimit", "--pid", str(dpid), "--nofile=%d:%s" % (limit, hard)], check=True,
                   timeout=30)
    try:
        eater = py_child(children, ATTACKER, FD_EATER_CODE, mnt.path)
        ate = json_line(eater, timeout=60)
        assert ate["errno"] is not None, "the daemon never ran out of fds (setup): %s" % ate
        print("\nfd eater: %s; daemon fds %d, limit %d" % (ate, len(os.listdir("/proc/%d/fd" % dpid)), limit))
        holder.expect("closed") if holder.send("close") is None else None
        time.sleep(PAST_LINGER + 1)
        eater.kill()
    finally:
        subprocess.run(["prlimit", "--pid", str(dpid), "--nofile=%s:%s" % (soft, hard)], check=True,
                       timeout=30)
    time.sleep(0.5)
    lost = [n for n in names if gone(mnt.p(n))]
    assert not lost, ("%d of %d mapped regions were destroyed while the daemon was at its fd limit "
                      "(the fd eater first hit its limit at %s)" % (len(lost), len(names), ate))
    for i, n in enumerate(names):
        assert root_reads(mnt.p(n), 8) == ("bytes-%02d" % i).encode()
        assert holder.cmd("r %d" % i) == "bytes-%02d" % i


# --- 3. no client stalls another -------------------------------------------------------

# The victim: its own region (held open); N times: open+mmap+close of it,
# a whole read of .stats, a create cycle (mint, create, size, close: the new
# region lingers and expires, so the daemon decides lifetimes meanwhile).
# One JSON line per operation.
VICTIM_LOOP_CODE = MAP_CODE + r'''
import json, mmap, os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
def p(x): return os.path.join(root, x)
with open(p(".new")) as f:
    name = f.read().strip()
hold = os.open(p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(hold, 4096)
print(json.dumps({"ready": True}), flush=True)
def omc():
    fd = os.open(p(name), os.O_RDWR); m = Map(fd, 4096); os.close(fd); m[0:1] = b"\1"; m.close()
def stats():
    with open(p(".stats")) as f:
        json.loads(f.read())
def cycle():
    with open(p(".new")) as f:
        nm = f.read().strip()
    fd = os.open(p(nm), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 4096); os.close(fd)   # left to linger and expire
for i in range(n):
    for op, fn in (("open+mmap+close", omc), ("stats", stats), ("create", cycle)):
        t = time.monotonic(); fn()
        print(json.dumps({"op": op, "ms": (time.monotonic() - t) * 1000}), flush=True)
    time.sleep(0.1)     # spread the loop over several linger expiries
print(json.dumps({"done": True}), flush=True)
'''

STATS_HAMMER_CODE = r'''
import sys
p = sys.argv[1] + "/.stats"
print("ready", flush=True)
while True:
    with open(p) as f:
        f.read()
'''

# Holds regions open and mapped, and keeps opening, mapping and closing them,
# so that a SIGSTOP lands in the middle of that work.
BUSY_HOLDER_CODE = MAP_CODE + r'''
import mmap, os, sys
root = sys.argv[1]
def p(n): return os.path.join(root, n)
names, fds, maps = [], [], []
for i in range(100):
    with open(p(".new")) as f:
        n = f.read().strip()
    fd = os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 4096)
    names.append(n)
    if i % 2:
        maps.append(Map(fd, 4096)); os.close(fd)
    else:
        fds.append(fd)
print("ready", flush=True)
i = 0
while True:
    n = names[i % len(names)]; i += 1
    fd = os.open(p(n), os.O_RDWR); m = Map(fd, 4096); m[0:1] = bytes([i & 0xff]); os.close(fd); m.close()
'''

MANY_REGIONS_CODE = MAP_CODE + r'''
import mmap, os, sys
root, count = sys.argv[1], int(sys.argv[2])
def p(n): return os.path.join(root, n)
maps = []
for i in range(count):
    with open(p(".new")) as f:
        n = f.read().strip()
    fd = os.open(p(n), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 4096)
    maps.append(Map(fd, 4096)); os.close(fd)
print("ready", flush=True)
sys.stdin.read()
'''

VICTIM_ITERATIONS = 50
VICTIM_BUDGET = 75.0    # seconds of victim loop per run before we stop counting
OP_BOUND = 20.0         # each victim call must complete within this


def run_victim(children, mnt, label, iterations=VICTIM_ITERATIONS, budget=VICTIM_BUDGET):
    """Run the victim loop as VICTIM; every call must complete within OP_BOUND.
    Returns {op: [ms...]} and prints a summary line."""
    v = py_child(children, VICTIM, VICTIM_LOOP_CODE, mnt.path, iterations)
    assert json_line(v, timeout=OP_BOUND).get("ready")
    lat = {}
    t0 = time.time()
    while time.time() - t0 < budget:
        try:
            ans = json_line(v, timeout=OP_BOUND)
        except AssertionError as e:
            raise AssertionError("%s: a victim call did not complete within %.0f s: %s"
                                 % (label, OP_BOUND, e)) from None
        if ans.get("done"):
            break
        lat.setdefault(ans["op"], []).append(ans["ms"])
    v.kill()
    summary = ", ".join("%s median %.2f ms max %.1f ms (n=%d)"
                        % (op, statistics.median(ms), max(ms), len(ms)) for op, ms in lat.items())
    print("\nLATENCY %s [%s]: %s" % (label, mnt.datapath, summary), flush=True)
    return lat


def start_attack(kind, mnt, children):
    """Start attacker `kind` as ATTACKER; returns the Child (stopped where the
    attack says so)."""
    if kind == "many_maps":
        name, fd = mnt.create(4096, mode=0o600)
        chown_region(mnt, name, ATTACKER)
        a = children([ATTACK_HELPER, "many-maps", "60000"], uid=ATTACKER)
        a.send(mnt.p(name))
        ready = a.readline(120)
        assert ready.startswith("ready "), ready
        made = int(ready.split()[1])
        assert made > 50000, "only %d mappings (setup)" % made
        os.close(fd)
        time.sleep(LINGER + 0.5)
        os.kill(a.pid, signal.SIGSTOP)
    elif kind == "stats_hammer":
        a = py_child(children, ATTACKER, STATS_HAMMER_CODE, mnt.path)
        a.expect("ready")
    elif kind == "stopped_holder":
        a = py_child(children, ATTACKER, BUSY_HOLDER_CODE, mnt.path)
        a.expect("ready", timeout=60)
        time.sleep(0.3)
        os.kill(a.pid, signal.SIGSTOP)
    elif kind == "thousand_mapped_regions":
        a = py_child(children, ATTACKER, MANY_REGIONS_CODE, mnt.path, 1000)
        a.expect("ready", timeout=120)
        time.sleep(LINGER + 0.5)
        os.kill(a.pid, signal.SIGSTOP)
    else:
        raise ValueError(kind)
    return a


@pytest.mark.timeout(400)
@pytest.mark.parametrize("attack", ["many_maps", "stats_hammer", "stopped_holder",
                                    "thousand_mapped_regions"])
def test_no_client_stalls_another(mnt, children, attack):
    """Promise: no client can slow another.  While an attacker uid holds
    ~60,000 file mappings (SIGSTOPped), hammers `.stats`, sits SIGSTOPped in
    the middle of opening/mapping regions, or maps 1,000 regions with fds
    closed, another uid's open+mmap+close, `.stats` read and create cycle all
    complete (each within 20 s; latencies idle vs attack are printed)."""
    run_victim(children, mnt, "idle (before %s)" % attack, iterations=20, budget=30)
    a = start_attack(attack, mnt, children)
    try:
        run_victim(children, mnt, "under %s" % attack)
    finally:
        try:
            os.kill(a.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        a.kill()


BIG_OP_CODE = r'''
import os, sys
os.sched_setaffinity(0, {0})
d, kind, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
name = open(os.path.join(d, ".new")).read().strip()
fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, size)
if kind == "truncate":
    os.posix_fallocate(fd, 0, size)
print("ready", flush=True)
sys.stdin.readline()
if kind == "fallocate":
    os.posix_fallocate(fd, 0, size)
else:
    os.ftruncate(fd, 0)
print("done", flush=True)
sys.stdin.readline()
'''

QUICK_OPS_CODE = r'''
import os, sys
os.sched_setaffinity(0, {0})
d = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
for _ in range(5):
    name = open(os.path.join(d, ".new")).read().strip()
    fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, 4096)
    os.close(fd)
    os.unlink(os.path.join(d, name))
    open(os.path.join(d, ".stats")).read()
print("done", flush=True)
'''

def big_op_bytes():
    """6 GiB (allocating or freeing that takes the kernel about a second), or
    a third of the memory available on a smaller machine."""
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) << 10 for l in f if l.startswith("MemAvailable:"))
    return min(6 << 30, avail // 3) & ~((1 << 20) - 1)


def in_syscall(pid, nr):
    with open("/proc/%d/syscall" % pid) as f:
        return f.read().split()[0] == str(nr)


@pytest.mark.parametrize("kind,nr", [("fallocate", 285), ("truncate", 77)],
                         ids=["fallocate", "truncate"])
def test_a_big_allocation_or_free_holds_nobody_up(mnt, children, kind, nr):
    """Promise: no client can slow another.  While an attacker's fallocate of
    6 GiB (or its truncate of 6 GiB to 0) is still running, another uid on
    the same CPU (so, on io_uring, on the same ring) creates, truncates,
    closes and unlinks regions and reads .stats: all of it completes before
    the attacker's call returns.  (The daemon used to do both on the thread
    serving requests, the free under the core lock.)"""
    a = py_child(children, ATTACKER, BIG_OP_CODE, mnt.path, kind, big_op_bytes())
    a.expect("ready", timeout=60)
    v = py_child(children, VICTIM, QUICK_OPS_CODE, mnt.path)
    v.expect("ready")
    a.send("go")
    deadline = time.time() + 10
    while not in_syscall(a.pid, nr):
        assert time.time() < deadline, "the attacker never entered its %s" % kind
        time.sleep(0.005)
    v.send("go")
    v.expect("done", timeout=30)
    assert in_syscall(a.pid, nr), (
        "the victim finished only after the attacker's %s returned" % kind)
    a.expect("done", timeout=60)
    a.send("exit")


# --- 4. coherent read paths ------------------------------------------------------------

def read_paths(fd, off, n, tmpdir, same_mount_target):
    """What each read path returns for n bytes at off of fd."""
    out = {}
    out["pread"] = os.pread(fd, n, off)
    os.lseek(fd, off, os.SEEK_SET)
    out["read"] = os.read(fd, n)
    r, w = os.pipe()
    try:
        k = os.sendfile(w, fd, off, n)
        out["sendfile->pipe"] = os.read(r, n) if k else b""
        k = os.splice(fd, w, n, offset_src=off)
        out["splice->pipe"] = os.read(r, n) if k else b""
    finally:
        os.close(r)
        os.close(w)
    tf = os.open(os.path.join(tmpdir, "sink"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        k = os.sendfile(tf, fd, off, n)
        out["sendfile->file"] = os.pread(tf, n, 0)
        os.ftruncate(tf, 0)
        try:
            os.copy_file_range(fd, tf, n, off, 0)
            out["copy_file_range->file"] = os.pread(tf, n, 0)
        except OSError as e:
            if e.errno != errno.EXDEV:    # across file systems: refused, not wrong
                raise
    finally:
        os.close(tf)
    os.ftruncate(same_mount_target, 0)
    k = os.copy_file_range(fd, same_mount_target, n, off, 0)
    out["copy_file_range->region"] = os.pread(same_mount_target, n, 0)
    return out


def test_long_held_fd_reads_new_bytes_through_every_path(mnt, children, tmp_path):
    """Promise: every read path of a region sees its current bytes.  Fds opened
    long ago (the creator's, an O_RDONLY one, and on passthrough one through
    the read-only name) were read through every path; then another process
    changes bytes through its mapping: pread, read, sendfile, splice and
    copy_file_range from each old fd return the new bytes."""
    size = 1 << 20
    off = 500000
    name, cfd = mnt.create(size, mode=0o644)
    os.pwrite(cfd, b"o" * size, 0)
    fds = {"creator fd": cfd, "O_RDONLY fd": os.open(mnt.p(name), os.O_RDONLY)}
    if mnt.datapath == "passthrough":
        ro = os.getxattr(mnt.p(name), "user.capshm.ro").decode()
        fds["read-only-name fd"] = os.open(mnt.p(ro), os.O_RDONLY)
    tname, tfd = mnt.create(0, mode=0o600)
    for label, fd in fds.items():    # fill whatever cache each path has
        got = read_paths(fd, off, 8, str(tmp_path), tfd)
        assert all(v == b"o" * 8 for v in got.values()), (label, got)
    writer = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    assert writer.cmd("w %d %s" % (off, b"NEWBYTES".hex())) == "ok"
    stale = []
    for label, fd in fds.items():
        got = read_paths(fd, off, 8, str(tmp_path), tfd)
        stale += ["%s via %s: %r" % (label, path, v) for path, v in got.items() if v != b"NEWBYTES"]
    assert not stale, "stale reads after another process changed the bytes: " + "; ".join(stale)
    for fd in fds.values():
        os.close(fd)
    os.close(tfd)


def control_reads(mnt, control, tmpdir):
    """What each read path yields for a whole read of control file @control
    ({"open": OSError} when it cannot even be opened)."""
    path = mnt.p(control)
    out = {}
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        return {"open": e}
    with open(path, "rb") as f:
        out["read"] = f.read()
    r, w = os.pipe()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            k = os.sendfile(w, fd, None, 65536)
            out["sendfile->pipe"] = os.read(r, 65536) if k else b""
        finally:
            os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        try:
            k = os.splice(fd, w, 65536)
            out["splice->pipe"] = os.read(r, 65536) if k else b""
        finally:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)
    dst = os.path.join(tmpdir, "copy")
    fd = os.open(path, os.O_RDONLY)
    tf = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.sendfile(tf, fd, None, 65536)
        out["sendfile->file"] = os.pread(tf, 65536, 0)
    finally:
        os.close(fd)
        os.close(tf)
    shutil.copyfile(path, dst)
    with open(dst, "rb") as f:
        out["shutil.copyfile"] = f.read()
    # copy_file_range into a region on the same mount (across file systems
    # the kernel refuses it with EXDEV before any read path is involved).
    tname, tfd = mnt.create(0, mode=0o600)
    fd = os.open(path, os.O_RDONLY)
    try:
        total = 0
        while True:
            k = os.copy_file_range(fd, tfd, 65536, None, total)
            if k == 0:
                break
            total += k
        out["copy_file_range->region"] = os.pread(tfd, 65536, 0)
    finally:
        os.close(fd)
        os.close(tfd)
        os.unlink(mnt.p(tname))
    return out


def test_control_files_read_whole_through_every_path(mnt, tmp_path):
    """Promise: control files read whole through every read path: `.new`
    yields a 26-character name and a newline, `.stats` valid JSON, `.mine`
    the caller's regions, through read, sendfile, splice, shutil.copyfile and
    copy_file_range alike."""
    name, fd = mnt.create(4096, mode=0o600)
    bad = []
    def stats_ok(data):
        try:
            return "datapath" in json.loads(data)
        except ValueError:
            return False
    checks = {".new": lambda d: re.fullmatch(rb"[a-z2-7]{26}\n", d) is not None,
              ".stats": stats_ok,
              ".mine": lambda d: name.encode() + b"\n" in d}
    for control, ok in checks.items():
        for label, data in control_reads(mnt, control, str(tmp_path)).items():
            if isinstance(data, OSError) or not ok(data):
                bad.append("%s via %s: %r" % (control, label, data if isinstance(data, OSError) else data[:60]))
    os.close(fd)
    assert not bad, "control files read short: " + "; ".join(bad)


def test_busybox_cat_of_new_gives_a_name(mnt):
    """Promise: the README's `name=$(cat $D/.new)` works in busybox/Alpine
    containers: busybox cat (which uses sendfile) prints a whole name."""
    bb = shutil.which("busybox")
    assert bb, "busybox is not installed (apt-get install busybox-static)"
    for who in (None, VICTIM):
        argv = [bb, "cat", mnt.p(".new")]
        if who is not None:
            argv = user_argv(who, argv)
        r = subprocess.run(argv, capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(rb"[a-z2-7]{26}\n", r.stdout), "busybox cat .new printed %r" % r.stdout


# --- 5. names not on command lines ----------------------------------------------------

def execve_argvs(trace):
    """Every argv string of every execve in an strace -f -e trace=execve log."""
    with open(trace, errors="replace") as f:
        return [line for line in f if "execve(" in line]


def leaked_in(lines, names):
    return sorted({n for n in names for line in lines if n in line})


# A process (another uid) that reads every process's cmdline as fast as it can
# until it reads a line on stdin, then prints everything it saw as JSON.
CMDLINE_WATCH_CODE = r'''
import json, os, sys, threading
seen = set()
stop = []
threading.Thread(target=lambda: (sys.stdin.readline(), stop.append(1)), daemon=True).start()
print("ready", flush=True)
me = str(os.getpid())
while not stop:
    for d in os.listdir("/proc"):
        if d.isdigit() and d != me:
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    seen.add(f.read().decode("latin-1"))
            except OSError:
                pass
print(json.dumps(sorted(seen)), flush=True)
'''


def strace_argv(trace):
    # LeakSanitizer cannot run under ptrace: a sanitizer build's programs
    # (scripts/test --asan) run traced without their leak check.
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    return ["env", "ASAN_OPTIONS=" + asan, "strace", "-f", "-qq", "-s", "4096", "-e",
            "trace=execve", "-e", "signal=none", "-o", trace]


def readme_attach_takes_name_in_argv():
    with open(os.path.join(ROOT, "examples/README.md")) as f:
        return re.search(r"attach\s+NAME", f.read()) is not None


@pytest.mark.once
@pytest.mark.parametrize("lang", ["c", "python", "shell", "node"])
def test_examples_put_no_name_on_a_command_line(one_mnt, children, tmp_path, lang, c_share):
    """Promise: the examples pass names without exposing them to other uids.
    Each example is run the way examples/README.md says (the creator prints
    the name; the attacher gets it on its command line if the README says
    so, else on stdin); every execve is traced and another uid reads every
    process's /proc/PID/cmdline meanwhile: no name may appear in either."""
    mnt = one_mnt
    argv = argv_for(lang, c_share)
    env = example_env(mnt)
    watch = py_child(children, THIRD, CMDLINE_WATCH_CODE)
    watch.expect("ready")
    trace_c, trace_a = str(tmp_path / "creator.trace"), str(tmp_path / "attacher.trace")
    proc = subprocess.Popen(strace_argv(trace_c) + argv + ["create"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        name, _ = first_line(proc)
        assert NAME_RE.fullmatch(name), name
        in_argv = readme_attach_takes_name_in_argv()
        a = subprocess.run(strace_argv(trace_a) + argv + ["attach"] + ([name] if in_argv else []),
                           input=None if in_argv else name + "\n", capture_output=True, text=True,
                           env=env, timeout=60)
        assert a.returncode == 0, "attacher failed: %s" % a.stderr
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    watch.send("stop")
    seen = json.loads(watch.readline(60))
    traced = execve_argvs(trace_c) + execve_argvs(trace_a)
    leaks = {"execve argv": leaked_in(traced, [name]), "/proc/*/cmdline read by uid %d" % THIRD:
             leaked_in(seen, [name])}
    leaks = {k: v for k, v in leaks.items() if v}
    assert not leaks, "the %s example put its region name on a command line: %s%s" % (
        lang, leaks, " (examples/README.md says `attach NAME`)" if readme_attach_takes_name_in_argv() else "")


def readme_shell_blocks():
    """The ```sh blocks of README.md's "Using it" section."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Using it\n(.*?)^## ", text, re.S | re.M)
    assert m, "README.md has no '## Using it' section"
    return [b for b in re.findall(r"```sh\n(.*?)```", m.group(1), re.S) if "scripts/" not in b]


@pytest.mark.once
def test_readme_shell_usage_puts_no_name_on_a_command_line(mount_factory, tmp_path):
    """Promise: the README's shell usage never puts a region name on a command
    line.  Every ```sh block of "Using it" is run (against a test mount,
    linger long enough that every region it made can be listed afterwards)
    with every execve traced; no region name may appear in any argv."""
    m = mount_factory(DATAPATHS[0], "linger=30", "mint_ttl=30")
    blocks = readme_shell_blocks()
    assert blocks, "no shell blocks in README.md's 'Using it'"
    env = dict(os.environ, CAPSHM_DIR=m.path,
               PATH=os.path.dirname(os.path.abspath(CAPSHM_CLI)) + os.pathsep + os.environ["PATH"])
    traces = []
    # A scratch directory to run in (the Node block installs the package:
    # its package.json and node_modules must not land in the checkout).
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(os.path.join(ROOT, "bindings"), str(work / "bindings"))
    for i, block in enumerate(blocks):
        script = re.sub(r"^D=/run/capshm\b.*$", "D=%s" % m.path, block, flags=re.M)
        script = script.replace("/run/capshm", m.path)
        trace = str(tmp_path / ("block%d.trace" % i))
        r = subprocess.run(strace_argv(trace) + ["bash", "-c", "set -e\n" + script],
                           capture_output=True, text=True, env=env, timeout=60, cwd=str(work))
        assert r.returncode == 0, "README block %d failed: %s\n%s" % (i, r.stderr, block)
        traces += execve_argvs(trace)
    # Every region still there (linger=30), and any name-shaped path component
    # under the mount in an argv (regions the blocks removed).
    names = [n for n in os.listdir(m.path) if NAME_RE.fullmatch(n)]
    names += [n for line in traces for n in re.findall(re.escape(m.path) + r"/([a-z2-7]{26})\b", line)]
    names = sorted(set(names))
    assert names, "the README's shell blocks created no region (setup)"
    for n in names:
        try:
            names.append(os.getxattr(m.p(n), "user.capshm.ro").decode())
        except OSError:
            pass
    leaks = leaked_in(traces, names)
    lines = [l.strip()[:160] for l in traces if any(n in l for n in leaks)]
    assert not leaks, "the README's shell usage puts region names on command lines:\n  " + \
        "\n  ".join(lines)


def cli(*args, stdin=None, uid=None, check=True):
    argv = [CAPSHM_CLI] + [str(a) for a in args]
    if uid is not None:
        argv = user_argv(uid, argv)
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, "capshm %s (stdin %r): rc %d: %s" % (args, stdin, r.returncode, r.stderr)
    return r


def test_cli_takes_the_path_from_stdin(mnt):
    """Promise: the CLI can take a path from stdin (`-` as PATH), so scripts
    need not put a name on a command line: info, ro, pin, unpin, seal, rm."""
    name, fd = mnt.create(4096, mode=0o600)
    path = mnt.p(name)
    d = ["-d", mnt.path]
    r = cli(*d, "info", "-", stdin=path + "\n")
    assert name in r.stdout
    r = cli(*d, "info", "--json", "-", stdin=path + "\n")
    assert json.loads(r.stdout)["name"] == name
    if mnt.datapath == "passthrough":
        r = cli(*d, "ro", "-", stdin=path + "\n")
        assert r.stdout.strip() == mnt.p(os.getxattr(path, "user.capshm.ro").decode())
    cli(*d, "pin", "-", stdin=path + "\n")
    assert os.getxattr(path, "user.capshm.pin") == b"1"
    cli(*d, "unpin", "-", stdin=path + "\n")
    assert os.getxattr(path, "user.capshm.pin") == b"0"
    os.close(fd)
    cli(*d, "seal", "-", stdin=path + "\n")
    assert os.getxattr(path, "user.capshm.seal") == b"1"
    cli(*d, "rm", "-", stdin=path + "\n")
    assert gone(path)


# --- 6. capshm ls escapes what it prints -------------------------------------------

HOSTILE = "x\x1b[31mred\nfake 999 0666 1 live 0s"


def test_ls_escapes_hostile_names(mount_factory, agents):
    """Promise: `capshm ls` escapes what it prints.  With names=any another
    uid creates a region whose name holds a terminal escape sequence and a
    newline; root's `capshm ls` and `capshm ls --json` contain no raw ESC
    byte and no forged row."""
    m = mount_factory(DATAPATHS[0], "names=any", "linger=1")
    a = agents(VICTIM, m)
    try:
        a.call("create_named", HOSTILE, 0o644)
    except OSError as e:
        pytest.skip("the kernel refused the hostile name: %s" % e)
    a.call("create_named", "plain", 0o644)
    for who in (None, VICTIM):
        r = subprocess.run(user_argv(who, [CAPSHM_CLI, "-d", m.path, "ls"]) if who else
                           [CAPSHM_CLI, "-d", m.path, "ls"], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert b"\x1b" not in out, "capshm ls (uid %s) printed a raw ESC: %r" % (who or 0, out)
        rows = [l for l in out.split(b"\n") if l.strip()]
        assert not any(l.startswith(b"fake") for l in rows), "a forged row: %r" % out
        assert len(rows) == 1 + 2, "expected a header and 2 rows, got %r" % out
        r = subprocess.run(user_argv(who, [CAPSHM_CLI, "-d", m.path, "ls", "--json"]) if who else
                           [CAPSHM_CLI, "-d", m.path, "ls", "--json"], capture_output=True, timeout=30)
        assert r.returncode == 0 and b"\x1b" not in r.stdout, r.stdout
        assert {o["name"] for o in json.loads(r.stdout)} == {HOSTILE, "plain"}


# --- 7. minor: errnos through a read-only name ---------------------------------------

def test_write_and_truncating_opens_of_a_read_only_name_are_eacces(mnt):
    """Promise: through a read-only name, O_WRONLY, O_RDWR and O_TRUNC opens are
    EACCES, for root and for another uid, and nothing is truncated."""
    if mnt.datapath != "passthrough":
        pytest.skip("read-only names exist only on passthrough")
    name, fd = mnt.create(4096, mode=0o666)
    os.pwrite(fd, b"keep", 0)
    ro = os.getxattr(mnt.p(name), "user.capshm.ro").decode()
    rop = mnt.p(ro)
    got = {}
    for label, flags in (("O_RDONLY|O_TRUNC", os.O_RDONLY | os.O_TRUNC), ("O_WRONLY", os.O_WRONLY),
                         ("O_RDWR", os.O_RDWR), ("O_WRONLY|O_TRUNC", os.O_WRONLY | os.O_TRUNC)):
        got["root " + label] = errno_name(lambda: os.close(os.open(rop, flags)))
    code = r'''
import errno, json, os, sys
out = {}
for label, flags in (("O_RDONLY|O_TRUNC", os.O_RDONLY | os.O_TRUNC), ("O_WRONLY", os.O_WRONLY),
                     ("O_RDWR", os.O_RDWR)):
    try:
        os.close(os.open(sys.argv[1], flags)); out[label] = "OK"
    except OSError as e:
        out[label] = errno.errorcode[e.errno]
print(json.dumps(out))
'''
    r = py_as_user(ATTACKER, code, rop)
    assert r.returncode == 0, r.stderr
    got.update({"uid %d %s" % (ATTACKER, k): v for k, v in json.loads(r.stdout).items()})
    wrong = {k: v for k, v in got.items() if v != "EACCES"}
    assert not wrong, "expected EACCES, got %s" % wrong
    assert os.fstat(fd).st_size == 4096 and os.pread(fd, 4, 0) == b"keep"
    os.close(fd)
