# SPDX-License-Identifier: MIT
"""Extended attributes (capshmfs(8) "Extended attributes"): user.capshm.state,
holders, pids, created, pin, seal and ro on regions; unknown names are
ENODATA to get and EINVAL to set."""
import os
import re
import time

import pytest

from capshm_test import errno_name, gone, helper_argv

pytestmark = pytest.mark.timeout(60)

X = "user.capshm."
LINGER = 1.0


def get(path, key):
    return os.getxattr(path, X + key).decode()


def test_state_holders_pids_created(mnt, children):
    t0 = int(time.time())
    name, fd = mnt.create(4096)
    p = mnt.p(name)
    assert get(p, "state") == "live"
    assert get(p, "holders") == "1"
    assert get(p, "pids").split() == [str(os.getpid())]
    created = int(get(p, "created"))
    assert t0 - 1 <= created <= time.time() + 1
    assert get(p, "pin") == "0" and get(p, "seal") == "0"
    # A second process holding an open fd.
    h = children(helper_argv("open-hold", p), ready=True)
    assert get(p, "holders") == "2"
    assert sorted(get(p, "pids").split()) == sorted([str(os.getpid()), str(h.pid)])
    os.close(fd)
    assert get(p, "holders") == "1"
    assert get(p, "pids").split() == [str(h.pid)]
    assert get(p, "state") == "live"
    h.kill()
    mnt.wait_for(lambda: get(p, "state") == "lingering", timeout=3, what="state lingering")
    assert get(p, "holders") == "0" and get(p, "pids") == ""
    assert int(get(p, "created")) == created  # fixed at creation
    # Every name in listxattr can be read.
    for key in os.listxattr(p):
        os.getxattr(p, key)


def test_pin_keeps_a_region_past_linger_until_unpinned(mnt, children):
    name, fd = mnt.create(4096)
    os.pwrite(fd, b"pinned", 0)
    p = mnt.p(name)
    h = children(helper_argv("map-hold", p), ready=True)
    os.setxattr(p, X + "pin", b"1")
    assert get(p, "pin") == "1"
    os.close(fd)
    h.kill()  # even its last holder dying does not free it
    time.sleep(LINGER + 0.3)
    assert not gone(p), "a pinned region went"
    assert get(p, "state") == "pinned"
    st = mnt.stats()
    assert st["pinned"] == 1 and st["lingering"] == 0 and st["regions"] == 1 and st["bytes"] == 4096
    # Reopening and closing keeps it pinned.
    fd = os.open(p, os.O_RDONLY)
    assert os.pread(fd, 6, 0) == b"pinned"
    os.close(fd)
    assert get(p, "state") == "pinned"
    # Pinning twice is fine; unpinning lets it go after linger.
    os.setxattr(p, X + "pin", b"1")
    os.setxattr(p, X + "pin", b"0")
    t0 = time.time()
    assert get(p, "pin") == "0"
    assert get(p, "state") == "lingering"
    mnt.wait_for(lambda: gone(p), timeout=LINGER + 2, what="unpinned region to go")
    assert time.time() - t0 <= LINGER + 1.2
    st = mnt.stats()
    assert st["regions"] == 0 and st["bytes"] == 0 and st["pinned"] == 0


def test_pin_0_on_a_held_region_keeps_it_while_held(mnt):
    name, fd = mnt.create(4096)
    p = mnt.p(name)
    os.setxattr(p, X + "pin", b"1")
    assert get(p, "state") in ("live", "pinned")
    os.setxattr(p, X + "pin", b"0")
    assert get(p, "state") == "live"
    assert mnt.stats()["pinned"] == 0
    os.close(fd)
    assert get(p, "state") == "lingering"


def test_seal(mnt):
    name, fd = mnt.create(4096, 0o644)
    p = mnt.p(name)
    os.pwrite(fd, b"final", 0)
    assert errno_name(lambda: os.setxattr(p, X + "seal", b"1")) == "EBUSY"
    rfd = os.open(p, os.O_RDONLY)
    os.close(fd)
    os.setxattr(p, X + "seal", b"1")
    assert get(p, "seal") == "1" and get(p, "state") == "sealed"
    assert errno_name(lambda: os.open(p, os.O_RDWR)) == "EPERM"
    assert errno_name(lambda: os.truncate(p, 0)) == "EPERM"
    assert os.pread(rfd, 5, 0) == b"final"
    os.setxattr(p, X + "seal", b"1")  # sealing again is harmless
    os.close(rfd)


def test_unknown_and_bad_values(mnt):
    name, fd = mnt.create(4096)
    p = mnt.p(name)
    assert errno_name(lambda: os.getxattr(p, X + "x")) == "ENODATA"
    assert errno_name(lambda: os.setxattr(p, X + "x", b"1")) == "EINVAL"
    for bad in (b"2", b"-1", b"", b"true", b"01", b"1 "):
        assert errno_name(lambda: os.setxattr(p, X + "pin", bad)) == "EINVAL", bad
    assert get(p, "pin") == "0"
    for ro_key in ("state", "holders", "pids", "created"):
        assert errno_name(lambda: os.setxattr(p, X + ro_key, b"1")) == "EINVAL", ro_key
    assert errno_name(lambda: os.getxattr(p, "user.other")) == "ENODATA"
    # The control files and the root have no region attributes.
    for c in (".new", ".stats"):
        assert errno_name(lambda: os.getxattr(mnt.p(c), X + "state")) == "ENODATA"
    os.close(fd)


def test_ro_name(mnt, datapath):
    name, fd = mnt.create(4096, 0o644)
    p = mnt.p(name)
    os.pwrite(fd, b"readonly", 0)
    if datapath == "cache":
        assert errno_name(lambda: os.getxattr(p, X + "ro")) == "ENOTSUP"
        assert X + "ro" not in os.listxattr(p)
        os.close(fd)
        return
    ro = get(p, "ro")
    assert re.match(r"^[a-z2-7]{26}$", ro) and ro != name
    assert get(p, "ro") == ro
    assert X + "ro" in os.listxattr(p)
    rfd = os.open(mnt.p(ro), os.O_RDONLY)
    assert os.pread(rfd, 8, 0) == b"readonly"
    os.pwrite(fd, b"READONLY", 0)
    assert os.pread(rfd, 8, 0) == b"READONLY"
    assert errno_name(lambda: os.open(mnt.p(ro), os.O_RDWR)) == "EACCES"
    # The read-only name is not a second region.
    assert mnt.stats()["regions"] == 1
    assert ro not in os.listdir(mnt.path)
    os.close(rfd)
    os.close(fd)
