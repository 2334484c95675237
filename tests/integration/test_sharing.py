# SPDX-License-Identifier: MIT
"""Sharing: stores, atomics, process-shared mutexes and futexes in one region
are coherent across processes at once, and read/write agree with mmap
(capshmfs(8) DATA PATHS: "Both paths give every process the same bytes at
once").  Run on every data path under test."""
import ctypes
import errno
import mmap
import os
import struct

import pytest

from capshm_test import SIGBUS_STATUS, helper_argv, run_helper

pytestmark = pytest.mark.timeout(60)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16


def fallocate(fd, mode, off, length):
    """fallocate(2) itself; returns the errno name, or "OK"."""
    return "OK" if _libc.fallocate(fd, mode, off, length) == 0 else \
        errno.errorcode[ctypes.get_errno()]


def test_fallocate_modes_tmpfs_has(mnt, children):
    """Punching a hole frees pages that then read as zeros, through read and
    through every mapping (madvise MADV_REMOVE does the same from inside a
    mapping); preallocating (KEEP_SIZE) changes no size and charges no
    quota, even past EOF; ZERO_RANGE, which tmpfs lacks, is EOPNOTSUPP; a
    sealed region refuses both."""
    size = 64 * 4096
    name, fd = mnt.create(size)
    os.pwrite(fd, b"\xab" * size, 0)
    holder = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    blocks = os.fstat(fd).st_blocks
    assert fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8 * 4096) == "OK"
    assert os.pread(fd, 4096, 0) == b"\xab" * 4096
    assert os.pread(fd, 8 * 4096, 4096) == bytes(8 * 4096)
    assert os.pread(fd, 4096, 9 * 4096) == b"\xab" * 4096
    assert holder.cmd("r 4096 4") == "00000000"
    assert holder.cmd("r 0 2") == "abab"
    assert os.fstat(fd).st_size == size
    assert os.fstat(fd).st_blocks < blocks
    m = mmap.mmap(fd, size)
    m.madvise(mmap.MADV_REMOVE, 16 * 4096, 4096)
    assert m[16 * 4096:17 * 4096] == bytes(4096)
    assert os.pread(fd, 4, 16 * 4096) == bytes(4)
    assert holder.cmd("r %d 4" % (16 * 4096)) == "00000000"
    m.close()
    # Preallocation: no size change, no quota charge, also past EOF.
    assert fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * size) == "OK"
    assert os.fstat(fd).st_size == size
    assert mnt.stats()["bytes"] == size
    assert fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096) == "ENOTSUP"  # == EOPNOTSUPP
    os.close(fd)
    holder.kill()
    os.setxattr(mnt.p(name), "user.capshm.seal", b"1")
    fd = os.open(mnt.p(name), os.O_RDONLY)
    assert fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == "EBADF"
    os.close(fd)


def u64(b):
    return struct.unpack("<Q", b)[0]


def test_two_opens_in_one_process_share_bytes(mnt):
    name, fd = mnt.create(4096)
    m = mmap.mmap(fd, 4096)
    fd2 = os.open(mnt.p(name), os.O_RDWR)
    m2 = mmap.mmap(fd2, 4096)
    m[0:4] = b"abcd"
    assert m2[0:4] == b"abcd"
    m2[4096 - 4:] = b"wxyz"
    assert m[4096 - 4:] == b"wxyz"
    assert mnt.stats()["regions"] == 1
    m.close()
    m2.close()
    os.close(fd2)
    os.close(fd)


def test_atomic_adds_from_two_processes_are_exact(mnt, children):
    """Two processes add 1 to the same 64-bit word 200000 times each with
    __atomic_add_fetch, concurrently (a barrier in the region starts them
    together: it only opens if each sees the other's increment)."""
    n = 200000
    name, fd = mnt.create(4096)
    path = mnt.p(name)
    adders = [children(helper_argv("atomic-add", path, 64, n, "--barrier", 0, 2), stdin=None)
              for _ in range(2)]
    for a in adders:
        assert a.wait(45) == 0, a.stderr()
    finals = sorted(int(a.readline()) for a in adders)
    # The last adder to finish saw every add; the other saw at least its own.
    assert finals[1] == 2 * n
    assert n <= finals[0] <= 2 * n
    assert u64(os.pread(fd, 8, 64)) == 2 * n
    with mmap.mmap(fd, 4096) as m:
        assert u64(m[64:72]) == 2 * n
        assert u64(m[0:8]) == 2  # both passed the barrier
    os.close(fd)


def test_process_shared_mutex_protects_a_plain_counter(mnt, children):
    """A PTHREAD_PROCESS_SHARED mutex in the region serialises a non-atomic
    read-modify-write from two processes: no update is lost."""
    n = 50000
    name, fd = mnt.create(4096)
    path = mnt.p(name)
    run_helper("mutex-init", path, 128)
    adders = [children(helper_argv("mutex-add", path, 128, n, "--barrier", 0, 2), stdin=None)
              for _ in range(2)]
    for a in adders:
        assert a.wait(45) == 0, a.stderr()
    # The counter sits 64 bytes after the mutex (shm-helper's layout).
    assert u64(os.pread(fd, 8, 128 + 64)) == 2 * n
    os.close(fd)


