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
 * Lifetime (capshmfs(8) LIFETIME): a region is held while it has open file
 * handles or, on the passthrough data path (where the kernel maps the
 * region's file directly and RELEASE comes at close, not at munmap), while
 * the kernel still counts an open file or mapping of its bytes in any
 * process.  That question is asked of the kernel itself, in O(1): a write
 * lease on the daemon's own file of the region can be taken exactly when no
 * other open file or mapping of it exists (storage_probe_unheld).  It is
 * asked when the last handle closes and then again with a growing interval
 * (2 ms ... 1 s) while the answer is "held".  Nothing reads other
 * processes' /proc to decide lifetime.  A region with no holder lingers for
 * linger seconds, then is destroyed unless pinned or (lifetime=unlink) it
 * still has a name; an unlinked one is destroyed as soon as it has no
 * holder.  Quota stays charged until then.
 * Time comes from an injectable clock, and the kernel question from an
 * injectable probe, so the state machine can be unit-tested.
 *
 * Locking: the store is not thread-safe by itself.  It owns one mutex, the
 * core lock (store_lock/store_unlock); every caller takes it around store
 * calls and around reads of region fields, and releases it before any
 * reply, any I/O on region data, and any /proc read.  What store functions
 * do under it is bounded and touches only the daemon's own files: O(1)
 * fcntl/ftruncate/fallocate calls on region files, never client memory.
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
    /* lifetime=cgroup: the creating process's cgroup v2 id and path below
     * the hierarchy's root (borrowed), read by the FUSE layer outside the
     * core lock; 0/NULL when unknown (the region is then kept until
     * unlinked). */
    uint64_t cgroup_id;
    const char *cgroup_path;
} CapshmCaller;

/* Called once for each region the moment it is destroyed (before its bytes
 * are released), so the FUSE layer can drop kernel state for it. */
typedef void (*StoreDestroyHook)(CapshmRegion *r, void *data);

/* Called when the kernel no longer holds @r (no open file, no mapping),
 * before the store closes the file lent by store_backing_fd: the FUSE layer
 * drops its passthrough backing id for @r here.  Under the core lock. */
typedef void (*StoreUnheldHook)(CapshmRegion *r, void *data);

/* Asks whether any open file or mapping of @r other than the store's own
 * exists: returns 1 held, 0 not held, or -errno (taken as held, asked
 * again later).  The default asks the kernel (storage_probe_unheld). */
typedef int (*StoreHoldProbe)(CapshmRegion *r, int own_fd, void *data);

typedef struct {
    uint64_t created, destroyed, expired_mints;
} StoreCounters;

/* @opts is copied.  @mappings_outlive_handles is true for passthrough.
 * The store takes ownership of @storage (storage.h).  It starts one thread
 * of its own, the reaper: the memory of a destroyed region of 4 MiB or
 * more goes back to the system there, a moment after its bytes leave the
 * quota, never under the core lock. */
CapshmStore *store_new(const CapshmOptions *opts, bool mappings_outlive_handles,
                       CapshmStorage *storage);
/* Destroys every region (hooks run), waits for the reaper to free their
 * memory, and frees the store. */
void store_free(CapshmStore *s);

/* lifetime=cgroup: where the cgroup v2 hierarchy is mounted (copied). */
void store_set_cgroup2(CapshmStore *s, const char *mount);

/* The core lock (see "Locking" above).  Not recursive. */
void store_lock(CapshmStore *s);
void store_unlock(CapshmStore *s);

void store_set_destroy_hook(CapshmStore *s, StoreDestroyHook hook, void *data);
void store_set_unheld_hook(CapshmStore *s, StoreUnheldHook hook, void *data);
/* Tests: replace the kernel question (NULL restores it). */
void store_set_hold_probe(CapshmStore *s, StoreHoldProbe probe, void *data);
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

/* Remove every name of @r (and its read-only name) at once; the memory
 * stays for current holders.  -ENOENT if already unlinked or destroyed.  (Refusing
 * unlink through a read-only name is the caller's check.) */
int store_unlink(CapshmStore *s, CapshmRegion *r);

/* --- directories and links (names=any) --------------------------------------
 *
 * Names live in directories: the root (store_root, node id 1) and, with
 * names=any, directories made by store_mkdir.  A directory is a
 * CapshmRegion with is_dir set: no bytes, never held, counted as one of its
 * owner's max_regions; it lives until rmdir.  A region has nlink names
 * (hard links, names=any only); unlinking removes one; the region is
 * `unlinked` when none is left, and then goes as soon as nobody holds it.
 * With lifetime=unlink (the default with names=any) a region with a name
 * lives until it is unlinked, whoever holds it; with lifetime=holders it
 * lingers after its last holder and is destroyed with all its names.
 * With names=capability, mkdir, link and rename are -EPERM.
 * A NULL directory means the root. */

