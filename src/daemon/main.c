/* SPDX-License-Identifier: MIT */
/* capshmfs — the daemon: options, mount, main loop, signals, logging.
 *
 * Two ways to receive FUSE requests (the "transport"):
 *  - device: the GLib main loop reads /dev/fuse on the main thread;
 *  - io_uring (libfuse >= 3.18, fuse.enable_uring): libfuse's own loop runs
 *    on a thread of ours and starts one ring thread per CPU, so a request
 *    is answered on the CPU that sent it.
 * Either way FUSE callbacks take the core lock (store.h) only around their
 * store calls; the main loop's timer takes it too.  Other threads only send
 * kernel invalidations (fuse/notify.h) and look up holders in /proc for
 * display (core/procwatch.h).  Start-up order:
 *   parse options → (fork; the parent waits) → mount → answer INIT →
 *   settle the data path → tell the parent "ready" → serve.
 * The parent exits 0 only once the mount answers requests, or 1 with the
 * child's one-line reason.
 */


#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <glib-unix.h>
#include <glib.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "core/options.h"
#include "core/procwatch.h"
#include "core/store.h"
#include "fuse/cfs.h"

typedef struct {
    CapshmOptions opts;
    char *mountpoint;
    bool foreground, debug;
    struct fuse_session *se;
    CapshmStore *store;
    CapshmFs *fs;
    GMainLoop *loop;
    struct fuse_buf buf;
    guint tick_source;
    guint fuse_source;
    int64_t tick_deadline_us;
    int exit_status;
    bool use_syslog;
    bool serving;  /* data path settled: answer everything */
    int64_t spin_us;  /* see drain_requests; CAPSHM_SPIN_US, 0 = never */
    /* io_uring transport: the thread running fuse_session_loop, and whether
     * that loop has returned (set by that thread). */
    bool use_uring;
    bool fuse_thread_started;
    pthread_t fuse_thread;
    gint fuse_loop_done;
} Daemon;

#define DEFAULT_SPIN_US 30

/* --- logging ------------------------------------------------------------- */

static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
    Daemon *d = data;
    if (g_log_writer_default_would_drop(level, G_LOG_DOMAIN) && !(d && d->debug))
        return G_LOG_WRITER_HANDLED;
    const char *msg = NULL;
    for (gsize i = 0; i < n_fields; i++)
        if (strcmp(fields[i].key, "MESSAGE") == 0)
            msg = fields[i].value;
    if (!msg)
        return G_LOG_WRITER_UNHANDLED;
    const char *tag = (level & G_LOG_LEVEL_ERROR) ? "error"
                    : (level & G_LOG_LEVEL_CRITICAL) ? "critical"
                    : (level & G_LOG_LEVEL_WARNING) ? "warning"
                    : (level & G_LOG_LEVEL_DEBUG) ? "debug" : "info";
    if (d && d->use_syslog) {
        int prio = (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) ? LOG_ERR
                 : (level & G_LOG_LEVEL_WARNING) ? LOG_WARNING
                 : (level & G_LOG_LEVEL_DEBUG) ? LOG_DEBUG : LOG_INFO;
        syslog(prio, "%s", msg);
    } else {
        fprintf(stderr, "capshmfs: %s: %s\n", tag, msg);
    }
    return G_LOG_WRITER_HANDLED;
}

static void
fuse_log_bridge(enum fuse_log_level level, const char *fmt, va_list ap)
{
    GLogLevelFlags gl = level <= FUSE_LOG_ERR ? G_LOG_LEVEL_CRITICAL
                      : level == FUSE_LOG_WARNING ? G_LOG_LEVEL_WARNING
                      : level <= FUSE_LOG_INFO ? G_LOG_LEVEL_MESSAGE
                      : G_LOG_LEVEL_DEBUG;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_strchomp(msg);
    g_log("fuse", gl, "%s", msg);
}

/* --- main loop glue -------------------------------------------------------- */

static gboolean on_tick(gpointer data);

/* Arm one timer for the store's next deadline, @delay microseconds away
 * (-1: none).  Under the core lock: after every request
 * (cfs_set_after_request) and from the timer.  GLib's sources may be added
 * and removed from any thread. */
