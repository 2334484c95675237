# SPDX-License-Identifier: MIT
"""The programs in examples/, each run as two processes on a real mount.

Every example uses the same region layout, so each creator is also tried
with another language's attacher.  The C example is compiled against the
library in the build tree (nothing is installed while tests run), with an
rpath to a world-readable copy of it (conftest's RUN_CFLAGS).
"""
import os
import select
import shutil
import subprocess
import time

import pytest

import node_pkg
from capshm_test import BUILD, CAPSHM_CLI, INCDIR, LIBDIR, ROOT, RUN_CFLAGS, SAN_CFLAGS, STAGE

EXAMPLES = os.path.join(ROOT, "examples")
NODE = node_pkg.NODE


@pytest.fixture(scope="module")
def c_share():
    """examples/c/share.c built with -I src/lib -L build/src/lib/.libs -lcapshm
    (and an rpath to the world-readable copy of the library)."""
    out = os.path.join(STAGE, "share")
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", out,
                        os.path.join(EXAMPLES, "c/share.c")] + RUN_CFLAGS + ["-lcapshm"] + SAN_CFLAGS,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return out


def toolchain(prog):
    """The path of PROG; a missing toolchain fails the test (scripts/bootstrap
    installs it), never skips it."""
    path = shutil.which(prog)
    assert path, "%s not found: run scripts/bootstrap (scripts/bootstrap-deps installs it)" % prog
    return path