#define STORE_RENAME_NOREPLACE 1u   /* = RENAME_NOREPLACE */
#define STORE_RENAME_EXCHANGE  2u   /* = RENAME_EXCHANGE */

CapshmRegion *store_root(CapshmStore *s);

/* The entry @name in @dir (a region or a directory), or NULL.  In the
 * root, read-only names are found too (*is_ro). */
CapshmRegion *store_lookup_at(CapshmStore *s, CapshmRegion *dir, const char *name, bool *is_ro);

/* store_create in directory @dir.  Also -ENOENT (@dir was removed) and
 * -EISDIR (@name is a directory and !@excl). */
int store_create_at(CapshmStore *s, const CapshmCaller *caller, CapshmRegion *dir,
                    const char *name, mode_t mode, bool excl, CapshmRegion **out, bool *created);

/* Make directory @name in @dir.  -EPERM (names=capability), -EEXIST,
 * -EACCES (not a name), -EDQUOT (max_regions), -ENOENT (@dir removed). */
int store_mkdir(CapshmStore *s, const CapshmCaller *caller, CapshmRegion *dir, const char *name,
                mode_t mode, CapshmRegion **out);

/* Remove name @name from @dir (POSIX unlink).  -ENOENT, -EISDIR, -EPERM (a
 * read-only name). */
int store_unlink_at(CapshmStore *s, CapshmRegion *dir, const char *name);

/* Remove empty directory @name from @dir.  -ENOENT, -ENOTDIR, -ENOTEMPTY. */
int store_rmdir(CapshmStore *s, CapshmRegion *dir, const char *name);

/* Give region @r one more name.  -EPERM (names=capability or a directory),
 * -ENOENT (@r has no name left), -EEXIST, -EACCES. */
int store_link(CapshmStore *s, CapshmRegion *r, CapshmRegion *dir, const char *name);

/* rename(2)/renameat2(2) with STORE_RENAME_* @flags, as tmpfs does it:
 * replaces the target (a file by a file, an empty directory by a
 * directory), or fails with -EEXIST (NOREPLACE), -ENOENT, -ENOTDIR,
 * -EISDIR, -ENOTEMPTY, -EINVAL (a directory into itself, unknown flags),
 * -EPERM (names=capability, a read-only name), -EACCES (not a name). */
int store_rename(CapshmStore *s, CapshmRegion *odir, const char *oname, CapshmRegion *ndir,
                 const char *nname, unsigned flags);

/* The entries of @dir: their names (new strings) appended to @names and
 * their targets (new references) to @targets, in creation order. */
void store_list_dir(CapshmStore *s, CapshmRegion *dir, GPtrArray *names, GPtrArray *targets);

/* Directories other than the root. */
unsigned store_dir_count(const CapshmStore *s);

/* Regions owned by @uid (all if @all), in creation order, appended to @out
 * as new references: what .mine and readdir list. */
void store_list(CapshmStore *s, uid_t uid, bool all, GPtrArray *out);

/* Mint (once) and return the read-only name of @r.  Borrowed. */
const char *store_ro_name(CapshmStore *s, CapshmRegion *r);

/* --- data ------------------------------------------------------------- */

/* The fd holding @r's bytes, for the FUSE layer's reads and writes.
 * Borrowed: the store closes it when the region is destroyed, sealed, or
 * (tmpfs storage) no longer open by anyone.  Read-write unless sealed.
 * -ENOENT if destroyed, or the storage's errno (e.g. -EMFILE). */
int store_data_fd(CapshmStore *s, CapshmRegion *r);

/* The file the FUSE layer registers as @r's passthrough backing file.
 * Borrowed: it stays open while the region is held and is closed after the
 * unheld hook ran (or at destruction).  Read-only with tmpfs storage (the
 * kernel opens a backing file of its own, with the client's access mode,
 * for every passthrough open); the memfd itself with memfd storage.
 * -ENOENT if destroyed, or the storage's errno (e.g. -EMFILE). */
int store_backing_fd(CapshmStore *s, CapshmRegion *r);

/* Allocated 512-byte blocks of @r (st_blocks).  0 or -errno. */
int store_region_blocks(CapshmStore *s, CapshmRegion *r, blkcnt_t *blocks);

/* Change @r's size, charging or releasing quota.  -EDQUOT, -ENOSPC,
 * -EFBIG (beyond 2^62), -EPERM (sealed), -ENOENT (destroyed), or the
 * storage's errno. */
int store_resize(CapshmStore *s, CapshmRegion *r, uint64_t size);

/* Shrinking a big region frees its pages, which takes long (about 0.13 s
 * per GiB): too long for the core lock.  store_shrink_begin says whether
 * shrinking @r to @size frees at least STORE_SHRINK_OFF_LOCK bytes; if so
 * it returns a new fd of @r's bytes (the caller closes it) and the range to
 * free in *@off and *@len.  The caller punches that range out
 * (FALLOC_FL_PUNCH_HOLE) without the lock, resizes with store_resize, and
 * calls store_shrink_end.  In between, @r cannot be sealed (EBUSY), so the
 * resize cannot be refused once bytes are gone.  -1 if there is nothing to
 * do early. */
