/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/procwatch.c, against real processes and a real
 * tmpfs file in /dev/shm (procwatch reads /proc, so fakes would prove
 * nothing). */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
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

/* Fork a child that maps the shm file shared, closes its fd, tells us
 * through a pipe, and waits to be killed. */
static pid_t
spawn_mapper(void)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Die with the test even if it fails before killing us. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
        char c = m == MAP_FAILED ? 'f' : 'k';
        close(shm_fd); /* the mapping alone must be visible */
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

static void
kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}

/* --- tgid_of ---------------------------------------------------------------- */

START_TEST(test_tgid_of_self)
{
    ck_assert_int_eq(procwatch_tgid_of(gettid()), getpid());
    ck_assert_int_eq(procwatch_tgid_of(getpid()), getpid());
    ck_assert_int_eq(procwatch_tgid_of(getppid()), getppid());
}
END_TEST

typedef struct {
    pid_t tid, tgid;
} ThreadResult;

static void *
thread_main(void *arg)
{
    ThreadResult *res = arg;
    res->tid = gettid();
    res->tgid = procwatch_tgid_of(res->tid);
    return NULL;
}

START_TEST(test_tgid_of_thread)
{
    ThreadResult res = { 0, 0 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, thread_main, &res), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_gt(res.tid, 0);
    ck_assert_int_ne(res.tid, getpid());   /* really another thread */
    ck_assert_int_eq(res.tgid, getpid());  /* that maps to our process */
}
END_TEST

START_TEST(test_tgid_of_gone)
{
    ck_assert_int_eq(procwatch_tgid_of(dead_pid()), 0);
    ck_assert_int_eq(procwatch_tgid_of(0), 0);
    ck_assert_int_eq(procwatch_tgid_of(-1), 0);
    ck_assert_int_eq(procwatch_tgid_of(0x7fffffff), 0);
}
END_TEST

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

/* --- the ProcWatch object --------------------------------------------------------- */

typedef struct {
    pid_t exited[8];
    unsigned n;
} Exits;

static void
on_exit_cb(pid_t tgid, void *data)
{
    Exits *e = data;
    if (e->n < G_N_ELEMENTS(e->exited))
        e->exited[e->n] = tgid;
    e->n++;
}

/* Run the default main context until @e has @n exits or 3 s pass. */
static void
wait_exits(Exits *e, unsigned n)
{
    gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
    while (e->n < n && g_get_monotonic_time() < deadline) {
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(1000);
    }
}

START_TEST(test_watch_refcount)
{
    Exits e = { .n = 0 };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_cb, &e);
    StoreProcOps ops = procwatch_ops(pw);
    ck_assert_ptr_eq(ops.data, pw);
    ck_assert_ptr_nonnull(ops.watch);
    ck_assert_ptr_nonnull(ops.unwatch);

    pid_t me = getpid();
    ops.watch(ops.data, me);
    ops.watch(ops.data, me);
    ck_assert_uint_eq(procwatch_count(pw), 1);
    ops.unwatch(ops.data, me);
    ck_assert_uint_eq(procwatch_count(pw), 1); /* one watch still wanted */
    ops.unwatch(ops.data, me);
    ck_assert_uint_eq(procwatch_count(pw), 0);
    ops.unwatch(ops.data, me); /* extra unwatch: harmless */
    ck_assert_uint_eq(procwatch_count(pw), 0);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    ck_assert_uint_eq(e.n, 0); /* we did not exit */
    procwatch_free(pw);
}
END_TEST

START_TEST(test_watch_fires_on_exit)
{
    Exits e = { .n = 0 };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_cb, &e);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t child = spawn_mapper();
    ops.watch(ops.data, child);
    ck_assert_uint_eq(procwatch_count(pw), 1);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    ck_assert_uint_eq(e.n, 0); /* alive: no report */

    kill_and_reap(child);
    wait_exits(&e, 1);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_int_eq(e.exited[0], child);
    ck_assert_uint_eq(procwatch_count(pw), 0);
    ops.unwatch(ops.data, child); /* the store's unwatch after the exit */
    ck_assert_uint_eq(procwatch_count(pw), 0);
    procwatch_free(pw);
}
END_TEST

