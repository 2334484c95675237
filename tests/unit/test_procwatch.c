/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/procwatch.c (who holds a region, for display),
 * against real processes and a real tmpfs file in /dev/shm: procwatch
 * reads /proc, so fakes would prove nothing. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/procwatch.h"
#include "suites.h"

/* An unlinked file in /dev/shm, open for the length of one test. */
static char shm_path[64];
static int shm_fd = -1;
static struct stat shm_st;

static void
setup_shm(void)
{
    g_strlcpy(shm_path, "/dev/shm/capshm-unit-XXXXXX", sizeof shm_path);
    shm_fd = mkstemp(shm_path);
    ck_assert_msg(shm_fd >= 0, "mkstemp in /dev/shm: %s", g_strerror(errno));
    /* Unlinked at once so nothing is left behind even if a test fails; the
     * open file keeps its device and inode, which is all we need. */
    unlink(shm_path);
    ck_assert_int_eq(ftruncate(shm_fd, 4096), 0);
    ck_assert_int_eq(fstat(shm_fd, &shm_st), 0);
}

static void
teardown_shm(void)
{
    if (shm_fd >= 0)
        close(shm_fd);
    shm_fd = -1;
}

/* A pid that names no process: a child that has been reaped. */
static pid_t
dead_pid(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return pid;
}

/* Fork a child that maps the shm file shared and closes its fd (with
 * !map: only keeps the fd open), tells us through a pipe, and waits to be
 * killed. */
static pid_t
spawn_holder(bool map)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Die with the test even if it fails before killing us. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        char c = 'k';
        if (map) {
            void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
            if (m == MAP_FAILED)
                c = 'f';
            close(shm_fd); /* the mapping alone must be visible */
        }
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    char c = 0;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    close(p[0]);
    ck_assert_int_eq(c, 'k');
    return pid;
}

static pid_t
spawn_mapper(void)
{
    return spawn_holder(true);
}

static void
kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}

/* --- maps_node -------------------------------------------------------------- */

START_TEST(test_maps_node_self)
{
    pid_t me = getpid();
    dev_t dev = shm_st.st_dev;
    uint64_t ino = shm_st.st_ino;
    /* Open but not mapped: no. */
    ck_assert(!procwatch_maps_node(me, dev, ino, 0));

    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    ck_assert(procwatch_maps_node(me, dev, ino, 0));
    ck_assert(procwatch_maps_node(me, dev, ino + 1000000, ino)); /* as the second node */
    ck_assert(!procwatch_maps_node(me, dev, ino + 1000000, 0));
    ck_assert(!procwatch_maps_node(me, makedev(major(dev) + 1, minor(dev)), ino, 0));
    ck_assert(!procwatch_maps_node(me, makedev(major(dev), minor(dev) + 1), ino, 0));

    /* Still mapped after the fd is gone. */
    int fd2 = dup(shm_fd);
    close(shm_fd);
    shm_fd = -1;
    ck_assert(procwatch_maps_node(me, dev, ino, 0));
    shm_fd = fd2;

    ck_assert_int_eq(munmap(m, 4096), 0);
    ck_assert(!procwatch_maps_node(me, dev, ino, 0));

    /* A read-only private mapping counts too. */
    m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, shm_fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    ck_assert(procwatch_maps_node(me, dev, ino, 0));
    ck_assert_int_eq(munmap(m, 4096), 0);
    ck_assert(!procwatch_maps_node(me, dev, ino, 0));
}
END_TEST

START_TEST(test_maps_node_other_process)
{
    pid_t child = spawn_mapper();
    ck_assert(procwatch_maps_node(child, shm_st.st_dev, shm_st.st_ino, 0));
    kill_and_reap(child);
    ck_assert(!procwatch_maps_node(child, shm_st.st_dev, shm_st.st_ino, 0));
    ck_assert(!procwatch_maps_node(dead_pid(), shm_st.st_dev, shm_st.st_ino, 0));
    ck_assert(!procwatch_maps_node(0x7fffffff, shm_st.st_dev, shm_st.st_ino, 0));
}
END_TEST

/* --- mount_dev ---------------------------------------------------------------- */

START_TEST(test_mount_dev)
{
    struct stat st;
    ck_assert_int_eq(stat("/dev/shm", &st), 0);
    dev_t dev = 0;
    ck_assert_int_eq(procwatch_mount_dev("/dev/shm", &dev), 0);
    ck_assert_msg(dev == st.st_dev, "mountinfo says %u:%u, stat says %u:%u",
                  major(dev), minor(dev), major(st.st_dev), minor(st.st_dev));
    ck_assert_int_eq(procwatch_mount_dev("/dev/shm", &dev), 0);
    ck_assert(dev == shm_st.st_dev);

    dev_t untouched = makedev(12, 34);
    dev = untouched;
    ck_assert_int_eq(procwatch_mount_dev("/no/such/mount/point", &dev), -ENOENT);
    ck_assert_int_eq(procwatch_mount_dev("/dev/sh", &dev), -ENOENT);
    ck_assert(dev == untouched);
}
END_TEST

