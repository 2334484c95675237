#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""report — the table and the JSON line that scripts/bench prints.

    bench/report.py RAW.jsonl ROUNDTRIPS.jsonl [STALL.jsonl]

RAW.jsonl holds one line of capshm-bench output per workload run (tmpfs,
passthrough and cache targets), ROUNDTRIPS.jsonl one line per data path of
its roundtrips workload, STALL.jsonl (scripts/bench --stall) one line of
bench/stall.py --json output per data path; an empty one adds nothing.  Prints the table (unless json_only=1), then one
JSON object with everything: the machine, each row, the request counts and
the raw samples.  Nothing is measured here and nothing fails: a row's
PASS/FAIL is only reported.

The facts of the run come from scripts/bench through the environment:

    quick, json_only, failed        "1" or "0"
    HEAD                            headline region size (e.g. 1G)
    SUSTAIN_SIZE, SUSTAIN_S         the sustained rewrite's size and seconds
    FAN_PROCS                       fanout processes asked for
    LEVELS_ASKED, LEVELS_LIST       population levels asked for and measured
    FD_LIMIT                        the daemons' open-file limit, if it cut
                                    the levels (empty otherwise)
    ST_PT, ST_CACHE                 "ok" or "unavailable: REASON"
    TR_PT, TR_CACHE                 transport (io_uring, dev_fuse) or empty
    kernel, cpus, cpu_model, libfuse, mem_kib, load, ELAPSED

ratio = capshm / tmpfs in the figure's own unit.
"""
import json
import math
import os
import sys

PATHS = ("passthrough", "cache")


def size_label(n):
    for unit, v in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= v and n % v == 0:
            return "%d%s" % (n // v, unit)
    return str(n)


def parse_size(txt):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(txt[:-1]) * mult[txt[-1]] if txt[-1] in mult else int(txt)


def fig(rec, target, name):
    """The median of figure @name of @target in the workload record @rec."""
    t = rec["targets"].get(target)
    if not t:
        return None
    f = t.get("figures", {}).get(name)
    return None if f is None else f["median"]


def check(op, thr, v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return "PASS" if (v >= thr if op == ">=" else v <= thr) else "FAIL"


def both(op, a, b=None):
    return {"passthrough": (op, a), "cache": (op, b if b is not None else a)}


class Rows:
    """The table's rows, in order, built from the raw workload records."""

    def __init__(self, raw):
        self.raw = raw
        self.rows = []
        self.errors_shown = set()

    def find(self, workload, **params):
        for r in self.raw:
            if r["workload"] == workload and all(r["params"].get(k) == v for k, v in params.items()):
                return r
        return None

    def add(self, figure, unit, rec, name, targets=None, kind="ratio", section="headline"):
        """targets: {"passthrough": (op, thr), "cache": (op, thr)}; kind "ratio"
        checks capshm/tmpfs, "value" checks the value itself."""
        targets = targets or {}
        row = {"figure": figure, "unit": unit, "section": section, "check": kind}
        tv = fig(rec, "tmpfs", name) if rec else None
        row["tmpfs"] = tv
        for p in PATHS:
            v = fig(rec, p, name) if rec else None
            row[p] = v
            ratio = v / tv if (kind == "ratio" and v is not None and tv) else None
            row[p + "_ratio"] = ratio
            t = targets.get(p)
            row[p + "_target"] = (t[0] + str(t[1])) if t else None
            row[p + "_verdict"] = check(t[0], t[1], ratio if kind == "ratio" else v) if t else None
            if rec and rec["targets"].get(p, {}).get("error"):
                row[p + "_error"] = rec["targets"][p]["error"]
                if t:
                    row[p + "_verdict"] = "FAIL"
        if rec is not None and id(rec) in self.errors_shown:
            row["errors_shown"] = True
        self.errors_shown.add(id(rec))
        self.rows.append(row)

    def add_derived(self, figure, unit, values, targets, section):
        row = {"figure": figure, "unit": unit, "section": section, "check": "value",
               "tmpfs": values.get("tmpfs")}
        for p in PATHS:
            v = values.get(p)
            row[p] = v
            row[p + "_ratio"] = None
            t = targets.get(p)
            row[p + "_target"] = (t[0] + str(t[1])) if t else None
            row[p + "_verdict"] = (check(t[0], t[1], v) or "FAIL") if t else None
        self.rows.append(row)


