/* SPDX-License-Identifier: MIT */
/* store_private — what the store's own files share, and nothing else reads:
 * struct CapshmStore, the Mint record, and the helpers one store file owns
 * and the others call.  Included only by src/core/store*.c (and, if they
 * need to look inside, the unit tests); it is not installed, and the FUSE
 * layer and the daemon use store.h alone.
 *
 * The store is split by concern; each file's header says what it owns:
 *   store.c           creation, freeing, the core lock, hooks, counters,
 *                     the .stats JSON
 *   store_names.c     mints, lookup, create and unlink, directories, links
 *                     and renames (names=any), listings, read-only names
 *   store_data.c      data and backing fds, resize, writes and their quota
 *                     reservations, fallocate, chown/chmod/times, seal
 *   store_lifetime.c  opened/released, the kernel's hold question, linger,
 *                     pins, store_tick/store_next_due, destroying a region
 *
 * Ownership model: `alive` holds one reference to every region that is not
 * destroyed, `dirs` one to every directory (the root included); the
 * directories' entries tables own the links (names), which borrow their
 * targets, and `by_ro_name` borrows from `alive`.  The linger and probe
 * queues use links embedded in the regions (no allocation, O(1) removal).
 * Regions the kernel still holds after their last handle closed wait in
 * `probe_fast` while they are asked at short, growing intervals, then in
 * `probe_slow` (FIFO: one fixed interval, so insertion order is due order).
 * Mints live in `mints` (owned) and are linked into `mint_queue` in expiry
 * order: mint_ttl is the same for all, so insertion order is expiry order;
 * the same holds for the linger queue.
 */
#pragma once

#include <pthread.h>

#include "store.h"

typedef struct {
    char name[NAMES_BUF];
    uid_t uid;
    int64_t deadline_us;
    GList link;
} Mint;

struct CapshmStore {
    CapshmOptions opts;
    CapshmStorage *storage;   /* owned */
    bool mappings_outlive_handles;
    Quota *quota;
    GHashTable *alive;        /* CapshmRegion* set (owns one ref each) */
    GHashTable *dirs;         /* directories, root included (owns one ref each) */
    CapshmRegion *root;       /* the root directory: its entries are the names */
    bool until_unlinked;      /* lifetime=unlink */
    bool cgroup_lifetime;     /* lifetime=cgroup */
    char *cgroup2;            /* where the cgroup v2 hierarchy is mounted; owned */
    /* lifetime=cgroup: unheld regions past their linger whose creator's
     * cgroup still lived at the last look; looked at again every
     * CGROUP_RECHECK_US, FIFO (one interval, so insertion order is due
     * order); through linger_link. */
    GQueue cgroup_queue;
    GHashTable *by_ro_name;   /* ro name -> region (borrowed) */
    GHashTable *mints;        /* name -> Mint* (owned) */
    GQueue mint_queue;
    GQueue linger_queue;
    GQueue probe_fast;
    GQueue probe_slow;
    uint64_t next_ino;
    StoreCounters counters;
    pthread_mutex_t lock;     /* the core lock */
    StoreDestroyHook destroy_hook;
    void *destroy_data;
    StoreUnheldHook unheld_hook;
    void *unheld_data;
    StoreHoldProbe probe;
    void *probe_data;
    bool probe_error_logged;
    int64_t (*now_us)(void *);
    void *clock_data;
    /* Closes the last fd of destroyed regions, off the core lock: freeing a
     * big region's pages takes long (store_region_destroy).  One thread. */
    GThreadPool *reaper;
};

/* --- helpers shared between the store's files --------------------------------
 * Each is defined in the file named above it.  Under the core lock, like
 * everything in the store. */

/* store.c */

/* The store's clock (store_set_clock), in microseconds. */
int64_t store_now(CapshmStore *s);

/* A new directory, owned by `dirs` (its one reference); not linked anywhere. */
CapshmRegion *store_dir_new(CapshmStore *s, uint64_t ino, uid_t uid, gid_t gid, mode_t mode);

/* store_names.c */

/* Forget mint @m (freed) and give its mint back to the quota. */
void store_mint_remove(CapshmStore *s, Mint *m);

/* Remove every name of @r and its read-only name: @r is unlinked. */
void store_drop_names(CapshmStore *s, CapshmRegion *r);

/* store_data.c */

/* Close @r's data fd if nobody has @r open and the storage keeps the bytes
 * without it. */
void store_close_idle_fd(CapshmStore *s, CapshmRegion *r);

/* What quota holds for @r: its size, or more while writes are in flight. */
uint64_t store_charged_bytes(const CapshmRegion *r);

/* store_lifetime.c */

/* Settle @r's state after anything that may change whether it is held:
 * live, pinned, lingering (its deadline starts), or destroyed at once. */
void store_reevaluate(CapshmStore *s, CapshmRegion *r);

/* A name of @r went away: store_reevaluate, but first, if that was its last
 * name, store_recheck_held: an unlink right after the last close frees @r. */
void store_name_dropped(CapshmStore *s, CapshmRegion *r);

/* Destroy @r now: the destroy hook runs, its names, fds, bytes and quota go,
 * and `alive` drops its reference.  Nothing if already destroyed. */
void store_region_destroy(CapshmStore *s, CapshmRegion *r);
