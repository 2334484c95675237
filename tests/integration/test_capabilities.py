# SPDX-License-Identifier: MIT
"""Capabilities beyond mode bits: read-only names, sealing, pinning and
quotas across uids (capshmfs(8) REGIONS, "Extended attributes")."""
import errno
import mmap
import os
import subprocess
import time

import pytest

from capshm_test import DATAPATHS, USER_A, USER_B, errno_of, py_as_user

RO = "user.capshm.ro"


# --- read-only names ----------------------------------------------------------

@pytest.fixture
def ptmnt(mount_factory):
    if "passthrough" not in DATAPATHS:
        pytest.skip("this build tests only " + ",".join(DATAPATHS))
    return mount_factory("passthrough", "linger=1")


def test_ro_name_sees_writer_stores_at_once(ptmnt):
    name, fd = ptmnt.create(8192, 0o644)
    w = mmap.mmap(fd, 8192)
    ro = os.getxattr(ptmnt.p(name), RO).decode()
    assert len(ro) == 26 and ro != name
    rfd = os.open(ptmnt.p(ro), os.O_RDONLY)
    r = mmap.mmap(rfd, 8192, prot=mmap.PROT_READ)
    for i in range(100):
        w[i * 8:i * 8 + 8] = i.to_bytes(8, "little")
        assert r[i * 8:i * 8 + 8] == i.to_bytes(8, "little")
    os.pwrite(fd, b"via-write", 4096)
    assert os.pread(rfd, 9, 4096) == b"via-write"
    # The same read-only name every time.
    assert os.getxattr(ptmnt.p(name), RO).decode() == ro


