/* SPDX-License-Identifier: MIT */
/* capshmfs — the daemon: arguments, ordered setup, the main loop, one
 * reverse-order teardown.
 *
 * Who owns what: main() owns the Daemon; run() creates, in this order, the
 * store (core/store.h: regions, names, quotas, the core lock), the FUSE
 * layer over it (fuse/cfs.h: node ids, handles, backing ids), the session
 * (fuse/session.h: the mount and how requests arrive), and the main loop,
 * whose timer runs the store's deadlines; it frees them in reverse.  System
 * chores are in system.h, logging in log.h.
 *
 * Start-up: parse options → (fork; the parent waits) → mount → answer INIT →
 * settle the data path → tell the parent "ready" → serve.  The parent exits
 * 0 only once the mount answers requests, or 1 with the child's one-line
 * reason.
 */
#include <errno.h>
#include <glib-unix.h>
#include <glib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/options.h"
#include "core/procwatch.h"
#include "core/store.h"
#include "fuse/cfs.h"
#include "fuse/session.h"
#include "log.h"
#include "system.h"

#define DEFAULT_SPIN_US 30

typedef struct {
    CapshmOptions opts;
    char *mountpoint;
    bool foreground, debug;
    /* From the environment (capshmfs(8) ENVIRONMENT). */
    SessionUring uring;
    int64_t spin_us;
    StorageKind storage;
    /* Made by run(), in this order. */
    CapshmStore *store;
    CapshmFs *fs;
    CfsSession *session;
    GMainLoop *loop;
    guint tick_source;
    int64_t tick_deadline_us;
    const char *storage_why;
    dev_t dev;
} Daemon;

/* --- the store's deadlines on the main loop ------------------------------------ */

static gboolean on_tick(gpointer data);

/* Arm one timer for the store's next deadline, @delay microseconds away
 * (-1: none).  Under the core lock: after every core section of a request
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

/* --- signals and the session's events ------------------------------------------ */

static gboolean
on_signal(gpointer data)
{
    Daemon *d = data;
    g_message("signal received: unmounting %s", d->mountpoint);
    g_main_loop_quit(d->loop);
    return G_SOURCE_CONTINUE;
}

static void
on_connection_ended(void *data)
{
    Daemon *d = data;
    g_main_loop_quit(d->loop);
}

/* Under the core lock, before any request but INIT is answered. */
static void
on_ready(void *data)
{
    Daemon *d = data;
    bool warn = false;
    const char *why = session_why_not_uring(d->session, &warn);
    if (why && warn)
        g_warning("FUSE over io_uring: %s; requests come through /dev/fuse, one at a time", why);
    else if (why && d->uring == SESSION_URING_AUTO)
        g_message("requests come through /dev/fuse (not io_uring: %s)", why);
    if (d->storage_why)
        g_message("regions are kept in memfds, one open file each (so at most RLIMIT_NOFILE regions): %s",
                  d->storage_why);
    g_message("mounted %s (datapath=%s, transport=%s, storage=%s, linger=%us, mint_ttl=%us, size=%" G_GUINT64_FORMAT
              ", quota=%" G_GUINT64_FORMAT ", max_regions=%u, names=%s, lifetime=%s)",
              d->mountpoint, cfs_datapath_name(d->fs), session_transport(d->session),
              storage_kind_name(storage_kind(store_storage(d->store))), d->opts.linger_s, d->opts.mint_ttl_s,
              d->opts.size_bytes, d->opts.quota_bytes, d->opts.max_regions,
              d->opts.names == NAMES_MODE_ANY ? "any" : "capability",
              options_lifetime_name(d->opts.lifetime));
    if (cfs_datapath(d->fs) == CFS_PATH_CACHE)
        system_relax_bdi(d->dev);
}

/* --- setup and teardown ------------------------------------------------------------ */

/* CAPSHM_SPIN_US, CAPSHM_IO_URING, CAPSHM_STORAGE.  NULL or a reason. */
static const char *
read_environment(Daemon *d)
{
    d->spin_us = DEFAULT_SPIN_US;
    const char *spin = g_getenv("CAPSHM_SPIN_US");
    if (spin && *spin) {
        char *end = NULL;
        gint64 v = g_ascii_strtoll(spin, &end, 10);
        if (*end || v < 0 || v > 10000)
            return "CAPSHM_SPIN_US must be a number of microseconds from 0 to 10000";
        d->spin_us = v;
    }
    const char *uring = g_getenv("CAPSHM_IO_URING");
    d->uring = SESSION_URING_AUTO;
    if (uring && *uring) {
        if (strcmp(uring, "on") == 0)
            d->uring = SESSION_URING_ON;
        else if (strcmp(uring, "off") == 0)
            d->uring = SESSION_URING_OFF;
        else if (strcmp(uring, "auto") != 0)
            return "CAPSHM_IO_URING must be auto, on or off";
    }
    /* Not a mount option: users never need to choose; memfd exists for
     * troubleshooting and for the tests of the fallback. */
    const char *kind = g_getenv("CAPSHM_STORAGE");
    d->storage = STORAGE_AUTO;
    if (kind && *kind && !storage_kind_parse(kind, &d->storage))
        return "CAPSHM_STORAGE must be auto, tmpfs or memfd";
    return NULL;
}

