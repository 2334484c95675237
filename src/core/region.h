/* SPDX-License-Identifier: MIT */
/* region — one shared-memory region: its bytes (storage.h) plus metadata.
 *
 * A CapshmRegion is reference counted.  The store holds one reference while
 * the region is alive (named or held); the FUSE layer holds one per kernel
 * inode reference and per open file.  Destroying a region (store.h) frees
 * its bytes and releases its quota at once; the struct itself lives until the
 * last reference is dropped, so stale kernel node ids never dangle.
 *
 * Fields are read by the FUSE layer under the core lock (store.h); only the
 * store writes them.  Nothing FUSE-specific lives here.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "names.h"

typedef enum {
    REGION_LIVE = 0,     /* held: open handles, or (passthrough) the kernel
                          * still counts an open file or mapping of its bytes */
    REGION_LINGERING,    /* no holder; destroyed at linger_deadline_us */
    REGION_PINNED,       /* no holder, pinned: stays until unpinned/unlinked */
    REGION_DESTROYED,    /* bytes released, name gone; struct awaits last unref */
} RegionState;

struct CapshmRegion;

/* One name of a region or directory in a directory (names=any has hard
 * links and directories; names=capability has one name each, in the root).
 * Owned by the directory's entries table. */
typedef struct CapshmLink {
    char *name;                   /* owned */
    struct CapshmRegion *dir;     /* the directory it is in (borrowed) */
    struct CapshmRegion *target;  /* what it names (borrowed) */
} CapshmLink;

typedef struct CapshmRegion {
    int refcount;
    char *name;              /* read-write name (one of them with hard links:
                              * the first still linked); owned */
    char *ro_name;           /* read-only name, NULL until first asked; owned */
    uint64_t ino;            /* node id of the read-write name */
    uint64_t ro_ino;         /* node id of the read-only name, 0 if none */
    int fd;                  /* data fd (store_data_fd), -1 when not open */
    int anchor_fd;           /* tmpfs: read-only file lent for passthrough
                              * registration (store_backing_fd), -1 if none */
    uint64_t size;           /* bytes; also what quota is charged */
    uid_t uid;
    gid_t gid;
    mode_t mode;             /* permission bits only */
    struct timespec atime, mtime, ctime;
    int64_t created;         /* seconds since the epoch */
    RegionState state;
    bool pinned, sealed, unlinked; /* unlinked: no name left (nlink 0) */
    unsigned open_count;     /* open file handles, all processes */
    unsigned writable_opens; /* of which opened for writing */
    unsigned writes_in_flight; /* store_write_begin without its done yet */
    unsigned shrinks_in_flight; /* store_shrink_begin without its end yet */
    uint64_t write_reserved_end; /* highest end reserved by those writes */
    bool kernel_held;        /* passthrough, no handle open: the kernel still
                              * counts an open file or mapping (store.h) */
    unsigned probe_step;     /* how many times the kernel said "held" in a row */
    int64_t probe_due_us;
    int64_t linger_deadline_us;
    GList linger_link;       /* in the store's linger queue when .data set */
    GList probe_link;        /* in one of the store's probe queues when .data set */
    /* Names (store.h "Directories and links"). */
    unsigned nlink;          /* how many names it has; 0 once unlinked */
    GList *links;            /* its CapshmLink*s (borrowed from the directories) */
    bool is_dir;             /* a directory (names=any): no bytes, never held */
    uint64_t creator_cgroup; /* lifetime=cgroup: the creator's cgroup v2 id, 0 if unknown */
    char *creator_cgroup_path; /* and its path below the hierarchy; owned */
    bool cgroup_wait;        /* in the store's cgroup queue, not its linger queue */
    GHashTable *entries;     /* directories: name -> CapshmLink* (owned) */
    unsigned nsubdirs;       /* directories: how many entries are directories */
} CapshmRegion;

CapshmRegion *region_ref(CapshmRegion *r);
void region_unref(CapshmRegion *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CapshmRegion, region_unref)

/* True until the region is destroyed. */
static inline bool region_is_alive(const CapshmRegion *r) { return r->state != REGION_DESTROYED; }

/* True while the region is held: open handles, or the kernel's counts. */
static inline bool region_is_held(const CapshmRegion *r) { return r->open_count > 0 || r->kernel_held; }

/* The region's state as user.capshm.state names it (capshmfs(8)). */
const char *region_state_name(const CapshmRegion *r);
