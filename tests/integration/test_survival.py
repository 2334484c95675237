# SPDX-License-Identifier: MIT
"""The daemon survives bad input and leaves other regions alone (capshmfs(8)
NAMES, CONTROL FILES): odd names, writes to the control files, absurd
sizes, offsets and xattrs are refused with an error; afterwards the daemon
is alive, .stats parses, and a canary region -- open here and mapped by
another process the whole time -- still holds exactly its bytes.

(tests/integration/test_badinput.py walks a table of single inputs; this
file checks survival with a live canary around each family of them.)"""
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os

import pytest

from capshm_test import USER_A, errno_name, helper_argv

pytestmark = pytest.mark.timeout(60)

PATTERN = bytes(range(256)) * 16  # 4 KiB

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.getxattr.restype = ctypes.c_ssize_t
_libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.listxattr.restype = ctypes.c_ssize_t


def fallocate(fd, mode, off, length):
    if _libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture
def canary(mnt, children):
    """A region with known bytes, open here and mapped by another process."""
    name, fd = mnt.create(8192)
    os.pwrite(fd, PATTERN, 0)
    os.pwrite(fd, PATTERN, 4096)
    mapper = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    yield name, fd, mapper
    os.close(fd)


def check_canary(mnt, canary):
    name, fd, mapper = canary
    assert mnt.proc.poll() is None, "the daemon died:\n" + mnt.log()
    assert os.pread(fd, 8192, 0) == PATTERN * 2
    fd2 = os.open(mnt.p(name), os.O_RDONLY)
    assert os.pread(fd2, 8192, 0) == PATTERN * 2
    os.close(fd2)
    assert mapper.cmd("r 4000 200") == (PATTERN * 2)[4000:4200].hex()
    assert os.fstat(fd).st_size == 8192
    st = mnt.stats()  # still parses
    assert st["regions"] == 1 and st["bytes"] == 8192, st
    assert sorted(os.listdir(mnt.path)) == sorted([".mine", ".new", ".stats", name])


def test_odd_names(mnt, canary):
    for name in ("a" * 255, "2" * 255, "abcdefghijklmnopqrstuvwxyz" * 9 + "a" * 21):
        p = mnt.p(name)
        assert errno_name(lambda: os.stat(p)) == "ENOENT", len(name)
        assert errno_name(lambda: os.open(p, os.O_RDWR | os.O_CREAT, 0o600)) == "EACCES", len(name)
        assert errno_name(lambda: os.unlink(p)) == "ENOENT"
    for n in (256, 300, 1024, 4000):
        p = mnt.p("a" * n)
        assert errno_name(lambda: os.stat(p)) in ("ENAMETOOLONG", "ENOENT"), n
        assert errno_name(lambda: os.open(p, os.O_RDWR | os.O_CREAT, 0o600)) in ("ENAMETOOLONG", "EACCES"), n
    # Bytes that are not base32, not ASCII, not UTF-8.
    base = os.fsencode(mnt.path) + b"/"
    for raw in (b"\x01\x02\x03", b"\xff" * 26, b"abc\xe9def", b"\x7f" * 26, b" " * 26,
                b"\n", b"abcdefghijklmnopqrstuvwxy\xc3", b"*", b"?" * 26, b"...", b"\\"):
        assert errno_name(lambda: os.stat(base + raw)) == "ENOENT", raw
        assert errno_name(lambda: os.open(base + raw, os.O_RDWR | os.O_CREAT, 0o600)) == "EACCES", raw
    # Names under the control prefix.
    for name in (".foo", "..x", ".new.", ".stats2", ".NEW"):
        assert errno_name(lambda: os.stat(mnt.p(name))) == "ENOENT", name
        assert errno_name(lambda: os.open(mnt.p(name), os.O_RDWR | os.O_CREAT, 0o600)) == "EACCES", name
    # Paths through a region or a control file.
    name = canary[0]
    assert errno_name(lambda: os.open(mnt.p(name + "/x"), os.O_RDWR | os.O_CREAT, 0o600)) == "ENOTDIR"
    assert errno_name(lambda: os.stat(mnt.p(".new/x"))) == "ENOTDIR"
    check_canary(mnt, canary)


def test_control_files_refuse_writes(mnt, canary, agents):
    for c in (".new", ".stats"):
        p = mnt.p(c)
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDONLY | os.O_TRUNC):
            assert errno_name(lambda: os.open(p, flags)) in ("EACCES", "EPERM"), (c, flags)
        assert errno_name(lambda: os.truncate(p, 0)) in ("EACCES", "EPERM"), c
        assert errno_name(lambda: os.truncate(p, 1 << 40)) in ("EACCES", "EPERM"), c
        assert errno_name(lambda: os.chmod(p, 0o666)) in ("EACCES", "EPERM"), c
        assert errno_name(lambda: os.setxattr(p, "user.capshm.pin", b"1")) in ("EPERM", "ENOTSUP", "EACCES"), c
        assert errno_name(lambda: os.open(p, os.O_RDWR | os.O_CREAT, 0o600)) in ("EEXIST", "EACCES", "EPERM"), c
        assert os.stat(p).st_mode & 0o7777 == 0o444
    # A plain user is refused by the kernel's mode check as well.
    a = agents(USER_A, mnt)
    assert a.errno_of("open", ".stats", os.O_WRONLY) == "EACCES"
    assert a.errno_of("open", ".new", os.O_RDWR) == "EACCES"
    # Odd reads of the control files are harmless.
    fd = os.open(mnt.p(".stats"), os.O_RDONLY)
    assert os.pread(fd, 10, 1 << 40) == b""
    assert errno_name(lambda: os.pread(fd, 10, -1)) == "EINVAL"
    os.close(fd)
    fd = os.open(mnt.p(".new"), os.O_RDONLY)
    chunks = b"".join(iter(lambda: os.read(fd, 1), b""))
    assert len(chunks) == 27 and chunks.endswith(b"\n")
    os.close(fd)
    check_canary(mnt, canary)


