# SPDX-License-Identifier: MIT
"""Hostile and nonsensical inputs, from a table: badinput.tsv.

Each row of the table is one input (a name, a size, open flags, an xattr, an
operation on a control file or a read-only name, a bad mount option) and the
exact errno it must give.  test_bad_inputs walks one group of rows on a real
mount per data path, collects every mismatch, and then checks that the
daemon is still healthy: alive, .stats parses, and a region that was live
the whole time still has exactly its bytes.  test_bad_mount_options runs
capshmfs itself with each bad -o value.

test_unknown_names_are_indistinguishable is the SECURITY.md promise that no
error tells a guessed name from a missing one.
"""
import codecs
import errno
import hashlib
import os
import re
import subprocess
import tempfile
import time

import pytest

from capshm_test import CAPSHMFS, DAEMON_WRAPPER, DATAPATHS, USER_A, mounted, py_as_user

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "badinput.tsv")
COLUMNS = ["group", "datapaths", "uid", "op", "target", "arg", "expect", "comment"]
PAGE = os.sysconf("SC_PAGE_SIZE")
BASE_OPTS = ["linger=1", "mint_ttl=5", "size=64M"]
GROUP_OPTS = {"anynames": ["names=any"]}

# The operations, as one piece of source: run in this process for root rows
# and in a child (py_as_user) for rows of other uids, so both run the same code.
EXEC = r'''
import errno, os

FLAG_NAMES = ("O_RDONLY O_WRONLY O_RDWR O_CREAT O_EXCL O_TRUNC O_APPEND O_DIRECT O_TMPFILE "
              "O_PATH O_DIRECTORY O_NOFOLLOW O_SYNC O_DSYNC O_NOATIME O_NONBLOCK").split()

def parse_flags(s):
    s, _, mode = s.partition(":")
    flags = 0
    for f in s.split("|"):
        if f not in FLAG_NAMES:
            raise ValueError("unknown flag " + f)
        flags |= getattr(os, f)
    return flags, int(mode, 8) if mode else 0o600

def run_op(root, op, target, arg, size):
    """Perform one operation; returns "OK" or the errno number.  target and
    arg are bytes; size is the evaluated size/offset (or None)."""
    path = root + b"/" + target if target else root
    other = root + b"/" + arg
    fd = -1
    try:
        if op == "stat":
            os.stat(path)
        elif op == "open":
            flags, mode = parse_flags(arg.decode())
            fd = os.open(path, flags, mode)
        elif op == "truncate":
            os.truncate(path, size)
        elif op == "ftruncate":
            fd = os.open(path, os.O_RDWR)
            os.ftruncate(fd, size)
        elif op == "pwrite":
            fd = os.open(path, os.O_RDWR)
            os.pwrite(fd, b"x", size)
        elif op == "fallocate":
            # Writable if the name allows it, else read-only (read-only names).
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                fd = os.open(path, os.O_RDONLY)
            os.posix_fallocate(fd, size[0], size[1])
        elif op == "getxattr":
            os.getxattr(path, arg)
        elif op == "setxattr":
            name, _, value = arg.partition(b"=")
            os.setxattr(path, name, value)
        elif op == "removexattr":
            os.removexattr(path, arg)
        elif op == "chmod":
            os.chmod(path, int(arg, 8))
        elif op == "chown":
            u, g = arg.split(b":")
            os.chown(path, int(u), int(g))
        elif op == "utime":
            os.utime(path, (1, 1))
        elif op == "unlink":
            os.unlink(path)
        elif op == "rmdir":
            os.rmdir(path)
        elif op == "mkdir":
            os.mkdir(path, 0o755)
        elif op == "mknod":
            os.mkfifo(path)
        elif op == "symlink":
            os.symlink(arg, path)
        elif op == "link":
            os.link(path, other)
        elif op == "rename":
            os.rename(path, other)
        elif op == "write":
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, arg)
        else:
            raise ValueError("unknown op " + op)
    except OSError as e:
        return e.errno
    finally:
        if fd >= 0:
            os.close(fd)
    return "OK"
'''
_ns = {}
exec(compile(EXEC, "badinput-exec", "exec"), _ns)
run_op = _ns["run_op"]