def test_ro_name_cannot_change_a_byte(ptmnt):
    name, fd = ptmnt.create(4096, 0o666)
    os.pwrite(fd, b"original", 0)
    ro = os.getxattr(ptmnt.p(name), RO).decode()
    rop = ptmnt.p(ro)
    # Root bypasses mode bits, so these prove the daemon itself refuses.
    for flags in (os.O_RDWR, os.O_WRONLY, os.O_WRONLY | os.O_APPEND):
        assert errno_of(lambda: os.open(rop, flags)) == errno.EACCES
    rfd = os.open(rop, os.O_RDONLY)
    assert errno_of(lambda: mmap.mmap(rfd, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)) == errno.EACCES
    assert errno_of(lambda: os.open("/proc/self/fd/%d" % rfd, os.O_RDWR)) == errno.EACCES
    assert errno_of(lambda: os.truncate(rop, 0)) == errno.EPERM
    assert errno_of(lambda: os.ftruncate(rfd, 0)) in (errno.EINVAL, errno.EBADF, errno.EPERM)
    assert errno_of(lambda: os.chmod(rop, 0o666)) == errno.EPERM
    assert errno_of(lambda: os.chown(rop, USER_A, USER_A)) == errno.EPERM
    assert errno_of(lambda: os.utime(rop, (1, 1))) == errno.EPERM
    assert errno_of(lambda: os.unlink(rop)) == errno.EPERM
    assert errno_of(lambda: os.setxattr(rop, "user.capshm.pin", b"1")) == errno.EPERM
    assert errno_of(lambda: os.setxattr(rop, "user.capshm.seal", b"1")) == errno.EPERM
    assert errno_of(lambda: os.pwrite(rfd, b"x", 0)) == errno.EBADF
    # A MAP_PRIVATE writable map is a private copy: the region is unchanged.
    p = mmap.mmap(rfd, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    p[0:8] = b"XXXXXXXX"
    assert os.pread(fd, 8, 0) == b"original"
    # Also as another uid on a 0666 region.
    r = py_as_user(USER_A, "import os,sys\n"
                   "try:\n os.open(sys.argv[1], os.O_RDWR); print('opened')\n"
                   "except OSError as e: print(e.errno)", rop)
    assert r.stdout.strip() == str(errno.EACCES), r
    assert os.pread(fd, 8, 0) == b"original"


def test_ro_name_reveals_nothing_of_the_rw_name(ptmnt):
    name, fd = ptmnt.create(4096, 0o644)
    ro = os.getxattr(ptmnt.p(name), RO).decode()
    rop = ptmnt.p(ro)
    for x in os.listxattr(rop):
        try:
            v = os.getxattr(rop, x)
        except OSError:
            continue
        assert name.encode() not in v, x
    assert os.getxattr(rop, RO).decode() == ro
    assert errno_of(lambda: os.getxattr(rop, "user.capshm.pids")) == errno.EACCES
    # The rw name is never listed to a reader, and the ro name is not listed.
    r = py_as_user(USER_A, "import os,sys; print(' '.join(os.listdir(sys.argv[1])))", ptmnt.path)
    assert name not in r.stdout and ro not in r.stdout


def test_ro_name_goes_with_the_region(ptmnt):
    name, fd = ptmnt.create(4096, 0o644)
    ro = os.getxattr(ptmnt.p(name), RO).decode()
    os.close(fd)
    os.unlink(ptmnt.p(name))
    assert errno_of(lambda: os.stat(ptmnt.p(ro))) == errno.ENOENT
    assert ptmnt.stats()["regions"] == 0


def test_ro_xattr_not_supported_in_cache_mode(mount_factory):
    m = mount_factory("cache", "linger=1")
    name, fd = m.create(4096)
    assert errno_of(lambda: os.getxattr(m.p(name), RO)) == errno.ENOTSUP
    assert RO not in os.listxattr(m.p(name))


# --- sealing --------------------------------------------------------------------

def test_seal_refused_while_writable_open(mnt):
    name, fd = mnt.create(4096)
    assert errno_of(lambda: os.setxattr(mnt.p(name), "user.capshm.seal", b"1")) == errno.EBUSY
    assert os.getxattr(mnt.p(name), "user.capshm.state") == b"live"
    os.close(fd)


def test_seal_refused_while_writable_mapping_after_close(ptmnt):
    name, fd = ptmnt.create(4096)
    m = mmap.mmap(fd, 4096)
    os.close(fd)
    assert errno_of(lambda: os.setxattr(ptmnt.p(name), "user.capshm.seal", b"1")) == errno.EBUSY
    m.close()
    os.setxattr(ptmnt.p(name), "user.capshm.seal", b"1")
    assert os.getxattr(ptmnt.p(name), "user.capshm.seal") == b"1"


def test_sealed_region_cannot_change(mnt):
    name, fd = mnt.create(4096, 0o666)
    os.pwrite(fd, b"frozen", 0)
    os.close(fd)
    path = mnt.p(name)
    os.setxattr(path, "user.capshm.seal", b"1")
    assert os.getxattr(path, "user.capshm.state") == b"sealed"
    for flags in (os.O_RDWR, os.O_WRONLY):
        assert errno_of(lambda: os.open(path, flags)) == errno.EPERM
    assert errno_of(lambda: os.truncate(path, 0)) == errno.EPERM
    assert errno_of(lambda: os.truncate(path, 8192)) == errno.EPERM
    assert errno_of(lambda: os.setxattr(path, "user.capshm.seal", b"0")) == errno.EPERM
    rfd = os.open(path, os.O_RDONLY)
    assert os.pread(rfd, 6, 0) == b"frozen"
    r = mmap.mmap(rfd, 4096, prot=mmap.PROT_READ)
    assert r[0:6] == b"frozen"
    assert os.stat(path).st_size == 4096


def test_only_owner_or_root_may_seal_or_pin(mnt):
    name, fd = mnt.create(4096, 0o666)
    os.close(fd)
    os.chown(mnt.p(name), USER_A, USER_A)
    code = ("import os,sys\n"
            "for k in ('pin','seal'):\n"
            " try: os.setxattr(sys.argv[1], 'user.capshm.'+k, b'1'); print(k,'ok')\n"
            " except OSError as e: print(k, e.errno)\n")
    r = py_as_user(USER_B, code, mnt.p(name))
    assert r.stdout.split() == ["pin", str(errno.EPERM), "seal", str(errno.EPERM)], r
    r = py_as_user(USER_A, code, mnt.p(name))
    assert r.stdout.split() == ["pin", "ok", "seal", "ok"], r


# --- pinning ---------------------------------------------------------------------

def test_pinned_region_outlives_holders_until_unpinned(mnt):
    name, fd = mnt.create(4096)
    os.pwrite(fd, b"kept", 0)
    os.setxattr(mnt.p(name), "user.capshm.pin", b"1")
    os.close(fd)
    time.sleep(1.6)  # linger is 1 s
    assert os.getxattr(mnt.p(name), "user.capshm.state") == b"pinned"
    assert mnt.stats()["pinned"] == 1
    with open(mnt.p(name), "rb") as f:
        assert f.read(4) == b"kept"
    os.setxattr(mnt.p(name), "user.capshm.pin", b"0")
    mnt.wait_for(lambda: not os.path.exists(mnt.p(name)), timeout=4, what="unpinned region to go")
    assert mnt.stats()["regions"] == 0


def test_unlink_removes_a_pinned_region(mnt):
    name, fd = mnt.create(4096)
    os.setxattr(mnt.p(name), "user.capshm.pin", b"1")
    os.close(fd)
    os.unlink(mnt.p(name))
    assert mnt.stats()["regions"] == 0


# --- quotas across uids ----------------------------------------------------------

CREATE = ("import os,sys\n"
          "mnt, size = sys.argv[1], int(sys.argv[2])\n"
          "name = open(mnt + '/.new').read().strip()\n"
          "try:\n"
          "  fd = os.open(mnt + '/' + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)\n"
          "except OSError as e:\n"
          "  print('open', e.errno); sys.exit(0)\n"
          "try:\n"
          "  os.ftruncate(fd, size); print('ok', name)\n"
          "except OSError as e:\n"
          "  print('truncate', e.errno)\n"
          "os.setxattr(mnt + '/' + name, 'user.capshm.pin', b'1')\n")


def test_quotas_per_uid_and_global(mount_factory, datapath):
    m = mount_factory(datapath, "linger=0", "quota=1M", "size=1536k", "max_regions=2")

    def create(uid, size):
        r = py_as_user(uid, CREATE, m.path, size)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert create(USER_A, 1 << 20)[0] == "ok"                       # A: 1M of 1M
    assert create(USER_A, 1) == ["truncate", str(errno.EDQUOT)]    # A over quota
    assert create(USER_B, 1 << 20) == ["truncate", str(errno.ENOSPC)]  # mount full
    assert create(USER_B, 512 << 10)[0] == "ok"                     # B fits the rest
    st = m.stats()
    assert st["regions"] == 4 and st["bytes"] == (1 << 20) + (512 << 10)
    per = {u["uid"]: u for u in st["per_uid"]}
    assert per[USER_A]["bytes"] == 1 << 20 and per[USER_B]["bytes"] == 512 << 10
    # max_regions: A already has two regions (one sized, one empty).
    assert create(USER_A, 0) == ["open", str(errno.EDQUOT)]
    # A sees its own usage and limits in .stats.
    r = py_as_user(USER_A, "import json,sys; print(json.dumps(json.load(open(sys.argv[1]+'/.stats'))['uid']))", m.path)
    import json
    mine = json.loads(r.stdout)
    assert mine == {"uid": USER_A, "regions": 2, "bytes": 1 << 20,
                    "quota_bytes": 1 << 20, "max_regions": 2}
    # Usage returns when regions go.
    for n in os.listdir(m.path):
        if not n.startswith("."):
            os.unlink(m.p(n))
    st = m.stats()
    assert st["regions"] == 0 and st["bytes"] == 0
    assert create(USER_A, 1 << 20)[0] == "ok"


def test_quota_is_enforced_at_the_call_not_as_sigbus(mount_factory, datapath):
    m = mount_factory(datapath, "linger=0", "quota=64k")
    name, fd = m.create(0)
    assert errno_of(lambda: os.ftruncate(fd, 128 << 10)) == errno.EDQUOT
    assert errno_of(lambda: os.pwrite(fd, b"x" * 4096, 64 << 10)) == errno.EDQUOT
    assert errno_of(lambda: os.posix_fallocate(fd, 0, 128 << 10)) == errno.EDQUOT
    os.ftruncate(fd, 64 << 10)
    mm = mmap.mmap(fd, 64 << 10)
    mm[:] = b"\x01" * (64 << 10)          # every page may be touched
    assert os.stat(m.p(name)).st_size == 64 << 10
    assert m.stats()["bytes"] == 64 << 10


# --- introspection -------------------------------------------------------------

def test_holders_and_pids_follow_processes(mnt, datapath):
    name, fd = mnt.create(4096, 0o644)
    path = mnt.p(name)
    assert os.getxattr(path, "user.capshm.holders") == b"1"
    assert os.getxattr(path, "user.capshm.pids").split() == [str(os.getpid()).encode()]
    child = subprocess.Popen(["/usr/bin/python3", "-c",
                              "import os,sys,time; fd=os.open(sys.argv[1], os.O_RDONLY); print('r', flush=True); time.sleep(60)",
                              path], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "r"
        assert os.getxattr(path, "user.capshm.holders") == b"2"
        pids = set(os.getxattr(path, "user.capshm.pids").decode().split())
        assert pids == {str(os.getpid()), str(child.pid)}
        # pids is for the owner (and root) only.
        r = py_as_user(USER_A, "import os,sys\ntry: os.getxattr(sys.argv[1],'user.capshm.pids')\nexcept OSError as e: print(e.errno)", path)
        assert r.stdout.strip() == str(errno.EACCES)
    finally:
        child.kill()
        child.wait()
    mnt.wait_for(lambda: os.getxattr(path, "user.capshm.holders") == b"1", timeout=3,
                 what="holders to drop to 1")
    created = int(os.getxattr(path, "user.capshm.created"))
    assert abs(created - time.time()) < 60


def test_xattr_names_and_errors(mnt, datapath):
    name, fd = mnt.create(4096)
    path = mnt.p(name)
    names = set(os.listxattr(path))
    want = {"user.capshm." + k for k in ("holders", "pids", "state", "created", "pin", "seal")}
    assert want <= names
    assert ("user.capshm.ro" in names) == (datapath == "passthrough")
    assert errno_of(lambda: os.getxattr(path, "user.capshm.nope")) == errno.ENODATA
    assert errno_of(lambda: os.setxattr(path, "user.capshm.nope", b"1")) == errno.EINVAL
    assert errno_of(lambda: os.setxattr(path, "user.capshm.state", b"live")) == errno.EINVAL
    for bad in (b"2", b"", b"yes", b"11", b"1\n\n"):
        assert errno_of(lambda: os.setxattr(path, "user.capshm.pin", bad)) == errno.EINVAL, bad
    assert os.getxattr(path, "user.capshm.pin") == b"0"
