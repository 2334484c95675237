# SPDX-License-Identifier: MIT
"""Where region bytes live: a private tmpfs (default) or one memfd per region
(the fallback, CAPSHM_STORAGE=memfd).

The private tmpfs is mounted nowhere, so it is invisible to every process;
regions nobody has open cost the daemon no file descriptor, so the number of
regions is not bounded by the daemon's RLIMIT_NOFILE.  Sealing must mean the
same on both: refused while any file or mapping could still write.
"""
import errno
import mmap
import os
import shutil
import time

import pytest

from capshm_test import DATAPATHS, errno_of

SEAL = "user.capshm.seal"
STORAGES = ["tmpfs", "memfd"]


def daemon_fds(m):
    return len(os.listdir("/proc/%d/fd" % m.proc.pid))


def storage_mount(mount_factory, datapath, storage, *opts, prefix=()):
    m = mount_factory(datapath, "linger=1", "mint_ttl=5", *opts,
                      env={"CAPSHM_STORAGE": storage}, prefix=prefix)
    assert "storage=%s" % storage in m.log(), m.log()
    return m


@pytest.fixture(params=[(d, s) for d in DATAPATHS for s in STORAGES],
                ids=lambda p: "%s-%s" % p)
def smnt(request, mount_factory):
    datapath, storage = request.param
    return storage_mount(mount_factory, datapath, storage)


def test_default_storage_is_private_tmpfs(mount_factory):
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    m = mount_factory(DATAPATHS[0], "linger=1", env={"CAPSHM_STORAGE": ""})
    assert "storage=tmpfs" in m.log(), m.log()
    name, fd = m.create(8192)
    os.pwrite(fd, b"x" * 8192, 0)
    # Mounted nowhere: the only new line in our mount table is capshm's own.
    with open("/proc/self/mountinfo") as f:
        after = f.read()
    new = [l for l in after.splitlines() if l not in before.splitlines()]
    assert len(new) == 1 and " fuse.capshmfs " in new[0], new
    with open("/proc/%d/mountinfo" % m.proc.pid) as f:
        assert not any(" tmpfs " in l and "capshm" in l for l in f)
    os.close(fd)


def test_bad_storage_setting_refused(mount_factory):
    with pytest.raises(RuntimeError) as e:
        mount_factory(DATAPATHS[0], env={"CAPSHM_STORAGE": "disk"})
    assert "CAPSHM_STORAGE must be auto, tmpfs or memfd" in str(e.value)


def test_bytes_shared_and_kept_while_idle(smnt):
    name, fd = smnt.create(3 * 4096, 0o644)
    m = mmap.mmap(fd, 3 * 4096)
    m[4096:4101] = b"hello"
    m.close()
    os.pwrite(fd, b"world", 8192)
    os.close(fd)
    os.setxattr(smnt.p(name), "user.capshm.pin", b"1")
    # Nobody holds it: reopen and see the same bytes, twice.
    for _ in range(2):
        fd = os.open(smnt.p(name), os.O_RDONLY)
        assert os.pread(fd, 5, 4096) == b"hello"
        r = mmap.mmap(fd, 3 * 4096, prot=mmap.PROT_READ)
        assert r[8192:8197] == b"world"
        assert os.fstat(fd).st_blocks >= 16   # two pages written
        r.close()
        os.close(fd)
    os.unlink(smnt.p(name))
    smnt.wait_for(lambda: smnt.stats()["regions"] == 0, timeout=3, what="region to go")


def test_seal_waits_for_writable_mapping_from_rw_open(smnt):
    """A read-only mapping made through a read-write open may later be made
    writable (mprotect), so it blocks sealing like a writable one; a mapping
    through a read-only open does not."""
    name, fd = smnt.create(4096, 0o644)
    os.pwrite(fd, b"data", 0)
    ro_map_of_rw = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)
    os.close(fd)
    # cache: the mapping keeps the open file, a writable open in capshm's
    # eyes; passthrough: the kernel (memfd seals, or the tmpfs writer check)
    # sees the mapping's writable file.
    assert errno_of(lambda: os.setxattr(smnt.p(name), SEAL, b"1")) == errno.EBUSY
    ro_map_of_rw.close()
    rfd = os.open(smnt.p(name), os.O_RDONLY)
    ro = mmap.mmap(rfd, 4096, prot=mmap.PROT_READ)
    os.close(rfd)
    os.setxattr(smnt.p(name), SEAL, b"1")
    assert ro[0:4] == b"data"
    assert os.getxattr(smnt.p(name), "user.capshm.state") == b"sealed"
    # Sealed means immutable through every door.
    assert errno_of(lambda: os.open(smnt.p(name), os.O_RDWR)) == errno.EPERM
    assert errno_of(lambda: os.truncate(smnt.p(name), 0)) == errno.EPERM
    ro.close()


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_idle_regions_cost_the_daemon_no_fd(mount_factory, datapath):
    m = storage_mount(mount_factory, datapath, "tmpfs", "linger=600")
    name, fd = m.create(4096)      # warm up
    os.close(fd)
    time.sleep(0.3)                # RELEASE is asynchronous to close()
    before = daemon_fds(m)
    for _ in range(200):
        name, fd = m.create(4096)
        os.close(fd)
    assert m.stats()["regions"] == 201
    m.wait_for(lambda: daemon_fds(m) == before, timeout=3, what="fds back to %d" % before)
    # A region in use holds one fd for its bytes, and on passthrough one more
    # (the read-only file registered with the kernel as its backing file,
    # on which the daemon asks whether mappings remain), given back once
    # nothing holds it.
    fd = os.open(m.p(name), os.O_RDWR)
    os.pwrite(fd, b"x", 0)
    assert daemon_fds(m) == before + (2 if datapath == "passthrough" else 1)
    os.close(fd)
    m.wait_for(lambda: daemon_fds(m) == before, timeout=3, what="the fd to be closed")


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_more_regions_than_the_daemon_fd_limit(mount_factory, datapath):
    """With tmpfs storage the daemon's RLIMIT_NOFILE bounds only regions in
    use; the memfd fallback needs one fd per region and says so with EMFILE."""
    limit = 256
    if not shutil.which("prlimit"):
        pytest.fail("prlimit (util-linux) is needed for this test")
    prefix = ["prlimit", "--nofile=%d:%d" % (limit, limit)]
    m = storage_mount(mount_factory, datapath, "tmpfs", "linger=600", "max_regions=5000",
                      prefix=prefix)
    names = []
    for _ in range(4 * limit):
        name, fd = m.create(4096)
        os.pwrite(fd, name.encode()[:8], 0)
        os.close(fd)
        names.append(name)
    assert m.stats()["regions"] == 4 * limit
    for name in names[:: limit // 4]:
        fd = os.open(m.p(name), os.O_RDONLY)
        assert os.pread(fd, 8, 0) == name.encode()[:8]
        os.close(fd)

    f = storage_mount(mount_factory, datapath, "memfd", "linger=600", "max_regions=5000",
                      prefix=prefix)
    err = None
    for i in range(4 * limit):
        try:
            name, fd = f.create(4096)
            os.close(fd)
        except OSError as e:
            err = e
            break
    assert err is not None and err.errno in (errno.EMFILE, errno.ENFILE), (i, err)
    assert limit - 32 <= f.stats()["regions"] < limit
    assert f.proc.poll() is None