CHILD = EXEC + r'''
import sys
root, op, target, arg, size = sys.argv[1:6]
size = eval(size) if size != "None" else None
print(run_op(bytes.fromhex(root), op, bytes.fromhex(target), bytes.fromhex(arg), size))
'''


# --- the table ----------------------------------------------------------------

def load_table():
    rows = []
    with open(TABLE, encoding="utf-8") as f:
        header = None
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if header is None:
                header = cols
                continue
            assert len(cols) == len(COLUMNS), "badinput.tsv:%d: %d columns" % (lineno, len(cols))
            row = dict(zip(COLUMNS, cols))
            row["line"] = lineno
            rows.append(row)
    assert header == COLUMNS, header
    return rows


ROWS = load_table()
GROUPS = list(dict.fromkeys(r["group"] for r in ROWS if r["datapaths"] != "none"))


def applies(row, datapath):
    return row["datapaths"] in ("both", datapath)


PARAMS = [pytest.param(g, dp, id="%s-%s" % (g, dp)) for g in GROUPS for dp in DATAPATHS
          if any(r["group"] == g and applies(r, dp) for r in ROWS)]


def eval_size(expr):
    """Evaluate a size expression: integers, PAGE, + - * ** and parentheses."""
    if not re.fullmatch(r"[0-9PAGE+\-*() ]+", expr):
        raise ValueError("bad size expression " + expr)
    return eval(expr, {"__builtins__": {}}, {"PAGE": PAGE})


def expected_errno(name):
    return "OK" if name == "OK" else getattr(errno, name)


def errno_name(v):
    return v if v == "OK" else errno.errorcode.get(v, str(v))


def test_table_is_well_formed():
    ops = set(re.findall(r'op == "(\w+)"', EXEC))
    assert len(ROWS) >= 150
    for r in ROWS:
        where = "badinput.tsv:%d" % r["line"]
        assert r["datapaths"] in ("both", "passthrough", "cache", "none"), where
        assert r["uid"] in ("root", "A"), where
        assert r["op"] in ops | {"mount"}, where
        assert r["expect"] in ("OK", "EXIT1") or hasattr(errno, r["expect"]), where
        assert (r["op"] == "mount") == (r["datapaths"] == "none") == (r["expect"] == "EXIT1"), where
    # Every kind of input the issue lists is present.
    ops_seen = {r["op"] for r in ROWS}
    assert {"stat", "open", "truncate", "setxattr", "getxattr", "mount", "mkdir"} <= ops_seen


# --- a mount with its fixtures ---------------------------------------------------

