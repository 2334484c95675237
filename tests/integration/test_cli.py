# SPDX-License-Identifier: MIT
"""The capshm command-line tool, on real mounts.

Every verb and flag, the JSON shapes, the one-line error format and the exit
codes (0 ok, 1 runtime error, 2 usage error).  The CLI is $CAPSHM_CLI.
"""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from capshm_test import CAPSHM_CLI, ROOT, USER_A, USER_B, as_user

NAME_RE = re.compile(r"^[a-z2-7]{26}$")
STATES = {"live", "lingering", "pinned", "sealed"}


def cli(*args, env=None, dir=None, check=None, umask=None, cwd=None, uid=None):
    """Run the CLI; returns CompletedProcess (text).  dir sets $CAPSHM_DIR;
    check=N asserts the exit status is N."""
    e = dict(os.environ)
    e.pop("CAPSHM_DIR", None)
    if dir is not None:
        e["CAPSHM_DIR"] = dir
    if env:
        e.update(env)
    argv = [CAPSHM_CLI] + [str(a) for a in args]
    kw = dict(capture_output=True, text=True, timeout=30, env=e, cwd=cwd)
    if umask is not None:
        kw["preexec_fn"] = lambda: os.umask(umask)
    r = as_user(uid, argv, **kw) if uid is not None else subprocess.run(argv, **kw)
    if check is not None:
        assert r.returncode == check, "capshm %s: rc=%s (want %s)\nstdout=%s\nstderr=%s" % (
            " ".join(map(str, args)), r.returncode, check, r.stdout, r.stderr)
    return r


def ok(mnt, *args, **kw):
    """Run the CLI against mnt, expect success and a silent stderr; returns stdout."""
    r = cli(*args, dir=mnt.path, check=0, **kw)
    assert r.stderr == ""
    return r.stdout


def fails(mnt_path, *args, rc=1, **kw):
    """Run the CLI, expect exit rc and exactly one 'capshm: ' line on stderr; returns it."""
    r = cli(*args, dir=mnt_path, check=rc, **kw)
    assert r.stdout == ""
    lines = r.stderr.split("\n")
    assert len(lines) == 2 and lines[1] == "", "not one line: %r" % r.stderr
    assert lines[0].startswith("capshm: "), lines[0]
    if rc == 2:
        assert "--help" in lines[0]
    return lines[0]


def new(mnt, *args, **kw):
    """capshm new ...; returns the printed path (checked to be a fresh region in mnt)."""
    out = ok(mnt, "new", *args, **kw)
    assert out.endswith("\n") and out.count("\n") == 1
    path = out[:-1]
    assert os.path.isabs(path) and os.path.dirname(path) == mnt.path
    assert NAME_RE.match(os.path.basename(path))
    return path


def info(mnt, path, **kw):
    return json.loads(ok(mnt, "info", "--json", path, **kw))


def check_info_shape(o):
    types = {"name": str, "path": str, "size": int, "mode": str, "uid": int, "gid": int,
             "holders": int, "state": str, "created": int, "age": int,
             "pinned": bool, "sealed": bool}
    for k, t in types.items():
        assert k in o, k
        assert type(o[k]) is t, (k, o[k])
    assert re.match(r"^0[0-7]{3}$", o["mode"])
    assert o["state"] in STATES
    assert o["ro"] is None or NAME_RE.match(o["ro"])
    assert o["pids"] is None or all(type(p) is int for p in o["pids"])
    assert abs(o["created"] - time.time()) < 120
    assert 0 <= o["age"] < 120


# --- help, version, usage errors (no mount needed) -----------------------------

VERBS = ["new", "ro", "ls", "info", "pin", "unpin", "seal", "rm", "stats"]


def test_help_lists_every_verb():
    for flag in ("--help", "-h"):
        r = cli(flag, check=0)
        assert r.stderr == ""
        for v in VERBS:
            assert re.search(r"^  %s\b" % v, r.stdout, re.M), v
        assert "linger" in r.stdout  # the lifetime warning for `new`


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(verb):
    r = cli(verb, "--help", check=0, dir="/nonexistent")
    assert r.stderr == ""
    assert "capshm %s" % verb in r.stdout
    assert "--dir" in r.stdout
    if verb in ("ls", "info", "stats"):
        assert "--json" in r.stdout
    if verb == "new":
        for flag in ("--size", "--mode", "--pin", "linger"):
            assert flag in r.stdout