/* --- holders ------------------------------------------------------------------ */

static bool
has_pid(const GArray *pids, pid_t pid)
{
    for (guint i = 0; i < pids->len; i++)
        if (g_array_index(pids, pid_t, i) == pid)
            return true;
    return false;
}

#define HOLDERS_BUDGET ((int64_t)G_USEC_PER_SEC)

/* The holders of the shm file (as @ino, or as @ino2 with an unrelated
 * @ino); asserts every process was looked at. */
static GArray *
holders(dev_t dev, uint64_t ino, uint64_t ino2)
{
    bool complete = false;
    GArray *pids = procwatch_holders(dev, ino, ino2, HOLDERS_BUDGET, &complete);
    ck_assert_ptr_nonnull(pids);
    ck_assert_msg(complete, "procwatch_holders did not look at every process in 1 s");
    return pids;
}

START_TEST(test_holders)
{
    dev_t dev = shm_st.st_dev;
    uint64_t ino = shm_st.st_ino, other = shm_st.st_ino + 1000000;

    /* We have it open, but the caller (the daemon) never lists itself;
     * nobody else holds it yet. */
    GArray *pids = holders(dev, ino, 0);
    ck_assert_uint_eq(pids->len, 0);
    g_array_free(pids, TRUE);

    pid_t mapper = spawn_holder(true);  /* mapping only, no fd */
    pid_t opener = spawn_holder(false); /* fd only, no mapping */
    /* Mapped here too, after the forks (the children must not inherit it). */
    void *self_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    ck_assert_ptr_ne(self_map, MAP_FAILED);
    ck_assert(procwatch_maps_node(getpid(), dev, ino, 0));
    ck_assert(procwatch_maps_node(mapper, dev, ino, 0));
    ck_assert(!procwatch_maps_node(opener, dev, ino, 0));

    pids = holders(dev, ino, 0);
    ck_assert_uint_eq(pids->len, 2);
    ck_assert(has_pid(pids, mapper));
    ck_assert(has_pid(pids, opener));
    ck_assert(!has_pid(pids, getpid()));
    g_array_free(pids, TRUE);

    /* As the second node (the read-only name's). */
    pids = holders(dev, other, ino);
    ck_assert_uint_eq(pids->len, 2);
    ck_assert(has_pid(pids, mapper) && has_pid(pids, opener));
    g_array_free(pids, TRUE);

    /* Not a node they hold, or not that filesystem. */
    pids = holders(dev, other, 0);
    ck_assert_uint_eq(pids->len, 0);
    g_array_free(pids, TRUE);
    pids = holders(makedev(major(dev) + 1, minor(dev)), ino, 0);
    ck_assert_uint_eq(pids->len, 0);
    g_array_free(pids, TRUE);

    /* Out of time before the first process: incomplete, and says so. */
    bool complete = true;
    pids = procwatch_holders(dev, ino, 0, -1, &complete);
    ck_assert(!complete);
    ck_assert_uint_le(pids->len, 2);
    g_array_free(pids, TRUE);

    kill_and_reap(mapper);
    pids = holders(dev, ino, 0);
    ck_assert_uint_eq(pids->len, 1);
    ck_assert_int_eq(g_array_index(pids, pid_t, 0), opener);
    g_array_free(pids, TRUE);
    kill_and_reap(opener);
    pids = holders(dev, ino, 0);
    ck_assert_uint_eq(pids->len, 0);
    g_array_free(pids, TRUE);
    ck_assert_int_eq(munmap(self_map, 4096), 0);
}
END_TEST

static void
setup_shm_text_maps(void)
{
    setup_shm();
    procwatch_use_text_maps(true);
}

static void
teardown_shm_text_maps(void)
{
    procwatch_use_text_maps(false);
    teardown_shm();
}

Suite *
procwatch_suite(void)
{
    Suite *s = suite_create("procwatch");

    TCase *tc = tcase_create("maps");
    tcase_add_checked_fixture(tc, setup_shm, teardown_shm);
    tcase_add_test(tc, test_maps_node_self);
    tcase_add_test(tc, test_maps_node_other_process);
    tcase_add_test(tc, test_holders);
    tcase_add_test(tc, test_mount_dev);
    suite_add_tcase(s, tc);

    /* The same answers from the text of /proc/PID/maps (kernels before
     * 6.11 have no PROCMAP_QUERY). */
    tc = tcase_create("maps-text");
    tcase_add_checked_fixture(tc, setup_shm_text_maps, teardown_shm_text_maps);
    tcase_add_test(tc, test_maps_node_self);
    tcase_add_test(tc, test_maps_node_other_process);
    tcase_add_test(tc, test_holders);
    suite_add_tcase(s, tc);
    return s;
}
