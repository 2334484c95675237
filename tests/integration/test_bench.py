# SPDX-License-Identifier: MIT
"""scripts/bench runs end to end and reports what it promises.

Speed is never asserted here (the figures depend on the machine and on what
else runs on it); only that the benchmark completes, prints one valid JSON
line with the expected keys and figures, and leaves no mount, daemon or
tmpfs directory behind -- also when it is stopped half-way.
"""
import json
import os
import signal
import subprocess
import time

import pytest

import procs
from capshm_test import CAPSHMFS, DAEMON_WRAPPER, ROOT

BENCH = os.path.join(ROOT, "scripts", "bench")
BUILD = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(CAPSHMFS))))
DRIVER = os.path.join(BUILD, "bench", "capshm-bench")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="scripts/bench mounts: needs root"),
    pytest.mark.skipif(not os.access(DRIVER, os.X_OK), reason="%s is not built" % DRIVER),
    pytest.mark.skipif(bool(DAEMON_WRAPPER), reason="scripts/bench runs the daemon unwrapped"),
]

# Figures every run must have, per data path that mounted.
HEADLINE = ("first touch", "rewrite", "sustained rewrite", "attach + read", "ping-pong round trips",
            "open+mmap+close existing", "full create cycle 4K", "procs map+fault one",
            "daemon memory per idle region", "create time @", "open time @", "lookup time @")
WORKLOADS = {"first_touch", "rewrite", "attach_read", "sustained", "pingpong", "open_close",
             "create_cycle", "mint", "fanout", "population"}
ROUNDTRIP_OPS = ("read .new (open+read+close)", "create (O_CREAT|O_EXCL)", "ftruncate", "mmap",
                 "munmap", "close (last)", "stat (after create, mmap, close)", "open existing",
                 "unlink", "read .stats (open+read+close)", "full create cycle (4 KiB), in a loop")


def env():
    e = dict(os.environ)
    e["CAPSHM_BUILD"] = BUILD
    e["CAPSHM_BENCH_NO_BUILD"] = "1"
    return e


def bench_mounts():
    """Mountpoints that scripts/bench makes (/tmp/capshm-bench.XXXXXX/KEY)."""
    return {m.point for m in procs.mounts() if "/capshm-bench." in m.point}


def bench_workdir(bench):
    """The directory the scripts/bench running as process @bench mounts its
    daemons under (its own children), or None before it has started one.
    Other test runs on the machine may be running a benchmark too."""
    for pid in procs.daemons(lambda argv: len(argv) > 1 and "/capshm-bench." in argv[1]):
        if procs.parent(pid) == bench:
            return os.path.dirname(procs.argv(pid)[1])
    return None


def daemons_under(prefix):
    """pids of capshmfs processes serving a mountpoint under @prefix."""
    return procs.daemons(lambda argv: any(a.startswith(prefix) for a in argv))


@pytest.mark.once
def test_quick_json(tmp_path):
    before = bench_mounts()
    p = subprocess.run([BENCH, "--quick", "--json-only"], env=env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, "--json-only printed more than one line:\n" + p.stdout[:2000]
    out = json.loads(lines[0])

    for key in ("capshm_bench", "quick", "machine", "datapaths", "population", "elapsed_s",
                "complete", "summary", "rows", "roundtrips", "raw"):
        assert key in out, key
    assert out["quick"] is True and out["complete"] is True
    for key in ("cpus", "mem_bytes", "kernel", "libfuse"):
        assert out["machine"][key], key
    assert set(out["summary"]) == {"pass", "fail"}
    assert out["datapaths"]["cache"] == "ok"  # root with /dev/fuse: always mountable
    paths = [dp for dp, st in out["datapaths"].items() if st == "ok"]

    # Every row has the table's columns; every headline figure is measured.
    for row in out["rows"]:
        for key in ("figure", "unit", "tmpfs", "passthrough", "passthrough_ratio",
                    "passthrough_verdict", "cache", "cache_ratio", "cache_verdict"):
            assert key in row, (key, row["figure"])
        for dp in ("passthrough", "cache"):
            assert row[dp + "_verdict"] in (None, "PASS", "FAIL")
    for name in HEADLINE:
        rows = [r for r in out["rows"] if name in r["figure"]]
        assert rows, "no row for %r" % name
        for dp in paths:
            assert any(isinstance(r[dp], (int, float)) for r in rows), (name, dp)

    # The raw driver output: every workload, all three targets, medians.
    seen = {r["workload"] for r in out["raw"]}
    assert WORKLOADS <= seen, WORKLOADS - seen
    for r in out["raw"]:
        assert set(r["targets"]) == {"tmpfs"} | set(paths), r["workload"]
        for name, t in r["targets"].items():
            assert "error" not in t, (r["workload"], name, t.get("error"))
            for fig in t["figures"].values():
                assert {"median", "min", "max", "samples", "unit"} <= set(fig)

    # Request counts for each data path and each user operation.
    assert set(out["roundtrips"]) == set(paths)
    for dp in paths:
        for op in ROUNDTRIP_OPS:
            entry = out["roundtrips"][dp][op]
            assert entry["total"] == sum(entry["ops"].values()), (dp, op)
        assert out["roundtrips"][dp]["create (O_CREAT|O_EXCL)"]["ops"].get("CREATE") == 1

    # Nothing left behind (by this benchmark: other test runs may run one).
    dirs = {t["dir"] for r in out["raw"] for t in r["targets"].values()}
    workdirs = {os.path.dirname(d) for d in dirs}
    left = {m for m in bench_mounts() - before if os.path.dirname(m) in workdirs}
    assert not left, "mounts left behind: %s" % left
    for d in dirs:
        assert not os.path.exists(d), d + " was left behind"
        assert not daemons_under(os.path.dirname(d) + "/"), "daemon left running for " + d


def test_stopped_half_way_cleans_up():
    proc = subprocess.Popen([BENCH, "--quick", "--json-only"], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 60
        mine = set()
        while time.time() < deadline and not mine:
            assert proc.poll() is None, "scripts/bench ended before its mounts were seen"
            work = bench_workdir(proc.pid)
            mine = set(procs.mounts_under(work)) if work else set()
            time.sleep(0.05)
        assert mine, "scripts/bench mounted nothing within 60 s"
        workdir = work + "/"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert not (bench_mounts() & mine), "mounts left behind: %s" % (bench_mounts() & mine)
    deadline = time.time() + 10
    while time.time() < deadline and any(procs.alive(p) for p in daemons_under(workdir)):
        time.sleep(0.1)
    assert not [p for p in daemons_under(workdir) if procs.alive(p)], "daemons left running"
    assert not os.path.exists(workdir)