def headline(rs, env):
    """The headline rows: one size of each data-path workload, the metadata
    workloads, fanout."""
    head = parse_size(env["HEAD"])
    H = size_label(head)
    find, add = rs.find, rs.add
    add("first touch %s" % H, "GB/s", find("first_touch", size=head), "gbps",
        {"passthrough": (">=", 0.9), "cache": (">=", 0.5)})
    add("rewrite %s" % H, "GB/s", find("rewrite", size=head), "gbps", {"passthrough": (">=", 0.95)})
    ss = parse_size(env["SUSTAIN_SIZE"])
    add("sustained rewrite %s, %ss" % (size_label(ss), env["SUSTAIN_S"]), "GB/s",
        find("sustained", size=ss), "gbps", {"passthrough": (">=", 0.95), "cache": (">=", 0.8)})
    add("attach + read %s (2nd process)" % H, "GB/s", find("attach_read", size=head), "gbps",
        {"passthrough": (">=", 0.95)})
    add("ping-pong round trips", "1/s", find("pingpong"), "rt_per_s", {"passthrough": (">=", 0.95)})
    add("ping-pong latency", "ns", find("pingpong"), "ns_per_rt")
    add("open+mmap+close existing", "us/op", find("open_close"), "us_per_op", both("<=", 4))
    add("  daemon CPU per open+mmap+close (info)", "us/op", find("open_close"), "daemon_cpu_us_per_op",
        kind="value")
    add("full create cycle 4K", "us/op", find("create_cycle"), "us_per_op", both("<=", 12))
    add("  daemon CPU per create cycle (info)", "us/op", find("create_cycle"), "daemon_cpu_us_per_op",
        kind="value")
    add("mint: read a name from .new (info)", "us/op", find("mint"), "us_per_op")
    fo = find("fanout")
    nprocs = fo["params"]["procs"] if fo else env["FAN_PROCS"]
    add("%s procs map+fault one %s region: wall" % (nprocs, size_label(fo["params"]["size"]) if fo else "?"),
        "ms", fo, "wall_ms", {"passthrough": ("<=", 1.1), "cache": ("<=", 2.0)})
    add("  slowest single process (info)", "ms", fo, "max_child_ms")


