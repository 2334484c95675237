/* SPDX-License-Identifier: MIT */
/* session — see session.h.
 *
 * Start-up order: mount → answer INIT (the core lock held, so that no ring
 * thread serves a request before the data path is settled) → settle the
 * data path → serve.  Two transports:
 *  - device: a GLib source on the main loop reads /dev/fuse and answers
 *    what is waiting, then keeps polling for spin_us before sleeping;
 *  - io_uring: libfuse's own loop runs on a thread of ours (it reads what
 *    still comes through /dev/fuse: INIT, FORGET, INTERRUPT) and starts one
 *    ring thread per CPU while answering INIT, so a request is answered on
 *    the CPU that sent it.
 */
#include "session.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct CfsSession {
    CapshmFs *fs;          /* borrowed */
    SessionConfig cfg;     /* mountpoint and extra_opts owned (copies) */
    struct fuse_session *se;
    struct fuse_buf buf;
    bool mounted;
    bool use_uring;
    const char *why_not_uring;
    bool uring_fell_back;
    bool serving;          /* data path settled: answer everything */
    /* device transport */
    guint source;
    /* io_uring transport: the thread running fuse_session_loop, and whether
     * that loop has returned (set by that thread). */
    bool thread_started;
    pthread_t thread;
    gint loop_done;
    void (*ended)(void *);
    void *data;
};

/* May we ask libfuse for FUSE over io_uring?  If not, *why says why. */
static bool
uring_possible(const char **why)
{
#ifndef HAVE_FUSE_URING
    *why = "capshmfs was built against libfuse < 3.18, which has no FUSE over io_uring";
    return false;
#else
    g_autofree char *v = NULL;
    if (!g_file_get_contents("/sys/module/fuse/parameters/enable_uring", &v, NULL, NULL)) {
        *why = "the kernel has no FUSE over io_uring (Linux >= 6.14 with CONFIG_FUSE_IO_URING)";
        return false;
    }
    if (v[0] != 'Y' && v[0] != '1') {
        *why = "the kernel has FUSE over io_uring switched off "
               "(as root: echo Y > /sys/module/fuse/parameters/enable_uring)";
        return false;
    }
    *why = NULL;
    return true;
#endif
}

CfsSession *
session_new(CapshmFs *fs, const SessionConfig *cfg, GError **err)
{
    g_autofree CfsSession *s = g_new0(CfsSession, 1);
    s->fs = fs;
    s->cfg = *cfg;
    s->why_not_uring = "CAPSHM_IO_URING=off";
    s->use_uring = cfg->uring != SESSION_URING_OFF && uring_possible(&s->why_not_uring);
    if (cfg->uring == SESSION_URING_ON && !s->use_uring) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "CAPSHM_IO_URING=on: %s", s->why_not_uring);
        return NULL;
    }
    /* libfuse also reads these; the choice is ours alone. */
    g_unsetenv("FUSE_URING_ENABLE");
    g_unsetenv("FUSE_URING_QUEUE_DEPTH");

    g_autofree char *fuse_o = g_strdup_printf(
        "fsname=capshm,subtype=capshmfs,default_permissions%s%s%s%s",
        s->use_uring ? ",io_uring" : "", cfg->allow_other ? ",allow_other" : "",
        *cfg->extra_opts ? "," : "", cfg->extra_opts);
    char *argv[] = { "capshmfs", "-o", fuse_o, cfg->debug ? "-d" : NULL, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(cfg->debug ? 4 : 3, argv);
    s->se = fuse_session_new(&args, cfs_ops(), sizeof *cfs_ops(), fs);
    fuse_opt_free_args(&args);
    if (!s->se) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "could not create the FUSE session (see the log)");
        return NULL;
    }
    if (fuse_session_mount(s->se, cfg->mountpoint) != 0) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                    "%s: mount failed (is /dev/fuse there, and may this user mount?)", cfg->mountpoint);
        fuse_session_destroy(s->se);
        return NULL;
    }
    s->mounted = true;
    s->cfg.mountpoint = g_strdup(cfg->mountpoint);
    s->cfg.extra_opts = g_strdup(cfg->extra_opts);
    cfs_set_session(fs, s->se);
    return g_steal_pointer(&s);
}

const char *session_transport(const CfsSession *s) { return s->use_uring ? "io_uring" : "device"; }

const char *
session_why_not_uring(const CfsSession *s, bool *worth_a_warning)
{
    *worth_a_warning = s->uring_fell_back;
    return s->use_uring ? NULL : s->why_not_uring;
}

/* --- device transport ----------------------------------------------------------- */

