/* SPDX-License-Identifier: MIT */
/* cfs — the FUSE low-level callbacks: decode a request, call the store,
 * reply exactly once.  Also owns the kernel-facing state the store must not
 * know about: node ids and their lookup counts, open file handles, the data
 * path (passthrough backing ids or page-cache flags) and invalidations.
 *
 * Ownership: CapshmFs borrows the store (the daemon owns it) and owns its
 * node table; every node and every open file handle holds a region
 * reference, dropped on FORGET / RELEASE or in cfs_free().
 *
 * Threads: requests may be answered on several threads at once (FUSE over
 * io_uring runs one per CPU).  The store's core lock (store.h) also guards
 * this layer's node and handle tables; a callback holds it only around its
 * store calls and table updates, never across a reply, I/O on region data
 * or a /proc read, so requests from different CPUs run in parallel.  The
 * lock is never held while waiting for the kernel to answer another
 * request: invalidations go through the notifier thread, and who holds a
 * region (user.capshm.holders/pids) is looked up on a pool thread that
 * replies itself.
 */
#pragma once

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/store.h"

#define CFS_ROOT_INO  FUSE_ROOT_ID  /* 1 */
#define CFS_NEW_INO   2
#define CFS_STATS_INO 3
#define CFS_MINE_INO  4

typedef struct CapshmFs CapshmFs;

typedef enum {
    CFS_PATH_CACHE = 0,
    CFS_PATH_PASSTHROUGH,
} CfsDataPath;

/* @want is the datapath option.  The store is borrowed. */
CapshmFs *cfs_new(CapshmStore *store, CapshmDatapath want);
void cfs_free(CapshmFs *fs);

const struct fuse_lowlevel_ops *cfs_ops(void);

/* After fuse_session_new/mount: the session, for notifications and the
 * backing-id ioctls. */
void cfs_set_session(CapshmFs *fs, struct fuse_session *se);

/* True once INIT was answered. */
bool cfs_init_done(const CapshmFs *fs);

/* Decide the data path once INIT is done: probes passthrough if wanted.
 * Returns 0, or -errno with *why set (static string) when an explicit
 * datapath=passthrough cannot work. */
int cfs_settle_datapath(CapshmFs *fs, const char **why);
CfsDataPath cfs_datapath(const CapshmFs *fs);
const char *cfs_datapath_name(const CapshmFs *fs);

/* Start the invalidation thread (after daemonizing). */
void cfs_start_notifier(CapshmFs *fs);
/* Stop sending invalidations (at shutdown, before the store is freed). */
void cfs_stop_notifier(CapshmFs *fs);

/* The core lock (store_lock): take it around any use of the store or of
 * this CapshmFs from outside a callback.  Not recursive. */
void cfs_lock(CapshmFs *fs);
void cfs_unlock(CapshmFs *fs);

/* The mount's device number, for looking up holders in /proc (0: unknown,
 * then holders are reported as 0/1 and pids as empty). */
void cfs_set_mount_dev(CapshmFs *fs, dev_t dev);

/* lifetime=cgroup: where the cgroup v2 hierarchy is mounted (copied); the
 * cgroup of each creating request is then read from its sender. */
void cfs_set_cgroup2(CapshmFs *fs, const char *mount);

/* Called under the core lock at the end of every core section of a
 * callback: the daemon re-arms its timer for the store's next deadline. */
void cfs_set_after_request(CapshmFs *fs, void (*fn)(void *data), void *data);

