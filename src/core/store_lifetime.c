/* SPDX-License-Identifier: MIT */
/* store_lifetime — how long a region lives (store.h, "Lifetime"): file
 * handles opened and released; the kernel's hold question on the
 * passthrough path, asked at growing intervals from `probe_fast`, then once
 * a second from `probe_slow`; linger (`linger_queue`) and pins; what
 * store_tick runs and store_next_due reports (expired mints, lingering
 * regions past their deadline, a bounded batch of kernel questions); and
 * destroying a region (store_region_destroy; its last fd is closed by the
 * store's reaper thread when it is big, so its pages are freed off the
 * core lock).
 */
#include "procwatch.h"
#include "store_private.h"

#include <fcntl.h>
#include <unistd.h>

/* When to ask the kernel again while it says "held": a region whose last
 * handle just closed is usually free within microseconds (the client's
 * backing file is put right after its RELEASE is sent); a mapping that
 * outlives its handle may stay for hours. */
static const int64_t probe_delays_us[] = { 2000, 10000, 50000, 250000 };
#define N_FAST_PROBES G_N_ELEMENTS(probe_delays_us)
#define SLOW_PROBE_US (1000 * 1000)
/* lifetime=cgroup: how often to look again whether the creator's cgroup of
 * an unheld region has ended. */
#define CGROUP_RECHECK_US (2 * 1000 * 1000)
/* Most kernel questions per store_tick, so that the lock is held briefly
 * even when an attacker maps tens of thousands of regions. */
#define PROBES_PER_TICK 256

static void
queue_remove(GQueue *q, GList *link)
{
    if (link->data) {
        g_queue_unlink(q, link);
        link->data = NULL;
    }
}

static void
queue_add(GQueue *q, GList *link, CapshmRegion *r)
{
    if (!link->data) {
        link->data = r;
        g_queue_push_tail_link(q, link);
    }
}

static void
probe_dequeue(CapshmStore *s, CapshmRegion *r)
{
    if (r->probe_link.data)
        g_queue_unlink(r->probe_step <= N_FAST_PROBES ? &s->probe_fast : &s->probe_slow,
                       &r->probe_link);
    r->probe_link.data = NULL;
}

/* Ask again later: soon at first, then once a second. */
static void
probe_later(CapshmStore *s, CapshmRegion *r)
{
    probe_dequeue(s, r);
    r->probe_step++;
    if (r->probe_step <= N_FAST_PROBES) {
        r->probe_due_us = store_now(s) + probe_delays_us[r->probe_step - 1];
        queue_add(&s->probe_fast, &r->probe_link, r);
    } else {
        r->probe_due_us = store_now(s) + SLOW_PROBE_US;
        queue_add(&s->probe_slow, &r->probe_link, r);
    }
}

/* Out of the linger queue, or the cgroup queue: whichever has it. */
static void
linger_dequeue(CapshmStore *s, CapshmRegion *r)
{
    queue_remove(r->cgroup_wait ? &s->cgroup_queue : &s->linger_queue, &r->linger_link);
    r->cgroup_wait = false;
}

/* lifetime=cgroup: may @r, unheld and named, ever be reclaimed?  Not a
 * directory, and not a region whose creator's cgroup is unknown: those stay
 * until unlinked, as with lifetime=unlink. */
static bool
cgroup_reclaimable(const CapshmStore *s, const CapshmRegion *r)
{
    return s->cgroup_lifetime && !r->is_dir && r->creator_cgroup && s->cgroup2;
}

void
store_reevaluate(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return;
    if (region_is_held(r)) {
        r->state = REGION_LIVE;
        linger_dequeue(s, r);
        return;
    }
    if (r->unlinked) {
        store_region_destroy(s, r);
    } else if (r->pinned) {
        r->state = REGION_PINNED;
        linger_dequeue(s, r);
    } else if (s->until_unlinked || (s->cgroup_lifetime && !cgroup_reclaimable(s, r))) {
        /* lifetime=unlink: a name keeps it, as on tmpfs. */
        r->state = REGION_LIVE;
        linger_dequeue(s, r);
    } else if (r->state != REGION_LINGERING) {
        r->state = REGION_LINGERING;
        r->linger_deadline_us = store_now(s) + (int64_t)s->opts.linger_s * G_USEC_PER_SEC;
        queue_add(&s->linger_queue, &r->linger_link, r);
    }
}