static int
run(Daemon *d, int ready_fd)
{
    int status = 1;
    g_autoptr(GError) err = NULL;
    system_raise_fd_limit();
    system_clear_stale_mount(d->mountpoint);
    const char *bad = read_environment(d);
    if (bad) {
        system_report(ready_fd, bad);
        return status;
    }
    CapshmStorage *storage = storage_new(d->storage, &d->storage_why, &err);
    if (!storage) {
        system_report(ready_fd, err->message);
        return status;
    }
    d->store = store_new(&d->opts, false, storage);
    d->fs = cfs_new(d->store, d->opts.datapath);
    cfs_set_after_request(d->fs, after_request, d);
    SessionConfig sc = {
        .mountpoint = d->mountpoint, .extra_opts = d->opts.fuse_opts->str,
        .allow_other = d->opts.allow_other, .debug = d->debug,
        .uring = d->uring, .spin_us = d->spin_us,
    };
    d->session = session_new(d->fs, &sc, &err);
    if (!d->session) {
        system_report(ready_fd, err->message);
        goto out_fs;
    }
    if (procwatch_mount_dev(d->mountpoint, &d->dev) < 0)
        g_warning("%s: device number not found in mountinfo; user.capshm.pids will be empty",
                  d->mountpoint);
    cfs_set_mount_dev(d->fs, d->dev);
    if (d->opts.lifetime == LIFETIME_CGROUP) {
        g_autofree char *cg2 = procwatch_cgroup2_mount();
        if (!cg2) {
            system_report(ready_fd, "lifetime=cgroup: no cgroup v2 hierarchy is mounted here");
            goto out_session;
        }
        store_set_cgroup2(d->store, cg2);
        cfs_set_cgroup2(d->fs, cg2);
    }
    d->loop = g_main_loop_new(NULL, FALSE);
    if (!session_start(d->session, on_ready, on_connection_ended, d, &err)) {
        system_report(ready_fd, err->message);
        goto out_session;
    }
    g_unix_signal_add(SIGTERM, on_signal, d);
    g_unix_signal_add(SIGINT, on_signal, d);
    g_unix_signal_add(SIGHUP, on_signal, d);
    system_report(ready_fd, "ok");
    if (!d->foreground) {
        log_use_syslog();
        system_detach_stdio();
    }

    g_main_loop_run(d->loop);
    status = 0;
    g_message("unmounting %s", d->mountpoint);

out_session:
    session_stop(d->session); /* after it, no callback runs any more */
    if (d->tick_source)
        g_source_remove(d->tick_source);
out_fs:
    /* cfs borrows the store (cfs_free unhooks itself from it): free it first. */
    cfs_free(d->fs);
    store_free(d->store);
    session_free(d->session);
    if (d->loop)
        g_main_loop_unref(d->loop);
    return status;
}

/* --- arguments ---------------------------------------------------------------------- */

static char **opt_strings;
static gboolean opt_foreground, opt_debug, opt_version;
static char **opt_rest;

static const GOptionEntry entries[] = {
    { "options", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &opt_strings,
      "mount options: datapath=auto|passthrough|cache, linger=SECONDS, mint_ttl=SECONDS, "
      "size=BYTES, quota=BYTES, max_regions=N, names=capability|any, lifetime=holders|unlink|cgroup, allow_other", "OPT[,OPT...]" },
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

/* The mountpoint as an absolute path, or NULL after saying why on stderr. */
static char *
resolve_mountpoint(const char *mp)
{
    char real[PATH_MAX];
    if (!realpath(mp, real)) {
        /* A dead mount answers ENOTCONN: keep the path as given. */
        if (errno != ENOTCONN && errno != ECONNABORTED) {
            fprintf(stderr, "capshmfs: %s: %s\n", mp, strerror(errno));
            return NULL;
        }
        g_strlcpy(real, mp, sizeof real);
    } else {
        struct stat st;
        if (stat(real, &st) == 0 && !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "capshmfs: %s: not a directory\n", mp);
            return NULL;
        }
    }
    return g_strdup(real);
}

int
main(int argc, char **argv)
{
    Daemon d = { 0 };
    log_init();
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

    int status = 1;
    options_init(&d.opts);
    for (char **o = opt_strings; o && *o; o++) {
        if (options_parse(&d.opts, *o, &err) < 0) {
            fprintf(stderr, "capshmfs: %s\n", err->message);
            g_error_free(err);
            goto out;
        }
    }
    options_finish(&d.opts, system_ram_bytes(), geteuid() == 0, NULL);
    d.debug = opt_debug;
    d.foreground = opt_foreground || opt_debug;
    log_set_debug(d.debug);
    d.mountpoint = resolve_mountpoint(mp);
    if (!d.mountpoint)
        goto out;
    const char *why = d.opts.datapath == DATAPATH_PASSTHROUGH ? system_passthrough_precheck() : NULL;
    if (why) {
        fprintf(stderr, "capshmfs: %s\n", why);
        goto out;
    }
    int ready_fd = d.foreground ? -1 : system_daemonize();
    status = run(&d, ready_fd);
    if (d.foreground && status != 0)
        fprintf(stderr, "capshmfs: mount of %s failed\n", d.mountpoint);
out:
    options_clear(&d.opts);
    g_free(d.mountpoint);
    g_strfreev(opt_strings);
    g_strfreev(opt_rest);
    return status;
}
