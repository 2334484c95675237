/* SPDX-License-Identifier: MIT */
/* cfs_private — what the files of the FUSE layer share (cfs.c, cfs_names.c,
 * cfs_open.c, cfs_data.c, cfs_dir.c, cfs_xattr.c): the CapshmFs struct and
 * its tables, the node and handle types, the core-lock helpers every
 * callback uses, and the helpers' prototypes.  Not for use outside
 * src/fuse.  Functions marked "(locked)" in their comments in the .c files
 * expect the core lock held.
 */
#pragma once

#include <fuse_lowlevel.h>
#include <glib.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cfs.h"
#include "core/store.h"
#include "notify.h"

/* Kernel UAPI for passthrough backing files (linux/fuse.h >= 6.9); Debian
 * 12's kernel headers predate it. */
struct cfs_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
#define CFS_DEV_IOC_BACKING_OPEN  _IOW(229, 1, struct cfs_backing_map)
#define CFS_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/* Regions change only through this daemon, which invalidates the kernel's
 * copies when they do, so the kernel may cache entries and attributes for
 * long: a region opened again after a pause then costs no LOOKUP or
 * GETATTR.  (An OPEN through a stale entry would still be refused here.) */
#define REGION_TIMEOUT 3600.0
#define CONTROL_TIMEOUT 3600.0

#define XATTR_PREFIX "user.capshm."

/* Control files get a fresh node id on every LOOKUP (their entries are
 * never cached), so that each opener has an inode, and a page cache, of its
 * own: splice and sendfile read through the page cache and trust st_size,
 * and a shared inode would let one caller's minted name reach another's
 * sendfile.  Their ids come from this range, far above any region's. */
#define CONTROL_INO_BASE ((uint64_t)1 << 62)

typedef struct {
    uint64_t ino;
    CapshmRegion *region; /* owned reference; NULL for a control file */
    bool is_ro;
    uint64_t nlookup;
    /* Control files: which one (CFS_NEW_INO, CFS_STATS_INO, CFS_MINE_INO) and
     * its text, made at LOOKUP so st_size is right (.new: minted at OPEN). */
    fuse_ino_t control;
    char *text;
} CfsNode;

typedef enum { FH_REGION, FH_TEXT, FH_DIR } FhKind;

typedef struct {
    FhKind kind;
    /* FH_REGION */
    CapshmRegion *region; /* owned reference */
    pid_t tid;
    bool writable;
    /* FH_TEXT */
    char *text;
    size_t len;
    /* FH_DIR */
    GPtrArray *names; /* char*, owned */
    GArray *dirents;  /* CfsDirent per name: node id and type */
} CfsFile;

typedef struct {
    uint64_t ino;
    mode_t type;      /* S_IFDIR or S_IFREG */
} CfsDirent;

struct CapshmFs {
    CapshmStore *store;
    CapshmDatapath want;
    CfsDataPath path;
    struct fuse_session *se;
    GHashTable *nodes; /* ino -> CfsNode* (owned) */
    GHashTable *files; /* every open CfsFile (owned): unmount sends no RELEASE */
    /* Passthrough backing ids of the regions the kernel holds: region
     * node id -> id.  Registered at an open, dropped when the store says
     * the kernel let go (on_region_unheld) or the region is destroyed. */
    GHashTable *backing_ids;
    Notifier *notifier;
    /* Run under the core lock at the end of each core section: the daemon
     * re-arms its timer for the store's next deadline. */
    void (*after_request)(void *data);
    void *after_request_data;
    /* Set by INIT, which runs without the core lock: the daemon holds that
     * lock while it waits for INIT and settles the data path. */
    gint init_done;
    bool passthrough_negotiated;
    uid_t owner_uid;
    gid_t owner_gid;
    struct timespec mount_time;
    guint64 requests; /* atomic */
    /* Set while UNLINK runs (under the core lock): a region destroyed there
     * needs no inode invalidation, the kernel drops its unlinked inode. */
    bool in_unlink;
    uint64_t next_control_ino;
    /* Who holds a region (user.capshm.holders/pids) is looked up in /proc on
     * this pool's one thread, never on a request thread. */
    dev_t mount_dev;
    GThreadPool *scan_pool;
    /* Requests whose cost grows with a size the client picks (allocating
     * or freeing many MiB) run on this pool's threads, which reply
     * themselves (run_slow), so that the thread serving requests (the only
     * one on /dev/fuse, one per CPU on io_uring) never waits on them. */
    GThreadPool *slow_pool;
    char *cgroup2;    /* lifetime=cgroup: the cgroup v2 mount, else NULL; owned */
    gint scans_queued; /* atomic */
};

/* --- callbacks and the core lock ------------------------------------------- */

/* What a callback holds while it runs: cancellation switched off (libfuse
 * cancels its io_uring threads at unmount; a thread cancelled inside a
 * callback could leave the core lock taken). */
typedef struct {
    CapshmFs *fs;
    int cancel_state;
} CfsCall;

static inline CfsCall
call_enter(fuse_req_t req)
{
    CfsCall c = { .fs = fuse_req_userdata(req) };
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &c.cancel_state);
    __atomic_fetch_add(&c.fs->requests, 1, __ATOMIC_RELAXED);
    return c;
}

static inline void
call_leave(CfsCall *c)
{
    pthread_setcancelstate(c->cancel_state, NULL);
}

