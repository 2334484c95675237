# SPDX-License-Identifier: MIT
"""The pure-Python module bindings/python/capshm.py, on each data path:
imported with PYTHONPATH, and installed offline with pip."""
import errno
import importlib.util
import os
import shutil
import subprocess

import pytest

from capshm_test import ROOT, STAGE, USER_A, as_user, gone

# A copy where other uids can import it (the checkout may be 0700).
PYDIR = os.path.join(STAGE, "python")
if not os.path.isdir(PYDIR):
    shutil.copytree(os.path.join(ROOT, "bindings", "python"), PYDIR,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    for d, dirs, files in os.walk(PYDIR):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
PY = "/usr/bin/python3"


def load():
    spec = importlib.util.spec_from_file_location("capshm_binding", os.path.join(PYDIR, "capshm.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


capshm = load()


def py(code, mnt, uid=None, env_extra=None, **kw):
    """Run code with PYTHONPATH=bindings/python and CAPSHM_DIR=the mount."""
    env = dict(os.environ, PYTHONPATH=PYDIR, CAPSHM_DIR=mnt.path, **(env_extra or {}))
    argv = [PY, "-c", code]
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    if uid is not None:
        return as_user(uid, argv, env=env, **kw)
    return subprocess.run(argv, env=env, **kw)


def test_create_open_share(mnt):
    with capshm.create(8192, dir=mnt.path) as r:
        assert len(r.name) == 26 and r.path == os.path.join(mnt.path, r.name)
        assert r.size == 8192 and len(r.buf) == 8192 and not r.read_only
        assert os.stat(r.path).st_mode & 0o777 == 0o600 & ~_umask()
        r.buf[:5] = b"hello"
        # Zero-copy: the file shows it, and so does another process.
        assert os.pread(r.fileno(), 5, 0) == b"hello"
        # The name goes through the environment, not the command line.
        p = py("import capshm, os\n"
               "with capshm.open(os.environ['NAME']) as r:\n"
               "    print(bytes(r.buf[:5]).decode()); r.buf[5:8] = b'abc'",
               mnt, env_extra={"NAME": r.name})
        assert p.returncode == 0, p.stderr
        assert p.stdout == "hello\n"
        assert bytes(r.buf[5:8]) == b"abc"
    assert r.closed
    mnt.wait_for(lambda: gone(r.path), what="the closed region to go")


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_read_only(mnt):
    with capshm.create(4096, dir=mnt.path) as w:
        w.buf[0] = 1
        with capshm.open(w.name, read_only=True, dir=mnt.path) as r:
            assert r.read_only and r.buf.readonly
            w.buf[1] = 2
            assert bytes(r.buf[:2]) == b"\x01\x02"
            with pytest.raises(TypeError):
                r.buf[0] = 9
        assert w.buf[0] == 1


def test_ro_name(mnt):
    with capshm.create(4096, dir=mnt.path) as w:
        if mnt.datapath == "cache":
            with pytest.raises(OSError) as e:
                w.ro_name()
            assert e.value.errno == errno.EOPNOTSUPP and e.value.filename == w.path
            return
        ro = w.ro_name()
        assert len(ro) == 26 and ro != w.name
        w.buf[:3] = b"abc"
        with capshm.open(ro, read_only=True, dir=mnt.path) as r:
            assert bytes(r.buf[:3]) == b"abc"
        with pytest.raises(OSError) as e:
            capshm.open(ro, dir=mnt.path)
        assert e.value.errno in (errno.EACCES, errno.EPERM)


def test_pin_unpin_seal(mnt):
    r = capshm.create(4096, dir=mnt.path, pin=True)
    name = r.name
    r.buf[0] = 7
    with pytest.raises(OSError) as e:
        r.seal()
    assert e.value.errno == errno.EBUSY
    r.close()
    # Pinned: it outlives its holders.
    import time
    time.sleep(mnt.stats()["linger"] + 1)
    assert not gone(os.path.join(mnt.path, name))
    with capshm.open(name, read_only=True, dir=mnt.path) as ro:
        ro.seal()
        assert ro.state() == "sealed"
        assert ro.buf[0] == 7
        with pytest.raises(OSError):
            capshm.open(name, dir=mnt.path)
    os.unlink(os.path.join(mnt.path, name))


def test_errors(mnt):
    with pytest.raises(FileNotFoundError):
        capshm.open("a" * 26, dir=mnt.path)
    with pytest.raises(FileNotFoundError):
        capshm.create(10, dir="/nonexistent-capshm")
    for bad in ("", ".new", "a/b"):
        with pytest.raises(ValueError):
            capshm.open(bad, dir=mnt.path)
    with pytest.raises(TypeError):
        capshm.open(5, dir=mnt.path)
    with pytest.raises(ValueError):
        capshm.create(0, dir=mnt.path)
    with pytest.raises(TypeError):
        capshm.create("10", dir=mnt.path)
    r = capshm.create(10, dir=mnt.path)
    r.close()
    r.close()
    with pytest.raises(ValueError):
        r.pin()


def test_eacces_and_edquot(mount_factory, mnt):
    with capshm.create(4096, dir=mnt.path) as r:
        p = py("import capshm, os\n"
               "try:\n    capshm.open(%r)\nexcept OSError as e:\n    print(e.errno)" % r.name,
               mnt, uid=USER_A)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == str(errno.EACCES)
    q = mount_factory(mnt.datapath, "linger=1", "quota=1M")
    with capshm.create(512 * 1024, dir=q.path):
        with pytest.raises(OSError) as e:
            capshm.create(1024 * 1024, dir=q.path)
        assert e.value.errno == errno.EDQUOT
    # The failed create removed its half-made region: one region is left.
    assert len([n for n in os.listdir(q.path) if not n.startswith(".")]) <= 1


def test_close_with_exported_views(mnt):
    r = capshm.create(4096, dir=mnt.path)
    m = r.buf[10:20]
    with pytest.raises(BufferError):
        r.close()
    assert not r.closed
    m.release()
    r.close()
    assert r.closed


def test_killed_process_releases(mnt):
    p = subprocess.Popen([PY, "-c", "import capshm, time\nr = capshm.create(4096)\n"
                                    "print(r.name, flush=True)\ntime.sleep(60)"],
                         env=dict(os.environ, PYTHONPATH=PYDIR, CAPSHM_DIR=mnt.path),
                         stdout=subprocess.PIPE, text=True)
    try:
        name = p.stdout.readline().strip()
        assert len(name) == 26
        assert not gone(mnt.p(name))
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    mnt.wait_for(lambda: gone(mnt.p(name)), what="the killed process's region to go")


@pytest.mark.once
def test_pip_install_offline(tmp_path, mnt):
    src = tmp_path / "src"
    shutil.copytree(PYDIR, str(src), ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run([PY, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "capshm.py").is_file()
    r = subprocess.run([PY, "-c", "import capshm; r = capshm.create(100); print(capshm.__file__, r.size)"],
                       env=dict(os.environ, PYTHONPATH=str(target), CAPSHM_DIR=mnt.path),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    f, size = r.stdout.split()
    assert f.startswith(str(target)) and size == "100"
