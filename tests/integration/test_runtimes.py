# SPDX-License-Identifier: MIT
"""capshm in real container runtimes: runc and bubblewrap (docs/containers.md).

Nothing comes from an image registry.  The tests build a root filesystem
of their own: busybox (Debian busybox-static) and helpers/ct-atomics.c,
compiled here with -static; runc gets it as an OCI bundle made with
`runc spec`, bubblewrap as read-only binds.  Either way the capshm mount is
bind-mounted at /run/capshm, which is what `docker run -v
/run/capshm:/run/capshm` and a Kubernetes hostPath volume do.

Each test shares regions both ways between a process in the container and
a process on the host: one side creates a region with mode 0666 and hands
its name to the other (as an argument, or on standard output), then both add
to one 64-bit counter with atomic fetch-adds at the same time, and each
checks that the total is the sum of both sides' additions.

  runc, no user namespace        container root is host root
  runc, user namespace           container uids 0..65535 are host uids
                                 100000..165535 (what rootless Docker and
                                 Podman do): host regions show as owned by
                                 65534 (nobody) inside, and only their
                                 "other" mode bits let the container in
  bubblewrap, unprivileged user  bwrap run by an ordinary uid (USER_A), in
                                 its own user namespace; the host side of the
                                 exchange is another uid (USER_B)

runc, bwrap and busybox-static are test dependencies (scripts/bootstrap-deps
installs them); when one is missing the tests fail and say which, they do
not skip.
"""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid

import pytest

from capshm_test import STAGE, USER_A, USER_B, user_argv

N = 200000                        # atomic additions per side
USERNS_BASE = 100000              # host uid of the runc user-namespace container's root
NOBODY = 65534                    # what an unmapped uid shows as inside a user namespace


def need(path, package):
    if not (path and os.access(path, os.X_OK)):
        pytest.fail("%s is not installed (Debian package %s; scripts/bootstrap-deps installs it)"
                    % (path or package, package), pytrace=False)
    return path


def has_interpreter(path):
    """True when the 64-bit ELF file path asks for a dynamic loader (PT_INTERP)."""
    with open(path, "rb") as f:
        elf = f.read()
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3  # PT_INTERP
               for i in range(phnum))


@pytest.fixture(scope="module")
def ct_atomics():
    """helpers/ct-atomics.c, compiled -static into the world-readable STAGE."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "ct-atomics.c")
    out = os.path.join(STAGE, "ct-atomics")
    r = subprocess.run(["cc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, src],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "cannot build a static ct-atomics (libc6-dev has libc.a):\n" + r.stderr
    assert not has_interpreter(out), "ct-atomics was not linked statically"
    os.chmod(out, 0o755)
    return out


@pytest.fixture(scope="module")
def rootfs(ct_atomics):
    """A root filesystem of busybox and ct-atomics, readable by every uid (a
    user-namespace container's root is an unprivileged host uid)."""
    busybox = need("/bin/busybox", "busybox-static")
    if has_interpreter(busybox):
        pytest.fail("/bin/busybox is not static (install busybox-static)", pytrace=False)
    root = os.path.join(STAGE, "rootfs")
    for d in ("bin", "proc", "dev", "sys", "tmp", "run/capshm"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    shutil.copy2(ct_atomics, os.path.join(root, "bin", "ct-atomics"))
    for d, dirs, files in os.walk(root):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o755)
    return root


class Runc:
    """Containers run with runc from bundles over the shared rootfs; all are
    deleted (killed if need be) at teardown."""

    def __init__(self, runc, rootfs, children):
        self.runc = runc
        self.rootfs = rootfs
        self.children = children
        self.state = tempfile.mkdtemp(prefix="runc-state-", dir=STAGE)
        self.ids = []

    def run(self, mnt, argv, userns):
        """Start `runc run` of a container that runs argv; returns its Child
        (stdin, stdout and stderr are the container process's)."""
        bundle = tempfile.mkdtemp(prefix="bundle-", dir=STAGE)
        os.chmod(bundle, 0o755)
        r = subprocess.run([self.runc, "spec"], cwd=bundle, capture_output=True, text=True)
        assert r.returncode == 0, "runc spec: " + r.stderr
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            c = json.load(f)
        c["root"] = {"path": self.rootfs, "readonly": True}
        c["hostname"] = "capshm-test"
        c["process"].update(terminal=False, args=[str(a) for a in argv], cwd="/")
        c["mounts"].append({"destination": "/run/capshm", "type": "bind", "source": mnt.path,
                            "options": ["rbind", "rw"]})
        if userns:
            c["linux"]["namespaces"].append({"type": "user"})
            c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
        with open(path, "w") as f:
            json.dump(c, f)
        cid = "capshm-test-" + uuid.uuid4().hex[:12]
        self.ids.append(cid)
        return self.children([self.runc, "--root", self.state, "run", "--bundle", bundle, cid],
                             stdin=subprocess.DEVNULL, cwd="/", start_new_session=True)

    def cleanup(self):
        for cid in self.ids:
            subprocess.run([self.runc, "--root", self.state, "delete", "--force", cid],
                           capture_output=True, timeout=30)
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def runc(rootfs, children):
    rt = Runc(need(shutil.which("runc") or "/usr/sbin/runc", "runc"), rootfs, children)
    yield rt
    rt.cleanup()


@pytest.fixture
def bwrap(rootfs, children):
    """bwrap(mnt, argv, uid) -> Child: argv in a bubblewrap sandbox started by
    the unprivileged uid, with all namespaces its own, the rootfs's /bin and
    the mount at /run/capshm."""
    exe = need(shutil.which("bwrap") or "/usr/bin/bwrap", "bubblewrap")

    def run(mnt, argv, uid):
        cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--ro-bind", os.path.join(rootfs, "bin"), "/bin",
               "--bind", mnt.path, "/run/capshm", "--chdir", "/", "--"] + [str(a) for a in argv]
        return children(cmd, uid=uid, stdin=subprocess.DEVNULL, cwd="/")
    return run


