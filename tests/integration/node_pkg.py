# SPDX-License-Identifier: MIT
"""The Node.js package bindings/node, packed and installed offline once per
pytest run, for test_node.py and test_examples.py.

`npm pack` makes the tarball users would get, `npm install --offline` of it
into a scratch app builds the addons with node-gyp against the installed
Node's headers (bindings/node/scripts/build.js): nothing is downloaded and
the source tree is not written to.  A missing node or npm, or a failed
build, fails the tests that need the package (never skips them).
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from capshm_test import ROOT

NODE_SRC = os.path.join(ROOT, "bindings", "node")
NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"

_state = {}


def npm_env(scratch):
    """npm with no network, no notices, and its cache in scratch."""
    env = dict(os.environ)
    env.update(npm_config_cache=os.path.join(scratch, "npm-cache"), npm_config_offline="true",
               npm_config_update_notifier="false", npm_config_audit="false",
               npm_config_fund="false", npm_config_loglevel="warn")
    return env


def run(argv, cwd, env, what, timeout=300):
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        pytest.fail("%s failed (exit %s):\n%s\n%s" % (what, r.returncode, r.stdout[-4000:],
                                                      r.stderr[-4000:]), pytrace=False)
    return r


def package():
    """The installed package's directory (scratch/app/node_modules/capshm)."""
    if "dir" in _state:
        return _state["dir"]
    if "error" in _state:
        pytest.fail(_state["error"], pytrace=False)
    for prog in (NODE, NPM):
        if not os.access(prog, os.X_OK):
            _state["error"] = ("%s is not installed: the Node.js package cannot be tested "
                               "(scripts/bootstrap installs it)" % os.path.basename(prog))
            pytest.fail(_state["error"], pytrace=False)
    # Readable by every uid: some tests run node as another user.
    scratch = tempfile.mkdtemp(prefix="capshm-node-")
    os.chmod(scratch, 0o755)
    env = npm_env(scratch)
    try:
        r = run([NPM, "pack", "--pack-destination", scratch], NODE_SRC, env, "npm pack")
        tgz = os.path.join(scratch, r.stdout.strip().splitlines()[-1])
        app = os.path.join(scratch, "app")
        os.mkdir(app)
        with open(os.path.join(app, "package.json"), "w") as f:
            f.write('{"name": "capshm-test-app", "version": "1.0.0", "private": true}\n')
        run([NPM, "install", "--no-save", tgz], app, env, "npm install --offline capshm.tgz")
    except BaseException as e:
        _state["error"] = "building the Node.js package failed: %s" % e
        raise
    pkg = os.path.join(app, "node_modules", "capshm")
    _state["dir"] = pkg
    _state["scratch"] = scratch
    return pkg


def test_files():
    """bindings/node/test/*.test.js, by name."""
    d = os.path.join(NODE_SRC, "test")
    return sorted(f for f in os.listdir(d) if f.endswith(".test.js"))
