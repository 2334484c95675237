# SPDX-License-Identifier: MIT
"""names=any as /dev/shm: real, unmodified programs on a capshm mount bound
over /dev/shm in a private mount namespace, on both data paths (issue 15).

Python multiprocessing (semaphores are glibc sem_open: create sem.XXXXXX,
link() it to sem.NAME), a C program with named POSIX semaphores across two
processes, PostgreSQL 15 with dynamic_shared_memory_type=posix, and POSIX
lifetime: a region lives until it is unlinked (lifetime=unlink, the default
with names=any), so nothing a program did not unlink ever vanishes.
Also: names=any behaves like tmpfs for links, renames and directories (the
same operations are run on a tmpfs and on capshm and must answer alike)."""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
import time

import pytest

from capshm_test import POSIX_HELPER, errno_name

PG_BIN = "/usr/lib/postgresql/15/bin"
DEPS_HINT = "install it with scripts/bootstrap-deps (run as root)"


def in_shm_ns(mnt_path, script, timeout=60, env=None):
    """Run a shell script in a new mount namespace with mnt_path bound over
    /dev/shm; returns CompletedProcess (text)."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-euc",
         "mount --bind %s /dev/shm\n%s" % (mnt_path, script)],
        capture_output=True, text=True, timeout=timeout, env=env)


def shq(s):
    return "'" + s.replace("'", "'\\''") + "'"


@pytest.fixture
def anymnt(mount_factory, datapath):
    """names=any with its default lifetime (unlink), a short linger."""
    return mount_factory(datapath, "names=any", "linger=1")


def wait_empty(m, timeout=10):
    """Everything unlinked and unheld is gone: 0 regions, 0 bytes."""
    m.wait_for(lambda: (lambda s: s["regions"] == 0 and s["bytes"] == 0)(m.stats()),
               timeout=timeout, what="0 regions and 0 bytes")


# --- Python multiprocessing --------------------------------------------------------

MP_PROG = textwrap.dedent('''
    import multiprocessing as mp
    from multiprocessing import shared_memory

    def square(x):
        return x * x

    def add(v, n):
        for _ in range(n):
            with v.get_lock():
                v.value += 1

    def locked_add(v, lock, n):
        for _ in range(n):
            with lock:
                v.value += 1

    def party(ev, barrier, q, i):
        assert ev.wait(20)
        barrier.wait(20)
        q.put(i)

    def attach(name):
        s = shared_memory.SharedMemory(name=name)
        assert bytes(s.buf[:5]) == b"hello"
        s.buf[5:10] = b"world"
        s.close()

    if __name__ == "__main__":
        with mp.Pool(2) as pool:
            assert pool.map(square, range(100)) == [x * x for x in range(100)]
        v = mp.Value("i", 0, lock=True)
        ps = [mp.Process(target=add, args=(v, 300)) for _ in range(3)]
        [p.start() for p in ps]; [p.join() for p in ps]
        assert v.value == 900, v.value
        lock, raw = mp.Lock(), mp.RawValue("i", 0)
        ps = [mp.Process(target=locked_add, args=(raw, lock, 300)) for _ in range(2)]
        [p.start() for p in ps]; [p.join() for p in ps]
        assert raw.value == 600, raw.value
        ev, barrier, q = mp.Event(), mp.Barrier(3), mp.Queue()
        ps = [mp.Process(target=party, args=(ev, barrier, q, i)) for i in range(3)]
        [p.start() for p in ps]
        ev.set()
        got = sorted(q.get(timeout=20) for _ in ps)
        [p.join() for p in ps]
        assert got == [0, 1, 2], got
        shm = shared_memory.SharedMemory(create=True, size=8192)
        shm.buf[:5] = b"hello"
        p = mp.Process(target=attach, args=(shm.name,)); p.start(); p.join()
        assert p.exitcode == 0
        assert bytes(shm.buf[:10]) == b"helloworld"
        shm.close(); shm.unlink()
        print("multiprocessing ok")
''')


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_python_multiprocessing_unmodified(anymnt, start, tmp_path):
    prog = tmp_path / "mp_prog.py"
    prog.write_text(MP_PROG.replace('if __name__ == "__main__":',
                                    'if __name__ == "__main__":\n    mp.set_start_method(%r)' % start))
    r = in_shm_ns(anymnt.path, "cd /tmp && /usr/bin/python3 %s" % shq(str(prog)), timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "multiprocessing ok"
    # Every semaphore and segment was unlinked by Python: nothing is left.
    assert [n for n in os.listdir(anymnt.path) if not n.startswith(".")] == []
    wait_empty(anymnt)


# --- named POSIX semaphores in C ---------------------------------------------------

SEM_C = r'''
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 2000

static int
wait_sem(sem_t *s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 20;
    while (sem_timedwait(s, &t) < 0) {
        if (errno != EINTR) {
            perror("sem_timedwait");
            return -1;
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        /* Another program: it knows only the names. */
        sem_t *ping = sem_open("/capshm-ping", 0), *pong = sem_open("/capshm-pong", 0);
        if (ping == SEM_FAILED || pong == SEM_FAILED) {
            perror("child sem_open");
            return 2;
        }
        for (int i = 0; i < ROUNDS; i++) {
            if (wait_sem(ping) < 0 || sem_post(pong) < 0)
                return 3;
        }
        return 0;
    }
    sem_unlink("/capshm-ping");
    sem_unlink("/capshm-pong");
    sem_t *ping = sem_open("/capshm-ping", O_CREAT | O_EXCL, 0600, 0);
    sem_t *pong = sem_open("/capshm-pong", O_CREAT | O_EXCL, 0600, 0);
    if (ping == SEM_FAILED || pong == SEM_FAILED) {
        perror("sem_open O_CREAT");
        return 4;
    }
    /* O_EXCL again: EEXIST, as on tmpfs. */
    if (sem_open("/capshm-ping", O_CREAT | O_EXCL, 0600, 0) != SEM_FAILED || errno != EEXIST) {
        fprintf(stderr, "second O_EXCL sem_open did not fail with EEXIST\n");
        return 5;
    }
    struct stat st;
    if (stat("/dev/shm/sem.capshm-ping", &st) < 0 || st.st_nlink != 1) {
        perror("stat sem.capshm-ping");
        return 6;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < ROUNDS; i++) {
        if (sem_post(ping) < 0 || wait_sem(pong) < 0)
            return 7;
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child failed: %d\n", status);
        return 8;
    }
    int v = -1;
    sem_getvalue(ping, &v);
    sem_close(ping);
    sem_close(pong);
    if (sem_unlink("/capshm-ping") < 0 || sem_unlink("/capshm-pong") < 0) {
        perror("sem_unlink");
        return 9;
    }
    if (sem_open("/capshm-ping", 0) != SEM_FAILED || errno != ENOENT) {
        fprintf(stderr, "sem_open after sem_unlink did not fail with ENOENT\n");
        return 10;
    }
    printf("semaphores ok %d\n", v);
    return 0;
}
'''


@pytest.mark.timeout(90)
def test_named_semaphores_c(anymnt, tmp_path):
    src = tmp_path / "sem.c"
    src.write_text(SEM_C)
    exe = tmp_path / "sem"
    cc = subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(src), "-pthread"],
                        capture_output=True, text=True)
    assert cc.returncode == 0, "gcc (%s): %s" % (DEPS_HINT, cc.stderr)
    r = in_shm_ns(anymnt.path, shq(str(exe)), timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.strip() == "semaphores ok 0"
    wait_empty(anymnt)


# --- POSIX lifetime ------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_posix_region_outlives_its_creator(anymnt):
    """A region created by a process that exits is still there, bytes and
    all, 2 x linger later, for a process that opens it by name; it goes
    when it is unlinked."""
    r = in_shm_ns(anymnt.path, "%s create /kept 4096 kept-bytes" % POSIX_HELPER)
    assert r.returncode == 0, r.stderr
    time.sleep(2 * 1 + 0.5)   # 2 x linger, nobody holds it
    assert anymnt.stats()["regions"] == 1
    r = in_shm_ns(anymnt.path, "%s read /kept 10" % POSIX_HELPER)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "kept-bytes"
    assert os.getxattr(anymnt.p("kept"), "user.capshm.state") == b"live"
    r = in_shm_ns(anymnt.path, "%s unlink /kept" % POSIX_HELPER)
    assert r.returncode == 0, r.stderr
    wait_empty(anymnt)


@pytest.mark.timeout(60)
def test_lifetime_holders_reclaims_abandoned_posix_regions(mount_factory, datapath):
    """lifetime=holders (opt-in with names=any): a region nobody holds goes
    after linger, unlinked or not."""
    m = mount_factory(datapath, "names=any", "linger=1", "lifetime=holders")
    r = in_shm_ns(m.path, "%s create /left 4096 x" % POSIX_HELPER)
    assert r.returncode == 0, r.stderr
    m.wait_for(lambda: not os.path.exists(m.p("left")), timeout=6,
               what="the abandoned region to be reclaimed")
    wait_empty(m)


# --- PostgreSQL 15 ------------------------------------------------------------------

def _pg_cleanup(workdir):
    """Stop whatever the cluster left running (pg_ctl immediate, then SIGKILL
    by the postmaster pid) and remove the directory."""
    data = os.path.join(workdir, "data")
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        try:
            with open(os.path.join(data, "postmaster.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            pid = 0
        subprocess.run(["runuser", "-u", "postgres", "--", PG_BIN + "/pg_ctl", "-D", data,
                        "-m", "immediate", "-w", "-t", "10", "stop"],
                       capture_output=True, timeout=30)
        if pid > 0:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    shutil.rmtree(workdir, ignore_errors=True)


PG_SCRIPT = r'''
W=%(work)s
PG=%(bin)s
as_pg() { runuser -u postgres -- "$@"; }
psql_() { as_pg /usr/bin/env PGHOST="$W" PGPORT=5432 "$PG/psql" -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
trap 'as_pg "$PG/pg_ctl" -D "$W/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true' EXIT
as_pg "$PG/initdb" -D "$W/data" -A trust -U postgres --no-sync >"$W/initdb.log" 2>&1 || { cat "$W/initdb.log"; exit 11; }
cat >>"$W/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$W'
dynamic_shared_memory_type = posix
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_worker_processes = 8
max_parallel_workers = 4
max_parallel_workers_per_gather = 2
EOF
as_pg "$PG/pg_ctl" -D "$W/data" -l "$W/server.log" -w -t 60 start >/dev/null || { cat "$W/server.log"; exit 12; }
echo "started"
# Parallel query, forced, equals serial.
psql_ -c "CREATE TABLE big AS SELECT g, g %% 97 AS k FROM generate_series(1, 300000) g"
Q="SELECT count(*), sum(g), sum(k * g) FROM big WHERE k <> 3"
P=$(psql_ -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
    -c "SET min_parallel_table_scan_size = 0" -c "SET force_parallel_mode = on" -c "$Q")
PLAN=$(psql_ -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
    -c "SET min_parallel_table_scan_size = 0" -c "SET force_parallel_mode = on" \
    -c "EXPLAIN (ANALYZE, COSTS OFF) $Q")
S=$(psql_ -c "SET max_parallel_workers_per_gather = 0" -c "$Q")
echo "parallel=$P"
echo "serial=$S"
echo "$PLAN" | grep -E "Workers Launched: [1-9]" >/dev/null || { echo "no parallel workers: $PLAN"; exit 13; }
# A session creates 4,000 tables with a row each and exits.
psql_ -c "DO \$\$ BEGIN FOR i IN 1..4000 LOOP EXECUTE format('CREATE TABLE t%%s (a int)', i); EXECUTE format('INSERT INTO t%%s VALUES (1)', i); COMMIT; END LOOP; END \$\$"
echo "tables made"
sleep %(pause)s
# Past linger: statistics readable, a new connection works.
echo "stat_tables=$(psql_ -c "SELECT count(*) FROM pg_stat_user_tables")"
echo "inserts=$(psql_ -c "SELECT sum(n_tup_ins) FROM pg_stat_user_tables WHERE relname LIKE 't%%'")"
echo "select=$(psql_ -c "SELECT 1")"
as_pg "$PG/pg_ctl" -D "$W/data" -m fast -w -t 60 stop >/dev/null || { cat "$W/server.log"; exit 14; }
trap - EXIT
test -f "$W/data/pg_stat/pgstat.stat" && echo "stats file written"
'''


@pytest.mark.timeout(240)
def test_postgresql_posix_dsm(anymnt):
    missing = [p for p in ("initdb", "pg_ctl", "psql") if not os.access(os.path.join(PG_BIN, p), os.X_OK)]
    assert not missing, "PostgreSQL 15 is not installed (%s missing): %s" % (missing, DEPS_HINT)
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no user postgres (package postgresql-15): " + DEPS_HINT)
    work = tempfile.mkdtemp(prefix="capshm-pg-")
    try:
        os.chmod(work, 0o755)
        shutil.chown(work, "postgres", "postgres")
        script = PG_SCRIPT % {"work": shq(work), "bin": shq(PG_BIN), "pause": "3"}
        r = in_shm_ns(anymnt.path, script, timeout=200)
        try:
            with open(os.path.join(work, "server.log")) as f:
                log = f.read()
        except OSError:
            log = ""
        out = r.stdout
        assert r.returncode == 0, "rc=%s\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s" % (
            r.returncode, out, r.stderr[-3000:], log[-4000:])
        vals = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert vals["parallel"] == vals["serial"], out
        assert int(vals["stat_tables"]) >= 4000, out
        assert int(vals["inserts"]) == 4000, out
        assert vals["select"] == "1", out
        assert "stats file written" in out, out
        assert "could not open shared memory segment" not in log, log[-4000:]
        # PostgreSQL unlinked every segment at its clean shutdown.
        wait_empty(anymnt)
    finally:
        _pg_cleanup(work)


# --- like tmpfs ------------------------------------------------------------------------

# The same operations on a tmpfs and on capshm (names=any): every answer must
# be the same.  All of it runs in a subdirectory "w", so that the root's
# control files are not in the listings.
TMPFS_OPS = r'''
import ctypes, errno, json, mmap, os, stat, sys
root = sys.argv[1]
os.chdir(root)
libc = ctypes.CDLL(None, use_errno=True)
out = []
def rec(what, fn):
    try:
        v = fn()
        out.append([what, "OK" if v is None else v])
    except OSError as e:
        out.append([what, errno.errorcode[e.errno]])
def renameat2(a, b, flags):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def write(p, data):
    with open(p, "wb") as f:
        f.write(data)
def read(p):
    with open(p, "rb") as f:
        return f.read().decode()
def ls(p="."):
    return sorted((e.name, e.is_dir()) for e in os.scandir(p))
rec("mkdir w", lambda: os.mkdir("w", 0o755))
os.chdir("w")
rec("create a", lambda: write("a", b"AAAA"))
rec("link a b", lambda: os.link("a", "b"))
rec("nlink", lambda: [os.stat("a").st_nlink, os.stat("b").st_nlink,
                      os.stat("a").st_ino == os.stat("b").st_ino])
rec("link a b again", lambda: os.link("a", "b"))
rec("link missing", lambda: os.link("missing", "c"))
rec("unlink a", lambda: os.unlink("a"))
rec("read b", lambda: read("b"))
rec("nlink b", lambda: os.stat("b").st_nlink)
rec("rename b c", lambda: os.rename("b", "c"))
rec("ls", ls)
rec("rename c c", lambda: os.rename("c", "c"))
rec("link c d", lambda: os.link("c", "d"))
rec("rename c d (one file)", lambda: os.rename("c", "d"))
rec("ls 2", ls)
rec("unlink d", lambda: os.unlink("d"))
rec("create x y", lambda: (write("x", b"X"), write("y", b"Y")) and None)
rec("noreplace", lambda: renameat2("x", "y", 1))
rec("exchange", lambda: renameat2("x", "y", 2))
rec("after exchange", lambda: [read("x"), read("y")])
rec("exchange missing", lambda: renameat2("x", "nope", 2))
rec("noreplace new", lambda: renameat2("x", "z", 1))
rec("replace", lambda: os.rename("z", "y"))
rec("after replace", lambda: [read("y"), os.path.exists("z"), os.stat("y").st_nlink])
rec("mkdir d1/d2", lambda: (os.mkdir("d1"), os.mkdir("d1/d2")) and None)
rec("nested file", lambda: write("d1/d2/f", b"deep"))
rec("read nested", lambda: read("d1/d2/f"))
rec("nlink d1", lambda: os.stat("d1").st_nlink)
rec("mkdir exists", lambda: os.mkdir("d1"))
rec("rmdir nonempty", lambda: os.rmdir("d1"))
rec("rename into itself", lambda: os.rename("d1", "d1/d2/x"))
rec("file over dir", lambda: os.rename("y", "d1"))
rec("dir over file", lambda: os.rename("d1", "y"))
rec("unlink dir", lambda: os.unlink("d1"))
rec("rmdir file", lambda: os.rmdir("y"))
rec("mkdir e", lambda: os.mkdir("e"))
rec("dir over empty dir", lambda: os.rename("d1", "e"))
rec("ls 3", ls)
rec("ls e/d2", lambda: ls("e/d2"))
rec("mkdir g/h", lambda: (os.mkdir("g"), os.mkdir("g/h")) and None)
rec("dir over nonempty dir", lambda: os.rename("e", "g"))
rec("move file across", lambda: os.rename("e/d2/f", "g/h/f"))
rec("exchange dir and file", lambda: renameat2("g", "y", 2))
rec("ls 4", ls)
rec("dot name", lambda: write("e/.dot", b"."))
rec("excl", lambda: os.close(os.open("x", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)))
rec("excl in dir", lambda: os.close(os.open("e/n", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)))
def unlink_mapped():
    fd = os.open("m", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 4096)
    mm = mmap.mmap(fd, 4096)
    os.unlink("m")
    mm[:6] = b"mapped"
    r = [os.fstat(fd).st_nlink, os.pread(fd, 6, 0).decode(), os.path.exists("m")]
    mm.close()
    os.close(fd)
    return r
rec("unlink mapped", unlink_mapped)
rec("mknod regular", lambda: os.mknod("r", stat.S_IFREG | 0o600))
rec("mknod stat", lambda: [stat.S_ISREG(os.stat("r").st_mode), os.stat("r").st_size])
rec("chmod dir", lambda: (os.chmod("e", 0o700), oct(os.stat("e").st_mode))[1])
rec("statvfs", lambda: (lambda v: [v.f_bsize > 0, v.f_blocks > 0, v.f_namemax])(os.statvfs(".")))
def cleanup():
    for dirpath, dirs, files in os.walk(".", topdown=False):
        for f in files:
            os.unlink(os.path.join(dirpath, f))
        for d in dirs:
            os.rmdir(os.path.join(dirpath, d))
rec("cleanup", cleanup)
rec("ls empty", ls)
os.chdir("..")
rec("rmdir w", lambda: os.rmdir("w"))
print(json.dumps(out))
'''


def _run_ops(path):
    r = subprocess.run(["/usr/bin/python3", "-c", TMPFS_OPS, path], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json
    return json.loads(r.stdout)


@pytest.mark.timeout(90)
def test_names_any_answers_like_tmpfs(anymnt, tmp_path):
    tdir = tmp_path / "tmpfs"
    tdir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16M,mode=1777", "capshm-ref", str(tdir)],
                   check=True)
    try:
        want = _run_ops(str(tdir))
    finally:
        subprocess.run(["umount", "-l", str(tdir)])
    got = _run_ops(anymnt.path)
    diffs = [(w, g) for w, g in zip(want, got) if w != g]
    assert not diffs and len(want) == len(got), "tmpfs vs capshm: %s" % diffs
    wait_empty(anymnt)


def test_names_any_symlink_fifo_device_refused(anymnt):
    """Documented differences from tmpfs: no symlinks, FIFOs, sockets or
    device nodes (EPERM)."""
    assert errno_name(lambda: os.symlink("x", anymnt.p("l"))) == "EPERM"
    assert errno_name(lambda: os.mkfifo(anymnt.p("f"))) == "EPERM"
    assert errno_name(lambda: os.mknod(anymnt.p("c"), 0o20600, os.makedev(1, 3))) == "EPERM"
    assert sorted(os.listdir(anymnt.path)) == [".mine", ".new", ".stats"]


@pytest.mark.timeout(60)
def test_names_any_link_race_one_winner(anymnt):
    """sem_open's race: many processes link their temporary file to one
    name at once; exactly one wins, the others get EEXIST."""
    code = r'''
import os, sys
d, i = sys.argv[1], sys.argv[2]
tmp = os.path.join(d, "sem.tmp" + i)
fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, i.encode())
try:
    os.link(tmp, os.path.join(d, "sem.race"))
    print("won")
except FileExistsError:
    print("EEXIST")
os.unlink(tmp)
'''
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", code, anymnt.path, str(i)],
                              stdout=subprocess.PIPE, text=True) for i in range(8)]
    outs = [p.communicate(timeout=30)[0].strip() for p in procs]
    assert sorted(outs) == ["EEXIST"] * 7 + ["won"], outs
    assert os.stat(anymnt.p("sem.race")).st_nlink == 1
    assert sorted(os.listdir(anymnt.path)) == [".mine", ".new", ".stats", "sem.race"]
    os.unlink(anymnt.p("sem.race"))
    wait_empty(anymnt)