def test_version():
    for flag in ("--version", "-V"):
        r = cli(flag, check=0)
        assert re.match(r"^capshm \d+\.\d+\.\d+\n$", r.stdout)
        assert r.stderr == ""


@pytest.mark.parametrize("args", [
    [],
    ["bogus"],
    ["--bogus"],
    ["-d"],
    ["new", "--bogus"],
    ["new", "extra"],
    ["new", "--size"],
    ["new", "--mode"],
    ["ls", "extra"],
    ["ls", "--bogus"],
    ["stats", "extra"],
    ["info"],
    ["info", "a", "b"],
    ["ro"],
    ["pin"],
    ["unpin"],
    ["seal"],
    ["rm"],
    ["rm", "a", "b"],
])
def test_usage_errors_exit_2(args):
    # Usage errors are found before the mount is touched.
    line = fails("/nonexistent", *args, rc=2)
    assert "/nonexistent" not in line


@pytest.mark.parametrize("size", ["", "-1", "+1", "abc", "1.5M", "1KB", "64KiB", "0x10", " 1",
                                  "1 ", "k", "1kk", "9223372036854775808",
                                  "99999999999999999999999", "8589934592G", "9999999T"])
def test_bad_size_exit_2(size):
    line = fails("/nonexistent", "new", "--size", size, rc=2)
    assert "size" in line


@pytest.mark.parametrize("mode", ["", "8", "9", "abc", "-1", "0o644", "1000", "07777", "77777", "6 44"])
def test_bad_mode_exit_2(mode):
    line = fails("/nonexistent", "new", "--mode", mode, rc=2)
    assert "mode" in line


# --- new ------------------------------------------------------------------------

@pytest.mark.parametrize("arg,size", [
    (None, 0), ("0", 0), ("4096", 4096), ("64k", 65536), ("64K", 65536),
    ("3m", 3 << 20), ("64M", 64 << 20), ("1G", 1 << 30), ("1g", 1 << 30),
])
def test_new_size(mnt, arg, size):
    path = new(mnt, *(["--size", arg] if arg is not None else []), "--pin")
    assert os.stat(path).st_size == size
    o = info(mnt, path)
    assert o["size"] == size
    ok(mnt, "rm", path)


def test_new_prints_absolute_path_and_holds_nothing(mnt):
    path = new(mnt, "--size", "4k")
    # The CLI has exited: nobody holds the region, so it lingers...
    o = info(mnt, path)
    assert o["holders"] == 0 and o["state"] == "lingering" and not o["pinned"]
    # ...and is destroyed after linger (1 s on this mount).
    mnt.wait_for(lambda: not os.path.exists(path), timeout=10, what="unheld region destroyed")


def test_new_region_survives_when_opened(mnt):
    path = new(mnt, "--size", "4096")
    fd = os.open(path, os.O_RDWR)
    try:
        time.sleep(1.5)
        assert info(mnt, path)["state"] == "live"
    finally:
        os.close(fd)


def test_new_pin(mnt):
    path = new(mnt, "--pin", "--size", "4k")
    o = info(mnt, path)
    assert o["pinned"] and o["state"] == "pinned"
    assert os.getxattr(path, "user.capshm.pin") == b"1"
    time.sleep(1.5)  # longer than linger
    assert os.path.exists(path)
    ok(mnt, "unpin", path)
    mnt.wait_for(lambda: not os.path.exists(path), timeout=10, what="unpinned region destroyed")


@pytest.mark.parametrize("arg,want", [("600", 0o600), ("0644", 0o644), ("640", 0o640),
                                      ("0", 0), ("0400", 0o400)])
def test_new_mode_exact_despite_umask(mnt, arg, want):
    path = new(mnt, "--mode", arg, "--pin", umask=0o077)
    assert os.stat(path).st_mode & 0o7777 == want
    assert info(mnt, path)["mode"] == "%04o" % want
    ok(mnt, "rm", path)


