/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the store's state machine and its .stats JSON.
 *
 * The input is a program: a few setup bytes (names mode, data path, limits)
 * then operations, each an opcode byte and argument bytes: mint, create,
 * open, release, resize, write, fallocate, pin/unpin, unlink, tick (advance
 * a fake clock the way the daemon does: store_tick at every time
 * store_next_due names), jump (advance it at once and tick once, as after a
 * stall), seal, chown, read-only name, lookup, map/unmap by a fake process,
 * kill a fake process, make the hold probe fail, .stats and listings.
 *
 * The fake process world: processes 1..NPROC open handles and map regions
 * (by the read-write or the read-only node).  Mapping takes an open handle
 * (a process opens the region by name unless it has it open already) and
 * may close it right after, as open+mmap+close does.  On the passthrough
 * path a mapping outlives its handle and the store learns about it only
 * through the hold probe (store_set_hold_probe), which answers "held"
 * exactly when some live fake process maps r->ino or r->ro_ino; on the cache
 * path the kernel keeps the mapped file open, so a mapping holds an open
 * handle of its own until it is unmapped.  Killing a process drops its
 * mappings, then releases its handles.  The probe can be made to fail with
 * -EMFILE for the next few questions or until told otherwise.
 *
 * After every operation (and after every store_tick) the harness checks the
 * store against its own model:
 *  - quota_total_bytes() is the sum of the sizes of live regions, and per
 *    uid the regions and bytes match: quota stays charged while a region
 *    exists and only then;
 *  - store_region_count() is the number of live regions, and the
 *    lingering/pinned counts match the regions' states;
 *  - a region's open_count/writable_opens are the handles the model has
 *    open on it; an unlinked live region is held;
 *  - a region with open handles or that some fake process maps is never
 *    destroyed (checked in the destroy hook, at whatever fake time the
 *    store destroys it, and after every store_tick), and the store counts it
 *    as held (state live) all along, whatever the probe answers (-EMFILE
 *    included);
 *  - the store asks the probe only on the passthrough path, only about
 *    live regions with no open handle, and passes its own file; the unheld
 *    hook runs only for regions nobody has open or maps;
 *  - a region that nobody maps and nobody has open is destroyed within
 *    linger + 1 s + 250 ms of fake time (counted from when it was freed, or
 *    unpinned, or the probe last failed for it, or the clock last jumped)
 *    unless pinned, and is pinned-state by then if pinned; an unlinked one
 *    within 1 s + 250 ms, at once when its last handle is released (the
 *    store asks then), and at once after the probe says "free";
 *  - once the store has learnt that a region is free (the probe said so,
 *    its last handle closed on the cache path, or it was just created), it
 *    lingers exactly linger seconds from then (or from an unpin), or is in
 *    the pinned state at once if pinned;
 *  - store_tick never asks to be called again at once, and agrees with
 *    store_next_due;
 *  - lookup finds a region by its names exactly while it is live and not
 *    unlinked;
 *  - every .stats output is strict JSON (see json_check.h) whose numbers
 *    agree with the store;
 *  - no GLib warning or critical, except the store's warning about a failed
 *    probe: only after the probe failed, and at most once per store (no log
 *    flood however often it fails).
 * At the end every handle is released, every process killed and the probe
 * healed; after linger + 2 s every region but the pinned, named ones must
 * be gone.  ASan/UBSan/LSan catch memory errors and leaks (regions are
 * refcounted).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/store.h"
#include "json_check.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_stats: check failed: %s: ", #cond);           \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

#define MAX_REGIONS 24
#define MAX_HANDLES 32
#define MAX_MAPS 48
#define MAX_MINTS 16
#define NPROC 8 /* fake processes: 1..NPROC */
#define NOPS 21
/* The longest a region nobody holds may wait for the store to notice: the
 * slowest probe interval (1 s) plus slack (the fastest intervals' last). */
#define NOTICE_US (1000 * 1000 + 250 * 1000)

typedef struct {
    CapshmRegion *r; /* harness reference */
    pid_t tgid;
    bool writable;
} Handle;

typedef struct {
    CapshmRegion *r; /* harness reference */
    pid_t tgid;
    uint64_t ino;    /* r->ino or r->ro_ino */
    bool writable;
    bool holds_open; /* cache path: the mapped file stays open (one handle) */
} Mapping;

/* What the harness knows about each region beyond the store's fields. */
typedef struct {
    bool held;           /* model: open handles or mapped by a live process */
    int64_t free_since;  /* when it last became unheld (valid while !held) */
    int64_t last_unpin;  /* last unpin of a pinned region: linger restarts */
    int64_t last_err;    /* last time the probe failed for it */
    bool told_free;      /* the store learnt it is free since it was last
                          * held: the probe said so, its last handle closed
                          * on the cache path, or it was just created */
    int64_t linger_from; /* when it learnt that, or when it was unpinned */
    uint64_t linger_tick; /* how many store_ticks had run by then */
} RegionModel;

