# SPDX-License-Identifier: MIT
"""Churn: many processes of several uids create, share, verify and drop
regions while a driver SIGKILLs random workers.

Workers run as root, USER_A and USER_B.  Each one loops:
  create  mint a name, create the region 0666, size it (1 byte .. 32 pages),
          write a seeded pattern through a mapping, check it through the
          mapping and read(), post "name size crc32" in a mailbox directory
          (the hand-over: a file renamed into place), and keep holding it
          (fd open, or mapping only) -- sometimes with a forked child that
          inherited the mapping and checks it again before it exits;
  consume claim a random message (rename: exactly one worker gets it), open
          the region -- usually another uid's -- check its size and crc32
          through a fresh mapping and read(), maybe hold it, maybe hand the
          message on to the next worker;
  drop    unmap/close a held region; sometimes the creator unlinks it.
A region's bytes never change after it is posted, so any holder may check
them at any time: a mismatch is corruption.  ENOENT when opening a posted
name (the region went: its holders dropped it or were killed, and linger ran
out) is expected; any other error, or ENOENT anywhere else, is reported with
its traceback.

Meanwhile the driver SIGKILLs a random worker every 0.15-0.4 s and starts a
new one of the same uid.  Afterwards: no corruption or unexpected error was
seen, .stats is back to 0 regions and 0 bytes within linger + 2 s, the daemon
is alive, its RSS grew only modestly and it has exactly as many fds as before.

Default: ~10 s per data path.  CAPSHM_SOAK_MINUTES=N runs N minutes per path.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

from capshm_test import USER_A, USER_B, user_argv

PAGE = os.sysconf("SC_PAGE_SIZE")
LINGER = 1
UIDS = [0, USER_A, USER_B]
WORKERS_PER_UID = 2
SOAK_MINUTES = float(os.environ.get("CAPSHM_SOAK_MINUTES", "0") or 0)
DURATION = SOAK_MINUTES * 60 if SOAK_MINUTES > 0 else 10.0

WORKER = r'''
import mmap, os, random, sys, time, traceback, zlib

mnt, work, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
PAGE = mmap.PAGESIZE
rnd = random.Random(seed)
me = os.getpid()
box, claims = work + "/box", work + "/claims"
counts = {"created": 0, "verified": 0, "vanished": 0, "forks": 0, "handed_on": 0, "unlinked": 0}
statfd = os.open("%s/stats/%d" % (work, me), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
held = []   # [name, size, crc, mmap, fd or -1, mine]
nmsg = 0

def report(kind, text):
    fd = os.open("%s/%s/%d" % (work, kind, me), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.write(fd, (text + "\n").encode())
    os.close(fd)

def save_counts():
    line = " ".join("%s=%d" % kv for kv in counts.items()).encode()
    os.pwrite(statfd, line.ljust(200), 0)

def corrupt(text):
    report("corrupt", text)
    sys.exit(3)

def unexpected(where, e):
    report("errors", "%s: %s" % (where, e))

def pattern(pseed, size):
    return random.Random(pseed).randbytes(size)

def check(name, fd, mm, size, crc, how):
    got = zlib.crc32(mm[:size])
    if got != crc:
        corrupt("%s: mapping of %s (%d bytes) has crc %08x, want %08x" % (how, name, size, got, crc))
    if fd >= 0:
        got = zlib.crc32(os.pread(fd, size + 1, 0))
        if got != crc:
            corrupt("%s: read() of %s has crc %08x, want %08x" % (how, name, got, crc))

def post(name, size, crc):
    global nmsg
    nmsg += 1
    tmp = "%s/tmp-%d-%d" % (work, me, nmsg)
    with open(tmp, "w") as f:
        f.write("%s %d %d\n" % (name, size, crc))
    os.chmod(tmp, 0o666)
    os.rename(tmp, "%s/msg-%d-%d" % (box, me, nmsg))

def create():
    name = open(mnt + "/.new").read().strip()
    fd = os.open(mnt + "/" + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    os.fchmod(fd, 0o666)
    size = PAGE * rnd.randint(1, 32) if rnd.random() < 0.7 else rnd.randint(1, 32 * PAGE)
    os.ftruncate(fd, size)
    mm = mmap.mmap(fd, size)
    data = pattern(rnd.getrandbits(32), size)
    mm[:] = data
    crc = zlib.crc32(data)
    check(name, fd, mm, size, crc, "creator")
    counts["created"] += 1
    if rnd.random() < 0.15:
        # A forked holder: inherits the mapping, outlives nothing in
        # particular, checks the bytes again before it goes.
        pid = os.fork()
        if pid == 0:
            time.sleep(rnd.random() * 0.4)
            try:
                check(name, -1, mm, size, crc, "forked child")
            finally:
                os._exit(0)
        counts["forks"] += 1
        os.waitpid(-1, os.WNOHANG)
    post(name, size, crc)
    if rnd.random() < 0.5:
        os.close(fd)          # the mapping alone holds it
        fd = -1
    held.append([name, size, crc, mm, fd, True])

def consume():
    try:
        msgs = [m for m in os.listdir(box) if m.startswith("msg-")]
    except OSError as e:
        return unexpected("listdir", e)
    if not msgs:
        return
    m = rnd.choice(msgs)
    claim = "%s/%d-%s" % (claims, me, m)
    try:
        os.rename(box + "/" + m, claim)
    except FileNotFoundError:
        return                # someone else claimed it
    with open(claim) as f:
        name, size, crc = f.read().split()
    os.unlink(claim)
    size, crc = int(size), int(crc)
    try:
        fd = os.open(mnt + "/" + name, os.O_RDWR)
    except FileNotFoundError:
        counts["vanished"] += 1
        return
    st = os.fstat(fd)
    if st.st_size != size:
        corrupt("%s has size %d, posted %d" % (name, st.st_size, size))
    mm = mmap.mmap(fd, size)
    check(name, fd, mm, size, crc, "consumer")
    counts["verified"] += 1
    if rnd.random() < 0.5:
        post(name, size, crc)
        counts["handed_on"] += 1
    if rnd.random() < 0.5:
        if rnd.random() < 0.5:
            os.close(fd)
            fd = -1
        held.append([name, size, crc, mm, fd, False])
    else:
        mm.close()
        os.close(fd)

def drop(i):
    name, size, crc, mm, fd, mine = held.pop(i)
    check(name, fd, mm, size, crc, "holder")   # still the same bytes while held
    mm.close()
    if fd >= 0:
        os.close(fd)
    if mine and rnd.random() < 0.2:
        try:
            os.unlink(mnt + "/" + name)
            counts["unlinked"] += 1
        except FileNotFoundError:
            pass

while not os.path.exists(work + "/stop"):
    r = rnd.random()
    try:
        if r < 0.35 and len(held) < 8:
            create()
        elif r < 0.8:
            consume()
        elif held:
            drop(rnd.randrange(len(held)))
    except OSError as e:
        # The expected ENOENTs (a region that went, a message someone else
        # claimed) are handled where they happen; anything reaching here,
        # ENOENT included, is a failure worth its traceback.
        unexpected("op", traceback.format_exc())
    save_counts()
    if rnd.random() < 0.3:
        time.sleep(rnd.random() * 0.005)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
while held:
    try:
        drop(len(held) - 1)
    except OSError:
        unexpected("final drop", traceback.format_exc())
save_counts()
'''


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fd_count(pid, timeout=5.0):
    """The daemon's fd count once it stops changing (a destroyed region's
    last fd is closed by the daemon's reaper thread a moment later)."""
    deadline = time.time() + timeout
    last = fd_count(pid)
    while time.time() < deadline:
        time.sleep(0.2)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def instrumented(pid):
    """True if the daemon runs under ASan or valgrind (RSS means little there)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return "libasan" in maps or "vgpreload" in maps or b"valgrind" in cmd or "asan" in maps


class Churn:
    def __init__(self, m, work, seconds):
        self.m = m
        self.work = work
        self.seconds = seconds
        self.rnd = random.Random()
        self.workers = {}   # pid -> (Popen, uid)
        self.logs = {}      # pid -> the worker's stdout+stderr file
        self.sessions = []
        self.killed = 0
        self.seq = 0
        for d in ("box", "claims", "stats", "corrupt", "errors", "logs"):
            os.makedirs(os.path.join(work, d))
        for root, dirs, _ in os.walk(work):
            for d in [root] + [os.path.join(root, x) for x in dirs]:
                os.chmod(d, 0o777)

    def spawn(self, uid):
        self.seq += 1
        log = open(os.path.join(self.work, "logs", "w%d" % self.seq), "wb")
        p = subprocess.Popen(user_argv(uid, ["/usr/bin/python3", "-c", WORKER, self.m.path,
                                             self.work, str(self.rnd.getrandbits(32))]),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
        log.close()
        self.workers[p.pid] = (p, uid)
        self.logs[p.pid] = log.name
        self.sessions.append(p.pid)

    def run(self):
        for uid in UIDS:
            for _ in range(WORKERS_PER_UID):
                self.spawn(uid)
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            time.sleep(self.rnd.uniform(0.15, 0.4))
            assert self.m.proc.poll() is None, "the daemon died during churn:\n" + self.m.log()
            pid = self.rnd.choice(list(self.workers))
            p, uid = self.workers.pop(pid)
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.killed += 1
            self.spawn(uid)
        # Stop: every worker drops what it holds and exits.
        open(os.path.join(self.work, "stop"), "w").close()
        statuses = {}
        for pid, (p, uid) in self.workers.items():
            try:
                statuses[pid] = p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                statuses[pid] = p.wait()
        return statuses

    def cleanup(self):
        for p, _ in self.workers.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for sid in self.sessions:   # forked children of killed workers
            try:
                os.killpg(sid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def files(self, kind):
        d = os.path.join(self.work, kind)
        out = []
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name)) as f:
                out += [name + ": " + line.rstrip() for line in f if line.strip()]
        return out

    def counts(self):
        total = {}
        for line in self.files("stats"):
            for kv in line.split(": ", 1)[1].split():
                k, v = kv.split("=")
                total[k] = total.get(k, 0) + int(v)
        return total


def test_churn(mount_factory, datapath):
    m = mount_factory(datapath, "linger=%d" % LINGER, "mint_ttl=5")
    pid = m.proc.pid
    # Warm up once (first region, first pidfd, GLib's lazy allocations),
    # then take the baseline.
    name, fd = m.create(PAGE, 0o600)
    os.close(fd)
    os.unlink(m.p(name))
    m.wait_for(lambda: m.stats()["regions"] == 0, timeout=5, what="warm-up region to go")
    fds_before = settled_fd_count(pid)
    rss_before = rss_kib(pid)

    work = tempfile.mkdtemp(prefix="capshm-churn-")
    os.chmod(work, 0o777)
    churn = Churn(m, work, DURATION)
    try:
        statuses = churn.run()
        churn.cleanup()
        corrupt = churn.files("corrupt")
        errors = churn.files("errors")
        counts = churn.counts()
        print("churn %s: %.0fs, %d workers killed, %s" % (datapath, DURATION, churn.killed,
                                                          json.dumps(counts, sort_keys=True)))
        assert not corrupt, "corruption seen:\n" + "\n".join(corrupt)
        assert not errors, "unexpected errors:\n" + "\n".join(errors[:50])
        bad_exit = {p: s for p, s in statuses.items() if s != 0}
        assert not bad_exit, "workers failed at the end: %s\n%s" % (bad_exit, "\n".join(
            open(churn.logs[p], errors="replace").read()[-3000:] for p in bad_exit))
        # Not vacuous: things were created, shared across uids and checked.
        assert churn.killed >= DURATION / 0.4 * 0.8
        assert counts.get("created", 0) >= 50, counts
        assert counts.get("verified", 0) >= 20, counts

        # Everything goes once nobody holds anything.
        m.wait_for(lambda: (lambda s: s["regions"] == 0 and s["bytes"] == 0)(m.stats()),
                   timeout=LINGER + 2, what="0 regions and 0 bytes after the churn")
        st = m.stats()
        assert st["lingering"] == 0 and st["pinned"] == 0, st
        assert m.proc.poll() is None, "the daemon died:\n" + m.log()
        # No fd leak (memfds, pidfds, backing files): the same count as before.
        # The daemon's fixed fds (FUSE device, GLib wakeup, notifier) were
        # all open at the baseline already.  A destroyed region's last fd is
        # closed by the daemon's reaper thread a moment later: wait for it.
        try:
            m.wait_for(lambda: fd_count(pid) == fds_before, timeout=3, what="the daemon's fds")
        except AssertionError:
            pass  # reported below, with the fds
        fds_after = fd_count(pid)
        assert fds_after == fds_before, "daemon fds: %d before, %d after: %s" % (
            fds_before, fds_after, sorted(os.readlink("/proc/%d/fd/%s" % (pid, f))
                                          for f in os.listdir("/proc/%d/fd" % pid)))
        rss_after = rss_kib(pid)
        slack = 512 * 1024 if instrumented(pid) else 32 * 1024 + rss_before // 2
        print("daemon RSS %d KiB -> %d KiB, fds %d -> %d" % (rss_before, rss_after,
                                                             fds_before, fds_after))
        assert rss_after <= rss_before + slack, "daemon RSS grew from %d to %d KiB" % (
            rss_before, rss_after)
    finally:
        churn.cleanup()
        shutil.rmtree(work, ignore_errors=True)
