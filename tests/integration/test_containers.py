# SPDX-License-Identifier: MIT
"""capshm across container-like sandboxes (docs/containers.md).

A sandbox is made with unshare(1): its own mount, IPC, PID and UTS
namespaces (--fork --mount-proc, so its first process is pid 1), a private
tmpfs on /dev/shm and on /run, and a bind mount of the capshm mount at
/run/capshm, which is what `docker run -v /run/capshm:/run/capshm` gives a
container.  A "rootless" sandbox is also in its own user namespace, created
by an unprivileged host uid that it maps to root inside (what rootless
Docker or Podman do).

In each sandbox runs a small Python agent that takes one JSON command per
line on stdin and answers one JSON line on stdout; the test drives the
handshake.  Every sandbox is killed at teardown, pass or fail: the agent is
the only process of its PID namespace tree, and the unshare that made it
sends SIGKILL to its child when it dies (--kill-child).

The last tests restart the daemon under sandboxes that bind the mount in
different ways.  They run in a throwaway "host" mount namespace with a
shared tmpfs as /run, like systemd sets up, so nothing on the real host
changes.
"""
import errno
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from capshm_test import CAPSHMFS, DEAD, USER_A, USER_B

# --- the agent -------------------------------------------------------------------

AGENT = r'''
import json, mmap, os, socket, sys
D = sys.argv[1]
maps = {}

def reply(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def ns():
    return {n: os.readlink("/proc/self/ns/" + n) for n in ("mnt", "ipc", "pid", "uts", "user")}

def path(c):
    return os.path.join(D, c["name"])

reply(pid=os.getpid(), uid=os.getuid(), hostname=socket.gethostname(), ns=ns())
for line in sys.stdin:
    c = json.loads(line)
    op = c["op"]
    try:
        if op == "create":
            with open(os.path.join(D, ".new")) as f:
                name = f.read().strip()
            fd = os.open(os.path.join(D, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, c["mode"])
            os.fchmod(fd, c["mode"])
            os.ftruncate(fd, c["size"])
            maps[name] = mmap.mmap(fd, c["size"])
            st = os.fstat(fd)
            os.close(fd)    # from here on only the mapping holds the region
            reply(name=name, uid=st.st_uid)
        elif op == "open":
            fd = os.open(path(c), os.O_RDWR)
            st = os.fstat(fd)
            maps[c["name"]] = mmap.mmap(fd, st.st_size)
            os.close(fd)
            reply(uid=st.st_uid, size=st.st_size)
        elif op == "chmod":
            os.chmod(path(c), c["mode"])
            reply()
        elif op == "store":
            maps[c["name"]][c["off"]:c["off"] + 8] = c["val"].to_bytes(8, "little")
            reply()
        elif op == "load":
            reply(val=int.from_bytes(maps[c["name"]][c["off"]:c["off"] + 8], "little"))
        elif op == "list":
            with open(os.path.join(D, ".mine")) as f:
                reply(names=sorted(f.read().split()))
        elif op == "stats":
            with open(os.path.join(D, ".stats")) as f:
                reply(stats=json.load(f))
        elif op == "shm_write":
            with open("/dev/shm/" + c["file"], "w") as f:
                f.write("x")
            reply()
        elif op == "shm_list":
            reply(files=sorted(os.listdir("/dev/shm")))
        elif op == "exit":
            reply()
            break
        else:
            reply(errno=0, error="unknown op " + op)
    except OSError as e:
        reply(errno=e.errno, error=str(e))
'''

# Inside the new namespaces: private /dev/shm and /run, the capshm mount
# bound at /run/capshm, then the agent.  $1: the capshm mount as the
# sandbox's creator sees it, $2: hostname.
SETUP = r'''set -e
mount -t tmpfs -o mode=1777 sandbox-shm /dev/shm
mount -t tmpfs -o mode=755 sandbox-run /run
mkdir /run/capshm
mount --bind "$1" /run/capshm
hostname "$2"
exec /usr/bin/python3 -c "$3" /run/capshm
'''