def test_new_default_mode_is_0600(mnt):
    path = new(mnt, umask=0o022)
    assert os.stat(path).st_mode & 0o7777 == 0o600
    assert os.stat(path).st_uid == os.getuid()


def test_new_short_flags(mnt):
    path = new(mnt, "-s", "8k", "-m", "640", "-p")
    st = os.stat(path)
    assert st.st_size == 8192 and st.st_mode & 0o777 == 0o640
    assert info(mnt, path)["pinned"]
    ok(mnt, "rm", path)


def test_new_over_quota_leaves_nothing(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "quota=1M")
    line = fails(m.path, "new", "--size", "2M")
    assert line.startswith("capshm: %s/" % m.path)
    assert line.endswith(": Disk quota exceeded")
    assert m.stats()["regions"] == 0
    assert [n for n in os.listdir(m.path) if not n.startswith(".")] == []


# --- ro ---------------------------------------------------------------------------

def test_ro(mnt):
    path = new(mnt, "--size", "4096", "--pin")
    name = os.path.basename(path)
    if mnt.datapath == "cache":
        line = fails(mnt.path, "ro", path)
        assert line.startswith("capshm: %s: " % path)
        assert "passthrough" in line
        assert info(mnt, path)["ro"] is None
        return
    ro = ok(mnt, "ro", path).rstrip("\n")
    assert os.path.dirname(ro) == mnt.path and NAME_RE.match(os.path.basename(ro))
    assert ro != path
    assert ok(mnt, "ro", name).rstrip("\n") == ro  # a bare name works too
    assert info(mnt, path)["ro"] == os.path.basename(ro)
    with open(path, "r+b") as f:
        f.write(b"written through the rw name")
    with open(ro, "rb") as f:
        assert f.read(27) == b"written through the rw name"
    with pytest.raises(PermissionError):
        os.open(ro, os.O_RDWR)
    # The read-only name leads to itself, never back to the rw name.
    assert ok(mnt, "ro", ro).rstrip("\n") == ro


def test_ro_missing(mnt):
    missing = os.path.join(mnt.path, "a" * 26)
    assert fails(mnt.path, "ro", "a" * 26) == "capshm: %s: No such file or directory" % missing


# --- ls -----------------------------------------------------------------------------

def test_ls_empty(mnt):
    assert ok(mnt, "ls") == ""
    assert json.loads(ok(mnt, "ls", "--json")) == []


def test_ls(mnt):
    a = new(mnt, "--size", "64k", "--pin")
    b = new(mnt, "--size", "1M", "--mode", "640")
    fd = os.open(b, os.O_RDONLY)  # hold b
    try:
        arr = json.loads(ok(mnt, "ls", "--json"))
        assert isinstance(arr, list) and len(arr) == 2
        for o in arr:
            check_info_shape(o)
        by = {o["path"]: o for o in arr}
        assert set(by) == {a, b}
        assert by[a]["size"] == 65536 and by[a]["state"] == "pinned" and by[a]["holders"] == 0
        assert by[b]["size"] == 1 << 20 and by[b]["mode"] == "0640"
        assert by[b]["state"] == "live" and by[b]["holders"] == 1
        # Each object is what `info --json` prints (age may tick).
        for o in arr:
            i = info(mnt, o["path"])
            o.pop("age"), i.pop("age")
            assert i == o

        lines = ok(mnt, "ls").splitlines()
        assert lines[0].split() == ["NAME", "SIZE", "MODE", "HOLDERS", "STATE", "AGE"]
        rows = {l.split()[0]: l.split() for l in lines[1:]}
        assert set(rows) == {os.path.basename(a), os.path.basename(b)}
        assert rows[os.path.basename(a)][1:5] == ["64K", "0600", "0", "pinned"]
        assert rows[os.path.basename(b)][1:5] == ["1M", "0640", "1", "live"]
        assert re.match(r"^\d+s$", rows[os.path.basename(a)][5])
    finally:
        os.close(fd)


