# SPDX-License-Identifier: MIT
"""The Node.js package (bindings/node): built offline from its npm tarball,
then its `node --test` suites run against a mount of each data path, with
SharedArrayBuffer regions and with plain ArrayBuffer regions."""
import os
import shutil
import subprocess
import tempfile

import pytest

import node_pkg
from capshm_test import ROOT, STAGE


def staged_tests():
    """The suites and their fixtures where other uids can read them (some
    fixtures run as another uid; the checkout may be 0700)."""
    dst = os.path.join(STAGE, "node-test")
    if not os.path.isdir(dst):
        shutil.copytree(os.path.join(node_pkg.NODE_SRC, "test"), dst)
        for d, dirs, files in os.walk(dst):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
    return dst


def test_node_package_builds_offline():
    pkg = node_pkg.package()
    assert os.path.isfile(os.path.join(pkg, "build", "Release", "capshm.node"))
    assert os.path.isfile(os.path.join(pkg, "sab", "build", "Release", "capshm_sab.node"))
    for f in ("index.js", "index.d.ts", "README.md", "package.json"):
        assert os.path.isfile(os.path.join(pkg, f)), f
    # The tests must not be in the tarball.
    assert not os.path.exists(os.path.join(pkg, "test"))
    r = subprocess.run([node_pkg.NODE, "-p", "require(process.argv[1]).sharedArrayBufferSupported",
                        pkg], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # This Node gets SharedArrayBuffers.
    assert r.stdout.strip() == "true"


@pytest.mark.once
def test_npm_install_of_the_directory(tmp_path):
    """`npm install ./bindings/node` (a copy: npm builds in the directory)."""
    node_pkg.package()  # node and npm are there
    src = tmp_path / "node"
    shutil.copytree(node_pkg.NODE_SRC, str(src),
                    ignore=shutil.ignore_patterns("build", "node_modules", "*.tgz"))
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}\n')
    env = node_pkg.npm_env(str(tmp_path))
    node_pkg.run([node_pkg.NPM, "install", "--no-save", "--install-links", str(src)], str(app), env,
                 "npm install DIR")
    r = subprocess.run([node_pkg.NODE, "-e", "const c = require('capshm'); "
                        "console.log(typeof c.create, typeof c.waitAsync)"],
                       cwd=str(app), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["function", "function"]


@pytest.mark.parametrize("mode", ["shared", "arraybuffer"])
@pytest.mark.parametrize("suite", node_pkg.test_files())
def test_node_suite(mount_factory, mnt, suite, mode):
    pkg = node_pkg.package()
    quota = mount_factory(mnt.datapath, "linger=1", "quota=1M")
    env = dict(os.environ, CAPSHM_DIR=mnt.path, CAPSHM_PACKAGE=pkg, CAPSHM_DATAPATH=mnt.datapath,
               CAPSHM_QUOTA_DIR=quota.path, CAPSHM_SHARED="1" if mode == "shared" else "0")
    # The suites make scratch directories (bind mounts) that other uids need not see.
    env["TMPDIR"] = tempfile.gettempdir()
    r = subprocess.run([node_pkg.NODE, "--test", "--test-reporter=tap",
                        os.path.join(staged_tests(), suite)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    assert "# fail 0" in out and "# pass 0" not in out, out[-8000:]