def population(rs, env, fd_limit):
    """Memory per idle region and growth of op times with the population
    (headline), and every op time at every level (section population)."""
    pop = rs.find("population")
    if not pop:
        return
    asked_top = int(env["LEVELS_ASKED"].split(",")[-1])
    levels = pop["params"]["levels"]
    lo, hi = levels[0], levels[-1]
    if hi < asked_top:
        # The daemon cannot hold the asked population: one memfd per region.
        row = {"figure": "%dk idle regions: daemon fd limit" % (asked_top // 1000), "unit": "fds",
               "section": "headline", "check": "value", "tmpfs": None,
               "note": "the daemon keeps one memfd per region; its RLIMIT_NOFILE hard limit is %s, "
                       "so creates past ~%s regions fail with EMFILE; measured up to %d instead"
                       % (fd_limit, (fd_limit or 0) - 10, hi)}
        for p in PATHS:
            row.update({p: fd_limit, p + "_ratio": None, p + "_target": ">=%d" % asked_top,
                        p + "_verdict": "FAIL"})
        rs.rows.append(row)
    rs.add("daemon memory per idle region (%d..%d)" % (lo, hi), "B", pop,
           "daemon_rss_bytes_per_region", both("<=", 1024 + 27), kind="value")
    rs.add("kernel slab per idle region (info)", "B", pop, "kernel_slab_bytes_per_region", kind="value")
    for what, key in (("create", "create_us"), ("open", "open_us"), ("lookup", "lookup_miss_us")):
        for lvl in levels[1:]:
            vals = {}
            for t in ("tmpfs",) + PATHS:
                a, b = fig(pop, t, "%s@%d" % (key, lvl)), fig(pop, t, "%s@%d" % (key, lo))
                vals[t] = a / b if a is not None and b else None
            rs.add_derived("%s time @%d / @%d" % (what, lvl, lo), "x", vals, both("<=", 2.0), "headline")
    for title, key in (("create (mint+create+size+close)", "create_us"),
                       ("open+close existing", "open_us"), ("lookup of a missing name", "lookup_miss_us"),
                       ("  daemon CPU per create", "daemon_cpu_create_us"),
                       ("  daemon CPU per open+close", "daemon_cpu_open_us"),
                       ("  daemon CPU per lookup", "daemon_cpu_lookup_us")):
        for lvl in levels:
            rs.add("%s @%d" % (title, lvl), "us/op", pop, "%s@%d" % (key, lvl), section="population",
                   kind="ratio" if "CPU" not in title else "value")


def scaling(rs):
    """Every size of the data-path workloads (section scaling)."""
    for wl, name, unit in (("first_touch", "first touch", "GB/s"), ("rewrite", "rewrite", "GB/s"),
                           ("attach_read", "attach + read", "GB/s"),
                           ("sustained", "sustained rewrite", "GB/s")):
        for r in rs.raw:
            if r["workload"] == wl:
                rs.add("%s %s" % (name, size_label(r["params"]["size"])), unit, r, "gbps",
                       section="scaling")


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 100:
        return "%.1f" % v
    if abs(v) >= 10:
        return "%.2f" % v
    return "%.3f" % v


def print_table(out, rows, roundtrips, env):
    machine = out["machine"]
    print("capshm benchmark: %d CPUs (%s), %.1f GiB RAM, Linux %s, libfuse %s, load %s" % (
        machine["cpus"], machine["cpu_model"], machine["mem_bytes"] / 2**30, machine["kernel"],
        machine["libfuse"], machine["loadavg_at_end"]))
    print("passthrough: %s (requests over %s); cache: %s (over %s); ratio = capshm / tmpfs"
          " (GB/s, 1/s: higher is better; times: lower is better)\n"
          % (env["ST_PT"], env["TR_PT"] or "-", env["ST_CACHE"], env["TR_CACHE"] or "-"))
    hdr = ("figure", "unit", "tmpfs", "passthrough", "ratio", "cache", "ratio", "target", "PASS/FAIL")
    w = (44, 6, 10, 11, 7, 10, 7, 17, 11)

    def line(cells):
        return "  ".join(str(c).ljust(w[i]) if i < 2 or i > 6 else str(c).rjust(w[i])
                         for i, c in enumerate(cells))

    for section, title in (("headline", None), ("population", "population (us/op)"),
                           ("scaling", "region size scaling (GB/s)")):
        sel = [r for r in rows if r["section"] == section]
        if not sel:
            continue
        if title:
            print("\n" + title)
        print(line(hdr))
        for r in sel:
            tgt = [r[p + "_target"] for p in PATHS]
            if tgt[0] and tgt[0] == tgt[1]:
                target = tgt[0] + (" (own)" if r["check"] == "value" else "")
            else:
                target = " ".join("%s %s" % (n, t) for n, t in zip(("pt", "ca"), tgt) if t)
            verdict = "/".join(r[p + "_verdict"] or "-" for p in PATHS) if any(tgt) else ""
            print(line((r["figure"][:44], r["unit"], fmt(r["tmpfs"]), fmt(r["passthrough"]),
                        fmt(r["passthrough_ratio"]), fmt(r["cache"]), fmt(r["cache_ratio"]),
                        target, verdict)))
            for p in PATHS:
                if r.get(p + "_error") and not r.get("errors_shown"):
                    print("    %s: %s" % (p, r[p + "_error"]))
            if r.get("note"):
                print("    " + r["note"])
    if roundtrips:
        print("\nFUSE requests per user operation (daemon -d log)")
        names = list(roundtrips)
        print(line(("operation", "", "", names[0] if names else "", "",
                    names[1] if len(names) > 1 else "", "", "", "")))
        ops = list(next(iter(roundtrips.values())).keys())
        for op in ops:
            cells = []
            for n in names:
                o = roundtrips[n].get(op, {})
                cells.append("%d %s" % (o.get("total", 0), " ".join("%s" % k if v == 1 else "%sx%d" % (k, v)
                                                                    for k, v in o.get("ops", {}).items())))
            print("  %-42s %s" % (op[:42], " | ".join(cells)))


def print_stall(stall):
    print("\nisolation: a victim uid's latency (us) while another uid attacks (bench/stall.py)")
    print("%-12s %-9s %6s | %9s %9s %10s %8s | %9s %10s" % ("datapath", "attack", "n", "o+m+c med", "p99",
                                                           "max", "max/idle", ".stats med", "max"))
    for dp, rows in stall.items():
        idle = next((r["open_mmap_close_us"]["median"] for r in rows if r["scenario"] == "idle"), None)
        for r in rows:
            o, s = r["open_mmap_close_us"], r["stats_us"]
            print("%-12s %-9s %6d | %9.0f %9.0f %10.0f %8s | %9.0f %10.0f" % (
                dp, r["scenario"], r["n"], o["median"], o["p99"], o["max"],
                "%.1fx" % (o["max"] / idle) if idle else "-", s["median"], s["max"]))


def main():
    with open(sys.argv[1]) as f:
        raw = [json.loads(l) for l in f if l.strip()]
    with open(sys.argv[2]) as f:
        rts = [json.loads(l) for l in f if l.strip()]
    stall = {}
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            for l in f:
                if l.strip():
                    s = json.loads(l)
                    stall[s["datapath"]] = s["rows"]
    env = os.environ
    fd_limit = int(env["FD_LIMIT"]) if env.get("FD_LIMIT") else None

    rs = Rows(raw)
    headline(rs, env)
    population(rs, env, fd_limit)
    scaling(rs)
    rows = rs.rows

    roundtrips = {}
    for r in rts:
        for name, t in r["targets"].items():
            roundtrips[name] = t["ops"]

    passes = sum(1 for row in rows for p in PATHS if row.get(p + "_verdict") == "PASS")
    fails = sum(1 for row in rows for p in PATHS if row.get(p + "_verdict") == "FAIL")
    machine = {"cpus": int(env["cpus"]), "cpu_model": env["cpu_model"],
               "mem_bytes": int(env["mem_kib"]) * 1024, "kernel": env["kernel"],
               "libfuse": env["libfuse"], "loadavg_at_end": env["load"]}
    for r in rows:
        r.pop("errors_shown", None)
    out = {"capshm_bench": 1, "quick": env["quick"] == "1", "machine": machine,
           "datapaths": {"passthrough": env["ST_PT"], "cache": env["ST_CACHE"]},
           "transport": {"passthrough": env["TR_PT"] or None, "cache": env["TR_CACHE"] or None},
           "population": {"levels_asked": [int(x) for x in env["LEVELS_ASKED"].split(",")],
                          "levels": [int(x) for x in env["LEVELS_LIST"].split(",")],
                          "daemon_fd_limit": fd_limit},
           "elapsed_s": int(env["ELAPSED"]), "complete": env["failed"] == "0",
           "summary": {"pass": passes, "fail": fails}, "rows": rows, "roundtrips": roundtrips, "raw": raw}
    if stall:
        out["stall"] = stall

    if env["json_only"] != "1":
        print_table(out, rows, roundtrips, env)
        if stall:
            print_stall(stall)
        summary = out["summary"]
        print("\n%d PASS, %d FAIL; %d s%s" % (summary["pass"], summary["fail"], out["elapsed_s"],
                                             "" if out["complete"] else "; SOME WORKLOADS FAILED"))
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
