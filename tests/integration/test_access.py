# SPDX-License-Identifier: MIT
"""Access control between uids (capshmfs(8) "THE MOUNT ROOT", "REGIONS"):
only root may list the root (mode 1733); .mine shows the caller's own
regions (root's shows all), mode bits are
enforced (default_permissions), chmod by the owner opens a region up, and
only the owner or root may change or remove it."""
import os

import pytest

from capshm_test import USER_A, USER_B

pytestmark = pytest.mark.timeout(60)

CONTROL = [".mine", ".new", ".stats"]


def regions_in(names):
    return sorted(n for n in names if not n.startswith("."))


def test_other_uid_neither_lists_nor_opens_a_0600_region_until_chmod(mnt, agents):
    name, fd = mnt.create(4096, 0o600)
    os.pwrite(fd, b"secret", 0)
    a = agents(USER_A, mnt)
    # Not listed to another uid: the root cannot be read, .mine is its own...
    assert a.errno_of("listdir") == "EACCES"
    assert a.call("mine") == []
    # ...and mode 0600 keeps it out, for reading and for writing.
    assert a.errno_of("open", name, os.O_RDONLY) == "EACCES"
    assert a.errno_of("open", name, os.O_RDWR) == "EACCES"
    assert a.errno_of("read", name, 0, 6) == "EACCES"
    # The owner opens it up.
    os.chmod(mnt.p(name), 0o666)
    assert os.stat(mnt.p(name)).st_mode & 0o7777 == 0o666
    assert a.call("read", name, 0, 6) == b"secret".hex()
    assert isinstance(a.call("open", name, os.O_RDWR), int)
    # Still not listed: listing is by owner, not by mode.
    assert a.call("mine") == []
    # And closed again.
    a.call("close", name)
    os.chmod(mnt.p(name), 0o600)
    assert a.errno_of("open", name, os.O_RDONLY) == "EACCES"
    os.close(fd)


def test_each_uid_lists_only_its_own_regions_and_root_lists_all(mnt, agents):
    a, b = agents(USER_A, mnt), agents(USER_B, mnt)
    na1 = a.call("create", 0o600, 4096)
    na2 = a.call("create", 0o644, 0)
    nb = b.call("create", 0o666, 4096)
    nr, fd = mnt.create(4096)
    assert a.call("mine") == sorted([na1, na2])
    assert b.call("mine") == sorted([nb])
    assert a.errno_of("listdir") == b.errno_of("listdir") == "EACCES"
    assert regions_in(os.listdir(mnt.path)) == sorted([na1, na2, nb, nr])
    assert set(CONTROL) <= set(os.listdir(mnt.path))
    with open(mnt.p(".mine")) as f:
        assert sorted(f.read().split()) == sorted([na1, na2, nb, nr])
    # Ownership is the creator's uid and gid.
    st = os.stat(mnt.p(na1))
    assert (st.st_uid, st.st_gid) == (USER_A, USER_A)
    st = os.stat(mnt.p(nb))
    assert (st.st_uid, st.st_gid) == (USER_B, USER_B)
    # Per-uid figures in .stats are the caller's own.
    sa = a.call("stats")["uid"]
    assert (sa["uid"], sa["regions"], sa["bytes"]) == (USER_A, 2, 4096)
    assert "per_uid" not in a.call("stats")
    per = {u["uid"]: u for u in mnt.stats()["per_uid"]}
    assert per[USER_A]["regions"] == 2 and per[USER_B]["regions"] == 1
    # A region that goes disappears from its owner's listing.
    a.call("close", na2)
    a.call("unlink", na2)
    assert a.call("mine") == sorted([na1])
    os.close(fd)


def test_owner_chmod_grants_and_only_owner_or_root_may_change_or_remove(mnt, agents):
    a, b = agents(USER_A, mnt), agents(USER_B, mnt)
    name = a.call("create", 0o600, 4096)
    assert b.errno_of("open", name, os.O_RDWR) == "EACCES"
    a.call("chmod", name, 0o666)
    assert isinstance(b.call("open", name, os.O_RDWR), int)
    # B may use it but not change its mode, pin it or remove it.
    assert b.errno_of("chmod", name, 0o777) == "EPERM"
    assert b.errno_of("setxattr", name, "user.capshm.pin", "1") == "EPERM"
    assert b.errno_of("unlink", name) == "EPERM"
    assert os.path.exists(mnt.p(name))
    # root may.
    os.chmod(mnt.p(name), 0o640)
    assert os.stat(mnt.p(name)).st_mode & 0o777 == 0o640
    # chown is for root: A may not give the region away.
    assert a.errno_of("open", name, os.O_RDONLY) == "OK"
    os.unlink(mnt.p(name))
    assert b.errno_of("open", name, os.O_RDONLY) == "ENOENT"


def test_create_mode_honours_umask(mnt):
    name = mnt.new_name()
    old = os.umask(0o077)
    try:
        # Not mnt.create(): it fchmods the exact mode afterwards.
        fd = os.open(mnt.p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    finally:
        os.umask(old)
    assert os.stat(mnt.p(name)).st_mode & 0o7777 == 0o600
    assert os.fstat(fd).st_mode & 0o7777 == 0o600
    os.close(fd)