/* The kernel holds @r no more: give back what was lent for passthrough. */
static void
kernel_let_go(CapshmStore *s, CapshmRegion *r)
{
    probe_dequeue(s, r);
    r->kernel_held = false;
    r->probe_step = 0;
    if (s->unheld_hook)
        s->unheld_hook(r, s->unheld_data);
    if (r->anchor_fd >= 0) {
        close(r->anchor_fd);
        r->anchor_fd = -1;
    }
}

/* Is @r, which has no open handle, still held by the kernel's counts? */
static int
ask_kernel(CapshmStore *s, CapshmRegion *r)
{
    store_close_idle_fd(s, r); /* our own writable fd would count */
    int own = r->anchor_fd >= 0 ? r->anchor_fd : storage_needs_open_fd(s->storage) ? r->fd : -1;
    int rc = s->probe ? s->probe(r, own, s->probe_data)
                      : storage_probe_unheld(s->storage, r->ino, own);
    if (rc < 0 && !s->probe_error_logged) {
        /* Held, to be safe: e.g. -EMFILE must never destroy a mapped region. */
        g_warning("asking the kernel whether a region is still mapped: %s (asking again later)",
                  g_strerror(-rc));
        s->probe_error_logged = true;
    }
    return rc == 0 ? 0 : 1;
}

/* @r has no open handle: settle whether something else holds it. */
static void
settle_unopened(CapshmStore *s, CapshmRegion *r)
{
    if (s->mappings_outlive_handles && ask_kernel(s, r)) {
        r->kernel_held = true;
        probe_later(s, r);
    } else {
        kernel_let_go(s, r);
    }
    store_reevaluate(s, r);
}

/* Only the kernel's counts hold @r: ask again, and let go if it is free. */
static void
recheck(CapshmStore *s, CapshmRegion *r)
{
    if (!ask_kernel(s, r)) {
        kernel_let_go(s, r);
        store_reevaluate(s, r);
    }
}

void
store_recheck_held(CapshmStore *s, CapshmRegion *r)
{
    if (region_is_alive(r) && r->kernel_held && r->open_count == 0)
        recheck(s, r);
}

void
store_recheck_just_released(CapshmStore *s)
{
    unsigned asked = 0;
    for (GList *l = s->probe_fast.head; l && asked < PROBES_PER_TICK;) {
        GList *next = l->next;
        CapshmRegion *r = l->data;
        if (r->probe_step == 1) { /* found held at its last release */
            asked++;
            recheck(s, r);
        }
        l = next;
    }
}

void
store_name_dropped(CapshmStore *s, CapshmRegion *r)
{
    if (r->unlinked)
        store_recheck_held(s, r);
    store_reevaluate(s, r);
}

void
store_opened(CapshmStore *s, CapshmRegion *r, bool writable)
{
    if (!region_is_alive(r))
        return;
    r->open_count++;
    if (writable)
        r->writable_opens++;
    /* Held by a handle now: no need to ask the kernel until it closes. */
    probe_dequeue(s, r);
    r->kernel_held = false;
    r->probe_step = 0;
    store_reevaluate(s, r);
}

void
store_released(CapshmStore *s, CapshmRegion *r, bool writable)
{
    if (r->open_count > 0)
        r->open_count--;
    if (writable && r->writable_opens > 0)
        r->writable_opens--;
    if (!region_is_alive(r))
        return;
    store_close_idle_fd(s, r);
    if (r->open_count == 0)
        settle_unopened(s, r);
}

void
store_set_pinned(CapshmStore *s, CapshmRegion *r, bool pinned)
{
    if (!region_is_alive(r))
        return;
    r->pinned = pinned;
    if (!pinned && r->state == REGION_PINNED)
        r->state = REGION_LIVE; /* so store_reevaluate starts a fresh linger */
    store_reevaluate(s, r);
}

