/* SPDX-License-Identifier: MIT */
/* region — one shared-memory region: its bytes (storage.h) plus metadata.
 *
 * A CapshmRegion is reference counted.  The store holds one reference while
 * the region is alive (named or held); the FUSE layer holds one per kernel
 * inode reference and per open file.  Destroying a region (store.h) frees
 * its bytes and releases its quota at once; the struct itself lives until the
 * last reference is dropped, so stale kernel node ids never dangle.
 *
 * Fields are read directly by the FUSE layer; only the store writes them.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "names.h"

typedef enum {
    REGION_LIVE = 0,     /* held by at least one process */
    REGION_LINGERING,    /* no holder; destroyed at linger_deadline_us */
    REGION_PINNED,       /* no holder, pinned: stays until unpinned/unlinked */
    REGION_DESTROYED,    /* bytes released, name gone; struct awaits last unref */
} RegionState;

/* One process (thread-group id) that opened the region. */
typedef struct {
    pid_t tgid;
    unsigned opens;      /* open file handles created by this process */
    bool maps;           /* seen mapping the region after its opens closed */
} RegionOpener;

typedef struct CapshmRegion {
    int refcount;
    char *name;              /* read-write name; owned */
    char *ro_name;           /* read-only name, NULL until first asked; owned */
    uint64_t ino;            /* node id of the read-write name */
    uint64_t ro_ino;         /* node id of the read-only name, 0 if none */
    int fd;                  /* data fd (store_data_fd), -1 when not open */
    int backing_id;          /* passthrough backing id, 0 if none (FUSE layer) */
    uint64_t size;           /* bytes; also what quota is charged */
    uid_t uid;
    gid_t gid;
    mode_t mode;             /* permission bits only */
    struct timespec atime, mtime, ctime;
    int64_t created;         /* seconds since the epoch */
    RegionState state;
    bool pinned, sealed, unlinked;
    unsigned open_count;     /* open file handles, all processes */
    unsigned writable_opens; /* of which opened for writing */
    GArray *openers;         /* RegionOpener, NULL when empty */
    int64_t linger_deadline_us;
    GList linger_link;       /* in the store's linger queue when .data set */
    GList mapped_link;       /* in the store's mapped-only queue when .data set */
} CapshmRegion;

CapshmRegion *region_ref(CapshmRegion *r);
void region_unref(CapshmRegion *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CapshmRegion, region_unref)

/* True until the region is destroyed. */
static inline bool region_is_alive(const CapshmRegion *r) { return r->state != REGION_DESTROYED; }

/* Number of distinct processes holding the region (openers). */
unsigned region_holder_count(const CapshmRegion *r);

/* The region's state as SPEC.md's user.capshm.state names it. */
const char *region_state_name(const CapshmRegion *r);
