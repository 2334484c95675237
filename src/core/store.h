/* SPDX-License-Identifier: MIT */
/* store — the heart of capshm: every region, every minted name, lifetime and
 * accounting.  It knows nothing of FUSE; the FUSE layer decodes a request,
 * calls one store function and replies.
 *
 * Ownership: the store owns its regions (one reference each while alive),
 * its mint table and its Quota.  Functions that return a CapshmRegion* return
 * a borrowed pointer; take region_ref() to keep it.  Functions return 0 or a
 * negative errno; nothing here replies to anyone or blocks on a client.
 *
 * Lifetime (SPEC.md "Lifetime"): a region is held while it has open file
 * handles or a known process maps it.  The FUSE layer reports opens and
 * releases; when the last handle of a region closes and the data path lets
 * mappings outlive handles (passthrough), the store asks its ProcOps whether
 * the openers still map it and watches them.  A region with no holder
 * lingers for linger seconds, then is destroyed unless pinned.  Time comes
 * from an injectable clock so the state machine can be unit-tested.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "options.h"
#include "quota.h"
#include "region.h"
#include "storage.h"

typedef struct CapshmStore CapshmStore;

typedef struct {
    uid_t uid;
    gid_t gid;
    pid_t pid;    /* thread id from the request, 0 when not visible */
} CapshmCaller;

/* How the store learns about processes: the daemon uses procwatch.c; unit
 * tests pass fakes.  All callbacks are optional. */
typedef struct {
    /* Thread-group id of thread @tid, or 0 if gone/unknown. */
    pid_t (*tgid_of)(void *data, pid_t tid);
    /* True if process @tgid currently maps node @ino (or @ro_ino, if nonzero)
     * of the mount.  A thread id must answer for its process, as
     * /proc/TID/maps does. */
    bool (*maps_node)(void *data, pid_t tgid, uint64_t ino, uint64_t ro_ino);
    /* Start/stop watching @tgid; when it exits the owner calls
     * store_process_exited(). */
    void (*watch)(void *data, pid_t tgid);
    void (*unwatch)(void *data, pid_t tgid);
    /* Fill @mappers (a set of node ids, GUINT64 keys → unused) with the node
     * ids in @wanted that any visible process maps, and @owners (node id →
     * GINT_TO_POINTER(tgid)) with one such process for each.  May be slow:
     * the store calls it once per batch of expiring regions. */
    void (*scan_all)(void *data, GHashTable *wanted, GHashTable *owners);
    void *data;
} StoreProcOps;

/* Called once for each region the moment it is destroyed (before its bytes
 * are released), so the FUSE layer can drop kernel state for it. */
typedef void (*StoreDestroyHook)(CapshmRegion *r, void *data);

typedef struct {
    uint64_t created, destroyed, expired_mints;
} StoreCounters;

/* @opts is copied.  @mappings_outlive_handles is true for passthrough.
 * The store takes ownership of @storage (storage.h). */
CapshmStore *store_new(const CapshmOptions *opts, bool mappings_outlive_handles,
                       CapshmStorage *storage);
/* Destroys every region (hooks run) and frees the store. */
void store_free(CapshmStore *s);

void store_set_proc_ops(CapshmStore *s, const StoreProcOps *ops);
void store_set_destroy_hook(CapshmStore *s, StoreDestroyHook hook, void *data);
/* Monotonic clock in microseconds; default g_get_monotonic_time. */
void store_set_clock(CapshmStore *s, int64_t (*now_us)(void *data), void *data);
void store_set_mappings_outlive_handles(CapshmStore *s, bool yes);

const CapshmOptions *store_options(const CapshmStore *s);
Quota *store_quota(CapshmStore *s);
StoreCounters store_counters(const CapshmStore *s);
CapshmStorage *store_storage(CapshmStore *s);
unsigned store_region_count(const CapshmStore *s);
unsigned store_count_in_state(const CapshmStore *s, RegionState st);

/* --- names ------------------------------------------------------------ */

/* Mint a fresh name reserved for @uid for mint_ttl seconds.
 * -EDQUOT when @uid has max_regions unused mints pending. */
int store_mint(CapshmStore *s, uid_t uid, char out[NAMES_BUF]);

/* The live region named @name (read-write or read-only name).  NULL means
 * ENOENT: unknown, minted-but-not-created, expired, unlinked and destroyed
 * names all look the same.  *is_ro tells which name matched. */
CapshmRegion *store_lookup(CapshmStore *s, const char *name, bool *is_ro);

