# SPDX-License-Identifier: MIT
"""names=any: unmodified POSIX shared-memory programs on a capshm mount bound
over /dev/shm in a private mount namespace (capshmfs(8) mount option `names`)."""
import errno
import os
import subprocess
import textwrap

import pytest

from capshm_test import POSIX_HELPER, mounted

POSIX_SHM = POSIX_HELPER


def in_shm_namespace(mnt, script, timeout=30):
    """Run a shell script in a new mount namespace where mnt is bound over /dev/shm."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-euc",
         "mount --bind %s /dev/shm\ncd \"$(mktemp -d)\"\n%s" % (mnt.path, script)],
        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def anymnt(mount_factory, datapath):
    return mount_factory(datapath, "names=any", "linger=1")


@pytest.mark.timeout(60)
def test_shm_open_programs_share_and_get_cleanup(mount_factory, datapath):
    # lifetime=holders: capshm's reclaiming of what nobody holds, opted in
    # (names=any defaults to lifetime=unlink, as tmpfs: test_posix_programs.py).
    anymnt = mount_factory(datapath, "names=any", "linger=1", "lifetime=holders")
    r = in_shm_namespace(anymnt, f"""
        {POSIX_SHM} create /capshm-demo 4096 hello-from-a
        {POSIX_SHM} read /capshm-demo 12
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello-from-a"
    # The creator never called shm_unlink, and it exited: capshm reclaims it
    # after linger, where /dev/shm would have leaked it.
    anymnt.wait_for(lambda: not os.path.exists(anymnt.p("capshm-demo")), timeout=5,
                    what="the abandoned POSIX region to be reclaimed")
    assert anymnt.stats()["regions"] == 0
    assert anymnt.stats()["bytes"] == 0


@pytest.mark.timeout(60)
def test_shm_open_excl_and_unlink(anymnt):
    r = in_shm_namespace(anymnt, f"""
        {POSIX_SHM} hold /held & 
        sleep 0.2
        {POSIX_SHM} create /held 4096 x && exit 9 || true
        {POSIX_SHM} unlink /held
        {POSIX_SHM} read /held 1 && exit 8 || true
        kill %1
    """)
    # hold fails (no such region yet) is fine; the create above then must
    # succeed once and fail with EEXIST the second time:
    r = in_shm_namespace(anymnt, f"""
        {POSIX_SHM} create /ex 4096 a
        if {POSIX_SHM} create /ex 4096 b 2>err; then exit 9; fi
        grep -q 'File exists' err
        {POSIX_SHM} unlink /ex
        if {POSIX_SHM} read /ex 1 2>err; then exit 8; fi
        grep -q 'No such file' err
    """)
    assert r.returncode == 0, (r.returncode, r.stderr)


def test_any_mode_refuses_dot_and_overlong_names(anymnt):
    for bad, err in ((".hidden", errno.EACCES), ("x" * 256, errno.ENAMETOOLONG)):
        with pytest.raises(OSError) as e:
            os.open(anymnt.p(bad), os.O_RDWR | os.O_CREAT, 0o600)
        assert e.value.errno == err, bad
    fd = os.open(anymnt.p("y" * 255), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    assert "y" * 255 in os.listdir(anymnt.path)


@pytest.mark.timeout(60)
def test_python_multiprocessing_shared_memory_unmodified(anymnt):
    prog = textwrap.dedent("""
        import sys
        from multiprocessing import shared_memory, Process

        def child(name):
            s = shared_memory.SharedMemory(name=name)
            assert bytes(s.buf[:5]) == b"hello", bytes(s.buf[:5])
            s.buf[5:10] = b"world"
            s.close()

        if __name__ == "__main__":
            shm = shared_memory.SharedMemory(name="psm_capshm_test", create=True, size=4096)
            shm.buf[:5] = b"hello"
            p = Process(target=child, args=(shm.name,))
            p.start(); p.join()
            assert p.exitcode == 0
            print(bytes(shm.buf[:10]).decode())
            shm.close(); shm.unlink()
    """)
    r = in_shm_namespace(anymnt, "cd /tmp && /usr/bin/python3 -c '%s'" % prog.replace("'", "'\\''"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "helloworld"
    assert not os.path.exists(anymnt.p("psm_capshm_test"))
    assert anymnt.stats()["regions"] == 0


def test_tmpfile_is_eopnotsupp_and_tempfile_falls_back(anymnt):
    """O_TMPFILE is not done (README); Python's tempfile, which tries it
    first, falls back to create+unlink and leaves nothing behind."""
    import tempfile
    with pytest.raises(OSError) as e:
        os.open(anymnt.path, os.O_TMPFILE | os.O_RDWR, 0o600)
    assert e.value.errno == errno.EOPNOTSUPP
    with tempfile.TemporaryFile(dir=anymnt.path) as f:
        f.write(b"scratch")
        f.seek(0)
        assert f.read() == b"scratch"
    assert [n for n in os.listdir(anymnt.path) if not n.startswith(".")] == []


def test_capability_mode_refuses_chosen_names(mnt):
    with pytest.raises(OSError) as e:
        os.open(mnt.p("capshm-demo"), os.O_RDWR | os.O_CREAT, 0o600)
    assert e.value.errno == errno.EACCES
