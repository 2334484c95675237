# SPDX-License-Identifier: MIT
"""Fixtures and hooks for the capshm integration tests: real mounts, real
processes.  What the tests share besides fixtures (the build under test, the
Mount, running as other users, errno helpers, Child, Agent) is in
capshm_test.py; finding processes and mounts is procs.py; the agent other
uids run is agent.py.

Every mount is made by the `mount_factory` fixture and is always unmounted
and its daemon killed at teardown, even when the test fails.
"""
import os
import tempfile

import pytest

import capshm_test as t


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once: a test of the repository (docs, fuzz harnesses, README, "
        "bench script, package installs), not of one daemon build or transport: "
        "scripts/test runs it in the first integration suite only")


def pytest_unconfigure(config):
    t.remove_stage()


def pytest_collection_modifyitems(config, items):
    if not os.path.exists("/dev/fuse"):
        skip = pytest.mark.skip(reason="/dev/fuse is absent")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _hang_watchdog(request):
    """SIGKILL the test's daemons shortly before pytest-timeout would fire
    (capshm_test.watchdog says why)."""
    timeout = request.config.getoption("timeout", None) or 120
    done = t.watchdog(request.node.nodeid, max(10.0, float(timeout) - 20))
    yield
    done.set()


@pytest.fixture
def bare_mountpoint():
    """An empty directory; at teardown anything mounted there is unmounted and
    any capshmfs serving it is SIGKILLed."""
    path = tempfile.mkdtemp(prefix="capshm-bare-")
    os.chmod(path, 0o755)
    yield path
    t.clear_mountpoint(path)


@pytest.fixture
def mount_factory(tmp_path):
    """mount_factory(datapath, *opts, env=None, prefix=()) -> Mount; all are
    torn down after the test, which fails if a daemon did not stop cleanly or
    logged an alarm."""
    mounts = []

    def make(datapath, *opts, env=None, prefix=()):
        mnt = tempfile.mkdtemp(prefix="capshm-mnt-")
        os.chmod(mnt, 0o755)
        m = t.Mount(mnt, datapath, list(opts), str(tmp_path / ("daemon%d.log" % len(mounts))),
                    env=env, prefix=prefix)
        mounts.append(m)
        return m.start()

    yield make
    problems = []
    for m in mounts:
        problems += m.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(params=t.DATAPATHS)
def datapath(request):
    return request.param


@pytest.fixture
def mnt(mount_factory, datapath):
    """A mount with a short linger and mint_ttl, on each data path under test."""
    return mount_factory(datapath, "linger=1", "mint_ttl=5")


@pytest.fixture
def children():
    """spawn(argv, uid=None, ready=False) -> Child; every child is SIGKILLed at teardown.

    ready=True waits for the child's first line to be "ready" (shm-helper's
    map-hold/open-hold/futex-wait protocol)."""
    kids = []

    def spawn(argv, uid=None, ready=False, **kw):
        c = t.Child(argv, uid=uid, **kw)
        kids.append(c)
        if ready:
            c.expect("ready")
        return c

    yield spawn
    for c in kids:
        c.kill()


@pytest.fixture
def agents(children):
    """agent(uid, mount) -> Agent (agent.py) running as uid, killed at teardown."""
    def make(uid, mount):
        return t.Agent(children(t.Agent.argv(mount), uid=uid))
    return make