def test_absurd_sizes_and_offsets(mnt, canary):
    name, fd = mnt.create(4096)
    os.pwrite(fd, b"victim", 0)
    for size in (2 ** 62 + 1, 2 ** 63 - 1):
        assert errno_name(lambda: os.ftruncate(fd, size)) in ("EFBIG", "EINVAL"), size
        assert errno_name(lambda: os.truncate(mnt.p(name), size)) in ("EFBIG", "EINVAL"), size
    # Enormous but representable requests are quota's business, or EFBIG.
    assert errno_name(lambda: os.ftruncate(fd, 2 ** 62)) in ("EFBIG", "EDQUOT", "ENOSPC", "EINVAL")
    assert errno_name(lambda: os.ftruncate(fd, -1)) == "EINVAL"
    for off in (-1, -4096, -(2 ** 63)):
        assert errno_name(lambda: os.pwrite(fd, b"x", off)) == "EINVAL", off
        assert errno_name(lambda: os.pread(fd, 1, off)) == "EINVAL", off
    for off in (2 ** 62, 2 ** 63 - 2, 2 ** 62 - 1):
        assert errno_name(lambda: os.pwrite(fd, b"xy", off)) in ("EFBIG", "EINVAL", "EDQUOT", "ENOSPC"), off
        # off + count past 2**63 is the kernel's EINVAL; below it, EOF.
        assert errno_name(lambda: os.pread(fd, 16, off)) in ("OK", "EINVAL")
        if off + 16 < 2 ** 63:
            assert os.pread(fd, 16, off) == b""
    assert errno_name(lambda: os.lseek(fd, -1, os.SEEK_SET)) == "EINVAL"
    # Zero-length writes anywhere change nothing.
    assert os.pwrite(fd, b"", 1 << 40) == 0
    assert os.fstat(fd).st_size == 4096
    assert os.pread(fd, 6, 0) == b"victim"
    # fallocate with a mode tmpfs lacks, and nonsense ranges.
    FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
    assert errno_name(lambda: fallocate(fd, 0, -1, 10)) == "EINVAL"
    assert errno_name(lambda: fallocate(fd, 0, 0, 0)) == "EINVAL"
    assert errno_name(lambda: fallocate(fd, 0, 0, -5)) == "EINVAL"
    assert errno_name(lambda: fallocate(fd, 0, 2 ** 62, 2 ** 62)) in ("EFBIG", "EINVAL")
    # errno.errorcode[95] is "ENOTSUP" (== EOPNOTSUPP)
    assert errno_name(lambda: fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096)) == "ENOTSUP"
    assert errno_name(lambda: fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096)) == "ENOTSUP"
    assert errno_name(lambda: fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)) == "OK"
    assert os.fstat(fd).st_size == 4096
    st = mnt.stats()
    assert st["bytes"] == 8192 + 4096, st
    os.close(fd)
    os.unlink(mnt.p(name))
    check_canary(mnt, canary)


def test_bad_xattrs_and_odd_requests(mnt, canary):
    name, fd = mnt.create(4096)
    p = mnt.p(name)
    for key, val in (("user.capshm.pin", b"\x00"), ("user.capshm.pin", b"1" * 65536),
                     ("user.capshm.seal", b"maybe"), ("user.capshm.", b"1"),
                     ("user.capshm.x" * 20, b"1"), ("user.capshm.holders", b"7")):
        assert errno_name(lambda: os.setxattr(p, key, val)) in ("EINVAL", "E2BIG", "ERANGE"), key
    assert errno_name(lambda: os.setxattr(p, "user.other", b"1")) in ("ENOTSUP", "EPERM")
    assert errno_name(lambda: os.setxattr(p, "trusted.x", b"1")) in ("ENOTSUP", "EPERM")
    assert errno_name(lambda: os.getxattr(p, "user.capshm." + "y" * 200)) == "ENODATA"
    assert errno_name(lambda: os.removexattr(p, "user.capshm.pin")) in ("EINVAL", "EPERM", "ENOTSUP")
    # Tiny buffers: ERANGE, not a crash.
    buf = ctypes.create_string_buffer(1)
    rc = _libc.getxattr(os.fsencode(p), b"user.capshm.created", buf, 1)
    assert rc == -1 and ctypes.get_errno() == errno.ERANGE
    rc = _libc.listxattr(os.fsencode(p), buf, 1)
    assert rc == -1 and ctypes.get_errno() == errno.ERANGE
    # utimens with odd times, chown to nobody and back.
    os.utime(p, (0, 0))
    os.utime(p, ns=(2 ** 62, 2 ** 62))
    os.chown(p, 65534, 65534)
    os.chown(p, 0, 0)
    # flock and fcntl locks are accepted on regions; fsync is a no-op.
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(fd, fcntl.LOCK_UN)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
    os.fsync(fd)
    os.close(fd)
    os.unlink(p)
    with open(mnt.p(".stats")) as f:
        json.load(f)
    check_canary(mnt, canary)