def test_ls_lists_only_the_callers_regions(mnt):
    if mnt.stats().get("uid", {}).get("uid") != 0:
        pytest.skip("needs a root mount (allow_other) to switch users")
    pa = cli("new", "--pin", "--mode", "644", dir=mnt.path, uid=USER_A, check=0).stdout.strip()
    pb = cli("new", "--pin", dir=mnt.path, uid=USER_B, check=0).stdout.strip()
    la = json.loads(cli("ls", "--json", dir=mnt.path, uid=USER_A, check=0).stdout)
    lb = json.loads(cli("ls", "--json", dir=mnt.path, uid=USER_B, check=0).stdout)
    assert [o["path"] for o in la] == [pa] and la[0]["uid"] == USER_A
    assert [o["path"] for o in lb] == [pb] and lb[0]["uid"] == USER_B
    # Root sees every uid's regions.
    assert {o["path"] for o in json.loads(ok(mnt, "ls", "--json"))} == {pa, pb}
    # Another uid may read a 0644 region's details, but not remove it (the
    # root is sticky) nor pin, unpin or seal it (the kernel wants write
    # permission for user.* xattrs; with it, the daemon wants the owner).
    assert fails(mnt.path, "rm", pa, uid=USER_B) == "capshm: %s: Operation not permitted" % pa
    for verb in ("pin", "unpin", "seal"):
        assert fails(mnt.path, verb, pa, uid=USER_B) == "capshm: %s: Permission denied" % pa
    pw = cli("new", "--pin", "--mode", "666", dir=mnt.path, uid=USER_A, check=0).stdout.strip()
    for verb in ("rm", "pin", "unpin", "seal"):
        assert fails(mnt.path, verb, pw, uid=USER_B) == "capshm: %s: Operation not permitted" % pw
    assert os.path.exists(pa) and os.path.exists(pw)
    assert info(mnt, pw)["pinned"] and not info(mnt, pw)["sealed"]
    # The owner sees its holders' pids; others get null.
    assert json.loads(cli("info", "--json", pa, dir=mnt.path, uid=USER_A, check=0).stdout)["pids"] == []
    assert json.loads(cli("info", "--json", pa, dir=mnt.path, uid=USER_B, check=0).stdout)["pids"] is None
    # A 0600 region of another uid: the kernel refuses even its xattrs.
    assert fails(mnt.path, "info", pb, uid=USER_A) == "capshm: %s: Permission denied" % pb


# --- info -----------------------------------------------------------------------------

def test_info_json(mnt):
    path = new(mnt, "--size", "12k", "--mode", "0644")
    fd = os.open(path, os.O_RDWR)
    try:
        o = info(mnt, path)
        check_info_shape(o)
        assert o["name"] == os.path.basename(path) and o["path"] == path
        assert o["size"] == 12288 and o["mode"] == "0644"
        assert o["uid"] == os.getuid() and o["gid"] == os.getgid()
        assert o["holders"] == 1 and o["state"] == "live"
        assert not o["pinned"] and not o["sealed"]
        assert o["created"] == int(os.getxattr(path, "user.capshm.created"))
        assert o["pids"] == [int(p) for p in os.getxattr(path, "user.capshm.pids").split()]
        assert (o["ro"] is None) == (mnt.datapath == "cache")
        # A bare name means DIR/name.
        by_name = info(mnt, os.path.basename(path))
        assert by_name["path"] == path
        # One line of JSON.
        assert ok(mnt, "info", path, "--json").count("\n") == 1
    finally:
        os.close(fd)


def test_info_human(mnt):
    path = new(mnt, "--size", "64k", "--pin")
    out = ok(mnt, "info", path)
    fields = dict(l.split(None, 1) for l in out.splitlines())
    assert fields["name"] == os.path.basename(path)
    assert fields["path"] == path
    assert fields["size"] == "65536 (64K)"
    assert fields["mode"] == "0600"
    assert fields["state"] == "pinned"
    assert fields["pinned"] == "yes" and fields["sealed"] == "no"
    assert fields["holders"] == "0"
    assert ("ro" in fields) == (mnt.datapath == "passthrough")


def test_info_errors(mnt, tmp_path):
    missing = os.path.join(mnt.path, "b" * 26)
    assert fails(mnt.path, "info", "b" * 26) == "capshm: %s: No such file or directory" % missing
    assert fails(mnt.path, "info", "--json", missing) == \
        "capshm: %s: No such file or directory" % missing
    other = tmp_path / "plain"
    other.write_bytes(b"x")
    assert fails(mnt.path, "info", str(other)) == "capshm: %s: not a capshm region" % other
    stats = os.path.join(mnt.path, ".stats")
    assert fails(mnt.path, "info", ".stats") == "capshm: %s: not a capshm region" % stats