class AgentError(AssertionError):
    pass


class Agent:
    """One agent process (in a sandbox); call(op, ...) -> reply dict."""

    def __init__(self, argv, tmp_path, label):
        self.label = label
        self.errlog = open(str(tmp_path / ("%s.stderr" % label)), "w+b")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errlog, start_new_session=True)
        self.buf = b""
        self.info = self._read()

    def stderr(self):
        self.errlog.seek(0)
        return self.errlog.read().decode(errors="replace")

    def _read(self, timeout=10.0):
        deadline = time.time() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise AgentError("%s: no answer within %.0fs; stderr:\n%s" % (self.label, timeout, self.stderr()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AgentError("%s exited (%s); stderr:\n%s" %
                                     (self.label, self.proc.wait(5), self.stderr()))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, op, **kw):
        kw["op"] = op
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())
        self.proc.stdin.flush()
        return self._read()

    def ok(self, op, **kw):
        r = self.call(op, **kw)
        if "errno" in r:
            raise AgentError("%s: %s %s failed: %s" % (self.label, op, kw, r["error"]))
        return r

    def exit(self):
        self.ok("exit")
        assert self.proc.wait(10) == 0, self.stderr()

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.errlog.close()


_userns = {}


def require_userns(uid):
    """Skip unless host uid `uid` may create a user namespace here."""
    if uid not in _userns:
        r = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--",
                            "unshare", "--user", "--map-user=0", "--map-group=0", "true"],
                           capture_output=True, text=True, timeout=30)
        _userns[uid] = r.stderr.strip() if r.returncode else ""
    if _userns[uid]:
        pytest.skip("unprivileged user namespaces unavailable: " + _userns[uid])


SANDBOX_NS = ["--mount", "--ipc", "--pid", "--uts", "--fork", "--mount-proc",
              "--propagation", "private", "--kill-child=SIGKILL"]