#define STORE_SHRINK_OFF_LOCK (4u << 20)
/* Would shrinking @r to @size free at least STORE_SHRINK_OFF_LOCK bytes (and
 * may it shrink at all)? */
bool store_shrink_is_big(const CapshmRegion *r, uint64_t size);
int store_shrink_begin(CapshmStore *s, CapshmRegion *r, uint64_t size,
                       uint64_t *off, uint64_t *len);
void store_shrink_end(CapshmStore *s, CapshmRegion *r);

/* Reserve room for a write of @len bytes at @off before the data is copied
 * into the region's fd (without the core lock): charges growth past the
 * current size and past what writes still in flight reserved.  Returns 0
 * and sets *reserved_end (pass it to store_write_done), or -EDQUOT/-ENOSPC/
 * -EFBIG/-EPERM.  Every successful begin must be followed by one done. */
int store_write_begin(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len,
                      uint64_t *reserved_end);
/* Settle a write: @written bytes landed at @off.  When the last write in
 * flight settles, releases whatever reservation no write used. */
void store_write_done(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t written,
                      uint64_t reserved_end);

/* fallocate mode 0: make sure [off, off+len) is backed; grows like a write. */
int store_fallocate(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len);

/* A fallocate that changes no size, as tmpfs has them: FALLOC_FL_KEEP_SIZE
 * (preallocate) or FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE (free pages,
 * the bytes read as zeros).  May it run on @r, and on what range?  Holes
 * may be punched anywhere; preallocation stops at EOF (pages past it would
 * be memory no quota counts), so *@len may be cut, to 0 if @off is past EOF
 * (nothing to do).  0, -EPERM (sealed), -ENOENT (destroyed), -EISDIR. */
int store_fallocate_in_place(CapshmStore *s, CapshmRegion *r, bool punch, uint64_t off,
                             uint64_t *len);

/* Give @r to @uid/@gid, moving its quota charge.  -EDQUOT/-ENOSPC if the
 * new owner cannot take it (nothing changes then). */
int store_chown(CapshmStore *s, CapshmRegion *r, uid_t uid, gid_t gid);

/* Set @r's permission bits (07777 of @mode); ctime moves. */
void store_chmod(CapshmStore *s, CapshmRegion *r, mode_t mode);

/* Which times to set, and to what (now, or the given value). */
typedef struct {
    bool set_atime, atime_now, set_mtime, mtime_now, set_ctime;
    struct timespec atime, mtime, ctime;
} StoreTimes;
/* Set @r's times; ctime moves to now unless given. */
void store_set_times(CapshmStore *s, CapshmRegion *r, const StoreTimes *t);

/* Make @r immutable (capshmfs(8) "sealed").  -EBUSY while a writable open or
 * writable shared mapping exists; 0 if already sealed. */
int store_seal(CapshmStore *s, CapshmRegion *r);

/* --- lifetime ----------------------------------------------------------- */

/* A file handle on @r was opened / released.  The last release on the
 * passthrough path asks the kernel whether @r is still held (see above). */
void store_opened(CapshmStore *s, CapshmRegion *r, bool writable);
void store_released(CapshmStore *s, CapshmRegion *r, bool writable);

/* Someone is about to see @r's lifetime state: if only the kernel's counts
 * held it when last asked, ask again now.  The closer drops its last
 * reference a moment after the kernel tells us of the close, so the question
 * asked at release can come too early; its next request comes after. */
void store_recheck_held(CapshmStore *s, CapshmRegion *r);
/* The same for every region whose last close was moments ago (at most 256),
 * before counts such as .stats are reported. */
void store_recheck_just_released(CapshmStore *s);

/* Pin or unpin.  Unpinning an unheld region starts its linger. */
void store_set_pinned(CapshmStore *s, CapshmRegion *r, bool pinned);

/* Run everything due: expired mints, lingering regions past their deadline,
 * kernel questions for regions held only by the kernel's counts (at most a
 * bounded batch per call, so the lock is never held long).  Returns the
 * delay in microseconds until store_tick is next needed, or -1 if nothing
 * is pending. */
int64_t store_tick(CapshmStore *s);
/* The delay store_tick would return, without doing anything: cheap enough
 * to ask after every request. */
int64_t store_next_due(CapshmStore *s);

/* --- reporting ---------------------------------------------------------- */

/* The .stats JSON for @uid (with per_uid if @is_root); @datapath is
 * "passthrough" or "cache"; @transport is how requests reach the daemon
 * ("io_uring" or "device"); @requests is the FUSE requests served so far.
 * Caller frees. */
char *store_stats_json(CapshmStore *s, uid_t uid, bool is_root, const char *datapath,
                       const char *transport, uint64_t requests);