@pytest.fixture(scope="module")
def go_share():
    """examples/go/share.go built by `go build`: standard library only, no
    module, no network (GOPROXY=off)."""
    go = toolchain("go")
    out = os.path.join(STAGE, "share-go")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local",
               GOCACHE=os.path.join(STAGE, "gocache"), GOPATH=os.path.join(STAGE, "gopath"))
    r = subprocess.run([go, "build", "-o", out, "share.go"], cwd=os.path.join(EXAMPLES, "go"),
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [out]


@pytest.fixture(scope="module")
def java_share():
    """examples/java/Share.java compiled by javac; run as `java -cp DIR Share`."""
    javac, java = toolchain("javac"), toolchain("java")
    out = os.path.join(STAGE, "java")
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([javac, "-Xlint:all", "-Werror", "-d", out,
                        os.path.join(EXAMPLES, "java/Share.java")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [java, "-cp", out, "Share"]


@pytest.fixture
def examples(request, c_share):
    """argv_for(lang) for every example, building only the ones asked for."""
    built = {"c": c_share}

    def argv(lang):
        if lang in ("go", "java") and lang not in built:
            built[lang] = request.getfixturevalue(lang + "_share")
        return argv_for(lang, built.get("c"), built.get(lang))
    return argv


def argv_for(lang, c_share, built=None):
    if lang == "c":
        return [c_share]
    if lang == "python":
        return ["/usr/bin/python3", os.path.join(EXAMPLES, "python/share.py")]
    if lang == "shell":
        return ["/bin/sh", os.path.join(EXAMPLES, "shell/share.sh")]
    if lang == "node":
        return node_argv("share.js")
    if lang in ("go", "java"):
        return built
    if lang == "ruby":
        return [toolchain("ruby"), os.path.join(EXAMPLES, "ruby/share.rb")]
    if lang == "perl":
        return [toolchain("perl"), os.path.join(EXAMPLES, "perl/share.pl")]
    raise ValueError(lang)


def node_argv(example):
    """node running examples/node/EXAMPLE with the capshm package (built
    offline by node_pkg; fails when node or the build is missing)."""
    modules = os.path.dirname(node_pkg.package())
    return ["/usr/bin/env", "NODE_PATH=" + modules, NODE, os.path.join(EXAMPLES, "node", example)]


def example_env(mnt):
    env = dict(os.environ)
    env["CAPSHM_DIR"] = mnt.path
    env["PATH"] = os.path.dirname(os.path.abspath(CAPSHM_CLI)) + os.pathsep + env.get("PATH", "")
    return env


def first_line(proc, timeout=20.0):
    """The creator's first stdout line (the region's name)."""
    buf = b""
    deadline = time.time() + timeout
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.time()
        assert left > 0, "no name from the creator within %.0fs (got %r)" % (timeout, buf)
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, "creator exited (%s) before printing a name: %s" % (
                proc.wait(5), proc.stderr.read().decode(errors="replace"))
            buf += chunk
    line, rest = buf.split(b"\n", 1)
    return line.decode(), rest


def share(mnt, creator, attacher):
    """Run `creator create` and `attacher attach NAME`; return both outputs."""
    env = example_env(mnt)
    proc = subprocess.Popen(creator + ["create"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        name, rest = first_line(proc)
        assert len(name) == 26, name
        assert os.path.exists(os.path.join(mnt.path, name))
        # The name goes on stdin: never on a command line.
        a = subprocess.run(attacher + ["attach"], input=name + "\n", capture_output=True,
                           text=True, env=env, timeout=30)
        assert a.returncode == 0, "attacher failed: %s" % a.stderr
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, "creator failed: %s" % err.decode(errors="replace")
        return name, a.stdout, (rest + out).decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            f.close()


WHO = {"c": "C", "python": "Python", "shell": "sh", "node": "Node", "go": "Go", "java": "Java",
       "ruby": "Ruby", "perl": "Perl"}
LANGS = ["c", "python", "shell", "node", "go", "java", "ruby", "perl"]


def check_exchange(creator_lang, attacher_lang, creator_pid_free_out, attach_out):
    # The attacher saw the creator's bytes, and the creator saw the reply.
    assert attach_out.startswith("message: hello from %s, pid " % WHO[creator_lang]), attach_out
    assert "reply: thanks from %s, pid " % WHO[attacher_lang] in creator_pid_free_out, creator_pid_free_out


@pytest.mark.parametrize("lang", LANGS)
def test_example(mnt, examples, lang):
    argv = examples(lang)
    name, attach_out, creator_out = share(mnt, argv, argv)
    check_exchange(lang, lang, creator_out, attach_out)
    if lang == "shell":
        # share.sh removes its region when it is done.
        assert not os.path.exists(os.path.join(mnt.path, name))


@pytest.mark.parametrize("creator,attacher", [
    ("c", "python"), ("python", "node"), ("node", "shell"), ("shell", "c"),
    ("python", "go"), ("go", "java"), ("java", "ruby"), ("ruby", "perl"), ("perl", "c"),
])
def test_examples_talk_to_each_other(mnt, examples, creator, attacher):
    name, attach_out, creator_out = share(mnt, examples(creator), examples(attacher))
    check_exchange(creator, attacher, creator_out, attach_out)


@pytest.mark.parametrize("lang", LANGS)
def test_example_usage(examples, lang):
    # (LD_LIBRARY_PATH: the C example links the build tree's libcapshm.)
    env = dict(os.environ, LD_LIBRARY_PATH=LIBDIR)
    r = subprocess.run(examples(lang) + ["bogus"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr


def test_example_attach_missing_region(mnt, c_share):
    env = example_env(mnt)
    r = subprocess.run(argv_for("c", c_share) + ["attach"], capture_output=True,
                       text=True, env=dict(env, CAPSHM_NAME="a" * 26), timeout=30)
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def test_c_example_makefile(tmp_path):
    """examples/c/Makefile builds with `pkg-config capshm` (pointed at the build tree)."""
    pc = tmp_path / "pc"
    pc.mkdir()
    (pc / "capshm.pc").write_text(
        "Name: capshm\nDescription: test\nVersion: 0\n"
        "Libs: -L%s -lcapshm\nCflags: -I%s\n" % (LIBDIR, INCDIR))
    work = tmp_path / "c"
    shutil.copytree(os.path.join(EXAMPLES, "c"), str(work))
    env = dict(os.environ, PKG_CONFIG_PATH=str(pc))
    r = subprocess.run(["make", "-C", str(work)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(str(work / "share"), os.X_OK)


def test_libcapshm_man_page_example(mnt, tmp_path):
    """The program in libcapshm(3) EXAMPLES compiles and runs."""
    with open(os.path.join(ROOT, "man/libcapshm.3")) as f:
        roff = f.read()
    code = roff.split("\n.EX\n", 1)[1].split("\n.EE\n", 1)[0]
    code = code.replace("\\-", "-").replace("\\e", "\\")
    src = tmp_path / "demo.c"
    src.write_text(code + "\n")
    exe = str(tmp_path / "demo")
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe, str(src)] + RUN_CFLAGS +
                       ["-lcapshm"] + SAN_CFLAGS,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe], input="\n", capture_output=True, text=True, env=example_env(mnt),
                       timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("read-write name: ") and len(lines[0].split()[-1]) == 26
    if mnt.datapath == "passthrough":
        assert lines[1].startswith("read-only name:  ")
    else:
        assert len(lines) == 1


def test_program_built_against_the_installed_library(mnt, tmp_path):
    """`make install` puts capshm.h, libcapshm and capshm.pc where pkg-config
    finds them, and a program built with `pkg-config --cflags --libs capshm`
    links and shares a region with another process."""
    build = BUILD
    dest = tmp_path / "dest"
    r = subprocess.run(["make", "-C", build, "install", "DESTDIR=" + str(dest)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(str(dest)) for f in fs if f == "capshm.pc"]
    assert len(pcs) == 1, pcs
    env = dict(os.environ, PKG_CONFIG_LIBDIR=os.path.dirname(pcs[0]),
               PKG_CONFIG_SYSROOT_DIR=str(dest))
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "capshm"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0 and "-lcapshm" in r.stdout, r.stderr
    exe = str(tmp_path / "share")
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(EXAMPLES, "c/share.c")] + SAN_CFLAGS + r.stdout.split(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    libdir = [a[2:] for a in subprocess.run(["pkg-config", "--libs-only-L", "capshm"],
                                            capture_output=True, text=True, env=env).stdout.split()]
    run_env = dict(example_env(mnt), LD_LIBRARY_PATH=":".join(libdir))
    creator = subprocess.Popen([exe, "create"], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                               text=True, env=run_env)
    try:
        name = creator.stdout.readline().strip()
        assert len(name) == 26, name
        r = subprocess.run([exe, "attach"], input=name + "\n", capture_output=True, text=True,
                           env=run_env, timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        creator.kill()
        creator.wait()


def test_node_pingpong(mnt):
    """A parent and its partner take 2 x 2000 turns through capshm.wait/notify."""
    r = subprocess.run(node_argv("pingpong.js") + ["2000"], capture_output=True, text=True,
                       env=example_env(mnt), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    name, result = r.stdout.splitlines()
    assert len(name) == 26
    assert result.startswith("4000 hits in "), result


def test_node_pingpong_partner_in_another_mount_namespace(mnt, tmp_path):
    """The partner runs as in a container: its own mount namespace, the
    capshm mount bound elsewhere and the original mountpoint gone, and the
    name in its environment."""
    env = example_env(mnt)
    creator = subprocess.Popen(node_argv("pingpong.js") + ["500", "--no-spawn"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        name, rest = first_line(creator)
        assert len(name) == 26
        bind = tmp_path / "container-view"
        bind.mkdir()
        script = ('mount --bind "$CAPSHM_DIR" "$BIND" && umount -l "$CAPSHM_DIR" && '
                  'CAPSHM_DIR="$BIND" exec "$@"')
        partner = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
                                 + node_argv("pingpong.js"),
                                 env=dict(env, BIND=str(bind), CAPSHM_NAME=name),
                                 capture_output=True, text=True, timeout=60)
        assert partner.returncode == 0, partner.stderr
        out, err = creator.communicate(timeout=60)
        assert creator.returncode == 0, err.decode(errors="replace")
        assert (rest + out).decode().strip().startswith("1000 hits in ")
    finally:
        if creator.poll() is None:
            os.killpg(creator.pid, 9)
            creator.wait()
        for f in (creator.stdout, creator.stderr):
            f.close()


def test_node_ring(mnt):
    """20,000 items through the 64-slot ring to 3 consumer processes, each
    exactly once."""
    r = subprocess.run(node_argv("ring.js") + ["20000", "3"], capture_output=True, text=True,
                       env=example_env(mnt), timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "20000 items through 64 slots to 3 consumers" in r.stdout and "sum ok" in r.stdout, r.stdout