@pytest.fixture
def sandbox(tmp_path):
    """sandbox(mnt, hostname, uid=None) -> Agent whose D is /run/capshm.
    uid: make the sandbox rootless: created by host uid `uid` in its own user
    namespace, which maps root inside to `uid` outside."""
    agents = []

    def make(mnt_path, hostname, uid=None):
        cmd = ["unshare"] + SANDBOX_NS
        if uid is not None:
            require_userns(uid)
            cmd = (["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] +
                   cmd + ["--user", "--map-user=0", "--map-group=0"])
        cmd += ["--", "/bin/sh", "-c", SETUP, "sandbox", mnt_path, hostname, AGENT]
        a = Agent(cmd, tmp_path, hostname)
        agents.append(a)
        return a

    yield make
    for a in agents:
        a.kill()


def own_ns():
    return {n: os.readlink("/proc/self/ns/" + n) for n in ("mnt", "ipc", "pid", "uts", "user")}


def reclaimed_within(mnt, seconds):
    mnt.wait_for(lambda: mnt.stats()["regions"] == 0, timeout=seconds,
                 what="the region to be reclaimed")


# --- sharing between two sandboxes -------------------------------------------------

def test_two_sandboxes_share_a_region_and_nothing_else(mnt, sandbox):
    host = own_ns()
    s1 = sandbox(mnt.path, "sandbox1")
    s2 = sandbox(mnt.path, "sandbox2", uid=USER_A)

    # Each is pid 1 of its own PID namespace, with its own mount, IPC, UTS
    # namespaces; the rootless one also has its own user namespace.
    for n in ("mnt", "ipc", "pid", "uts"):
        assert len({host[n], s1.info["ns"][n], s2.info["ns"][n]}) == 3, n
    assert s1.info["pid"] == 1 and s2.info["pid"] == 1
    assert s1.info["ns"]["user"] == host["user"]
    assert s2.info["ns"]["user"] != host["user"]
    assert s2.info["uid"] == 0
    assert (s1.info["hostname"], s2.info["hostname"]) == ("sandbox1", "sandbox2")
    assert socket.gethostname() not in ("sandbox1", "sandbox2")

    # Sandbox 1 (host root) creates the region, 0666 so that sandbox 2's
    # root, which is USER_A on the host, may open it.
    name = s1.ok("create", size=4096, mode=0o666)["name"]
    s1.ok("store", name=name, off=0, val=0x1111)
    r = s2.ok("open", name=name)
    assert r["size"] == 4096
    # The owner is host root, which has no uid in sandbox 2's user namespace.
    assert r["uid"] == 65534
    assert os.stat(mnt.p(name)).st_uid == 0

    # Each sees the other's stores through its own mapping.
    assert s2.ok("load", name=name, off=0)["val"] == 0x1111
    for i in range(1, 6):
        s2.ok("store", name=name, off=8, val=0x2000 + i)
        assert s1.ok("load", name=name, off=8)["val"] == 0x2000 + i
        s1.ok("store", name=name, off=0, val=0x1000 + i)
        assert s2.ok("load", name=name, off=0)["val"] == 0x1000 + i
    # Both mappings hold the region (their fds are closed).
    assert os.getxattr(mnt.p(name), "user.capshm.holders") == b"2"

    # The capshm mount is shared; /dev/shm is not.
    s1.ok("shm_write", file="from-sandbox1")
    s2.ok("shm_write", file="from-sandbox2")
    assert s1.ok("shm_list")["files"] == ["from-sandbox1"]
    assert s2.ok("shm_list")["files"] == ["from-sandbox2"]
    host_shm = os.listdir("/dev/shm")
    assert "from-sandbox1" not in host_shm and "from-sandbox2" not in host_shm

    # Both sandboxes gone: the region goes after linger (1 s).
    assert mnt.stats()["regions"] == 1
    s1.exit()
    s2.exit()
    reclaimed_within(mnt, 1 + 2)


def test_killed_sandboxes_release_their_regions(mnt, sandbox):
    s1 = sandbox(mnt.path, "sandbox1")
    s2 = sandbox(mnt.path, "sandbox2", uid=USER_A)
    name = s2.ok("create", size=8192, mode=0o600)["name"]
    assert s1.ok("open", name=name)["size"] == 8192
    s2.kill()
    s1.kill()
    reclaimed_within(mnt, 1 + 2)


# --- uids and mode bits across user namespaces --------------------------------------

def test_rootless_sandbox_acts_as_its_host_uid(mnt, sandbox):
    ra = sandbox(mnt.path, "rootless-a", uid=USER_A)
    rb = sandbox(mnt.path, "rootless-b", uid=USER_B)
    s1 = sandbox(mnt.path, "rootful")

    # Root in ra creates: the region belongs to USER_A on the host, and to
    # root as ra sees it.
    r = ra.ok("create", size=4096, mode=0o600)
    name = r["name"]
    assert r["uid"] == 0
    assert os.stat(mnt.p(name)).st_uid == USER_A
    assert mnt.stats()["per_uid"] and any(u["uid"] == USER_A for u in mnt.stats()["per_uid"])

    # Root in rb is USER_B on the host: the name is not listed to it, and
    # mode 0600 keeps it out, root or not.
    assert name not in rb.ok("list")["names"]
    assert rb.call("open", name=name).get("errno") == errno.EACCES
    # Root in a rootful sandbox is host root: it lists and opens anything.
    assert name in s1.ok("list")["names"]
    assert s1.ok("open", name=name)["uid"] == USER_A
    assert name in ra.ok("list")["names"]

    # The owner opens it up; now rb gets in and sees the same bytes.
    ra.ok("chmod", name=name, mode=0o666)
    assert rb.ok("open", name=name)["uid"] == 65534   # USER_A is not mapped in rb
    ra.ok("store", name=name, off=16, val=42)
    assert rb.ok("load", name=name, off=16)["val"] == 42

    # Conversely, root in a rootless sandbox cannot open host root's 0600
    # region: its capabilities do not reach outside its user namespace.
    hname = s1.ok("create", size=4096, mode=0o600)["name"]
    assert ra.call("open", name=hname).get("errno") == errno.EACCES

    for s in (ra, rb, s1):
        s.exit()
    reclaimed_within(mnt, 1 + 2)


# --- daemon restarts under sandboxes ---------------------------------------------------

class HostNamespace:
    """A private mount namespace standing in for the host: a tmpfs made
    shared (as systemd does for all mounts at boot) plays /run, with the
    capshm mountpoint in it.  Killing its processes drops all its mounts."""

    def __init__(self, tmp_path):
        self.run_dir = tempfile.mkdtemp(prefix="capshm-host-run-")
        self.mnt = os.path.join(self.run_dir, "capshm")
        script = ('mount -t tmpfs -o mode=755 host-run "$1" && mkdir "$1/capshm" && '
                  'mount --make-shared "$1" && echo ready && exec sleep 600')
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             "/bin/sh", "-c", script, "sh", self.run_dir],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError("host namespace setup failed: %r %r" % (line, self.holder.stderr.read()))
        self.daemons = []

    def nsenter(self):
        return ["nsenter", "--target", str(self.holder.pid), "--mount", "--"]

    def path(self, p):
        return "/proc/%d/root%s" % (self.holder.pid, p)

    def start_daemon(self, datapath, log):
        p = subprocess.Popen(self.nsenter() + [CAPSHMFS, self.mnt, "-f", "-o", "linger=1,datapath=" + datapath],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.daemons.append(p)
        deadline = time.time() + 20
        while time.time() < deadline:
            assert p.poll() is None, "capshmfs exited with %s" % p.returncode
            try:
                with open(self.path(self.mnt) + "/.stats") as f:
                    json.load(f)
                return p
            except (OSError, ValueError):
                time.sleep(0.02)
        raise AssertionError("capshmfs did not mount within 20 s")

    def close(self):
        for p in self.daemons:
            if p.poll() is None:
                p.kill()
            p.wait()
        try:
            os.killpg(self.holder.pid, signal.SIGKILL)
        except OSError:
            pass
        self.holder.wait()
        self.holder.stdout.close()
        self.holder.stderr.close()
        # The tmpfs and the mountpoint in it existed only in the namespace.
        os.rmdir(self.run_dir)


@pytest.fixture
def hostns(tmp_path):
    h = HostNamespace(tmp_path)
    try:
        yield h
    finally:
        h.close()


# In a container's namespace (created from the host namespace, all mounts
# slaves of the host's, as runc sets it up): bind $1 at $2 with propagation
# $3 (rslave or rprivate), then run the agent on $2$4.
CONTAINER_SETUP = r'''set -e
mount --rbind "$1" "$2"
mount --make-"$3" "$2"
exec /usr/bin/python3 -c "$5" "$2$4"
'''


def container(hostns, things, tmp_path, src, propagation, sub, label, uid=None):
    """A container made from the host namespace; uid: rootless, i.e. made by
    host uid `uid` in its own user namespace (root inside)."""
    dst = tempfile.mkdtemp(prefix="capshm-ctr-")
    os.chmod(dst, 0o755)
    things.append(dst)
    cmd = ["unshare", "--mount", "--propagation", "slave"]
    if uid is not None:
        require_userns(uid)
        cmd = (["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "--"] +
               cmd + ["--user", "--map-user=0", "--map-group=0"])
    cmd = hostns.nsenter() + cmd + ["--", "/bin/sh", "-c", CONTAINER_SETUP, "sh", src, dst,
                                    propagation, sub, AGENT]
    a = Agent(cmd, tmp_path, label)
    things.append(a)
    return a


@pytest.fixture
def containers(tmp_path):
    things = []
    yield things
    for t in things:
        if isinstance(t, Agent):
            t.kill()
    for t in things:
        if isinstance(t, str):
            os.rmdir(t)


def settle(agent, timeout=2.0):
    """Wait until agent can read .stats (a new mount has reached it)."""
    deadline = time.time() + timeout
    while "errno" in agent.call("stats"):
        if time.time() > deadline:
            raise AssertionError("%s: the new mount did not arrive within %.0fs" % (agent.label, timeout))
        time.sleep(0.01)




def test_daemon_restart_reaches_only_parent_binds_with_slave_propagation(hostns, containers, tmp_path, datapath):
    log = open(str(tmp_path / "daemon.log"), "ab")
    try:
        old = hostns.start_daemon(datapath, log)
        # -v /run/capshm:/run/capshm (the mount itself), default rprivate
        direct = container(hostns, containers, tmp_path, hostns.mnt, "rprivate", "", "direct")
        # the same with rslave: still a copy of the mount itself
        direct_slave = container(hostns, containers, tmp_path, hostns.mnt, "rslave", "", "direct-rslave")
        # the directory above the mount, rslave (k8s: HostToContainer)
        parent = container(hostns, containers, tmp_path, hostns.run_dir, "rslave", "/capshm", "parent-rslave")
        # the same in a rootless container (its mount namespace belongs to
        # its own user namespace)
        parent_rootless = container(hostns, containers, tmp_path, hostns.run_dir, "rslave", "/capshm",
                                    "parent-rslave-rootless", uid=USER_A)
        # the directory above the mount, rprivate
        parent_private = container(hostns, containers, tmp_path, hostns.run_dir, "rprivate", "/capshm",
                                   "parent-rprivate")
        every = (direct, direct_slave, parent, parent_rootless, parent_private)
        for c in every:
            assert c.ok("stats")["stats"]["created"] == 0

        # Restart: SIGTERM unmounts and exits 0, a new daemon mounts.
        old.send_signal(signal.SIGTERM)
        assert old.wait(10) == 0
        hostns.start_daemon(datapath, log)
        with open(hostns.path(hostns.mnt) + "/.new") as f:
            name = f.read().strip()
        fd = os.open(hostns.path(hostns.mnt) + "/" + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        os.fchmod(fd, 0o666)
        os.ftruncate(fd, 4096)

        # Only the slave binds of the directory above see the new mount.  It
        # can take a moment: a copy of the old mount that has not been
        # detached from the container yet still answers ENOTCONN.
        for c in (parent, parent_rootless):
            settle(c)
        for c in (parent, parent_rootless):
            assert c.ok("stats")["stats"]["created"] == 1, c.label
            assert c.ok("open", name=name)["size"] == 4096, c.label
        # Every copy of the old mount is a dead FUSE connection.
        for c in (direct, direct_slave, parent_private):
            assert c.call("stats").get("errno") in DEAD, c.label
        os.close(fd)
    finally:
        log.close()


def test_daemon_started_after_the_container_reaches_rslave_binds(hostns, containers, tmp_path, datapath):
    # A container that bound the mountpoint while nothing was mounted on it
    # holds the directory underneath: with rslave it receives the mount.
    slave = container(hostns, containers, tmp_path, hostns.mnt, "rslave", "", "early-rslave")
    private = container(hostns, containers, tmp_path, hostns.mnt, "rprivate", "", "early-rprivate")
    for c in (slave, private):
        assert c.call("stats").get("errno") == errno.ENOENT, c.label
    with open(str(tmp_path / "daemon.log"), "ab") as log:
        hostns.start_daemon(datapath, log)
    assert slave.ok("stats")["stats"]["datapath"] == datapath
    assert private.call("stats").get("errno") == errno.ENOENT
