# SPDX-License-Identifier: MIT
"""The daemon process (capshmfs(8) SYNOPSIS, MOUNT OPTIONS, SIGNALS): clean
unmount and exit 0 on SIGTERM, SIGINT and fusermount3 -u; daemonized start returns
only once the mount answers; bad option values fail the start with a
one-line message naming the option and leave nothing mounted."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from capshm_test import CAPSHMFS, DATAPATHS, daemon_pids, helper_argv, mounted, pid_alive
from procs import fstype

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_cleanly_and_exits_0(mnt, children, sig):
    name, fd = mnt.create(8192)
    holder = children(helper_argv("map-hold", mnt.p(name)), ready=True)
    os.close(fd)
    assert fstype(mnt.path) == "fuse.capshmfs"
    status = mnt.stop(sig)
    assert status == 0, mnt.log()
    assert not mounted(mnt.path)
    assert holder.proc.poll() is None  # the daemon going does not kill its clients


def test_passthrough_mappings_outlive_the_daemon(mount_factory, children):
    if "passthrough" not in DATAPATHS:
        pytest.skip("passthrough is not under test")
    m = mount_factory("passthrough", "linger=1")
    name, fd = m.create(8192)
    os.pwrite(fd, b"survives", 0)
    a = children(helper_argv("map-hold", m.p(name)), ready=True)
    b = children(helper_argv("map-hold", m.p(name)), ready=True)
    os.close(fd)
    assert m.stop(signal.SIGTERM) == 0
    assert not mounted(m.path)
    # "With passthrough, existing mappings keep working until they are unmapped."
    assert a.cmd("r 0 8") == b"survives".hex()
    assert a.cmd("w 4096 " + b"after".hex()) == "ok"
    assert b.cmd("r 4096 5") == b"after".hex()
    assert a.cmd("t") == "ok"  # every page, no SIGBUS


def test_fusermount_u_unmounts_and_daemon_exits_0(mnt):
    name, fd = mnt.create(4096)
    os.close(fd)
    r = subprocess.run(["fusermount3", "-u", mnt.path], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert mnt.proc.wait(10) == 0, mnt.log()
    assert not mounted(mnt.path)
    assert mnt.stop() == 0


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_daemonized_start_returns_only_when_the_mount_answers(bare_mountpoint, datapath):
    mp = bare_mountpoint
    # With a SOURCE argument, as mount(8) and fstab call it.
    r = subprocess.run([CAPSHMFS, "capshm", mp, "-o", "datapath=%s,linger=1" % datapath],
                       capture_output=True, text=True, timeout=30)
    # No sleep, no retry: the very first request must be answered.
    with open(os.path.join(mp, ".stats")) as f:
        st = json.load(f)
    assert r.returncode == 0, r.stderr
    assert st["datapath"] == datapath and st["regions"] == 0
    assert fstype(mp) == "fuse.capshmfs"
    pids = daemon_pids(mp)
    assert len(pids) == 1, pids
    # It works as a filesystem, too.
    with open(os.path.join(mp, ".new")) as f:
        name = f.read().strip()
    fd = os.open(os.path.join(mp, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    r = subprocess.run(["fusermount3", "-u", mp], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    while pid_alive(pids[0]) and time.time() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pids[0]), "daemon still running after fusermount3 -u"
    assert not mounted(mp)


BAD_OPTIONS = [
    ("linger=abc", "linger"),
    ("linger=", "linger"),
    ("linger=-1", "linger"),
    ("mint_ttl=0", "mint_ttl"),
    ("size=12Q", "size"),
    ("size=0", "size"),
    ("quota=lots", "quota"),
    ("max_regions=0", "max_regions"),
    ("max_regions=x", "max_regions"),
    ("datapath=bogus", "datapath"),
    ("names=whatever", "names"),
    ("no_such_option", "no_such_option"),
    ("linger=99999999999999999999", "linger"),
    ("size=99999999999999999999k", "size"),
    ("quota=1.5M", "quota"),
    ("datapath", "datapath"),
    ("max_regions=100000001", "max_regions"),
    ("linger=1\nx", "linger"),  # a newline in the value: still one line
]


@pytest.mark.parametrize("opt,key", BAD_OPTIONS, ids=[o.replace("\n", "NL") for o, _ in BAD_OPTIONS])
@pytest.mark.parametrize("foreground", [False, True], ids=["daemonized", "foreground"])
def test_bad_option_value_fails_with_one_line_naming_it(bare_mountpoint, opt, key, foreground):
    argv = [CAPSHMFS, bare_mountpoint, "-o", "linger=1," + opt] + (["-f"] if foreground else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err and "\n" not in err, "not one line: %r" % r.stderr
    assert key in err, err
    assert err.startswith("capshmfs: "), err
    assert not mounted(bare_mountpoint)
    assert daemon_pids(bare_mountpoint) == []


@pytest.mark.parametrize("datapath", DATAPATHS)
def test_requests_at_start_up_see_the_settled_data_path(bare_mountpoint, datapath):
    """Requests that arrive while the daemon starts (queued behind INIT) must
    be answered by the data path the mount settles on, never before it."""
    mp = bare_mountpoint
    seen, stop = [], threading.Event()

    def spin():
        while not stop.is_set():
            try:
                with open(os.path.join(mp, ".stats")) as f:
                    seen.append(json.load(f)["datapath"])
            except (OSError, ValueError):
                pass

    threads = [threading.Thread(target=spin) for _ in range(4)]
    for t in threads:
        t.start()
    proc = subprocess.Popen([CAPSHMFS, mp, "-f", "-o", "datapath=" + datapath],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 10
        while len(seen) < 20 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(10)
    assert seen, "the mount never answered"
    assert set(seen) == {datapath}, "answers before the data path settled: %s" % sorted(set(seen))
    assert status == 0


def test_stats_counts_fuse_requests(mnt):
    """.stats reports the FUSE requests served; a stat of a missing name is
    one LOOKUP more."""
    before = mnt.stats()["requests"]
    for _ in range(5):
        assert not os.path.exists(mnt.p("a" * 26))
    after = mnt.stats()["requests"]
    # 5 LOOKUPs, plus the LOOKUP/OPEN/READ/RELEASE of reading .stats itself;
    # on a loaded machine FORGETs and the asynchronous RELEASE of the first
    # read may land in the window too (14 seen with two suites running).
    assert after - before >= 5, (before, after)
    assert after - before <= 5 + 16, (before, after)


@pytest.mark.parametrize("value", ["abc", "-1", "10001", "3x"])
def test_bad_spin_setting_refused(mount_factory, value):
    with pytest.raises(RuntimeError) as e:
        mount_factory(DATAPATHS[0], env={"CAPSHM_SPIN_US": value})
    assert "CAPSHM_SPIN_US must be a number of microseconds from 0 to 10000" in str(e.value)


@pytest.mark.parametrize("value", ["0", "10000"])
def test_spin_setting_extremes_serve_requests(mount_factory, value):
    """0 = the daemon sleeps in poll() at once; 10000 = it polls for 10 ms:
    either way every request is answered and the mount unmounts cleanly."""
    m = mount_factory(DATAPATHS[0], "linger=1", env={"CAPSHM_SPIN_US": value})
    for _ in range(20):
        name, fd = m.create(4096)
        os.pwrite(fd, b"spin", 0)
        assert os.pread(fd, 4, 0) == b"spin"
        os.close(fd)
        os.unlink(m.p(name))
    assert m.stats()["regions"] == 0