typedef struct {
    const uint8_t *p, *end;
    CapshmStore *s;
    bool passthrough;
    unsigned linger_s;
    int64_t now;
    int64_t last_jump;   /* the clock last moved without ticking in between */
    uint64_t ticks;      /* store_tick calls so far */
    int64_t last_tick;   /* fake time of the last one */
    CapshmRegion *regions[MAX_REGIONS];
    RegionModel model[MAX_REGIONS];
    unsigned nregions;
    Handle handles[MAX_HANDLES];
    unsigned nhandles;
    Mapping maps[MAX_MAPS];
    unsigned nmaps;
    char mints[MAX_MINTS][NAMES_BUF];
    unsigned nmints;
    /* the hold probe */
    bool fail_always;    /* every question fails with -EMFILE */
    unsigned fail_next;  /* the next this many questions fail */
    uint64_t probes, probe_errors, probe_warnings;
    /* hooks */
    uint64_t destroy_hooks;
    bool freeing;        /* in store_free: everything goes */
} Fuzz;

static Fuzz *current; /* for the log handler */

static uint8_t
next(Fuzz *f)
{
    return f->p < f->end ? *f->p++ : 0;
}

static uint64_t
next64(Fuzz *f, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++)
        v = v << 8 | next(f);
    return v;
}

/* --- the model of who holds what ------------------------------------------- */

static int
region_index(Fuzz *f, const CapshmRegion *r)
{
    for (unsigned i = 0; i < f->nregions; i++)
        if (f->regions[i] == r)
            return (int)i;
    return -1;
}

/* Some live fake process maps @r (through either of its nodes). */
static bool
model_mapped(Fuzz *f, const CapshmRegion *r)
{
    for (unsigned i = 0; i < f->nmaps; i++) {
        uint64_t ino = f->maps[i].ino;
        if (ino == r->ino || (r->ro_ino && ino == r->ro_ino))
            return true;
    }
    return false;
}

/* Open handles on @r: the harness's own, plus (cache path) mapped files. */
static unsigned
model_opens(Fuzz *f, const CapshmRegion *r, unsigned *writable)
{
    unsigned n = 0, w = 0;
    for (unsigned i = 0; i < f->nhandles; i++)
        if (f->handles[i].r == r) {
            n++;
            w += f->handles[i].writable;
        }
    for (unsigned i = 0; i < f->nmaps; i++)
        if (f->maps[i].r == r && f->maps[i].holds_open) {
            n++;
            w += f->maps[i].writable;
        }
    if (writable)
        *writable = w;
    return n;
}

static bool
model_held(Fuzz *f, const CapshmRegion *r)
{
    return model_opens(f, r, NULL) > 0 || model_mapped(f, r);
}

/* Record who is held now; a region freed by this operation is free since
 * now (operations other than tick and jump do not move the clock). */
static void
update_held(Fuzz *f)
{
    for (unsigned i = 0; i < f->nregions; i++) {
        RegionModel *m = &f->model[i];
        bool held = region_is_alive(f->regions[i]) && model_held(f, f->regions[i]);
        if (held) {
            m->told_free = false;
        } else if (m->held) {
            m->free_since = f->now;
        }
        m->held = held;
    }
}

/* --- the fake kernel and the store's hooks ------------------------------------ */

/* The store learnt @r is free, or unpinned it: its linger starts now. */
static void
linger_starts(Fuzz *f, int i)
{
    f->model[i].linger_from = f->now;
    f->model[i].linger_tick = f->ticks;
}

static int64_t
fake_now(void *data)
{
    return ((Fuzz *)data)->now;
}

static int
fake_probe(CapshmRegion *r, int own_fd, void *data)
{
    Fuzz *f = data;
    CHECK(f->passthrough, "the store asked the hold probe on the cache path");
    CHECK(region_is_alive(r), "the store asked about a destroyed region");
    CHECK(r->open_count == 0, "the store asked about a region with %u open handles", r->open_count);
    /* memfd storage: the store's own file is the memfd itself. */
    CHECK(own_fd >= 0 && own_fd == r->fd, "probe got own fd %d, region fd %d", own_fd, r->fd);
    int i = region_index(f, r);
    CHECK(i >= 0, "probe of a region the harness never saw");
    f->probes++;
    if (f->fail_always || f->fail_next) {
        if (f->fail_next)
            f->fail_next--;
        f->probe_errors++;
        f->model[i].last_err = f->now;
        return -EMFILE;
    }
    if (model_mapped(f, r))
        return 1;
    f->model[i].told_free = true;
    linger_starts(f, i);
    return 0;
}

static void
on_destroy(CapshmRegion *r, void *data)
{
    Fuzz *f = data;
    CHECK(region_is_alive(r), "destroy hook for a destroyed region");
    f->destroy_hooks++;
    if (f->freeing)
        return;
    unsigned opens = model_opens(f, r, NULL);
    bool mapped = model_mapped(f, r);
    CHECK(opens == 0 && !mapped,
          "region ino %llu destroyed at fake time %lld while held: %u open handles, mapped %d",
          (unsigned long long)r->ino, (long long)f->now, opens, mapped);
}