void
store_region_destroy(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return;
    /* Whoever drops the region file's last reference frees its pages: about
     * 0.13 s per GiB, too long to hold the core lock.  So for a big region
     * one fd is kept through the hook (the kernel's backing file), the
     * closes and the unlink below, and the reaper thread closes it after.
     * A small one is freed here: cheaper than a hand-over. */
    int last = -1;
    if (r->size >= STORE_SHRINK_OFF_LOCK) {
        last = r->fd >= 0 ? r->fd : r->anchor_fd;
        if (last < 0)
            last = storage_open(s->storage, r->ino, O_RDONLY); /* <0: freed here, then */
    }
    if (s->destroy_hook)
        s->destroy_hook(r, s->destroy_data);
    store_drop_names(s, r);
    linger_dequeue(s, r);
    probe_dequeue(s, r);
    if (r->fd >= 0 && r->fd != last)
        close(r->fd);
    r->fd = -1;
    if (r->anchor_fd >= 0 && r->anchor_fd != last)
        close(r->anchor_fd);
    r->anchor_fd = -1;
    storage_remove(s->storage, r->ino);
    if (last >= 0)
        g_thread_pool_push(s->reaper, GINT_TO_POINTER(last + 1), NULL);
    quota_release_bytes(s->quota, r->uid, store_charged_bytes(r));
    quota_release_region(s->quota, r->uid);
    r->state = REGION_DESTROYED;
    s->counters.destroyed++;
    g_hash_table_remove(s->alive, r);
    region_unref(r);
}

/* lifetime=cgroup: @r's linger is over; destroy it if its creator's cgroup
 * has ended, else look again in CGROUP_RECHECK_US.  One stat() of
 * cgroupfs, which never waits on a process. */
static void
cgroup_check(CapshmStore *s, CapshmRegion *r, int64_t t)
{
    if (!procwatch_cgroup_alive(s->cgroup2, r->creator_cgroup_path, r->creator_cgroup)) {
        store_region_destroy(s, r);
        return;
    }
    linger_dequeue(s, r);
    r->linger_deadline_us = t + CGROUP_RECHECK_US;
    r->cgroup_wait = true;
    queue_add(&s->cgroup_queue, &r->linger_link, r);
}

static void
expire_lingering(CapshmStore *s, int64_t t, unsigned budget)
{
    while (s->linger_queue.head) {
        CapshmRegion *r = s->linger_queue.head->data;
        if (r->linger_deadline_us > t)
            break;
        if (cgroup_reclaimable(s, r)) {
            if (budget == 0)
                break;
            budget--;
            cgroup_check(s, r, t);
        } else {
            store_region_destroy(s, r);
        }
    }
    while (s->cgroup_queue.head && budget > 0) {
        CapshmRegion *r = s->cgroup_queue.head->data;
        if (r->linger_deadline_us > t)
            break;
        budget--;
        cgroup_check(s, r, t);
    }
}

/* Ask the kernel about regions whose turn has come; at most @budget. */
static unsigned
run_probes(CapshmStore *s, int64_t t, unsigned budget)
{
    unsigned asked = 0;
    GList *l = s->probe_fast.head;
    while (l && asked < budget) {
        GList *next = l->next;
        CapshmRegion *r = l->data;
        if (r->probe_due_us <= t) {
            asked++;
            settle_unopened(s, r);
        }
        l = next;
    }
    while (s->probe_slow.head && asked < budget) {
        CapshmRegion *r = s->probe_slow.head->data;
        if (r->probe_due_us > t)
            break;
        asked++;
        settle_unopened(s, r);
    }
    return asked;
}

int64_t
store_tick(CapshmStore *s)
{
    int64_t t = store_now(s);
    while (s->mint_queue.head) {
        Mint *m = s->mint_queue.head->data;
        if (m->deadline_us > t)
            break;
        s->counters.expired_mints++;
        store_mint_remove(s, m);
    }
    run_probes(s, t, PROBES_PER_TICK);
    expire_lingering(s, t, PROBES_PER_TICK);
    return store_next_due(s); /* 0 while probes past the batch are still due */
}

int64_t
store_next_due(CapshmStore *s)
{
    int64_t t = store_now(s);

    int64_t next = -1;
#define CONSIDER(when) do { int64_t w_ = (when); if (next < 0 || w_ < next) next = w_; } while (0)
    if (s->mint_queue.head)
        CONSIDER(((Mint *)s->mint_queue.head->data)->deadline_us);
    if (s->linger_queue.head)
        CONSIDER(((CapshmRegion *)s->linger_queue.head->data)->linger_deadline_us);
    if (s->cgroup_queue.head)
        CONSIDER(((CapshmRegion *)s->cgroup_queue.head->data)->linger_deadline_us);
    for (GList *l = s->probe_fast.head; l; l = l->next)
        CONSIDER(((CapshmRegion *)l->data)->probe_due_us);
    if (s->probe_slow.head)
        CONSIDER(((CapshmRegion *)s->probe_slow.head->data)->probe_due_us);
#undef CONSIDER
    return next < 0 ? -1 : MAX(next - t, 0);
}