/* Answer every request that is waiting, at most 64 before the other
 * sources get a turn.  Returns false once the kernel connection is gone.
 *
 * After the last request keep asking for the next one for up to spin_us
 * (yielding the CPU to anything runnable) before going back to poll(): a
 * client's next request usually follows within a few microseconds, and
 * waking a sleeping thread on another CPU costs more than that, most of all
 * in a VM (where it measured 2x on open+close). */
static bool
drain_requests(CfsSession *s)
{
    int64_t idle_since = 0;
    for (int served = 0; served < 64;) {
        int res = fuse_session_receive_buf(s->se, &s->buf);
        if (res == -EAGAIN && s->cfg.spin_us > 0 && s->serving) {
            int64_t t = g_get_monotonic_time();
            if (!idle_since)
                idle_since = t;
            if (t - idle_since < s->cfg.spin_us) {
                sched_yield();
                continue;
            }
        }
        if (res == -EINTR || res == -EAGAIN)
            return true;
        idle_since = 0;
        served++;
        if (res <= 0) {
            if (res < 0 && res != -ENODEV)
                g_warning("reading from the FUSE device: %s", g_strerror(-res));
            return false;
        }
        fuse_session_process_buf(s->se, &s->buf);
        if (fuse_session_exited(s->se))
            return false;
        /* Nothing but INIT until the data path is settled. */
        if (!s->serving && cfs_init_done(s->fs))
            return true;
    }
    return true;
}

static gboolean
on_fuse_readable(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    CfsSession *s = data;
    bool alive = !(cond & (G_IO_ERR | G_IO_NVAL)) && drain_requests(s);
    if (alive)
        return G_SOURCE_CONTINUE;
    s->source = 0;
    if (s->ended)
        s->ended(s->data);
    return G_SOURCE_REMOVE;
}

/* --- io_uring transport ------------------------------------------------------- */

static void
on_wake_signal(int sig)
{
    (void)sig; /* only interrupts the FUSE thread's read() */
}

static gboolean
report_ended(gpointer data)
{
    CfsSession *s = data;
    if (s->ended)
        s->ended(s->data);
    return G_SOURCE_REMOVE;
}

static void *
fuse_thread_main(void *data)
{
    CfsSession *s = data;
    pthread_setname_np(pthread_self(), "capshm-fuse");
    int rc = fuse_session_loop(s->se);
    if (rc < 0 && rc != -ENODEV && !fuse_session_exited(s->se))
        g_warning("FUSE session loop: %s", g_strerror(-rc));
    g_atomic_int_set(&s->loop_done, 1);
    /* A source rather than a direct call: the main loop may not run yet. */
    g_idle_add(report_ended, s);
    return NULL;
}