static void
on_unheld(CapshmRegion *r, void *data)
{
    Fuzz *f = data;
    CHECK(region_is_alive(r), "unheld hook for a destroyed region");
    CHECK(r->open_count == 0, "unheld hook with %u open handles", r->open_count);
    CHECK(!model_mapped(f, r), "unheld hook for region ino %llu that a process maps",
          (unsigned long long)r->ino);
}

/* g_warn_if_fail / g_return_if_fail in the core are bugs here; so is any
 * warning but the store's one about a failed probe. */
static void
log_handler(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)data;
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
        if ((level & G_LOG_LEVEL_WARNING) && current &&
            g_str_has_prefix(msg, "asking the kernel whether a region is still mapped: ") &&
            strstr(msg, g_strerror(EMFILE))) {
            CHECK(current->probe_errors > 0, "probe warning without a probe error: %s", msg);
            current->probe_warnings++;
            CHECK(current->probe_warnings == 1, "probe warning logged %llu times",
                  (unsigned long long)current->probe_warnings);
            return;
        }
        fprintf(stderr, "fuzz_stats: unexpected log message (%s, level %d): %s\n",
                domain ? domain : "-", (int)level, msg);
        abort();
    }
    g_log_default_handler(domain, level, msg, NULL);
}

/* --- model checks -------------------------------------------------------------- */

typedef struct {
    uid_t uid;
    unsigned regions;
    uint64_t bytes;
} UidSum;

static void
check_usage(const QuotaUsage *u, void *data)
{
    Fuzz *f = data;
    unsigned n = 0;
    uint64_t b = 0;
    for (unsigned i = 0; i < f->nregions; i++) {
        CapshmRegion *r = f->regions[i];
        if (region_is_alive(r) && r->uid == u->uid) {
            n++;
            b += r->size;
        }
    }
    CHECK(u->regions == n, "uid %u: quota says %u regions, model %u", (unsigned)u->uid, u->regions, n);
    CHECK(u->bytes == b, "uid %u: quota says %llu bytes, model %llu", (unsigned)u->uid,
          (unsigned long long)u->bytes, (unsigned long long)b);
}

static void
check_stats(Fuzz *f, uid_t uid, bool root)
{
    char *js = store_stats_json(f->s, uid, root, root ? "passthrough" : "cache", "device", 0);
    const char *why = NULL;
    CHECK(json_validate(js, strlen(js), &why), "invalid JSON (%s): %s", why, js);
    uint64_t v;
    CHECK(json_top_uint(js, "regions", &v) && v == store_region_count(f->s), "regions in %s", js);
    CHECK(json_top_uint(js, "bytes", &v) && v == quota_total_bytes(store_quota(f->s)), "bytes in %s", js);
    CHECK(json_top_uint(js, "lingering", &v) && v == store_count_in_state(f->s, REGION_LINGERING),
          "lingering in %s", js);
    CHECK(json_top_uint(js, "pinned", &v) && v == store_count_in_state(f->s, REGION_PINNED),
          "pinned in %s", js);
    StoreCounters c = store_counters(f->s);
    CHECK(json_top_uint(js, "created", &v) && v == c.created, "created in %s", js);
    CHECK(json_top_uint(js, "destroyed", &v) && v == c.destroyed, "destroyed in %s", js);
    CHECK(json_top_uint(js, "expired_mints", &v) && v == c.expired_mints, "expired_mints in %s", js);
    CHECK(c.created - c.destroyed == store_region_count(f->s), "created-destroyed != regions");
    CHECK((strstr(js, "\"per_uid\":") != NULL) == root, "per_uid only for root: %s", js);
    CHECK(strstr(js, "\"uid\":{\"uid\":") != NULL, "uid object in %s", js);
    g_free(js);
}

/* The lifetime invariants; cheap (no system calls), so they run after every
 * store_tick too.  The model's held flags must be current (update_held). */