static void
arm_tick(Daemon *d, int64_t delay)
{
    if (delay < 0)
        return;
    int64_t deadline = g_get_monotonic_time() + delay;
    /* Keep an armed timer unless the new deadline is clearly earlier. */
    if (d->tick_source && deadline >= d->tick_deadline_us - 1000)
        return;
    if (d->tick_source)
        g_source_remove(d->tick_source);
    d->tick_deadline_us = deadline;
    guint ms = (guint)MIN((delay + 999) / 1000, (int64_t)G_MAXUINT);
    d->tick_source = g_timeout_add(ms, on_tick, d);
}

static gboolean
on_tick(gpointer data)
{
    Daemon *d = data;
    cfs_lock(d->fs);
    /* A request may have replaced this timer while we waited for the lock. */
    if (d->tick_source == g_source_get_id(g_main_current_source()))
        d->tick_source = 0;
    arm_tick(d, store_tick(d->store));
    cfs_unlock(d->fs);
    return G_SOURCE_REMOVE;
}

/* Requests only look at the deadlines: the work itself (expiring mints and
 * lingering regions, asking the kernel about mapped ones) runs on the main
 * loop's timer, so no request pays for it. */
static void
after_request(void *data)
{
    Daemon *d = data;
    arm_tick(d, store_next_due(d->store));
}

/* Answer every request that is waiting, at most 64 before the other
 * sources get a turn.  Returns false once the kernel connection is gone
 * (unmounted).
 *
 * After the last request the daemon keeps asking for the next one for up to
 * spin_us microseconds (yielding the CPU to anything runnable) before it
 * goes back to poll(): a client's next request usually follows within a
 * few microseconds, and waking a sleeping thread on another CPU costs more
 * than that, most of all in a VM (where it measured 2x on open+close). */
