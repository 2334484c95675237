#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""stall — can one user slow another down?  (docs/performance.md, "Isolation")

Mounts capshmfs, then measures a victim uid's open+mmap+close of its own
region, and its read of .stats, first with nothing else going on and then
while an attacker uid does each of these:

  mappings    holds one region mapped 60,000 times (its fd closed), idle
  regions     maps 1,000 regions of its own and closes their fds, idle
  stats       reads .stats in a tight loop (two processes)
  stopped     holds 200 regions open and mapped, then is SIGSTOPped
  churn       creates, maps, closes and drops regions in a tight loop
  bigfree     creates a 1 GiB region, allocates all of it, closes and unlinks
              it, in a loop (the daemon frees 1 GiB each time)
  bigshrink   the same, but truncates the region to 0 before closing it

Prints one row per scenario: the victim's median, 99th percentile and worst
latency in microseconds over the measuring window, and the worst as a ratio
of the idle median.  A benchmark, not a test: nothing here passes or fails.

  bench/stall.py --capshmfs BUILD/src/daemon/capshmfs [--datapath passthrough|cache]
                 [--seconds 4] [--json]

Needs root (it mounts, and runs the two users with setpriv).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

VICTIM, ATTACKER = 1000, 1001

# Runs as the victim: loops for SECONDS; prints one JSON object of latencies.
VICTIM_CODE = r'''
import json, mmap, os, sys, time
d, secs = sys.argv[1], float(sys.argv[2])
name = open(os.path.join(d, ".new")).read().strip()
p = os.path.join(d, name)
fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.ftruncate(fd, 4096)
keep = mmap.mmap(fd, 4096)          # keeps the region alive between rounds
os.close(fd)
oc, st = [], []
end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.perf_counter()
    fd = os.open(p, os.O_RDWR)
    m = mmap.mmap(fd, 4096)
    os.close(fd)
    m.close()
    t1 = time.perf_counter()
    with open(os.path.join(d, ".stats"), "rb") as f:
        f.read()
    t2 = time.perf_counter()
    oc.append((t1 - t0) * 1e6)
    st.append((t2 - t1) * 1e6)
    time.sleep(0.002)
print(json.dumps({"open_mmap_close": oc, "stats": st}))
'''

# Runs as the attacker: sets itself up, prints "ready", then does its thing
# until killed.
ATTACKER_CODE = r'''
import ctypes, mmap, os, signal, sys, time
d, what = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
def raw_map(fd):
    # Python's mmap keeps a dup of the fd per mapping; libc's does not.
    a = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if a in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    return a
def create(size=4096):
    name = open(os.path.join(d, ".new")).read().strip()
    fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, size)
    return name, fd
held = []
if what == "mappings":
    name, fd = create()
    for _ in range(60000):
        held.append(raw_map(fd))
    os.close(fd)
elif what == "regions":
    for _ in range(1000):
        name, fd = create()
        held.append(raw_map(fd))
        os.close(fd)
elif what == "stopped":
    for _ in range(200):
        name, fd = create()
        held.append((fd, raw_map(fd)))
print("ready", flush=True)
if what == "stopped":
    os.kill(os.getpid(), signal.SIGSTOP)
if what == "stats":
    p = os.path.join(d, ".stats")
    while True:
        with open(p, "rb") as f:
            f.read()
elif what in ("bigfree", "bigshrink"):
    size = 1 << 30
    while True:
        name, fd = create(size)
        os.posix_fallocate(fd, 0, size)
        if what == "bigshrink":
            os.ftruncate(fd, 0)
        os.close(fd)
        os.unlink(os.path.join(d, name))
elif what == "churn":
    while True:
        name, fd = create()
        m = mmap.mmap(fd, 4096)
        os.close(fd)
        m.close()
        os.unlink(os.path.join(d, name))
else:
    while True:
        time.sleep(60)
'''


def as_user(uid, argv, **kw):
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] + argv


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def mount(capshmfs, datapath):
    mnt = tempfile.mkdtemp(prefix="capshm-stall-")
    os.chmod(mnt, 0o755)
    proc = subprocess.Popen([capshmfs, mnt, "-f", "-o", "datapath=%s,linger=1,max_regions=70000" % datapath],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(os.path.join(mnt, ".stats")):
            return mnt, proc
        time.sleep(0.05)
    proc.kill()
    sys.exit("stall: the daemon did not come up")


def unmount(mnt, proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
    os.rmdir(mnt)


def measure(mnt, seconds):
    r = subprocess.run(as_user(VICTIM, [sys.executable, "-c", VICTIM_CODE, mnt, str(seconds)]),
                       capture_output=True, text=True, timeout=seconds + 600)
    if r.returncode != 0:
        sys.exit("stall: victim failed: " + r.stderr)
    return json.loads(r.stdout)


def scenario(mnt, what, seconds):
    procs = []
    n = 2 if what == "stats" else 1
    try:
        for _ in range(n):
            a = subprocess.Popen(as_user(ATTACKER, [sys.executable, "-c", ATTACKER_CODE, mnt, what]),
                                 stdout=subprocess.PIPE, text=True)
            procs.append(a)
            if a.stdout.readline().strip() != "ready":
                sys.exit("stall: attacker %s did not start" % what)
        time.sleep(1.5)   # past linger and a poll or two of the old daemon
        return measure(mnt, seconds)
    finally:
        for a in procs:
            a.kill()
            a.wait()
        time.sleep(1.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capshmfs", required=True)
    ap.add_argument("--datapath", default="passthrough")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--scenarios", default="idle,mappings,regions,stats,stopped,churn,bigfree,bigshrink")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    mnt, proc = mount(os.path.abspath(args.capshmfs), args.datapath)
    rows = []
    try:
        for what in args.scenarios.split(","):
            res = measure(mnt, args.seconds) if what == "idle" else scenario(mnt, what, args.seconds)
            rows.append((what, res))
    finally:
        unmount(mnt, proc)
    idle = pct(rows[0][1]["open_mmap_close"], 0.5) if rows and rows[0][0] == "idle" else None
    out = []
    for what, res in rows:
        oc, st = res["open_mmap_close"], res["stats"]
        out.append({"scenario": what, "n": len(oc),
                    "open_mmap_close_us": {"median": pct(oc, 0.5), "p99": pct(oc, 0.99), "max": max(oc)},
                    "stats_us": {"median": pct(st, 0.5), "p99": pct(st, 0.99), "max": max(st)}})
    if args.json:
        print(json.dumps({"datapath": args.datapath, "rows": out}, indent=1))
        return
    print("victim latency (us), datapath=%s, %gs per scenario" % (args.datapath, args.seconds))
    print("%-9s %6s | %9s %9s %10s %8s | %9s %10s" % ("attack", "n", "o+m+c med", "p99", "max",
                                                    "max/idle", ".stats med", "max"))
    for r in out:
        o, s = r["open_mmap_close_us"], r["stats_us"]
        print("%-9s %6d | %9.0f %9.0f %10.0f %8s | %9.0f %10.0f" % (
            r["scenario"], r["n"], o["median"], o["p99"], o["max"],
            "%.1fx" % (o["max"] / idle) if idle else "-", s["median"], s["max"]))


if __name__ == "__main__":
    main()