START_TEST(test_watch_already_gone)
{
    Exits e = { .n = 0 };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_cb, &e);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t gone = dead_pid();
    ops.watch(ops.data, gone);
    ck_assert_uint_eq(e.n, 0); /* reported from the main loop, not re-entrantly */
    wait_exits(&e, 1);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_int_eq(e.exited[0], gone);
    ck_assert_uint_eq(procwatch_count(pw), 0);
    procwatch_free(pw);
}
END_TEST

START_TEST(test_free_with_watches)
{
    Exits e = { .n = 0 };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_cb, &e);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t child = spawn_mapper();
    ops.watch(ops.data, child);
    ops.watch(ops.data, dead_pid());
    ck_assert_uint_eq(procwatch_count(pw), 2);
    procwatch_free(pw); /* removes its sources: nothing fires later */
    kill_and_reap(child);
    for (int i = 0; i < 50; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    ck_assert_uint_eq(e.n, 0);
}
END_TEST

/* With a lock set, the exit callback runs under it. */
typedef struct {
    pthread_mutex_t *lock;
    unsigned calls, held;
} LockedExits;

static void
on_exit_locked(pid_t tgid, void *data)
{
    (void)tgid;
    LockedExits *e = data;
    e->calls++;
    if (pthread_mutex_trylock(e->lock) != 0)
        e->held++; /* taken (by the dispatching thread, i.e. us): as promised */
    else
        pthread_mutex_unlock(e->lock);
}

START_TEST(test_exit_callback_runs_under_the_lock)
{
    pthread_mutex_t lock;
    pthread_mutex_init(&lock, NULL);
    LockedExits e = { .lock = &lock };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_locked, &e);
    procwatch_set_lock(pw, &lock);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t child = spawn_mapper();
    pthread_mutex_lock(&lock); /* the store calls procwatch under the lock */
    ops.watch(ops.data, child);
    pthread_mutex_unlock(&lock);
    kill_and_reap(child);
    gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
    while (e.calls == 0 && g_get_monotonic_time() < deadline)
        if (!g_main_context_iteration(NULL, FALSE))
            g_usleep(1000);
    ck_assert_uint_eq(e.calls, 1);
    ck_assert_uint_eq(e.held, 1);
    ck_assert_uint_eq(procwatch_count(pw), 0);
    procwatch_free(pw);
    pthread_mutex_destroy(&lock);
}
END_TEST

static gpointer
iterate_once(gpointer data)
{
    (void)data;
    g_main_context_iteration(NULL, TRUE);
    return NULL;
}

/* A watch dropped by another thread while its exit callback waits for the
 * lock: the callback must neither report the exit nor touch the freed
 * watch (ASan would see it). */
START_TEST(test_watch_dropped_while_its_callback_waits)
{
    pthread_mutex_t lock;
    pthread_mutex_init(&lock, NULL);
    Exits e = { .n = 0 };
    ProcWatch *pw = procwatch_new(shm_st.st_dev, on_exit_cb, &e);
    procwatch_set_lock(pw, &lock);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t child = spawn_mapper();
    pthread_mutex_lock(&lock);
    ops.watch(ops.data, child);
    kill_and_reap(child);            /* its pidfd is readable now */
    GThread *t = g_thread_new("dispatch", iterate_once, NULL);
    g_usleep(200 * 1000);            /* t dispatches and blocks on the lock */
    ops.unwatch(ops.data, child);    /* dropped (and freed) meanwhile */
    ck_assert_uint_eq(procwatch_count(pw), 0);
    pthread_mutex_unlock(&lock);
    g_thread_join(t);
    ck_assert_uint_eq(e.n, 0);
    procwatch_free(pw);
    pthread_mutex_destroy(&lock);
}
END_TEST