def test_futex_wait_is_woken_by_another_process(mnt, children):
    """FUTEX_WAIT in one process, FUTEX_WAKE on the same word from another:
    the waker must wake exactly the waiter (shared futexes key on the page,
    so both mappings must be the same memory)."""
    name, fd = mnt.create(4096)
    path = mnt.p(name)
    waiter = children(helper_argv("futex-wait", path, 1024, 15000), stdin=None, ready=True)
    r = run_helper("futex-wake", path, 1024, 10000, timeout=20)
    assert r.stdout.strip() == "woke 1"
    assert waiter.readline(10) == "woken"
    assert waiter.wait(10) == 0, waiter.stderr()
    os.close(fd)


def test_futex_wait_times_out_when_nobody_wakes(mnt):
    """The other side of the futex test: an unwoken waiter reports failure
    (so the wake test above cannot pass vacuously)."""
    name, fd = mnt.create(4096)
    r = run_helper("futex-wait", mnt.p(name), 2048, 200, check=False)
    assert r.returncode == 1 and "nobody woke us" in r.stderr
    r = run_helper("futex-wake", mnt.p(name), 2048, 100, check=False)
    assert r.returncode == 1 and "no waiter" in r.stderr
    os.close(fd)


def test_pwrite_and_mapping_stores_agree_across_processes(mnt, children):
    """pwrite() is seen at once in another process's existing mapping, and a
    store in that mapping is seen by pread() here; both ways, many times."""
    name, fd = mnt.create(3 * 4096)
    path = mnt.p(name)
    other = children(helper_argv("map-hold", path), ready=True)
    for i in range(20):
        data = b"pw%04d" % i
        off = (i * 613) % (3 * 4096 - len(data))
        assert os.pwrite(fd, data, off) == len(data)
        assert other.cmd("r %d %d" % (off, len(data))) == data.hex()
        store = b"st%04d" % i
        soff = (i * 977 + 50) % (3 * 4096 - len(store))
        assert other.cmd("w %d %s" % (soff, store.hex())) == "ok"
        assert os.pread(fd, len(store), soff) == store
    # A mapping in this process agrees with both.
    with mmap.mmap(fd, 3 * 4096) as m:
        assert m[soff:soff + len(store)] == store
        m[5000:5004] = b"mmap"
        assert other.cmd("r 5000 4") == b"mmap".hex()
        assert os.pread(fd, 4, 5000) == b"mmap"
    # And a second, independent open in a third process reads the same.
    r = run_helper("touch", path)  # maps, stores and reads back every page
    assert r.stdout.strip() == str(3 * 4096)
    os.close(fd)


def test_growth_by_write_is_visible_to_a_later_mapping(mnt, children):
    """A region grown with write() (not ftruncate) maps with the new size in
    another process, holding the written bytes."""
    name, fd = mnt.create(0)
    data = bytes(range(256)) * 32  # 8 KiB
    assert os.write(fd, data) == len(data)
    assert os.fstat(fd).st_size == len(data)
    other = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    assert other.cmd("r 8000 192") == data[8000:8192].hex()
    os.close(fd)


def test_shrink_and_regrow_behave_like_tmpfs_in_other_mappings(mnt, children):
    """ftruncate down then up: another process's existing mapping sees zeros
    in the regrown tail, and touching past a shrunk EOF is SIGBUS (as on
    tmpfs), while the bytes below EOF are kept."""
    name, fd = mnt.create(2 * 4096)
    os.pwrite(fd, b"A" * 4096 + b"B" * 4096, 0)
    other = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    assert other.cmd("r 4096 4") == b"BBBB".hex()
    os.ftruncate(fd, 4096)
    os.ftruncate(fd, 2 * 4096)
    assert other.cmd("r 4096 4") == b"\0\0\0\0".hex()
    assert other.cmd("r 0 4") == b"AAAA".hex()
    assert os.pread(fd, 4, 4096) == b"\0\0\0\0"
    os.ftruncate(fd, 4096)
    other.send("r 4096 4")
    assert other.wait(10) == SIGBUS_STATUS
    assert os.pread(fd, 4, 0) == b"AAAA"
    assert mnt.stats()["bytes"] == 4096
    os.close(fd)


def test_private_mappings_are_private(mnt, children):
    name, fd = mnt.create(4096)
    os.pwrite(fd, b"orig", 0)
    priv = children(helper_argv("map-hold", mnt.p(name), "--private"), ready=True)
    shared = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    assert priv.cmd("w 0 " + b"mine".hex()) == "ok"
    assert priv.cmd("r 0 4") == b"mine".hex()
    assert os.pread(fd, 4, 0) == b"orig"
    assert shared.cmd("r 0 4") == b"orig".hex()
    os.close(fd)