static bool
start_fuse_thread(CfsSession *s)
{
    /* libfuse stops its ring threads with pthread_cancel, for which glibc
     * loads libgcc_s on first use: load it now, while a file descriptor is
     * surely free (a daemon at its fd limit aborted there otherwise). */
    if (!dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
        g_warning("loading libgcc_s.so.1 (needed to stop the io_uring threads): %s", dlerror());
    struct sigaction sa = { .sa_handler = on_wake_signal }; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    int rc = pthread_create(&s->thread, NULL, fuse_thread_main, s);
    if (rc != 0) {
        g_warning("starting the FUSE thread: %s", g_strerror(rc));
        return false;
    }
    s->thread_started = true;
    return true;
}

/* Make the FUSE thread's loop return and wait for it (and so for every
 * ring thread).  Its read() may be blocked: a signal without SA_RESTART
 * interrupts it, repeated in case it lands just before the read. */
static void
stop_fuse_thread(CfsSession *s)
{
    if (!s->thread_started)
        return;
    fuse_session_exit(s->se);
    while (!g_atomic_int_get(&s->loop_done)) {
        pthread_kill(s->thread, SIGUSR2);
        g_usleep(10000);
    }
    pthread_join(s->thread, NULL);
    s->thread_started = false;
    /* Its "ended" notice is for a connection that ends by itself. */
    while (g_source_remove_by_user_data(s))
        ;
}

/* The io_uring queue threads libfuse started when it answered INIT (it
 * names them "fuse-ring-N"; none if starting them failed, and then it serves
 * /dev/fuse alone and only logs why).  Each is switched to SCHED_BATCH:
 * same share of the CPU, but its wake-up does not preempt the task running
 * on its CPU.  A synchronous request's sender sleeps anyway, so nothing
 * changes for it; a background request (RELEASE after close) no longer
 * interrupts the client that sent it but waits until that CPU is free, at
 * most one time slice.  Measured: open+mmap+close 28 -> 22 us.
 * Returns the number of ring threads. */
static unsigned
prepare_ring_threads(void)
{
    unsigned n = 0;
    g_autoptr(GDir) dir = g_dir_open("/proc/self/task", 0, NULL);
    const char *tid;
    while (dir && (tid = g_dir_read_name(dir))) {
        g_autofree char *path = g_strdup_printf("/proc/self/task/%s/comm", tid);
        g_autofree char *comm = NULL;
        if (!g_file_get_contents(path, &comm, NULL, NULL) || !g_str_has_prefix(comm, "fuse-ring-"))
            continue;
        n++;
        struct sched_param sp = { .sched_priority = 0 };
        if (sched_setscheduler((pid_t)g_ascii_strtoll(tid, NULL, 10), SCHED_BATCH, &sp) != 0)
            g_debug("SCHED_BATCH for ring thread %s: %s", tid, g_strerror(errno));
    }
    return n;
}

/* --- start and stop -------------------------------------------------------------- */

/* Answer INIT; called with the core lock held, returns with it held. */
static void
answer_init(CfsSession *s)
{
    if (s->use_uring) {
        /* INIT here, so that its reply (which enables passthrough in the
         * kernel) is written before the data path is probed; libfuse starts
         * the ring threads while answering it. */
        while (!cfs_init_done(s->fs)) {
            int res = fuse_session_receive_buf(s->se, &s->buf);
            if (res == -EINTR)
                continue;
            if (res <= 0)
                break;
            fuse_session_process_buf(s->se, &s->buf);
        }
        if (cfs_init_done(s->fs))
            start_fuse_thread(s);
        return;
    }
    int fd = fuse_session_fd(s->se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    s->source = g_unix_fd_add(fd, G_IO_IN | G_IO_ERR | G_IO_HUP, on_fuse_readable, s);
    cfs_unlock(s->fs); /* INIT runs here, on this thread */
    GMainContext *ctx = g_main_context_default();
    while (!cfs_init_done(s->fs) && !fuse_session_exited(s->se) && s->source)
        g_main_context_iteration(ctx, TRUE);
    cfs_lock(s->fs);
}

bool
session_start(CfsSession *s, void (*ready)(void *), void (*ended)(void *), void *data, GError **err)
{
    s->ended = ended;
    s->data = data;
    /* Nothing but INIT before the data path is settled: the core lock holds
     * the io_uring threads back, drain_requests the device transport. */
    cfs_lock(s->fs);
    answer_init(s);
    const char *why = NULL;
    g_autoptr(GError) fail = NULL;
    GError **err_out = err;
    err = &fail;
    if (!cfs_init_done(s->fs)) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "the kernel closed the FUSE connection during start-up");
    } else if (s->use_uring && !s->thread_started) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "could not start the FUSE thread");
    } else if (cfs_settle_datapath(s->fs, &why) < 0) {
        g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "datapath=passthrough: %s", why);
    } else if (s->use_uring && prepare_ring_threads() == 0) {
        /* libfuse could not start its rings (built without liburing, or
         * the kernel refused) and serves /dev/fuse from our thread alone. */
        if (s->cfg.uring == SESSION_URING_ON) {
            g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "CAPSHM_IO_URING=on: libfuse did not start FUSE over io_uring (see the log)");
        } else {
            s->why_not_uring = "libfuse did not start it";
            s->use_uring = false;
            s->uring_fell_back = true;
        }
    }
    if (fail) {
        cfs_unlock(s->fs);
        g_propagate_error(err_out, g_steal_pointer(&fail));
        return false;
    }
    if (why)
        g_message("datapath=auto: using the cache data path: %s", why);
    cfs_start_notifier(s->fs);
    s->serving = true;
    if (ready)
        ready(data);
    cfs_unlock(s->fs);
    return true;
}

void
session_stop(CfsSession *s)
{
    if (!s || !s->mounted)
        return;
    stop_fuse_thread(s); /* after it, no callback runs any more */
    if (s->source)
        g_source_remove(s->source);
    s->source = 0;
    /* Unmount first: it fails every request still in flight, so the
     * notifier thread cannot stay blocked on one. */
    fuse_session_unmount(s->se);
    cfs_stop_notifier(s->fs);
    s->mounted = false;
}

void
session_free(CfsSession *s)
{
    if (!s)
        return;
    session_stop(s);
    fuse_session_destroy(s->se);
    free(s->buf.mem);
    g_free((char *)s->cfg.mountpoint);
    g_free((char *)s->cfg.extra_opts);
    g_free(s);
}