START_TEST(test_ops_maps_and_scan)
{
    ProcWatch *pw = procwatch_new(shm_st.st_dev, NULL, NULL);
    StoreProcOps ops = procwatch_ops(pw);
    pid_t child = spawn_mapper();

    ck_assert_int_eq(ops.tgid_of(ops.data, child), child);
    ck_assert(ops.maps_node(ops.data, child, shm_st.st_ino, 0));
    ck_assert(!ops.maps_node(ops.data, getpid(), shm_st.st_ino, 0));

    /* scan_all finds the child; it skips the daemon itself, even when the
     * daemon maps the same file. */
    void *self_map = mmap(NULL, 4096, PROT_READ, MAP_SHARED, shm_fd, 0);
    ck_assert_ptr_ne(self_map, MAP_FAILED);
    ck_assert(ops.maps_node(ops.data, getpid(), shm_st.st_ino, 0));
    uint64_t want = shm_st.st_ino, other = shm_st.st_ino + 1000000;
    GHashTable *wanted = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_hash_table_add(wanted, &want);
    g_hash_table_add(wanted, &other);
    GHashTable *owners = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    ops.scan_all(ops.data, wanted, owners);
    ck_assert_uint_eq(g_hash_table_size(owners), 1);
    gpointer tg = NULL;
    ck_assert(g_hash_table_lookup_extended(owners, &want, NULL, &tg));
    ck_assert_int_eq(GPOINTER_TO_INT(tg), child);
    g_hash_table_remove_all(owners);

    /* A different device: nothing matches. */
    procwatch_set_dev(pw, makedev(major(shm_st.st_dev) + 1, minor(shm_st.st_dev)));
    ck_assert(!ops.maps_node(ops.data, child, shm_st.st_ino, 0));
    ops.scan_all(ops.data, wanted, owners);
    ck_assert_uint_eq(g_hash_table_size(owners), 0);
    procwatch_set_dev(pw, shm_st.st_dev);

    kill_and_reap(child);
    ops.scan_all(ops.data, wanted, owners);
    ck_assert_uint_eq(g_hash_table_size(owners), 0);
    ck_assert(!ops.maps_node(ops.data, child, shm_st.st_ino, 0));
    ck_assert_int_eq(munmap(self_map, 4096), 0);

    g_hash_table_destroy(owners);
    g_hash_table_destroy(wanted);
    procwatch_free(pw);
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

    TCase *tc = tcase_create("tgid");
    tcase_add_test(tc, test_tgid_of_self);
    tcase_add_test(tc, test_tgid_of_thread);
    tcase_add_test(tc, test_tgid_of_gone);
    suite_add_tcase(s, tc);

    tc = tcase_create("maps");
    tcase_add_checked_fixture(tc, setup_shm, teardown_shm);
    tcase_add_test(tc, test_maps_node_self);
    tcase_add_test(tc, test_maps_node_other_process);
    tcase_add_test(tc, test_mount_dev);
    suite_add_tcase(s, tc);

    /* The same answers from the text of /proc/PID/maps (kernels before
     * 6.11 have no PROCMAP_QUERY). */
    tc = tcase_create("maps-text");
    tcase_add_checked_fixture(tc, setup_shm_text_maps, teardown_shm_text_maps);
    tcase_add_test(tc, test_maps_node_self);
    tcase_add_test(tc, test_maps_node_other_process);
    suite_add_tcase(s, tc);

    tc = tcase_create("watch");
    tcase_add_checked_fixture(tc, setup_shm, teardown_shm);
    tcase_add_test(tc, test_watch_refcount);
    tcase_add_test(tc, test_watch_fires_on_exit);
    tcase_add_test(tc, test_watch_already_gone);
    tcase_add_test(tc, test_free_with_watches);
    tcase_add_test(tc, test_exit_callback_runs_under_the_lock);
    tcase_add_test(tc, test_watch_dropped_while_its_callback_waits);
    tcase_add_test(tc, test_ops_maps_and_scan);
    suite_add_tcase(s, tc);
    return s;
}