# --- pin, unpin, seal, rm -------------------------------------------------------------

def test_pin_unpin(mnt):
    path = new(mnt, "--size", "4096")
    ok(mnt, "pin", os.path.basename(path))
    o = info(mnt, path)
    assert o["pinned"] and o["state"] == "pinned"
    ok(mnt, "pin", path)  # idempotent
    ok(mnt, "unpin", path)
    assert not info(mnt, path)["pinned"]
    assert os.getxattr(path, "user.capshm.pin") == b"0"
    mnt.wait_for(lambda: not os.path.exists(path), timeout=10, what="unpinned region destroyed")


def test_seal(mnt):
    path = new(mnt, "--size", "4096", "--pin")
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"sealed bytes", 0)
        line = fails(mnt.path, "seal", path)
        assert line.startswith("capshm: %s: Device or resource busy" % path)
        assert not info(mnt, path)["sealed"]
    finally:
        os.close(fd)
    ok(mnt, "seal", path)
    o = info(mnt, path)
    assert o["sealed"] and o["state"] == "sealed"
    with pytest.raises(PermissionError):
        os.open(path, os.O_RDWR)
    with open(path, "rb") as f:
        assert f.read(12) == b"sealed bytes"
    ok(mnt, "seal", path)  # sealing again is fine


def test_rm(mnt):
    path = new(mnt, "--size", "4096", "--pin")
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"still here", 0)
        ok(mnt, "rm", os.path.basename(path))
        assert not os.path.exists(path)
        # Holders keep the memory.
        assert os.pread(fd, 10, 0) == b"still here"
    finally:
        os.close(fd)
    assert fails(mnt.path, "rm", path) == "capshm: %s: No such file or directory" % path