/* Create region @name for @caller with permission bits @mode.
 *  -EACCES  name not minted by this uid (capability mode), expired, a
 *           control name, or not a valid name
 *  -EEXIST  exists and @excl
 *  -EDQUOT  max_regions reached
 * If the name exists and !@excl, returns 0 with *created false and the
 * existing region (the caller then opens it like a plain open). */
int store_create(CapshmStore *s, const CapshmCaller *caller, const char *name,
                 mode_t mode, bool excl, CapshmRegion **out, bool *created);

/* Remove @r's name (and its read-only name) at once; the memory stays for
 * current holders.  -ENOENT if already unlinked or destroyed.  (Refusing
 * unlink through a read-only name is the caller's check.) */
int store_unlink(CapshmStore *s, CapshmRegion *r);

/* Regions visible to @uid in readdir (owned by @uid; all if @all),
 * appended to @out as new references. */
void store_list(CapshmStore *s, uid_t uid, bool all, GPtrArray *out);

/* Mint (once) and return the read-only name of @r.  Borrowed. */
const char *store_ro_name(CapshmStore *s, CapshmRegion *r);

/* --- data ------------------------------------------------------------- */

/* The fd holding @r's bytes, for the FUSE layer's reads and writes.
 * Borrowed: the store closes it when the region is destroyed, sealed, or
 * (tmpfs storage) no longer open by anyone.  Read-write unless sealed.
 * -ENOENT if destroyed, or the storage's errno (e.g. -EMFILE). */
int store_data_fd(CapshmStore *s, CapshmRegion *r);

/* A new fd on @r's bytes to register as a passthrough backing file; the
 * caller closes it after registering.  Read-only with tmpfs storage. */
int store_open_backing(CapshmStore *s, CapshmRegion *r);

/* Allocated 512-byte blocks of @r (st_blocks).  0 or -errno. */
int store_region_blocks(CapshmStore *s, CapshmRegion *r, blkcnt_t *blocks);

/* Change @r's size, charging or releasing quota.  -EDQUOT, -ENOSPC,
 * -EFBIG (beyond 2^62), -EPERM (sealed), -ENOENT (destroyed), or the
 * storage's errno. */
int store_resize(CapshmStore *s, CapshmRegion *r, uint64_t size);

/* Reserve room for a write of @len bytes at @off before the data is copied
 * into the region's fd: charges growth past the current size.  Returns 0 and sets
 * *reserved_end (pass it to store_write_done), or -EDQUOT/-ENOSPC/-EFBIG/
 * -EPERM. */
int store_write_begin(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len,
                      uint64_t *reserved_end);
/* Settle a write: @written bytes landed at @off.  Releases any reservation
 * the write did not use. */
void store_write_done(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t written,
                      uint64_t reserved_end);

/* fallocate mode 0: make sure [off, off+len) is backed; grows like a write. */
int store_fallocate(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len);

/* Give @r to @uid/@gid, moving its quota charge.  -EDQUOT/-ENOSPC if the
 * new owner cannot take it (nothing changes then). */
int store_chown(CapshmStore *s, CapshmRegion *r, uid_t uid, gid_t gid);

/* Make @r immutable (SPEC.md "sealed").  -EBUSY while a writable open or
 * writable shared mapping exists; 0 if already sealed. */
int store_seal(CapshmStore *s, CapshmRegion *r);

/* --- lifetime ----------------------------------------------------------- */

/* A file handle on @r was opened by thread @tid (0 if unknown). */
void store_opened(CapshmStore *s, CapshmRegion *r, pid_t tid, bool writable);
/* That handle was released.  @tid is what store_opened got. */
void store_released(CapshmStore *s, CapshmRegion *r, pid_t tid, bool writable);
/* Process @tgid exited (its watch fired). */
void store_process_exited(CapshmStore *s, pid_t tgid);

/* Pin or unpin.  Unpinning an unheld region starts its linger. */
void store_set_pinned(CapshmStore *s, CapshmRegion *r, bool pinned);

/* Run everything due: expired mints, lingering regions past their deadline,
 * re-checks of mapped-only regions.  Returns the delay in microseconds until
 * store_tick is next needed, or -1 if nothing is pending. */
int64_t store_tick(CapshmStore *s);

/* Pids of the processes that hold @r; new array of pid_t. */
GArray *store_holder_pids(CapshmStore *s, CapshmRegion *r);

/* --- reporting ---------------------------------------------------------- */

/* The .stats JSON for @uid (with per_uid if @is_root); @datapath is
 * "passthrough" or "cache"; @transport is how requests reach the daemon
 * ("io_uring" or "device"); @requests is the FUSE requests served so far.
 * Caller frees. */
char *store_stats_json(CapshmStore *s, uid_t uid, bool is_root, const char *datapath,
                       const char *transport, uint64_t requests);