static bool
drain_requests(Daemon *d)
{
    int64_t idle_since = 0;
    for (int served = 0; served < 64;) {
        int res = fuse_session_receive_buf(d->se, &d->buf);
        if (res == -EAGAIN && d->spin_us > 0 && d->serving) {
            int64_t t = g_get_monotonic_time();
            if (!idle_since)
                idle_since = t;
            if (t - idle_since < d->spin_us) {
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
        fuse_session_process_buf(d->se, &d->buf);
        if (fuse_session_exited(d->se))
            return false;
        /* Nothing but INIT until the data path is settled. */
        if (!d->serving && cfs_init_done(d->fs))
            return true;
    }
    return true;
}

static gboolean
on_fuse_readable(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    Daemon *d = data;
    bool alive = !(cond & (G_IO_ERR | G_IO_NVAL)) && drain_requests(d);
    if (!alive) {
        d->fuse_source = 0;
        g_main_loop_quit(d->loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean
on_signal(gpointer data)
{
    Daemon *d = data;
    g_message("signal received: unmounting %s", d->mountpoint);
    g_main_loop_quit(d->loop);
    return G_SOURCE_CONTINUE;
}

/* --- io_uring transport ---------------------------------------------------- */

typedef enum { URING_AUTO, URING_ON, URING_OFF } UringMode;

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

static void
on_wake_signal(int sig)
{
    (void)sig; /* only interrupts the FUSE thread's read() */
}

static gboolean
quit_main_loop(gpointer data)
{
    Daemon *d = data;
    g_main_loop_quit(d->loop);
    return G_SOURCE_REMOVE;
}

/* The FUSE thread: libfuse's loop reads what still comes through /dev/fuse
 * (INIT, FORGET, INTERRUPT) and, for io_uring, owns the ring threads: it
 * starts them at INIT and stops them when it returns. */
static void *
fuse_thread_main(void *data)
{
    Daemon *d = data;
    pthread_setname_np(pthread_self(), "capshm-fuse");
    int rc = fuse_session_loop(d->se);
    if (rc < 0 && rc != -ENODEV && !fuse_session_exited(d->se))
        g_warning("FUSE session loop: %s", g_strerror(-rc));
    g_atomic_int_set(&d->fuse_loop_done, 1);
    /* A source rather than g_main_loop_quit(), which would be lost if the
     * main loop has not started running yet. */
    g_idle_add(quit_main_loop, d);
    return NULL;
}

/* Make the FUSE thread's loop return and wait for it (and so for every
 * ring thread).  Its read() may be blocked: a signal without SA_RESTART
 * interrupts it, repeated in case it lands just before the read. */
static void
stop_fuse_thread(Daemon *d)
{
    if (!d->fuse_thread_started)
        return;
    fuse_session_exit(d->se);
    while (!g_atomic_int_get(&d->fuse_loop_done)) {
        pthread_kill(d->fuse_thread, SIGUSR2);
        g_usleep(10000);
    }
    pthread_join(d->fuse_thread, NULL);
    d->fuse_thread_started = false;
}

static bool
start_fuse_thread(Daemon *d)
{
    /* libfuse stops its ring threads with pthread_cancel, for which glibc
     * loads libgcc_s on first use: load it now, while a file descriptor is
     * surely free (a daemon at its fd limit aborted there otherwise). */
    if (!dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NODELETE))
        g_warning("loading libgcc_s.so.1 (needed to stop the io_uring threads): %s", dlerror());
    struct sigaction sa = { .sa_handler = on_wake_signal }; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    int rc = pthread_create(&d->fuse_thread, NULL, fuse_thread_main, d);
    if (rc != 0) {
        g_warning("starting the FUSE thread: %s", g_strerror(rc));
        return false;
    }
    d->fuse_thread_started = true;
    return true;
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

/* --- start-up helpers -------------------------------------------------------- */

static uint64_t
ram_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

#ifdef HAVE_FUSE_PASSTHROUGH
static bool
has_cap_sys_admin(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return false;
    char line[256];
    unsigned long long eff = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return eff & (1ULL << 21);
}
#endif

/* An explicit datapath=passthrough fails before mounting when it clearly
 * cannot work; the rest is probed after INIT. */
static const char *
passthrough_precheck(void)
{
#ifndef HAVE_FUSE_PASSTHROUGH
    return "datapath=passthrough: capshmfs was built against libfuse < 3.17, which has no passthrough";
#else
    if (!has_cap_sys_admin())
        return "datapath=passthrough: needs CAP_SYS_ADMIN (run as root)";
    return NULL;
#endif
}

/* In cache mode the kernel throttles writers of mapped FUSE pages hard
 * (strict_limit, max_ratio=1 on the mount's bdi); relax that for our mount
 * when we may. */
static void
relax_bdi(dev_t dev)
{
    if (geteuid() != 0)
        return;
    char path[128];
    int ok = 0;
    const char *files[] = { "strict_limit", "max_ratio" };
    const char *values[] = { "0", "100" };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/%s", major(dev), minor(dev), files[i]);
        /* sysfs: write in place (g_file_set_contents would rename). */
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && write(fd, values[i], strlen(values[i])) == (ssize_t)strlen(values[i]))
            ok++;
        if (fd >= 0)
            close(fd);
    }
    if (ok == 2)
        g_message("cache data path: relaxed writeback throttling of bdi %u:%u (strict_limit 0, max_ratio 100)",
                  major(dev), minor(dev));
    else
        g_message("cache data path: could not relax writeback throttling of bdi %u:%u",
                  major(dev), minor(dev));
}

static void
raise_fd_limit(void)
{
    /* An fd per region in use (and per region at all with memfd storage):
     * allow as many as the kernel's fs.nr_open when we may raise the hard
     * limit (CAP_SYS_RESOURCE), else the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    g_autofree char *nr_open = NULL;
    if (g_file_get_contents("/proc/sys/fs/nr_open", &nr_open, NULL, NULL)) {
        rlim_t want = (rlim_t)g_ascii_strtoull(nr_open, NULL, 10);
        if (want > rl.rlim_max) {
            struct rlimit up = { want, want };
            if (setrlimit(RLIMIT_NOFILE, &up) == 0)
                return;
        }
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* If @mp is a dead FUSE mount (its daemon was killed), detach it. */
static void
clear_stale_mount(const char *mp)
{
    /* statfs, not stat: the kernel may answer stat() of a dead FUSE root
     * from its attribute cache, but always asks the daemon for statfs.
     * ECONNABORTED, ECANCELED: a request caught in the teardown of a dead
     * daemon's io_uring queues. */
    struct statfs sfs;
    if (statfs(mp, &sfs) == 0 ||
        (errno != ENOTCONN && errno != ECONNABORTED && errno != ECANCELED))
        return;
    if (umount2(mp, MNT_DETACH) == 0)
        g_message("%s: cleared a stale mount left by a daemon that died", mp);
    else
        g_warning("%s: stale mount could not be cleared: %s", mp, g_strerror(errno));
}

static void
report(int fd, const char *msg)
{
    if (fd < 0) {
        if (strcmp(msg, "ok") != 0)
            fprintf(stderr, "capshmfs: %s\n", msg);
        return;
    }
    size_t len = strlen(msg);
    ssize_t w = write(fd, msg, len);
    (void)w;
    close(fd);
}

/* Fork; the parent waits for the child's verdict and exits with it. */
static int
daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "capshmfs: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "capshmfs: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        close(p[1]);
        char msg[1024];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof msg - 1 && (n = read(p[0], msg + got, sizeof msg - 1 - got)) != 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            got += (size_t)n;
        }
        msg[got] = '\0';
        if (strcmp(msg, "ok") == 0)
            _exit(0);
        if (got == 0) {
            int status = 0;
            waitpid(pid, &status, 0);
            fprintf(stderr, "capshmfs: the daemon died while mounting\n");
        } else {
            fprintf(stderr, "capshmfs: %s\n", msg);
        }
        _exit(1);
    }
    close(p[0]);
    setsid();
    return p[1];
}

static void
detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    if (chdir("/") < 0)
        g_debug("chdir /: %s", g_strerror(errno));
}

