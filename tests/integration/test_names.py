# SPDX-License-Identifier: MIT
"""Names (capshmfs(8) NAMES): capability names are minted by .new, created
only by their minter before mint_ttl, and everything else is ENOENT (to look
up) or EACCES (to create); the namespace is flat (EPERM for everything that
would make it otherwise)."""
import os
import re
import stat

import pytest

from capshm_test import USER_A, USER_B, errno_name

pytestmark = pytest.mark.timeout(60)

NAME_RE = re.compile(r"^[a-z2-7]{26}$")
NEVER_MINTED = "abcdefghijklmnopqrstuvwxyz"  # well-formed: 26 chars of [a-z2-7]
MALFORMED = [
    "x", "abc", "A" * 26, "abcdefghijklmnopqrstuvwxy",        # 25
    "abcdefghijklmnopqrstuvwxyz2",                              # 27
    "abcdefghijklmnopqrstuvwxy0",                               # '0' is not base32
    "abcdefghijklmnopqrstuvwxy8", "abcdefghijklmnopqrstuvwxy-",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "region name", "x" * 200,
]


def test_new_mints_distinct_wellformed_names(mnt):
    seen = set()
    for _ in range(20):
        with open(mnt.p(".new"), "rb") as f:
            data = f.read()
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        name = data[:-1].decode()
        assert NAME_RE.match(name), name
        seen.add(name)
        # Minted is not created: it does not exist yet.
        assert errno_name(lambda: os.stat(mnt.p(name))) == "ENOENT"
    assert len(seen) == 20
    st = os.stat(mnt.p(".new"))
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o7777 == 0o444
    assert os.stat(mnt.p(".stats")).st_mode & 0o7777 == 0o444
    # Capability names are secrets: only root may read the root.
    assert os.stat(mnt.path).st_mode & 0o7777 == 0o1733
    assert os.stat(mnt.p(".mine")).st_mode & 0o7777 == 0o444
    assert mnt.stats()["regions"] == 0


def test_unknown_and_malformed_names_are_enoent(mnt):
    for name in [NEVER_MINTED] + MALFORMED + [".foo", "..x", ".new2"]:
        p = mnt.p(name)
        assert errno_name(lambda: os.stat(p)) == "ENOENT", name
        assert errno_name(lambda: os.open(p, os.O_RDONLY)) == "ENOENT", name
        assert errno_name(lambda: os.open(p, os.O_RDWR)) == "ENOENT", name
        assert errno_name(lambda: os.getxattr(p, "user.capshm.state")) == "ENOENT", name


def test_minted_but_not_created_and_destroyed_names_are_enoent(mnt):
    minted = mnt.new_name()
    assert errno_name(lambda: os.open(mnt.p(minted), os.O_RDWR)) == "ENOENT"
    name, fd = mnt.create(4096)
    os.close(fd)
    os.unlink(mnt.p(name))
    assert errno_name(lambda: os.open(mnt.p(name), os.O_RDWR)) == "ENOENT"
    assert errno_name(lambda: os.unlink(mnt.p(name))) == "ENOENT"
    # A destroyed name is not creatable again either: its mint is spent.
    assert errno_name(lambda: os.open(mnt.p(name), os.O_RDWR | os.O_CREAT, 0o600)) == "EACCES"


def test_creating_an_unminted_or_malformed_name_is_eacces(mnt):
    for name in [NEVER_MINTED] + MALFORMED:
        p = mnt.p(name)
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_EXCL,
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
            assert errno_name(lambda: os.open(p, flags, 0o600)) == "EACCES", (name, flags)
    # Control-file names are never created by clients.
    for name in (".foo", ".new2", ".x"):
        got = errno_name(lambda: os.open(mnt.p(name), os.O_RDWR | os.O_CREAT, 0o600))
        assert got == "EACCES", name
    assert mnt.stats()["regions"] == 0


def test_a_name_minted_by_another_uid_cannot_be_created(mnt, agents):
    a, b = agents(USER_A, mnt), agents(USER_B, mnt)
    name = a.call("mint")
    assert NAME_RE.match(name)
    # Neither root nor another user may use A's mint.
    assert errno_name(lambda: os.open(mnt.p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)) == "EACCES"
    assert b.errno_of("create_named", name, 0o600) == "EACCES"
    # A root mint is no good to A either.
    rname = mnt.new_name()
    assert a.errno_of("create_named", rname, 0o600) == "EACCES"
    # The minter still can, once; then it exists for everyone (EEXIST).
    assert a.call("create_named", name, 0o644) == name
    assert a.errno_of("create_named", name, 0o644) == "EEXIST"
    assert errno_name(lambda: os.open(mnt.p(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)) == "EEXIST"
    assert os.stat(mnt.p(name)).st_uid == USER_A


def test_o_creat_of_an_existing_region_opens_it(mnt):
    name, fd = mnt.create(4096)
    os.pwrite(fd, b"same", 0)
    fd2 = os.open(mnt.p(name), os.O_RDWR | os.O_CREAT, 0o600)
    assert os.pread(fd2, 4, 0) == b"same"
    assert mnt.stats()["regions"] == 1
    os.close(fd2)
    os.close(fd)


def test_namespace_is_flat_and_fixed(mnt):
    name, fd = mnt.create(4096)
    p = mnt.p(name)
    other = mnt.p(mnt.new_name())
    cases = {
        "mkdir": lambda: os.mkdir(mnt.p("d")),
        "mkdir minted": lambda: os.mkdir(other),
        "symlink": lambda: os.symlink(p, other),
        "symlink to nowhere": lambda: os.symlink("/etc/passwd", mnt.p("l")),
        "link": lambda: os.link(p, other),
        "rename": lambda: os.rename(p, other),
        "rename onto control": lambda: os.rename(p, mnt.p(".stats")),
        "mknod fifo": lambda: os.mknod(other, stat.S_IFIFO | 0o600),
        "mknod chr": lambda: os.mknod(mnt.p("c"), stat.S_IFCHR | 0o600, os.makedev(1, 3)),
        "mkfifo": lambda: os.mkfifo(mnt.p("f")),
    }
    for what, fn in cases.items():
        assert errno_name(fn) == "EPERM", what
    # Nothing was made, nothing was moved.
    assert sorted(os.listdir(mnt.path)) == sorted([".mine", ".new", ".stats", name])
    assert os.path.exists(p)
    # Regions are files, not directories.
    assert errno_name(lambda: os.stat(os.path.join(p, "x"))) == "ENOTDIR"
    assert errno_name(lambda: os.listdir(p)) == "ENOTDIR"
    # The control files cannot be removed.
    for c in (".new", ".stats"):
        assert errno_name(lambda: os.unlink(mnt.p(c))) == "EPERM", c
    os.close(fd)