static void
check_lifetime(Fuzz *f)
{
    for (unsigned i = 0; i < f->nregions; i++) {
        CapshmRegion *r = f->regions[i];
        RegionModel *m = &f->model[i];
        if (!region_is_alive(r)) {
            CHECK(!m->held, "region %u destroyed while held", i);
            continue;
        }
        if (m->held) {
            CHECK(region_is_held(r) && r->state == REGION_LIVE,
                  "region %u is open or mapped but the store has it in state %d "
                  "(open %u, kernel_held %d)", i, r->state, r->open_count, r->kernel_held);
            continue;
        }
        if (r->unlinked)
            CHECK(!m->told_free, "region %u: unlinked, the store knows it is free, still alive", i);
        if (m->told_free && r->pinned) {
            CHECK(r->state == REGION_PINNED, "region %u: pinned, the store knows it is free, "
                  "state %d", i, r->state);
        } else if (m->told_free) {
            /* Its linger runs from when the store learnt it is free (or
             * it was unpinned), to the microsecond: no store_tick at or
             * after the deadline has run since then, as store_tick runs at
             * every time store_next_due names. */
            int64_t deadline = m->linger_from + (int64_t)f->linger_s * G_USEC_PER_SEC;
            CHECK(r->state == REGION_LINGERING &&
                  (f->ticks == m->linger_tick || f->last_tick < deadline),
                  "region %u: lingering since %lld, state %d, a store_tick at %lld "
                  "(linger %u s)", i, (long long)m->linger_from, r->state,
                  (long long)f->last_tick, f->linger_s);
        }
        int64_t since = MAX(MAX(m->free_since, f->last_jump), MAX(m->last_unpin, m->last_err));
        if (r->pinned && !r->unlinked) {
            if (f->now >= since + NOTICE_US)
                CHECK(r->state == REGION_PINNED, "region %u: pinned, unheld since %lld, "
                      "state %d at %lld", i, (long long)since, r->state, (long long)f->now);
            continue;
        }
        int64_t deadline = since + NOTICE_US +
                           (r->unlinked ? 0 : (int64_t)f->linger_s * G_USEC_PER_SEC);
        CHECK(f->now < deadline,
              "region %u (ino %llu, unlinked %d, state %d, kernel_held %d) nobody holds since "
              "%lld outlives its deadline %lld (now %lld, linger %u s)",
              i, (unsigned long long)r->ino, r->unlinked, r->state, r->kernel_held,
              (long long)since, (long long)deadline, (long long)f->now, f->linger_s);
    }
}

static void
check_model(Fuzz *f)
{
    unsigned alive = 0, lingering = 0, pinned = 0;
    uint64_t bytes = 0;
    update_held(f);
    for (unsigned i = 0; i < f->nregions; i++) {
        CapshmRegion *r = f->regions[i];
        if (!region_is_alive(r)) {
            CHECK(r->fd < 0, "destroyed region keeps its fd");
            CHECK(store_lookup(f->s, r->name, NULL) != r, "destroyed region found by name");
            continue;
        }
        alive++;
        bytes += r->size;
        lingering += r->state == REGION_LINGERING;
        pinned += r->state == REGION_PINNED;
        CHECK(r->fd >= 0, "live memfd region without its fd");
        struct stat st;
        CHECK(fstat(r->fd, &st) == 0 && (uint64_t)st.st_size == r->size,
              "region says %llu bytes, its memfd has %lld", (unsigned long long)r->size,
              (long long)st.st_size);
        unsigned w, n = model_opens(f, r, &w);
        CHECK(r->open_count == n && r->writable_opens == w,
              "region %u: store counts %u open (%u writable), model %u (%u)", i, r->open_count,
              r->writable_opens, n, w);
        if (r->open_count > 0)
            CHECK(r->state == REGION_LIVE, "open region in state %d", r->state);
        if (r->open_count > 0 || !f->passthrough)
            CHECK(!r->kernel_held, "kernel_held with open handles or on the cache path");
        if (r->state == REGION_PINNED)
            CHECK(r->pinned, "state pinned but not pinned");
        if (r->unlinked)
            CHECK(r->state == REGION_LIVE, "unlinked unheld region survives (state %d)", r->state);
        bool is_ro = true;
        CapshmRegion *found = store_lookup(f->s, r->name, &is_ro);
        if (r->unlinked) {
            CHECK(found != r, "unlinked region still found by name");
        } else {
            CHECK(found == r && !is_ro, "live region not found by its name");
            if (r->ro_name) {
                found = store_lookup(f->s, r->ro_name, &is_ro);
                CHECK(found == r && is_ro, "live region not found by its read-only name");
            }
        }
    }
    CHECK(store_region_count(f->s) == alive, "store has %u regions, model %u",
          store_region_count(f->s), alive);
    CHECK(quota_total_bytes(store_quota(f->s)) == bytes, "quota total %llu, model %llu",
          (unsigned long long)quota_total_bytes(store_quota(f->s)), (unsigned long long)bytes);
    CHECK(store_count_in_state(f->s, REGION_LINGERING) == lingering, "lingering count");
    CHECK(store_count_in_state(f->s, REGION_PINNED) == pinned, "pinned count");
    CHECK(bytes <= quota_size_limit(store_quota(f->s)), "over the size limit");
    quota_foreach(store_quota(f->s), check_usage, f);
    StoreCounters c = store_counters(f->s);
    CHECK(c.destroyed == f->destroy_hooks, "%llu destroyed, %llu destroy hooks",
          (unsigned long long)c.destroyed, (unsigned long long)f->destroy_hooks);
    check_lifetime(f);
}

/* --- the clock ------------------------------------------------------------------ */

static void
tick_at(Fuzz *f, int64_t t)
{
    f->now = t;
    int64_t d = store_tick(f->s);
    f->ticks++;
    f->last_tick = t;
    CHECK(d == -1 || d > 0, "store_tick gave %lld: everything due should have run",
          (long long)d);
    CHECK(store_next_due(f->s) == d, "store_next_due %lld, store_tick said %lld",
          (long long)store_next_due(f->s), (long long)d);
    check_lifetime(f);
}

/* Move the clock to @target the way the daemon does: store_tick at every
 * time store_next_due names on the way, and at @target. */