def finish(child, what, timeout=60):
    """Wait for child to exit 0; returns its remaining stdout lines."""
    try:
        out, err = child.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError("%s did not finish within %ds" % (what, timeout))
    out = (child._buf + out).decode(errors="replace")
    child._buf = b""
    assert child.proc.returncode == 0, "%s exited %s: stdout=%r stderr=%s" % (
        what, child.proc.returncode, out, err.decode(errors="replace"))
    return out.splitlines()


def host_to_container(mnt, children, ct_atomics, start, host_uid=None):
    """A host process (root, or host_uid) creates a region with mode 0666 and
    passes its name to the container on its command line; both count.
    Returns the region's owner and mode as busybox stat shows them inside."""
    host = children([ct_atomics, "create", mnt.path, "0666", N], uid=host_uid,
                    stdin=subprocess.DEVNULL, cwd="/")
    name = host.readline(20)
    assert len(name) == 26, name
    ct = start(["/bin/sh", "-c",
                'busybox stat -c "%u %a" /run/capshm/$0 && exec /bin/ct-atomics open /run/capshm/$0 $1',
                name, N])
    ct_out = finish(ct, "container")
    host_out = finish(host, "host ct-atomics")
    want = "total %d" % (2 * N)
    assert ct_out[-1] == want and host_out == [want], (ct_out, host_out)
    uid, mode = ct_out[0].split()
    return int(uid), mode


def container_to_host(mnt, children, ct_atomics, start, host_uid):
    """The container creates a region with mode 0666 and prints its name; a
    host process of host_uid opens it by name; both count.  Returns the
    region's owner on the host."""
    ct = start(["/bin/ct-atomics", "create", "/run/capshm", "0666", N])
    name = ct.readline(30)
    assert len(name) == 26, "%r; stderr: %s" % (name, ct.stderr())
    owner = os.stat(mnt.p(name)).st_uid
    host = children([ct_atomics, "open", mnt.p(name), N], uid=host_uid,
                    stdin=subprocess.DEVNULL, cwd="/")
    host_out = finish(host, "host ct-atomics")
    ct_out = finish(ct, "container")
    want = "total %d" % (2 * N)
    assert ct_out == [want] and host_out == [want], (ct_out, host_out)
    return owner


def probe(start, name):
    """What the container sees of region name: (uid, gid, mode, rdwr, rdonly)."""
    ct = start(["/bin/ct-atomics", "probe", "/run/capshm/" + name])
    out = finish(ct, "container probe")
    f = out[0].split()
    return int(f[1]), int(f[3]), f[5], f[7], f[9]


def test_runc_shares_atomics_with_the_host(mnt, runc, children, ct_atomics):
    """runc without a user namespace: the container's root is host root."""
    def start(argv):
        return runc.run(mnt, argv, userns=False)

    assert host_to_container(mnt, children, ct_atomics, start) == (0, "666")
    assert container_to_host(mnt, children, ct_atomics, start, host_uid=USER_A) == 0
    # Host root's private region: container root is host root, so it gets in.
    name, fd = mnt.create(4096, mode=0o600)
    try:
        assert probe(start, name) == (0, 0, "0600", "OK", "OK")
    finally:
        os.close(fd)


def test_runc_user_namespace_shares_atomics_with_the_host(mnt, runc, children, ct_atomics):
    """runc with a user namespace (container root = host uid 100000): host
    regions show as owned by nobody, and the mode's "other" bits decide."""
    def start(argv):
        return runc.run(mnt, argv, userns=True)

    assert host_to_container(mnt, children, ct_atomics, start) == (NOBODY, "666")
    # The container's region belongs to its root's host uid.
    assert container_to_host(mnt, children, ct_atomics, start, host_uid=USER_A) == USERNS_BASE
    fds = []
    try:
        for mode, want in ((0o600, ("EACCES", "EACCES")), (0o640, ("EACCES", "EACCES")),
                           (0o644, ("EACCES", "OK")), (0o666, ("OK", "OK"))):
            name, fd = mnt.create(4096, mode=mode)
            fds.append(fd)
            assert probe(start, name) == (NOBODY, NOBODY, "%04o" % mode) + want, oct(mode)
    finally:
        for fd in fds:
            os.close(fd)


def test_bwrap_unprivileged_shares_atomics_with_the_host(mnt, bwrap, children, ct_atomics):
    """bubblewrap started by an unprivileged uid: it acts as that uid, sees
    root's regions as nobody's, and another uid on the host shares with it."""
    def start(argv):
        return bwrap(mnt, argv, uid=USER_A)

    assert host_to_container(mnt, children, ct_atomics, start) == (NOBODY, "666")
    assert host_to_container(mnt, children, ct_atomics, start, host_uid=USER_B) == (NOBODY, "666")
    assert container_to_host(mnt, children, ct_atomics, start, host_uid=USER_B) == USER_A
    fds = []
    try:
        for mode, want in ((0o600, ("EACCES", "EACCES")), (0o644, ("EACCES", "OK"))):
            name, fd = mnt.create(4096, mode=mode)
            fds.append(fd)
            assert probe(start, name) == (NOBODY, NOBODY, "%04o" % mode) + want, oct(mode)
    finally:
        for fd in fds:
            os.close(fd)