/* First statement of every callback: declares `fs`. */
#define CFS_CALL(req)                                                            \
    __attribute__((cleanup(call_leave))) CfsCall call_ = call_enter(req);        \
    CapshmFs *fs G_GNUC_UNUSED = call_.fs

/* Around store calls and table updates; never around a reply or data I/O. */
static inline void
core_enter(CapshmFs *fs)
{
    store_lock(fs->store);
}

static inline void
core_leave(CapshmFs *fs)
{
    if (fs->after_request)
        fs->after_request(fs->after_request_data);
    store_unlock(fs->store);
}

/* The one way a callback answers with an errno (0 is success).  Failures are
 * logged at debug level with the operation's name (-d shows them). */
#define reply_err(req, err) reply_errno((req), __func__, (err))
void reply_errno(fuse_req_t req, const char *op, int err);

/* --- cfs.c: helpers (all "(locked)": call with the core lock held, except
 * caller_of, request_transport, is_static_ino and control_ino) -------------- */

/* Register @fd as a passthrough backing file: the id, or -errno. */
int backing_open(CapshmFs *fs, int fd);
CapshmCaller caller_of(fuse_req_t req);
/* lifetime=cgroup: the cgroup v2 id of @req's sender, and its path (new
 * string, or NULL), read from that very thread's /proc/TID/cgroup while it
 * waits in its create call.  0 when not needed or unknown.  Not under the
 * core lock: call it before core_enter(). */
uint64_t caller_cgroup(CapshmFs *fs, fuse_req_t req, char **path);
/* "io_uring" or "device". */
const char *request_transport(fuse_req_t req);
/* The root or a control file (never a region). */
bool is_static_ino(fuse_ino_t ino);
/* The control file called @name (CFS_NEW_INO, ...), or 0. */
fuse_ino_t control_ino(const char *name);
/* Borrowed; NULL if the kernel does not know @ino. */
CfsNode *node_find(CapshmFs *fs, fuse_ino_t ino);
/* The live region behind a region node (borrowed), or NULL (ENOENT). */
CapshmRegion *node_region(CapshmFs *fs, fuse_ino_t ino, bool *is_ro);
/* Drop @nlookup of the kernel's references to @ino; frees the node at 0. */
void forget_one(CapshmFs *fs, fuse_ino_t ino, uint64_t nlookup);
void fill_static_attr(CapshmFs *fs, fuse_ino_t ino, struct stat *st);
void fill_control_attr(CapshmFs *fs, const CfsNode *n, struct stat *st);
void fill_region_attr(CapshmStore *store, CapshmRegion *r, bool is_ro, struct stat *st);
/* Fill @e for @r and count the lookup the reply will give the kernel. */
void entry_prepare(CapshmFs *fs, CapshmRegion *r, bool is_ro, struct fuse_entry_param *e);
/* Tell the kernel that the other name of @r has new attributes. */
void inval_other_name(CapshmFs *fs, CapshmRegion *r, bool is_ro);
void on_region_unheld(CapshmRegion *r, void *data);
/* Before a resize of node @ino to @size, without the core lock: when that
 * shrinks a big region, free the doomed pages now (store_shrink_begin says
 * why).  Returns the region (a reference) to pass to shrink_early_end, under
 * the lock after the resize, or NULL. */
CapshmRegion *shrink_early(CapshmFs *fs, fuse_ino_t ino, uint64_t size);
/* Under the core lock.  Drops the reference shrink_early took. */
void shrink_early_end(CapshmFs *fs, CapshmRegion *r);
/* Would resizing node @ino to @size free enough to be slow work (and be
 * done by shrink_early)?  Takes the core lock. */
bool shrink_is_slow(CapshmFs *fs, fuse_ino_t ino, uint64_t size);

/* At least this many bytes allocated or freed by one request makes it slow
 * work, for run_slow. */
#define CFS_SLOW_BYTES STORE_SHRINK_OFF_LOCK
/* Run @fn(@fs, @job) on the slow pool; @fn replies to the request and frees
 * @job. */
typedef void (*CfsSlowFn)(CapshmFs *fs, void *job);
void run_slow(CapshmFs *fs, CfsSlowFn fn, void *job);

/* --- cfs_names.c ---------------------------------------------------------------- */

/* The directory region behind @parent (borrowed; NULL for the root), or
 * NULL with *rc = -ENOENT/-ENOTDIR.  (locked) */
CapshmRegion *parent_dir(CapshmFs *fs, fuse_ino_t parent, int *rc);
void cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                 struct fuse_file_info *fi);
void cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void cfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void cfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void cfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void cfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags);

/* --- cfs_open.c ------------------------------------------------------------------ */

/* Frees a handle and drops its region reference.  NULL is fine. */
void file_free(CfsFile *f);
/* The text of control file @ino (CFS_NEW_INO mints) for the caller of @req,
 * new; or NULL with *err (if @err).  (locked) */
char *control_text(CapshmFs *fs, fuse_req_t req, fuse_ino_t ino, int *err);
void cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                struct fuse_file_info *fi);
void cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* --- cfs_data.c ------------------------------------------------------------------ */

void cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void cfs_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
                   struct fuse_file_info *fi);
void cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                   struct fuse_file_info *fi);

/* --- cfs_dir.c ------------------------------------------------------------------- */

void cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void cfs_statfs(fuse_req_t req, fuse_ino_t ino);

/* --- cfs_xattr.c ----------------------------------------------------------------- */

/* The scan pool's job function (cfs_new starts the pool). */
void scan_job(gpointer p, gpointer data);
void cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                  size_t size, int flags);
void cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