/* --- main ------------------------------------------------------------------- */

static char **opt_strings;
static gboolean opt_foreground, opt_debug, opt_version;
static char **opt_rest;

static const GOptionEntry entries[] = {
    { "options", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &opt_strings,
      "mount options: datapath=auto|passthrough|cache, linger=SECONDS, mint_ttl=SECONDS, "
      "size=BYTES, quota=BYTES, max_regions=N, names=capability|any, lifetime=holders|unlink, allow_other", "OPT[,OPT...]" },
    { "foreground", 'f', 0, G_OPTION_ARG_NONE, &opt_foreground, "stay in the foreground", NULL },
    { "debug", 'd', 0, G_OPTION_ARG_NONE, &opt_debug, "log every request (implies -f)", NULL },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, "print the version and exit", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_rest, NULL, "[SOURCE] MOUNTPOINT" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
};

static void
usage_error(GOptionContext *ctx, const char *msg)
{
    fprintf(stderr, "capshmfs: %s\n", msg);
    fprintf(stderr, "usage: capshmfs [SOURCE] MOUNTPOINT [-o OPT,...] [-f] [-d]  (see --help)\n");
    g_option_context_free(ctx);
    exit(2);
}

static int
run(Daemon *d, int ready_fd)
{
    int status = 1;
    char errbuf[512];
    const char *storage_why = NULL;
    raise_fd_limit();
    clear_stale_mount(d->mountpoint);

    d->spin_us = DEFAULT_SPIN_US;
    const char *spin_env = g_getenv("CAPSHM_SPIN_US");
    if (spin_env && *spin_env) {
        char *end = NULL;
        gint64 v = g_ascii_strtoll(spin_env, &end, 10);
        if (*end || v < 0 || v > 10000) {
            report(ready_fd, "CAPSHM_SPIN_US must be a number of microseconds from 0 to 10000");
            return status;
        }
        d->spin_us = v;
    }
    /* How requests arrive: CAPSHM_IO_URING=auto (io_uring where the kernel
     * and libfuse allow it), on (fail the mount otherwise) or off. */
    UringMode uring_mode = URING_AUTO;
    const char *uring_env = g_getenv("CAPSHM_IO_URING");
    if (uring_env && *uring_env) {
        if (strcmp(uring_env, "auto") == 0)
            uring_mode = URING_AUTO;
        else if (strcmp(uring_env, "on") == 0)
            uring_mode = URING_ON;
        else if (strcmp(uring_env, "off") == 0)
            uring_mode = URING_OFF;
        else {
            report(ready_fd, "CAPSHM_IO_URING must be auto, on or off");
            return status;
        }
    }
    const char *uring_why = "CAPSHM_IO_URING=off";
    d->use_uring = uring_mode != URING_OFF && uring_possible(&uring_why);
    if (uring_mode == URING_ON && !d->use_uring) {
        snprintf(errbuf, sizeof errbuf, "CAPSHM_IO_URING=on: %s", uring_why);
        report(ready_fd, errbuf);
        return status;
    }
    /* libfuse also reads these; the choice is ours alone. */
    g_unsetenv("FUSE_URING_ENABLE");
    g_unsetenv("FUSE_URING_QUEUE_DEPTH");
    /* Where region bytes live (storage.h).  Not a mount option: users never
     * need to choose; CAPSHM_STORAGE=memfd exists for troubleshooting and
     * for the tests of the fallback. */
    StorageKind kind = STORAGE_AUTO;
    const char *kind_env = g_getenv("CAPSHM_STORAGE");
    if (kind_env && *kind_env && !storage_kind_parse(kind_env, &kind)) {
        report(ready_fd, "CAPSHM_STORAGE must be auto, tmpfs or memfd");
        return status;
    }
    g_autoptr(GError) serr = NULL;
    CapshmStorage *storage = storage_new(kind, &storage_why, &serr);
    if (!storage) {
        report(ready_fd, serr->message);
        return status;
    }
    d->store = store_new(&d->opts, false, storage);
    d->fs = cfs_new(d->store, d->opts.datapath);

    g_autofree char *fuse_o = g_strdup_printf(
        "fsname=capshm,subtype=capshmfs,default_permissions%s%s%s%s",
        d->use_uring ? ",io_uring" : "",
        d->opts.allow_other ? ",allow_other" : "",
        d->opts.fuse_opts->len ? "," : "", d->opts.fuse_opts->str);
    char *argv[] = { "capshmfs", "-o", fuse_o, d->debug ? "-d" : NULL, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(d->debug ? 4 : 3, argv);
    d->se = fuse_session_new(&args, cfs_ops(), sizeof *cfs_ops(), d->fs);
    fuse_opt_free_args(&args);
    if (!d->se) {
        report(ready_fd, "could not create the FUSE session (see the log)");
        goto out;
    }
    cfs_set_session(d->fs, d->se);
    cfs_set_after_request(d->fs, after_request, d);
    if (fuse_session_mount(d->se, d->mountpoint) != 0) {
        snprintf(errbuf, sizeof errbuf, "%s: mount failed (is /dev/fuse there, and may this user mount?)",
                 d->mountpoint);
        report(ready_fd, errbuf);
        goto out_session;
    }

    dev_t dev = 0;
    if (procwatch_mount_dev(d->mountpoint, &dev) < 0)
        g_warning("%s: device number not found in mountinfo; user.capshm.pids will be empty",
                  d->mountpoint);
    cfs_set_mount_dev(d->fs, dev);

    d->loop = g_main_loop_new(NULL, FALSE);

    /* Answer INIT and settle the data path before any other request: the
     * core lock holds the io_uring threads back, drain_requests the
     * device transport. */
    cfs_lock(d->fs);
    if (d->use_uring) {
        /* INIT here, so that its reply (which enables passthrough in the
         * kernel) is written before the data path is probed; libfuse starts
         * the ring threads while answering it. */
        while (!cfs_init_done(d->fs)) {
            int res = fuse_session_receive_buf(d->se, &d->buf);
            if (res == -EINTR)
                continue;
            if (res <= 0)
                break;
            fuse_session_process_buf(d->se, &d->buf);
        }
        if (cfs_init_done(d->fs) && !start_fuse_thread(d)) {
            cfs_unlock(d->fs);
            report(ready_fd, "could not start the FUSE thread");
            goto out_unmount;
        }
    } else {
        int fd = fuse_session_fd(d->se);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        GMainContext *ctx = g_main_context_default();
        d->fuse_source = g_unix_fd_add(fd, G_IO_IN | G_IO_ERR | G_IO_HUP, on_fuse_readable, d);
        cfs_unlock(d->fs); /* INIT runs here, on this thread */
        while (!cfs_init_done(d->fs) && !fuse_session_exited(d->se))
            g_main_context_iteration(ctx, TRUE);
        cfs_lock(d->fs);
    }
    if (!cfs_init_done(d->fs)) {
        cfs_unlock(d->fs);
        report(ready_fd, "the kernel closed the FUSE connection during start-up");
        goto out_unmount;
    }
    const char *why = NULL;
    if (cfs_settle_datapath(d->fs, &why) < 0) {
        cfs_unlock(d->fs);
        snprintf(errbuf, sizeof errbuf, "datapath=passthrough: %s", why);
        report(ready_fd, errbuf);
        goto out_unmount;
    }
    if (d->use_uring && prepare_ring_threads() == 0) {
        /* libfuse could not start its rings (built without liburing, or
         * the kernel refused) and serves /dev/fuse from our thread alone. */
        if (uring_mode == URING_ON) {
            cfs_unlock(d->fs);
            report(ready_fd, "CAPSHM_IO_URING=on: libfuse did not start FUSE over io_uring (see the log)");
            goto out_unmount;
        }
        uring_why = "libfuse did not start it";
        d->use_uring = false;
    }
    g_unix_signal_add(SIGTERM, on_signal, d);
    g_unix_signal_add(SIGINT, on_signal, d);
    g_unix_signal_add(SIGHUP, on_signal, d);
    cfs_start_notifier(d->fs);
    d->serving = true;
    report(ready_fd, "ok");
    ready_fd = -1;
    if (!d->foreground) {
        d->use_syslog = true;
        detach_stdio();
    }

    if (why)
        g_message("datapath=auto: using the cache data path: %s", why);
    if (d->fuse_thread_started && !d->use_uring)
        g_warning("FUSE over io_uring: %s; requests come through /dev/fuse, one at a time", uring_why);
    else if (!d->use_uring && uring_mode == URING_AUTO)
        g_message("requests come through /dev/fuse (not io_uring: %s)", uring_why);
    if (storage_why)
        g_message("regions are kept in memfds, one open file each (so at most RLIMIT_NOFILE regions): %s",
                  storage_why);
    g_message("mounted %s (datapath=%s, transport=%s, storage=%s, linger=%us, mint_ttl=%us, size=%" G_GUINT64_FORMAT
              ", quota=%" G_GUINT64_FORMAT ", max_regions=%u, names=%s, lifetime=%s)",
              d->mountpoint, cfs_datapath_name(d->fs), d->use_uring ? "io_uring" : "device",
              storage_kind_name(storage_kind(store_storage(d->store))), d->opts.linger_s, d->opts.mint_ttl_s,
              d->opts.size_bytes, d->opts.quota_bytes, d->opts.max_regions,
              d->opts.names == NAMES_MODE_ANY ? "any" : "capability",
              options_lifetime_name(d->opts.lifetime));
    if (cfs_datapath(d->fs) == CFS_PATH_CACHE)
        relax_bdi(dev);
    /* Only now: the log says "mounted" before any request is answered. */
    cfs_unlock(d->fs);

    g_main_loop_run(d->loop);
    status = 0;
    g_message("unmounting %s", d->mountpoint);

out_unmount:
    stop_fuse_thread(d); /* after it, no callback runs any more */
    if (d->fuse_source)
        g_source_remove(d->fuse_source);
    d->fuse_source = 0;
    /* Unmount first: it fails every request still in flight, so the
     * notifier thread cannot stay blocked on one. */
    fuse_session_unmount(d->se);
    cfs_stop_notifier(d->fs);
out_session:
    if (d->tick_source)
        g_source_remove(d->tick_source);
    store_set_destroy_hook(d->store, NULL, NULL);
    /* cfs borrows the store (cfs_free unhooks itself from it): free it first. */
    cfs_free(d->fs);
    store_free(d->store);
    fuse_session_destroy(d->se);
    free(d->buf.mem);
    if (d->loop)
        g_main_loop_unref(d->loop);
    return status;
out:
    cfs_free(d->fs);
    store_free(d->store);
    if (ready_fd >= 0)
        close(ready_fd);
    return status;
}

int
main(int argc, char **argv)
{
    Daemon d = { 0 };
    g_log_set_writer_func(log_writer, &d, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The store asks the kernel with file leases (storage.h), which it drops
     * at once; should anyone break one meanwhile, the kernel's SIGIO must
     * not kill us. */
    signal(SIGIO, SIG_IGN);

    GOptionContext *octx = g_option_context_new("- serve shared-memory regions as files");
    g_option_context_set_summary(octx,
        "Mounts capshm at MOUNTPOINT (default /run/capshm by convention) and returns once the\n"
        "mount is ready, unless -f.  SOURCE is accepted and ignored so that\n"
        "'mount -t fuse.capshmfs capshm MOUNTPOINT' and /etc/fstab work.");
    g_option_context_add_main_entries(octx, entries, NULL);
    GError *err = NULL;
    if (!g_option_context_parse(octx, &argc, &argv, &err)) {
        g_autofree char *m = g_strdup(err->message);
        g_error_free(err);
        usage_error(octx, m);
    }
    if (opt_version) {
        printf("capshmfs %s (libfuse %s)\n", PACKAGE_VERSION, fuse_pkgversion());
        g_option_context_free(octx);
        return 0;
    }
    guint nrest = opt_rest ? g_strv_length(opt_rest) : 0;
    if (nrest < 1 || nrest > 2)
        usage_error(octx, nrest ? "too many arguments" : "no mountpoint given");
    const char *mp = opt_rest[nrest - 1];
    g_option_context_free(octx);

    options_init(&d.opts);
    for (char **o = opt_strings; o && *o; o++) {
        if (options_parse(&d.opts, *o, &err) < 0) {
            fprintf(stderr, "capshmfs: %s\n", err->message);
            g_error_free(err);
            options_clear(&d.opts);
            return 1;
        }
    }
    options_finish(&d.opts, ram_bytes(), geteuid() == 0, NULL);
    d.debug = opt_debug;
    d.foreground = opt_foreground || opt_debug;
    if (d.debug)
        g_log_set_debug_enabled(TRUE);

    char real[PATH_MAX];
    if (!realpath(mp, real)) {
        /* A dead mount answers ENOTCONN: keep the path as given. */
        if (errno != ENOTCONN && errno != ECONNABORTED) {
            fprintf(stderr, "capshmfs: %s: %s\n", mp, strerror(errno));
            options_clear(&d.opts);
            return 1;
        }
        g_strlcpy(real, mp, sizeof real);
    } else {
        struct stat st;
        if (stat(real, &st) == 0 && !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "capshmfs: %s: not a directory\n", mp);
            options_clear(&d.opts);
            return 1;
        }
    }
    d.mountpoint = g_strdup(real);

    if (d.opts.datapath == DATAPATH_PASSTHROUGH) {
        const char *why = passthrough_precheck();
        if (why) {
            fprintf(stderr, "capshmfs: %s\n", why);
            options_clear(&d.opts);
            g_free(d.mountpoint);
            return 1;
        }
    }

    fuse_set_log_func(fuse_log_bridge);
    int ready_fd = d.foreground ? -1 : daemonize();
    int status = run(&d, ready_fd);
    if (d.foreground && status != 0)
        fprintf(stderr, "capshmfs: mount of %s failed\n", d.mountpoint);
    options_clear(&d.opts);
    g_free(d.mountpoint);
    g_strfreev(opt_strings);
    g_strfreev(opt_rest);
    return status;
}