class Context:
    """The live objects a group's rows refer to."""

    def __init__(self, m, datapath):
        self.m = m
        self.datapath = datapath
        self.root = m.path.encode()
        self.fds = []
        # {rw}: a live region whose bytes must survive the whole group.
        self.rw, fd = m.create(2 * PAGE, 0o666)
        self.fds.append(fd)
        self.rw_bytes = os.urandom(2 * PAGE)
        os.pwrite(fd, self.rw_bytes, 0)
        self.priv, fd = m.create(PAGE, 0o600)
        self.fds.append(fd)
        self.ro = (os.getxattr(m.p(self.rw), "user.capshm.ro").decode()
                   if datapath == "passthrough" else None)

    def resolve(self, field, fresh):
        """A table field as bytes: escapes decoded, placeholders filled.
        `fresh` holds this row's fresh names ({tmp}, {minted}...)."""
        data = codecs.escape_decode(field.encode())[0]

        def name_of(key):
            if key in fresh:
                return fresh[key]
            if key == "rw":
                v = self.rw
            elif key == "priv":
                v = self.priv
            elif key == "ro":
                v = self.ro
            elif key == "minted":
                v = self.m.new_name()
            elif key == "minted_A":
                r = py_as_user(USER_A, "import sys; print(open(sys.argv[1] + '/.new').read().strip())",
                               self.m.path)
                v = r.stdout.strip()
            elif key == "tmp":
                v, fd = self.m.create(PAGE, 0o666)
                fresh.setdefault("_fds", []).append(fd)
            else:
                raise KeyError(key)
            assert v, "no value for {%s}" % key
            fresh[key] = v
            return v

        def sub(mo):
            spec = mo.group(1).decode()
            if spec.startswith("rep:"):
                _, n, c = spec.split(":")
                return c.encode() * int(n)
            key = spec
            upper = False
            if spec.upper() == spec and spec.lower() != spec:
                upper, key = True, spec.lower()
            for suf in ("_1", "_short", "_long"):
                if key.endswith(suf) and key != "minted_A":
                    v = name_of(key[:-len(suf)])
                    if suf == "_1":
                        v = v[:5] + ("b" if v[5] == "a" else "a") + v[6:]
                    elif suf == "_short":
                        v = v[:-1]
                    else:
                        v = v + "a"
                    break
            else:
                v = name_of(key if key != "minted_a" else "minted_A")
            return (v.upper() if upper else v).encode()

        return re.sub(rb"\{([A-Za-z0-9_:]+)\}", sub, data)

    def healthy(self):
        m = self.m
        assert m.proc.poll() is None, "the daemon died:\n" + m.log()
        st = m.stats()
        assert st["datapath"] == self.datapath
        fd = os.open(m.p(self.rw), os.O_RDONLY)
        try:
            got = os.pread(fd, 2 * PAGE + 1, 0)
        finally:
            os.close(fd)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(self.rw_bytes).hexdigest(), \
            "the sentinel region's bytes changed"
        assert os.fstat(self.fds[0]).st_size == 2 * PAGE

    def close(self):
        for fd in self.fds:
            os.close(fd)


def run_row(ctx, row):
    fresh = {}
    try:
        target = ctx.resolve(row["target"], fresh)
        arg = ctx.resolve(row["arg"], fresh)
        size = None
        if row["op"] in ("truncate", "ftruncate", "pwrite"):
            size = eval_size(arg.decode())
        elif row["op"] == "fallocate":
            size = tuple(eval_size(x) for x in arg.decode().split(","))
        if row["uid"] == "root":
            got = run_op(ctx.root, row["op"], target, arg, size)
        else:
            r = py_as_user(USER_A, CHILD, ctx.root.hex(), row["op"], target.hex(), arg.hex(), repr(size))
            assert r.returncode == 0, r.stderr
            out = r.stdout.strip()
            got = "OK" if out == "OK" else int(out)
        if os.environ.get("CAPSHM_BADINPUT_TRACE"):
            print("line %d: %s %s %r %r -> %s" % (row["line"], row["uid"], row["op"], target[:40],
                                                 arg[:40], errno_name(got)))
        return got
    finally:
        for fd in fresh.get("_fds", []):
            os.close(fd)
        # Leave nothing behind that a later row could trip over.
        for key in ("tmp", "minted"):
            if key in fresh:
                try:
                    os.unlink(ctx.m.p(fresh[key]))
                except OSError:
                    pass


@pytest.mark.parametrize("group,datapath", PARAMS)
def test_bad_inputs(mount_factory, group, datapath):
    m = mount_factory(datapath, *(BASE_OPTS + GROUP_OPTS.get(group, [])))
    ctx = Context(m, datapath)
    rows = [r for r in ROWS if r["group"] == group and applies(r, datapath)]
    assert rows
    bad = []
    try:
        for row in rows:
            got = run_row(ctx, row)
            want = expected_errno(row["expect"])
            if got != want:
                bad.append("badinput.tsv:%d %s %s %r %r: got %s, want %s (%s)" % (
                    row["line"], row["uid"], row["op"], row["target"], row["arg"],
                    errno_name(got), row["expect"], row["comment"]))
            # The sentinel must survive every single row, not only the group.
            assert m.proc.poll() is None, "the daemon died at badinput.tsv:%d:\n%s" % (row["line"], m.log())
        ctx.healthy()
    finally:
        ctx.close()
    assert not bad, "%d of %d rows differ:\n  " % (len(bad), len(rows)) + "\n  ".join(bad)


# --- mount options ------------------------------------------------------------------

MOUNT_ROWS = [pytest.param(r, id="line%d" % r["line"]) for r in ROWS if r["op"] == "mount"]