static void
advance(Fuzz *f, int64_t target)
{
    update_held(f);
    for (unsigned steps = 0;; steps++) {
        CHECK(steps < 100000, "store_tick keeps asking to be called");
        int64_t d = store_next_due(f->s);
        CHECK(d >= -1, "store_next_due gave %lld", (long long)d);
        bool last = d < 0 || d >= target - f->now;
        tick_at(f, last ? target : f->now + d);
        if (last)
            break;
    }
}

/* --- the fake process world --------------------------------------------------------- */

static CapshmRegion *
pick_region(Fuzz *f)
{
    uint8_t b = next(f);
    return f->nregions ? f->regions[b % f->nregions] : NULL;
}

static void
track_region(Fuzz *f, CapshmRegion *r)
{
    if (region_index(f, r) >= 0)
        return;
    CHECK(f->nregions < MAX_REGIONS, "region table full");
    /* Nobody has it open yet: it is free from now on. */
    f->model[f->nregions] = (RegionModel){ .held = false, .free_since = f->now,
                                           .last_unpin = INT64_MIN, .last_err = INT64_MIN,
                                           .told_free = true, .linger_from = f->now,
                                           .linger_tick = f->ticks };
    f->regions[f->nregions++] = region_ref(r);
}

/* The FUSE layer's OPEN: on the passthrough path it registers the store's
 * backing file (the memfd itself with memfd storage). */
static int
add_handle(Fuzz *f, CapshmRegion *r, pid_t tgid, bool writable)
{
    if (f->nhandles >= MAX_HANDLES || !region_is_alive(r))
        return -1;
    store_opened(f->s, r, writable);
    if (f->passthrough) {
        int fd = store_backing_fd(f->s, r);
        CHECK(fd >= 0 && fd == r->fd, "backing fd %d, region fd %d", fd, r->fd);
    }
    f->handles[f->nhandles] = (Handle){ region_ref(r), tgid, writable };
    return (int)f->nhandles++;
}

/* A RELEASE.  The last one of an unlinked region that nobody maps destroys
 * it at once, unless the probe failed (the store then asks again later). */
static void
store_release(Fuzz *f, CapshmRegion *r, bool writable)
{
    uint64_t errors = f->probe_errors;
    store_released(f->s, r, writable);
    int i = region_index(f, r);
    if (!f->passthrough && !model_held(f, r)) {
        f->model[i].told_free = true; /* no mapping outlives the handles */
        linger_starts(f, i);
    }
    CHECK(!region_is_alive(r) || !r->unlinked || model_held(f, r) || f->probe_errors != errors,
          "unlinked region ino %llu nobody holds survives its last release (state %d, "
          "kernel_held %d)", (unsigned long long)r->ino, r->state, r->kernel_held);
}

static void
release_handle(Fuzz *f, unsigned i)
{
    Handle h = f->handles[i];
    f->handles[i] = f->handles[--f->nhandles];
    store_release(f, h.r, h.writable);
    region_unref(h.r);
}

static void
remove_mapping(Fuzz *f, unsigned i)
{
    Mapping m = f->maps[i];
    f->maps[i] = f->maps[--f->nmaps];
    if (m.holds_open)
        store_release(f, m.r, m.writable);
    region_unref(m.r);
}

/* Process @tgid maps @r (a = the operation's flag byte). */
static void
map_region(Fuzz *f, CapshmRegion *r, pid_t tgid, uint8_t a)
{
    if (f->nmaps >= MAX_MAPS || !region_is_alive(r))
        return;
    int h = -1;
    for (unsigned i = 0; i < f->nhandles; i++)
        if (f->handles[i].r == r && f->handles[i].tgid == tgid)
            h = (int)i;
    if (h < 0) {
        /* Not open in this process: open it by name first (impossible
         * once it is unlinked). */
        if (r->unlinked)
            return;
        h = add_handle(f, r, tgid, a & 0x10);
        if (h < 0)
            return;
    }
    bool writable = f->handles[h].writable && (a & 0x20);
    uint64_t ino = (a & 0x80) && r->ro_ino ? r->ro_ino : r->ino;
    f->maps[f->nmaps++] = (Mapping){ region_ref(r), tgid, ino, writable, !f->passthrough };
    if (!f->passthrough)
        store_opened(f->s, r, writable); /* the mapped file stays open */
    if (a & 0x08)
        release_handle(f, (unsigned)h); /* open, mmap, close */
}

static void
unmap_region(Fuzz *f, CapshmRegion *r, pid_t tgid)
{
    for (unsigned i = f->nmaps; i-- > 0;)
        if (f->maps[i].r == r && f->maps[i].tgid == tgid) {
            remove_mapping(f, i);
            return;
        }
}

static void
kill_process(Fuzz *f, pid_t tgid)
{
    /* The kernel drops its mappings (exit_mm), then closes its files
     * (RELEASE arrives after the mappings are gone). */
    for (unsigned i = f->nmaps; i-- > 0;)
        if (f->maps[i].tgid == tgid)
            remove_mapping(f, i);
    for (unsigned i = f->nhandles; i-- > 0;)
        if (f->handles[i].tgid == tgid)
            release_handle(f, i);
}

