# SPDX-License-Identifier: MIT
"""lifetime=cgroup (capshmfs(8) LIFETIME): a POSIX region lives until it is
unlinked, or until the cgroup of the process that created it (its container
or service) has ended and nobody holds it.  Abandoned regions of an ended
container are reclaimed; nothing a live member of the creator's cgroup could
still open is ever destroyed.  On both data paths, with real cgroup v2
directories."""
import os
import subprocess
import time

import pytest

from capshm_test import CAPSHMFS, gone

pytestmark = pytest.mark.timeout(90)


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4].replace("\\040", " ")
    pytest.fail("no cgroup v2 hierarchy is mounted: lifetime=cgroup cannot be tested")


@pytest.fixture
def cgroup():
    """A fresh, empty cgroup v2 directory; removed (its processes killed)
    at teardown."""
    path = os.path.join(cgroup2_root(), "capshm-test-%d-%d" % (os.getpid(), time.monotonic_ns()))
    os.mkdir(path)
    yield path
    if os.path.isdir(path):
        try:
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
        for _ in range(100):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.05)


@pytest.fixture
def cgmnt(mount_factory, datapath):
    return mount_factory(datapath, "names=any", "lifetime=cgroup", "linger=1")


CREATE = r'''
import os, sys
d, name = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(d, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.ftruncate(fd, 4096)
os.pwrite(fd, b"abandoned", 0)
os.close(fd)
'''


def create_in(cgroup, mnt, name):
    """A process moves itself into @cgroup, creates region @name and exits."""
    r = subprocess.run(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec python3 -c "$2" "$3" "$4"',
                        "sh", cgroup, CREATE, mnt.path, name],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_region_stays_while_its_creators_cgroup_lives(cgmnt, cgroup):
    create_in(cgroup, cgmnt, "kept")
    time.sleep(3)                       # 3 x linger, nobody holds it
    with open(cgmnt.p("kept"), "rb") as f:
        assert f.read(9) == b"abandoned"
    assert cgmnt.stats()["regions"] == 1


def test_abandoned_region_goes_when_its_cgroup_ends(cgmnt, cgroup):
    create_in(cgroup, cgmnt, "abandoned")
    time.sleep(1.5)
    assert not gone(cgmnt.p("abandoned"))
    os.rmdir(cgroup)                    # the container is gone
    cgmnt.wait_for(lambda: gone(cgmnt.p("abandoned")), timeout=15, what="the region to be reclaimed")
    cgmnt.wait_for(lambda: cgmnt.stats()["bytes"] == 0, timeout=5, what="its bytes released")


def test_a_holder_keeps_a_region_of_an_ended_cgroup(cgmnt, cgroup):
    create_in(cgroup, cgmnt, "held")
    holder = subprocess.Popen(["python3", "-c", "import mmap,os,sys\n"
                               "fd=os.open(sys.argv[1],os.O_RDONLY)\n"
                               "m=mmap.mmap(fd,4096,prot=mmap.PROT_READ)\nos.close(fd)\n"
                               "print('ready',flush=True)\nsys.stdin.readline()\n"
                               "print(m[:9].decode(),flush=True)", cgmnt.p("held")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        os.rmdir(cgroup)
        time.sleep(4)                   # past linger and the next check
        assert not gone(cgmnt.p("held"))
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "abandoned"
    finally:
        holder.kill()
        holder.wait()
    cgmnt.wait_for(lambda: gone(cgmnt.p("held")), timeout=15, what="the region to be reclaimed")


def test_unlinked_region_of_a_live_cgroup_goes(cgmnt, cgroup):
    create_in(cgroup, cgmnt, "unlinked")
    os.unlink(cgmnt.p("unlinked"))
    cgmnt.wait_for(lambda: cgmnt.stats()["regions"] == 0, timeout=10, what="the region to go")


def test_lifetime_cgroup_in_the_log_and_bad_values_refused(cgmnt, bare_mountpoint):
    assert "lifetime=cgroup" in cgmnt.log()
    r = subprocess.run([CAPSHMFS, bare_mountpoint, "-o", "lifetime=forever"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "lifetime" in r.stderr