@pytest.mark.parametrize("row", MOUNT_ROWS)
def test_bad_mount_options(row):
    mnt = tempfile.mkdtemp(prefix="capshm-badopt-")
    opt = codecs.escape_decode(row["arg"].encode())[0].decode()
    try:
        r = subprocess.run(DAEMON_WRAPPER + [CAPSHMFS, mnt, "-o", opt], capture_output=True,
                           text=True, timeout=60)
        err = r.stderr.strip()
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert len(err.splitlines()) == 1, "stderr is not one line: %r" % r.stderr
        assert row["target"] in err, "%r does not name %r" % (err, row["target"])
        assert err.startswith("capshmfs: "), err
        assert not mounted(mnt), "a failed mount left %s mounted" % mnt
    finally:
        if mounted(mnt):
            subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)


# --- names: no answer tells a guess from a missing name ----------------------------

PROBE = r'''
import errno, os, sys, json
root, names = sys.argv[1], sys.argv[2:]
out = {}
for n in names:
    p = root + "/" + n
    res = []
    for op in ("stat", "open", "open_rw", "getxattr", "listxattr", "unlink", "create"):
        try:
            if op == "stat": os.stat(p)
            elif op == "open": os.close(os.open(p, os.O_RDONLY))
            elif op == "open_rw": os.close(os.open(p, os.O_RDWR))
            elif op == "getxattr": os.getxattr(p, "user.capshm.state")
            elif op == "listxattr": os.listxattr(p)
            elif op == "unlink": os.unlink(p)
            elif op == "create": os.close(os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            res.append("OK")
        except OSError as e:
            res.append(errno.errorcode[e.errno])
    out[n] = res
print(json.dumps(out))
'''


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_unknown_names_are_indistinguishable(mount_factory, datapath):
    """A never-minted name, an expired mint, another uid's pending mint, a
    destroyed name and an unlinked name answer identically to every probe
    (stat, open, getxattr, listxattr, unlink, create), for root and for
    another uid, and none of them is ever listed."""
    import json
    m = mount_factory(datapath, "linger=0", "mint_ttl=1")
    # Well-formed, never minted (2^-130 odds of colliding with a real one).
    never = "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in os.urandom(26))
    expired = m.new_name()
    theirs = py_as_user(USER_A, "import sys; print(open(sys.argv[1]+'/.new').read().strip())",
                        m.path).stdout.strip()
    destroyed, fd = m.create(PAGE, 0o666)
    os.close(fd)
    unlinked, ufd = m.create(PAGE, 0o666)   # still held: its memory stays
    os.unlink(m.p(unlinked))
    m.wait_for(lambda: m.stats()["regions"] == 1, timeout=5, what="the closed region to go")
    time.sleep(1.2)                          # mint_ttl=1: `expired` is past its time
    # `theirs` is USER_A's pending mint; root and USER_B probe it.
    names = {"never": never, "expired": expired, "theirs": theirs,
             "destroyed": destroyed, "unlinked": unlinked}
    probes = {}
    r = py_as_user(0, PROBE, m.path, *names.values())
    assert r.returncode == 0, r.stderr
    probes["root"] = json.loads(r.stdout)
    from capshm_test import USER_B
    r = py_as_user(USER_B, PROBE, m.path, *names.values())
    assert r.returncode == 0, r.stderr
    probes["B"] = json.loads(r.stdout)
    for who, res in probes.items():
        answers = {k: tuple(res[v]) for k, v in names.items()}
        assert len(set(answers.values())) == 1, "%s tells them apart: %s" % (who, answers)
        a = next(iter(answers.values()))
        assert a == ("ENOENT",) * 6 + ("EACCES",), (who, a)
    # Nothing lists them.
    for uid in (0, USER_A, USER_B):
        r = py_as_user(uid, "import os,sys; print('\\n'.join(os.listdir(sys.argv[1])))", m.path)
        listed = set(r.stdout.split())
        assert not listed & set(names.values()), (uid, listed)
    # The held unlinked region still works for its holder.
    os.pwrite(ufd, b"still here", 0)
    assert os.pread(ufd, 10, 0) == b"still here"
    os.close(ufd)
    m.wait_for(lambda: m.stats()["regions"] == 0, timeout=5, what="all regions to go")