/* --- operations ------------------------------------------------------------------- */

static const char *
pick_name(Fuzz *f, char buf[NAMES_MAX + 1])
{
    uint8_t how = next(f);
    switch (how % 5) {
    case 0:
        if (f->nmints)
            return f->mints[next(f) % f->nmints];
        break;
    case 1: {
        CapshmRegion *r = pick_region(f);
        if (r)
            return r->name;
        break;
    }
    case 2: {
        CapshmRegion *r = pick_region(f);
        if (r && r->ro_name)
            return r->ro_name;
        break;
    }
    case 3: {
        /* A near miss of a known name: one character changed. */
        CapshmRegion *r = pick_region(f);
        if (r) {
            g_strlcpy(buf, r->name, NAMES_MAX + 1);
            size_t len = strlen(buf);
            uint8_t c = next(f);
            buf[next(f) % len] = c ? (char)c : 'x';
            return buf;
        }
        break;
    }
    default:
        break;
    }
    /* Raw bytes from the input. */
    size_t len = next(f) % 40;
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t c = next(f);
        buf[i] = c ? (char)c : 'a';
    }
    buf[i] = '\0';
    return buf;
}

static void
op_create(Fuzz *f)
{
    char buf[NAMES_MAX + 1];
    const char *name = pick_name(f, buf);
    uint8_t a = next(f);
    uint8_t who = next(f);
    CapshmCaller c = { .uid = a % 3 == 0 ? 0 : 1000 + a % 3, .gid = 100, .pid = who % (NPROC + 1) };
    mode_t mode = (mode_t)next64(f, 2);
    bool excl = a & 8;
    bool open_it = a & 16;
    if (f->nregions >= MAX_REGIONS)
        return;
    g_autofree char *name_copy = g_strdup(name); /* a mint buffer may be reused */
    bool existed = store_lookup(f->s, name_copy, NULL) != NULL;
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = store_create(f->s, &c, name_copy, mode, excl, &r, &created);
    if (existed) {
        CHECK(excl ? rc == -EEXIST : (rc == 0 && !created && r), "create of existing: %d", rc);
    }
    if (rc == 0) {
        CHECK(r && region_is_alive(r), "create returned no live region");
        if (created) {
            CHECK(!existed && strcmp(r->name, name_copy) == 0 && r->uid == c.uid, "created region");
            CHECK(r->size == 0 && (r->mode & ~07777u) == 0, "fresh region attributes");
        }
        track_region(f, r);
        if (open_it)
            add_handle(f, r, 1 + who % NPROC, a & 32);
    } else {
        CHECK(rc == -EACCES || rc == -EEXIST || rc == -EDQUOT, "create gave %d", rc);
        CHECK(r == NULL && !created, "failed create returned a region");
    }
}

static void
op_write(Fuzz *f, CapshmRegion *r, uint64_t off, uint64_t len)
{
    uint64_t reserved;
    uint64_t before_total = quota_total_bytes(store_quota(f->s));
    int rc = store_write_begin(f->s, r, off, len, &reserved);
    if (rc < 0) {
        CHECK(rc == -EDQUOT || rc == -ENOSPC || rc == -EFBIG || rc == -EPERM || rc == -ENOENT,
              "write_begin gave %d", rc);
        CHECK(quota_total_bytes(store_quota(f->s)) == before_total, "failed write_begin charged");
        return;
    }
    /* Land a prefix of the write, as a short write would. */
    uint64_t upto = (uint64_t)next(f) * 64; /* not inside MIN(): it evaluates twice */
    uint64_t want = MIN(len, upto);
    ssize_t n = 0;
    if (want) {
        char *buf = g_malloc0(want);
        n = pwrite(store_data_fd(f->s, r), buf, want, (off_t)off);
        g_free(buf);
    }
    store_write_done(f->s, r, off, n > 0 ? (uint64_t)n : 0, reserved);
}

