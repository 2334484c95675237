# SPDX-License-Identifier: MIT
"""Quotas at the call that asks (capshmfs(8) REGIONS, MOUNT OPTIONS):
growing past quota or max_regions is EDQUOT and past size is ENOSPC, from
the ftruncate/fallocate/write/open(O_CREAT) itself, never as a SIGBUS later.
write() past EOF is charged too, on both data paths (passthrough opens use
FOPEN_DIRECT_IO, so writes still come to the daemon)."""
import ctypes
import ctypes.util
import mmap
import os

import pytest

from capshm_test import (SIGBUS_STATUS, USER_A, daemon_bug, errno_name, helper_argv, py_as_user,
                      run_helper)

pytestmark = pytest.mark.timeout(60)

K, M = 1 << 10, 1 << 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd, off, length, mode=0):
    """fallocate(2) itself (posix_fallocate may emulate it with writes)."""
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def usage(m):
    st = m.stats()
    return st["uid"]["bytes"], st["bytes"]


def test_quota_refuses_growth_at_the_call(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "quota=1M")
    name, fd = m.create(0)
    assert m.stats()["uid"]["quota_bytes"] == M
    assert errno_name(lambda: os.ftruncate(fd, 2 * M)) == "EDQUOT"
    assert errno_name(lambda: fallocate(fd, 0, 2 * M)) == "EDQUOT"
    assert errno_name(lambda: fallocate(fd, M, 4 * K)) == "EDQUOT"
    assert errno_name(lambda: os.pwrite(fd, b"x" * 8192, M - 4096)) == "EDQUOT"
    assert errno_name(lambda: os.pwrite(fd, b"x", 2 * M)) == "EDQUOT"
    # Nothing was charged or grown by the refusals.
    assert os.fstat(fd).st_size == 0 and usage(m) == (0, 0)
    # Up to the quota is fine, by any of the three.
    fallocate(fd, 0, 256 * K)
    assert os.fstat(fd).st_size == 256 * K and usage(m) == (256 * K, 256 * K)
    assert os.pwrite(fd, b"y" * 4096, 512 * K - 4096) == 4096
    assert os.fstat(fd).st_size == 512 * K and usage(m) == (512 * K, 512 * K)
    os.ftruncate(fd, M)
    assert usage(m) == (M, M)
    # One byte more, any way, is refused.
    assert errno_name(lambda: os.ftruncate(fd, M + 1)) == "EDQUOT"
    assert errno_name(lambda: os.pwrite(fd, b"z", M)) == "EDQUOT"
    assert errno_name(lambda: fallocate(fd, M, 1)) == "EDQUOT"
    # A second region cannot take what the first holds.
    n2, fd2 = m.create(0)
    assert errno_name(lambda: os.ftruncate(fd2, 4096)) == "EDQUOT"
    assert errno_name(lambda: os.write(fd2, b"a")) == "EDQUOT"
    # Shrinking gives it back.
    os.ftruncate(fd, M // 2)
    assert usage(m) == (M // 2, M // 2)
    os.ftruncate(fd2, M // 2)
    assert usage(m) == (M, M)
    # And every byte that was granted can be touched through a mapping,
    # in another process: no SIGBUS later.
    r = run_helper("touch", m.p(name), check=False)
    assert r.returncode == 0, "touch: rc=%s (%s) %s" % (r.returncode, "SIGBUS" if r.returncode == SIGBUS_STATUS else "", r.stderr)
    r = run_helper("touch", m.p(n2), check=False)
    assert r.returncode == 0, r.stderr
    with mmap.mmap(fd, M // 2) as mm:
        mm[:] = b"\x01" * (M // 2)
    os.close(fd)
    os.close(fd2)


def test_write_past_eof_is_charged(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "quota=64k")
    name, fd = m.create(0)
    assert os.write(fd, b"a" * 4096) == 4096
    assert os.fstat(fd).st_size == 4096 and usage(m) == (4096, 4096)
    assert os.pwrite(fd, b"b" * 100, 10000) == 100  # a hole, then data
    assert os.fstat(fd).st_size == 10100 and usage(m) == (10100, 10100)
    assert os.pwrite(fd, b"c" * 4096, 0) == 4096  # overwriting is free
    assert usage(m) == (10100, 10100)
    # Appending up to the quota works, one byte past does not.
    fd_app = os.open(m.p(name), os.O_WRONLY | os.O_APPEND)
    assert os.write(fd_app, b"d" * (64 * K - 10100)) == 64 * K - 10100
    assert usage(m) == (64 * K, 64 * K)
    assert errno_name(lambda: os.write(fd_app, b"e")) == "EDQUOT"
    assert os.fstat(fd).st_size == 64 * K
    assert os.pread(fd, 4, 64 * K - 4) == b"dddd"
    os.close(fd_app)
    r = run_helper("touch", m.p(name), check=False)
    assert r.returncode == 0, r.stderr
    os.close(fd)


def test_size_smaller_than_quota_gives_enospc(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "size=1M", "quota=4M")
    name, fd = m.create(0)
    assert m.stats()["uid"]["quota_bytes"] == 4 * M
    assert errno_name(lambda: os.ftruncate(fd, 2 * M)) == "ENOSPC"
    assert errno_name(lambda: os.pwrite(fd, b"x", 2 * M)) == "ENOSPC"
    assert errno_name(lambda: fallocate(fd, 0, 2 * M)) == "ENOSPC"
    os.ftruncate(fd, M)  # all of size= is usable
    assert errno_name(lambda: os.ftruncate(fd, M + 1)) == "ENOSPC"
    os.close(fd)


def test_size_limit_gives_enospc_across_regions(mount_factory, datapath, agents):
    """Two uids each within quota, together past size: ENOSPC for the one
    that asks last, at its ftruncate/write/fallocate."""
    m = mount_factory(datapath, "linger=1", "size=1M", "quota=768k")
    name, fd = m.create(768 * K)
    a = agents(USER_A, m)
    an = a.call("create", 0o600, 0)
    r = run_helper("touch", m.p(name), check=False)
    assert r.returncode == 0
    code = ("import os,sys,errno\n"
            "fd=os.open(sys.argv[1], os.O_RDWR)\n"
            "for f in (lambda: os.ftruncate(fd, 512*1024), lambda: os.pwrite(fd, b'x', 512*1024)):\n"
            "  try: f(); print('OK')\n"
            "  except OSError as e: print(errno.errorcode[e.errno])\n")
    out = py_as_user(USER_A, code, m.p(an))
    assert out.stdout.split() == ["ENOSPC", "ENOSPC"], out
    assert m.stats()["bytes"] == 768 * K
    os.close(fd)


def test_max_regions_refuses_the_third_create(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "max_regions=2")
    n1, fd1 = m.create(4096)
    n2, fd2 = m.create(0)
    third = m.new_name()
    assert errno_name(lambda: os.open(m.p(third), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)) == "EDQUOT"
    st = m.stats()
    assert st["regions"] == 2 and st["uid"]["regions"] == 2 and st["uid"]["max_regions"] == 2
    # The refused name is still minted: once a region goes, it can be created.
    os.close(fd2)
    os.unlink(m.p(n2))
    fd3 = os.open(m.p(third), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    assert m.stats()["regions"] == 2
    os.close(fd3)
    os.close(fd1)


def test_refusals_leave_mappings_whole(mount_factory, datapath, children):
    """A mapper that was granted its size never gets SIGBUS because somebody
    else's growth was refused."""
    m = mount_factory(datapath, "linger=1", "quota=256k")
    name, fd = m.create(128 * K)
    mapper = children(helper_argv("map-hold", m.p(name)), ready=True)
    assert errno_name(lambda: os.ftruncate(fd, 512 * K)) == "EDQUOT"
    assert errno_name(lambda: fallocate(fd, 0, 512 * K)) == "EDQUOT"
    assert errno_name(lambda: os.pwrite(fd, b"q" * 4096, 300 * K)) == "EDQUOT"
    assert mapper.cmd("t") == "ok"
    assert mapper.proc.poll() is None
    assert os.fstat(fd).st_size == 128 * K
    os.close(fd)


def test_o_trunc_and_shrink_release_quota(mount_factory, datapath):
    m = mount_factory(datapath, "linger=1", "quota=64k")
    name, fd = m.create(64 * K)
    assert usage(m) == (64 * K, 64 * K)
    fd2 = os.open(m.p(name), os.O_RDWR | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0 and usage(m) == (0, 0)
    assert os.pread(fd, 10, 0) == b""
    os.ftruncate(fd2, 64 * K)
    assert os.pread(fd, 4, 60 * K) == b"\0\0\0\0"
    os.close(fd2)
    os.close(fd)
    os.unlink(m.p(name))
    assert usage(m) == (0, 0)