def test_rm_refuses_other_files(mnt, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    assert fails(mnt.path, "rm", str(victim)) == "capshm: %s: not a capshm region" % victim
    assert victim.read_bytes() == b"keep me"
    for ctl in (".new", ".stats"):
        fails(mnt.path, "rm", ctl)
        assert os.path.exists(os.path.join(mnt.path, ctl))
    for verb in ("pin", "unpin", "seal", "ro"):
        assert fails(mnt.path, verb, str(victim)) == "capshm: %s: not a capshm region" % victim
    assert os.listxattr(str(victim)) == []


@pytest.mark.parametrize("verb", ["pin", "unpin", "seal", "rm"])
def test_flag_verbs_on_missing_region(mnt, verb):
    missing = os.path.join(mnt.path, "c" * 26)
    assert fails(mnt.path, verb, "c" * 26) == "capshm: %s: No such file or directory" % missing


def test_read_only_name_cannot_be_changed(mount_factory):
    if "passthrough" not in os.environ.get("CAPSHM_DATAPATHS", "passthrough,cache"):
        pytest.skip("passthrough is not under test")
    m = mount_factory("passthrough", "linger=1")
    path = new(m, "--size", "4096", "--pin")
    ro = ok(m, "ro", path).strip()
    for verb in ("pin", "unpin", "seal", "rm"):
        assert fails(m.path, verb, ro) == "capshm: %s: Operation not permitted" % ro
    assert os.path.exists(ro) and os.path.exists(path)
    o = info(m, ro)
    assert o["name"] == os.path.basename(ro) and o["ro"] == os.path.basename(ro)


# --- stats ------------------------------------------------------------------------------

def test_stats_json_is_the_file(mnt):
    path = new(mnt, "--size", "64k", "--pin")
    out = ok(mnt, "stats", "--json")
    assert out.endswith("\n")
    with open(os.path.join(mnt.path, ".stats")) as f:
        raw = f.read()
    # The same document, apart from the request counter, which reading moves.
    st, st_raw = json.loads(out), json.loads(raw)
    assert st.pop("requests") < st_raw.pop("requests")
    assert st == st_raw
    assert st["datapath"] == mnt.datapath
    assert st["regions"] == 1 and st["bytes"] == 65536 and st["pinned"] == 1
    assert st["uid"]["uid"] == os.getuid()
    ok(mnt, "rm", path)


def test_stats_human(mnt):
    new(mnt, "--size", "64k", "--pin")
    out = ok(mnt, "stats")
    lines = out.splitlines()
    top = dict(l.split(None, 1) for l in lines if l and not l.startswith(" ") and not l.endswith(":"))
    assert top["datapath"] == mnt.datapath
    assert top["regions"] == "1"
    assert top["bytes"] == "65536 (64K)"
    assert "uid:" in lines
    # Nothing JSON-ish leaks into the readable form.
    assert "{" not in out and '"' not in out


# --- the mount directory: -d, $CAPSHM_DIR, the default ------------------------------------

def test_dir_from_env_and_flag(mnt, tmp_path):
    # $CAPSHM_DIR
    path = cli("new", "--pin", dir=mnt.path, check=0).stdout.strip()
    assert os.path.dirname(path) == mnt.path
    # -d before the verb beats $CAPSHM_DIR; so does -d/--dir after it.
    for args in (["-d", mnt.path, "info", "--json", os.path.basename(path)],
                 ["--dir", mnt.path, "info", "--json", os.path.basename(path)],
                 ["info", "--json", "-d", mnt.path, os.path.basename(path)],
                 ["info", "--json", os.path.basename(path), "--dir=" + mnt.path]):
        r = cli(*args, dir=str(tmp_path), check=0)
        assert json.loads(r.stdout)["path"] == path
    # A relative -d is made absolute.
    out = cli("-d", ".", "new", "--pin", cwd=mnt.path, check=0).stdout.strip()
    assert os.path.dirname(out) == mnt.path
    # An absolute PATH ignores DIR.
    assert json.loads(cli("info", "--json", path, dir="/nonexistent", check=0).stdout)["path"] == path


def test_default_dir_is_run_capshm():
    r = cli("stats", "--json")  # no -d, no $CAPSHM_DIR
    if r.returncode == 0:
        with open("/run/capshm/.stats") as f:
            assert json.loads(r.stdout)["version"] == json.load(f)["version"]
    else:
        assert r.returncode == 1
        assert r.stderr.startswith("capshm: /run/capshm")
    r = cli("info", "d" * 26)
    assert r.returncode == 1 and r.stderr.startswith("capshm: /run/capshm/%s: " % ("d" * 26))


def test_not_a_mount(tmp_path):
    for verb in ("new", "ls", "stats"):
        assert fails(str(tmp_path), verb) == "capshm: %s: not a capshm mount (is capshmfs running?)" % tmp_path
    missing = tmp_path / "nowhere"
    assert fails(str(missing), "ls") == "capshm: %s: No such file or directory" % missing


def test_json_escapes_odd_paths(mnt, tmp_path):
    # A mount reached through a directory name that needs escaping in JSON.
    odd = tmp_path / 'we"ird\\dir\tname\x01'
    odd.symlink_to(mnt.path)
    path = cli("new", "--pin", dir=str(odd), check=0).stdout.rstrip("\n")
    assert path == os.path.join(str(odd), os.path.basename(path))
    o = json.loads(cli("info", "--json", path, check=0).stdout)
    assert o["path"] == path
    arr = json.loads(cli("ls", "--json", dir=str(odd), check=0).stdout)
    assert [x["path"] for x in arr] == [path]


# --- the man pages ----------------------------------------------------------------------

@pytest.mark.parametrize("page", ["capshm.1", "capshmfs.8", "libcapshm.3"])
def test_man_page_renders_without_warnings(page):
    groff = shutil.which("groff")
    if not groff:
        pytest.skip("groff is not installed")
    path = os.path.join(ROOT, "man", page)
    r = subprocess.run([groff, "-man", "-Tutf8", "-ww", path], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "PLACEHOLDER" not in r.stdout


def test_man_page_documents_every_verb_and_flag():
    with open(os.path.join(ROOT, "man", "capshm.1")) as f:
        roff = f.read().replace("\\-", "-")
    for word in VERBS + ["--size", "--mode", "--pin", "--json", "--dir", "--help", "--version",
                         "CAPSHM_DIR", "EXIT STATUS"]:
        assert word in roff, word