static void
run_op(Fuzz *f, uint8_t op)
{
    switch (op % NOPS) {
    case 0: {
        uid_t uid = next(f) % 3 == 0 ? 0 : 1001;
        char name[NAMES_BUF];
        int rc = store_mint(f->s, uid, name);
        CHECK(rc == 0 || rc == -EDQUOT, "mint gave %d", rc);
        if (rc == 0) {
            CHECK(names_is_capability(name), "minted \"%s\"", name);
            CHECK(store_lookup(f->s, name, NULL) == NULL, "minted name already names a region");
            memcpy(f->mints[f->nmints < MAX_MINTS ? f->nmints++ : next(f) % MAX_MINTS], name, NAMES_BUF);
        }
        break;
    }
    case 1:
    case 2:
        op_create(f);
        break;
    case 3: {
        CapshmRegion *r = pick_region(f);
        if (r)
            add_handle(f, r, 1 + next(f) % NPROC, next(f) & 1);
        break;
    }
    case 4:
        if (f->nhandles)
            release_handle(f, next(f) % f->nhandles);
        break;
    case 5: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t size = how & 0x80 ? next64(f, 8) : next64(f, 3);
        if (!r)
            break;
        uint64_t before = r->size;
        int rc = store_resize(f->s, r, size);
        if (rc == 0)
            CHECK(r->size == size, "resize to %llu left %llu", (unsigned long long)size,
                  (unsigned long long)r->size);
        else
            CHECK(r->size == before && (rc == -EDQUOT || rc == -ENOSPC || rc == -EFBIG ||
                                        rc == -EPERM || rc == -ENOENT),
                  "resize gave %d", rc);
        break;
    }
    case 6: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t off = how & 0x80 ? next64(f, 8) : next64(f, 3);
        uint64_t len = how & 0x40 ? next64(f, 8) : next64(f, 2);
        if (r && region_is_alive(r))
            op_write(f, r, off, len);
        break;
    }
    case 7: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t off = how & 0x80 ? next64(f, 8) : next64(f, 3);
        uint64_t len = how & 0x40 ? next64(f, 8) : next64(f, 2);
        if (!r || off > INT64_MAX || len > INT64_MAX)
            break; /* the FUSE layer refuses negative off_t values */
        int rc = store_fallocate(f->s, r, off, len);
        CHECK(rc <= 0, "fallocate gave %d", rc);
        break;
    }
    case 8: {
        CapshmRegion *r = pick_region(f);
        bool pin = next(f) & 1;
        if (!r)
            break;
        int i = region_index(f, r);
        if (!pin && r->pinned) {
            f->model[i].last_unpin = f->now; /* its linger starts afresh */
            linger_starts(f, i);
        }
        store_set_pinned(f->s, r, pin);
        break;
    }
    case 9: {
        CapshmRegion *r = pick_region(f);
        if (!r)
            break;
        bool was = region_is_alive(r) && !r->unlinked;
        int rc = store_unlink(f->s, r);
        CHECK(was ? rc == 0 : rc == -ENOENT, "unlink gave %d (was named: %d)", rc, was);
        CHECK(store_lookup(f->s, r->name, NULL) != r, "unlinked name still found");
        break;
    }
    case 10:
        /* Advance the clock by up to ~65 s, ticking whenever due. */
        advance(f, f->now + (int64_t)next64(f, 2) * 1000);
        break;
    case 11: {
        CapshmRegion *r = pick_region(f);
        if (!r)
            break;
        int rc = store_seal(f->s, r);
        CHECK(rc == 0 || rc == -EBUSY || rc == -ENOENT, "seal gave %d", rc);
        if (rc == 0) {
            CHECK(r->sealed, "seal returned 0 but not sealed");
            CHECK(store_resize(f->s, r, r->size + 1) == -EPERM, "sealed region grew");
        }
        break;
    }
    case 12: {
        CapshmRegion *r = pick_region(f);
        uint8_t a = next(f);
        if (!r)
            break;
        int rc = store_chown(f->s, r, a % 3 == 0 ? 0 : 1000 + a % 3, a);
        CHECK(rc == 0 || rc == -EDQUOT || rc == -ENOSPC || rc == -ENOENT, "chown gave %d", rc);
        break;
    }
    case 13: {
        CapshmRegion *r = pick_region(f);
        if (r && region_is_alive(r)) {
            const char *ro = store_ro_name(f->s, r);
            CHECK(ro && names_is_capability(ro) && strcmp(ro, r->name) != 0, "ro name");
            CHECK(store_ro_name(f->s, r) == ro, "ro name changes");
        }
        break;
    }
    case 14: {
        char buf[NAMES_MAX + 1];
        const char *name = pick_name(f, buf);
        bool is_ro = false;
        CapshmRegion *r = store_lookup(f->s, name, &is_ro);
        if (r) {
            CHECK(region_is_alive(r) && !r->unlinked, "lookup found a dead or unlinked region");
            CHECK(strcmp(is_ro ? r->ro_name : r->name, name) == 0, "lookup found the wrong region");
        }
        break;
    }
    case 15: {
        /* A process maps (or unmaps) a region. */
        CapshmRegion *r = pick_region(f);
        uint8_t a = next(f);
        pid_t tgid = 1 + a % NPROC;
        if (!r)
            break;
        if (a & 0x40)
            unmap_region(f, r, tgid);
        else
            map_region(f, r, tgid, a);
        break;
    }
    case 16:
        kill_process(f, 1 + next(f) % NPROC);
        break;
    case 17: {
        /* The probe fails (-EMFILE) for the next few questions, or from now
         * on until told otherwise. */
        uint8_t a = next(f);
        if (a & 0x80)
            f->fail_always = !f->fail_always;
        else
            f->fail_next = a % 8;
        break;
    }
    case 18: {
        uint8_t a = next(f);
        check_stats(f, a % 3 == 0 ? 0 : 1000 + a % 3, a & 4);
        break;
    }
    case 19: {
        GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
        uid_t uid = next(f) % 3 == 0 ? 0 : 1001;
        store_list(f->s, uid, uid == 0, list);
        for (guint i = 0; i < list->len; i++) {
            CapshmRegion *r = list->pdata[i];
            CHECK(region_is_alive(r) && !r->unlinked, "listed a dead or unlinked region");
            CHECK(uid == 0 || r->uid == uid, "listed another uid's region");
        }
        g_ptr_array_free(list, TRUE);
        break;
    }
    default: {
        /* The clock jumps (the daemon was stopped or starved) and one
         * store_tick runs whatever became due meanwhile. */
        uint8_t how = next(f);
        int64_t by = (int64_t)next64(f, how & 1 ? 3 : 2) * 1000;
        update_held(f);
        f->last_jump = f->now + by;
        tick_at(f, f->now + by);
        break;
    }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Criticals are bugs here; warnings too, but for one (log_handler). */
    g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_FATAL_MASK);
    g_log_set_default_handler(log_handler, NULL);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Fuzz f = { .p = data, .end = data + size, .now = 1000000, .last_jump = INT64_MIN };
    uint8_t cfg = next(&f);
    CapshmOptions o;
    options_init(&o);
    o.names = cfg & 1 ? NAMES_MODE_ANY : NAMES_MODE_CAPABILITY;
    /* The model is lifetime=holders (names=any defaults to lifetime=unlink,
     * which the unit tests cover). */
    o.lifetime = LIFETIME_HOLDERS;
    o.linger_s = (cfg >> 2) & 3;
    o.mint_ttl_s = 1 + ((cfg >> 4) & 3) * 20;
    o.size_bytes = (uint64_t)(1 + next(&f) % 16) << 18;   /* 256 KiB .. 4 MiB */
    o.quota_bytes = next(&f) & 1 ? o.size_bytes : o.size_bytes / 2;
    o.max_regions = 1 + next(&f) % 8;
    o.size_set = o.quota_set = true;
    f.passthrough = cfg & 2;
    f.linger_s = o.linger_s;
    /* memfd storage: a private tmpfs per input would cost a mount each. */
    f.s = store_new(&o, f.passthrough, storage_new(STORAGE_MEMFD, NULL, NULL));
    options_clear(&o);
    current = &f;
    store_set_clock(f.s, fake_now, &f);
    store_set_hold_probe(f.s, fake_probe, &f);
    store_set_destroy_hook(f.s, on_destroy, &f);
    store_set_unheld_hook(f.s, on_unheld, &f);

    unsigned nops = 0;
    static int trace = -1;
    if (trace < 0)
        trace = getenv("FUZZ_TRACE") != NULL;
    while (f.p < f.end && nops++ < 400) {
        uint8_t op = next(&f);
        const uint8_t *args = f.p;
        run_op(&f, op);
        if (trace) {
            fprintf(stderr, "op %2u args", op % NOPS);
            for (const uint8_t *a = args; a < f.p; a++)
                fprintf(stderr, " %02x", *a);
            fprintf(stderr, "  (now %lld, probe %s)\n", (long long)f.now,
                    f.fail_always ? "failing" : f.fail_next ? "failing soon" : "ok");
            for (unsigned i = 0; i < f.nregions; i++) {
                CapshmRegion *r = f.regions[i];
                fprintf(stderr, "  region %u: ino %llu/%llu uid %u size %llu state %d open %u "
                        "kernel_held %d mapped %d unlinked %d pinned %d sealed %d\n",
                        i, (unsigned long long)r->ino, (unsigned long long)r->ro_ino,
                        (unsigned)r->uid, (unsigned long long)r->size, r->state, r->open_count,
                        r->kernel_held, model_mapped(&f, r), r->unlinked, r->pinned, r->sealed);
            }
            fprintf(stderr, "  quota total %llu\n", (unsigned long long)quota_total_bytes(store_quota(f.s)));
        }
        check_model(&f);
    }
    check_stats(&f, 0, true);

    /* Everyone goes away and the probe heals: within linger + 1.25 s every
     * region but the pinned, named ones must be gone. */
    while (f.nhandles)
        release_handle(&f, f.nhandles - 1);
    for (pid_t p = 1; p <= NPROC; p++)
        kill_process(&f, p);
    CHECK(f.nmaps == 0, "mappings left after every process died");
    f.fail_always = false;
    f.fail_next = 0;
    check_model(&f);
    advance(&f, f.now + (int64_t)f.linger_s * G_USEC_PER_SEC + 2 * G_USEC_PER_SEC);
    check_model(&f);
    for (unsigned i = 0; i < f.nregions; i++) {
        CapshmRegion *r = f.regions[i];
        CHECK(!region_is_alive(r) || (r->pinned && !r->unlinked && r->state == REGION_PINNED),
              "region %u (state %d, pinned %d) outlived every holder", i, r->state, r->pinned);
    }
    check_stats(&f, 0, true);
    f.freeing = true;
    store_free(f.s);
    current = NULL;
    for (unsigned i = 0; i < f.nregions; i++) {
        CHECK(!region_is_alive(f.regions[i]), "store_free left a live region");
        region_unref(f.regions[i]);
    }
    return 0;
}
