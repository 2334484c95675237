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
 * io_uring runs one per CPU), so every callback runs under one core lock
 * (cfs_lock) that also guards the store and procwatch.  Anything else that
 * touches them (the daemon's timers, process-exit callbacks) takes it too.
 * The lock is never held while waiting for the kernel to answer another
 * request: invalidations go through the notifier thread.
 */
#pragma once

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/store.h"

#define CFS_ROOT_INO  FUSE_ROOT_ID  /* 1 */
#define CFS_NEW_INO   2
#define CFS_STATS_INO 3

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

/* The core lock: held by every callback; take it around any other use of
 * the store (or of this CapshmFs) from outside a callback.  Not recursive. */
void cfs_lock(CapshmFs *fs);
void cfs_unlock(CapshmFs *fs);
/* The lock itself, for procwatch_set_lock (lives as long as @fs). */
pthread_mutex_t *cfs_core_lock(CapshmFs *fs);

/* Called under the core lock at the end of every callback (after its
 * reply): the daemon re-arms its timer for the store's next deadline. */
void cfs_set_after_request(CapshmFs *fs, void (*fn)(void *data), void *data);