# --- O_CREAT of a name another uid creates at the same moment ----------------------

RACER = r'''
import errno, os, sys
mnt, n, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fl = 0
for f in flags.split("|"):
    fl |= getattr(os, f)
sys.stdin.readline()
out = []
for i in range(n):
    try:
        os.close(os.open("%s/race-%d" % (mnt, i), fl, 0o600))
        out.append("OK")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
print(" ".join(out))
'''


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_o_creat_racing_another_creator_never_bypasses_mode_bits(mount_factory, datapath):
    """USER_A and USER_B open the same 400 fresh names with O_RDWR|O_CREAT,
    mode 0600, at the same time (names=any).  Exactly one of them creates
    each region; the other must get EACCES, never a descriptor to the other
    uid's 0600 region.  (The kernel serializes O_CREAT in a directory, so the
    loser normally sees the winner's region at LOOKUP and the kernel checks
    the mode; if a CREATE ever reaches the daemon for a region that exists,
    cfs_create checks the mode itself: may_open_existing.)"""
    from capshm_test import USER_B, user_argv
    m = mount_factory(datapath, "linger=600", "names=any")   # outlive the checks, even under valgrind
    n = 400
    uids = (USER_A, USER_B)
    procs = [subprocess.Popen(user_argv(uid, ["/usr/bin/python3", "-c", RACER, m.path, str(n),
                                              "O_RDWR|O_CREAT"]),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for uid in uids]
    time.sleep(0.3)          # both at their readline()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    res = dict(zip(uids, (p.communicate(timeout=60)[0].split() for p in procs)))
    assert all(len(r) == n for r in res.values()), res
    bad = []
    for i in range(n):
        owner = os.stat(m.p("race-%d" % i)).st_uid
        assert owner in uids
        other = uids[1 - uids.index(owner)]
        if res[owner][i] != "OK" or res[other][i] != "EACCES":
            bad.append((i, owner, res[owner][i], res[other][i]))
    assert not bad, "wrong outcomes (name, owner, owner's result, other's result): %s" % bad[:20]


# --- O_CREAT of an existing name the kernel has not looked up ------------------------

OPEN_AS = r'''
import errno, os, sys
path = sys.argv[1]
for spec in sys.argv[2:]:
    flags = 0
    for f in spec.split("|"):
        flags |= getattr(os, f)
    try:
        os.close(os.open(path, flags, 0o666))
        print("OK")
    except OSError as e:
        print(errno.errorcode[e.errno])
'''


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_o_creat_of_an_uncached_existing_name_checks_permissions(mount_factory, datapath):
    """open(O_CREAT) by another uid of an existing region whose dentry the
    kernel has forgotten: O_CREAT is no way around the mode bits (nor is
    O_TRUNC a way to truncate)."""
    m = mount_factory(datapath, *BASE_OPTS)
    regions = {}
    for mode in (0o600, 0o644):
        name, fd = m.create(PAGE, mode)
        os.setxattr(m.p(name), "user.capshm.pin", b"1")   # survives without holders
        os.close(fd)
        regions[mode] = name
    want = {0o600: {"O_RDONLY|O_CREAT": "EACCES", "O_RDWR|O_CREAT": "EACCES"},
            0o644: {"O_RDONLY|O_CREAT": "OK", "O_RDWR|O_CREAT": "EACCES",
                    "O_WRONLY|O_CREAT": "EACCES", "O_RDONLY|O_CREAT|O_TRUNC": "EACCES"}}
    for mode, name in regions.items():
        # Forget the dentries: unused ones go with drop_caches.
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
        specs = list(want[mode])
        r = py_as_user(USER_A, OPEN_AS, m.p(name), *specs)
        assert r.returncode == 0, r.stderr
        got = dict(zip(specs, r.stdout.split()))
        assert got == want[mode], (oct(mode), got)
        assert os.stat(m.p(name)).st_size == PAGE       # O_TRUNC did nothing
    for name in regions.values():
        os.unlink(m.p(name))
