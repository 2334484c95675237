/* SPDX-License-Identifier: MIT */
/* cfs — see cfs.h.
 *
 * Ownership model:
 *  - `nodes` maps a node id the kernel knows to a CfsNode holding one region
 *    reference; FORGET (or cfs_free, since unmount sends none) drops it.
 *  - Each open file handle (fi->fh) is a CfsFile holding one region reference
 *    (regions) or the generated text (control files); RELEASE frees it.
 *  - Region nodes are created on LOOKUP/CREATE replies only.  Root, .new,
 *    .stats and .mine are static and never counted.
 * Locking: the node and handle tables, like the store, are guarded by the
 * core lock (store_lock).  A callback takes it around its store calls and
 * table updates only (CORE_ENTER/CORE_LEAVE), never across a reply, a read
 * or write of region data, or a /proc read: requests on different CPUs run
 * in parallel, and no client can hold another up.  A reply that fails is
 * undone under the lock again (lookup, create, open, opendir).
 * Every callback replies exactly once, through reply_err() or a fuse_reply_*.
 */

#include "cfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/names.h"
#include "core/procwatch.h"
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
    gint scans_queued; /* atomic */
};

/* READ replies are copied through one buffer per request thread (grown to
 * the largest read asked): libfuse's own fallback mallocs and frees a fresh
 * buffer per reply, which costs page faults. */
typedef struct {
    char *buf;
    size_t size;
} ReadBuf;

static void
readbuf_free(gpointer p)
{
    ReadBuf *b = p;
    g_free(b->buf);
    g_free(b);
}

static GPrivate readbuf_key = G_PRIVATE_INIT(readbuf_free);

static char *
readbuf_get(size_t n)
{
    ReadBuf *b = g_private_get(&readbuf_key);
    if (!b) {
        b = g_new0(ReadBuf, 1);
        g_private_set(&readbuf_key, b);
    }
    if (n > b->size) {
        g_free(b->buf);
        b->buf = g_malloc(n);
        b->size = n;
    }
    return b->buf;
}

static void on_region_destroyed(CapshmRegion *r, void *data);
static void on_region_unheld(CapshmRegion *r, void *data);
static void file_free(CfsFile *f);
static void scan_job(gpointer job, gpointer data);
static char *control_text(CapshmFs *fs, fuse_req_t req, fuse_ino_t ino, int *err);

static void
node_free(gpointer p)
{
    CfsNode *n = p;
    region_unref(n->region);
    g_free(n->text);
    g_free(n);
}

CapshmFs *
cfs_new(CapshmStore *store, CapshmDatapath want)
{
    CapshmFs *fs = g_new0(CapshmFs, 1);
    fs->store = store;
    fs->want = want;
    fs->path = CFS_PATH_CACHE;
    fs->nodes = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, node_free);
    fs->files = g_hash_table_new_full(NULL, NULL, (GDestroyNotify)file_free, NULL);
    fs->backing_ids = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    fs->next_control_ino = CONTROL_INO_BASE;
    fs->owner_uid = geteuid();
    fs->owner_gid = getegid();
    clock_gettime(CLOCK_REALTIME, &fs->mount_time);
    store_set_destroy_hook(store, on_region_destroyed, fs);
    store_set_unheld_hook(store, on_region_unheld, fs);
    fs->scan_pool = g_thread_pool_new(scan_job, fs, 1, FALSE, NULL);
    return fs;
}

void
cfs_free(CapshmFs *fs)
{
    if (!fs)
        return;
    /* Finish the scans first: they reply (harmlessly, after unmount). */
    g_thread_pool_free(fs->scan_pool, FALSE, TRUE);
    cfs_stop_notifier(fs);
    store_set_destroy_hook(fs->store, NULL, NULL);
    store_set_unheld_hook(fs->store, NULL, NULL);
    g_hash_table_destroy(fs->files); /* handles still open at unmount */
    g_hash_table_destroy(fs->nodes);
    g_hash_table_destroy(fs->backing_ids);
    g_free(fs);
}

void cfs_set_session(CapshmFs *fs, struct fuse_session *se) { fs->se = se; }
bool cfs_init_done(const CapshmFs *fs) { return g_atomic_int_get(&fs->init_done) != 0; }
CfsDataPath cfs_datapath(const CapshmFs *fs) { return fs->path; }
const char *
cfs_datapath_name(const CapshmFs *fs)
{
    return fs->path == CFS_PATH_PASSTHROUGH ? "passthrough" : "cache";
}
void cfs_lock(CapshmFs *fs) { store_lock(fs->store); }
void cfs_unlock(CapshmFs *fs) { store_unlock(fs->store); }
void cfs_set_mount_dev(CapshmFs *fs, dev_t dev) { fs->mount_dev = dev; }

void
cfs_set_after_request(CapshmFs *fs, void (*fn)(void *data), void *data)
{
    fs->after_request = fn;
    fs->after_request_data = data;
}

/* --- callbacks and the core lock ------------------------------------------- */

/* What a callback holds while it runs: cancellation switched off (libfuse
 * cancels its io_uring threads at unmount; a thread cancelled inside a
 * callback could leave the core lock taken). */
typedef struct {
    CapshmFs *fs;
    int cancel_state;
} CfsCall;

static CfsCall
call_enter(fuse_req_t req)
{
    CfsCall c = { .fs = fuse_req_userdata(req) };
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &c.cancel_state);
    __atomic_fetch_add(&c.fs->requests, 1, __ATOMIC_RELAXED);
    return c;
}

static void
call_leave(CfsCall *c)
{
    pthread_setcancelstate(c->cancel_state, NULL);
}

/* First statement of every callback: declares `fs`. */
#define CFS_CALL(req)                                                            \
    __attribute__((cleanup(call_leave))) CfsCall call_ = call_enter(req);        \
    CapshmFs *fs G_GNUC_UNUSED = call_.fs

/* Around store calls and table updates; never around a reply or data I/O. */
static void
core_enter(CapshmFs *fs)
{
    store_lock(fs->store);
}

static void
core_leave(CapshmFs *fs)
{
    if (fs->after_request)
        fs->after_request(fs->after_request_data);
    store_unlock(fs->store);
}

void
cfs_start_notifier(CapshmFs *fs)
{
    if (!fs->notifier && fs->se)
        fs->notifier = notifier_new(fs->se);
}

void
cfs_stop_notifier(CapshmFs *fs)
{
    notifier_free(fs->notifier);
    fs->notifier = NULL;
}

/* --- passthrough backing files ------------------------------------------- */

#ifdef HAVE_FUSE_PASSTHROUGH
static int
backing_open(CapshmFs *fs, int fd)
{
    struct cfs_backing_map map = { .fd = fd };
    int id = ioctl(fuse_session_fd(fs->se), CFS_DEV_IOC_BACKING_OPEN, &map);
    return id < 0 ? -errno : id;
}
#endif

static void
backing_close(CapshmFs *fs, int id)
{
    uint32_t bid = (uint32_t)id;
    if (ioctl(fuse_session_fd(fs->se), CFS_DEV_IOC_BACKING_CLOSE, &bid) < 0)
        g_debug("closing backing id %d: %s", id, g_strerror(errno));
}

int
cfs_settle_datapath(CapshmFs *fs, const char **why)
{
    *why = NULL;
    if (fs->want == DATAPATH_CACHE) {
        fs->path = CFS_PATH_CACHE;
        return 0;
    }
    const char *reason = NULL;
    int err = 0;
#ifndef HAVE_FUSE_PASSTHROUGH
    reason = "capshmfs was built against libfuse < 3.17, which has no passthrough";
    err = -ENOTSUP;
#else
    if (!fs->passthrough_negotiated) {
        reason = "the kernel does not offer FUSE passthrough (needs Linux >= 6.9)";
        err = -ENOTSUP;
    } else {
        /* The kernel only lets CAP_SYS_ADMIN register backing files; try
         * once now rather than failing opens later. */
        int fd = memfd_create("capshm-probe", MFD_CLOEXEC);
        int id = fd >= 0 ? backing_open(fs, fd) : -errno;
        if (id > 0)
            backing_close(fs, id);
        if (fd >= 0)
            close(fd);
        if (id == -EPERM) {
            reason = "registering a passthrough backing file was refused (needs CAP_SYS_ADMIN in the initial user namespace)";
            err = -EPERM;
        } else if (id < 0) {
            reason = "registering a passthrough backing file failed";
            err = id;
        }
    }
#endif
    if (!reason) {
        fs->path = CFS_PATH_PASSTHROUGH;
        store_set_mappings_outlive_handles(fs->store, true);
        return 0;
    }
    fs->path = CFS_PATH_CACHE;
    store_set_mappings_outlive_handles(fs->store, false);
    *why = reason;
    return fs->want == DATAPATH_PASSTHROUGH ? err : 0;
}

/* --- helpers --------------------------------------------------------------- */

/* The one way a callback answers with an errno (0 is success).  Failures are
 * logged at debug level with the operation's name (-d shows them). */
#define reply_err(req, err) reply_errno((req), __func__, (err))

static void
reply_errno(fuse_req_t req, const char *op, int err)
{
    if (err != 0 && err != ENOENT)
        g_debug("%s: %s", g_str_has_prefix(op, "cfs_") ? op + 4 : op, g_strerror(err));
    fuse_reply_err(req, err);
}

static CapshmCaller
caller_of(fuse_req_t req)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    return (CapshmCaller){ .uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid };
}

/* How @req reached us: over FUSE io_uring or read from /dev/fuse. */
static const char *
request_transport(fuse_req_t req)
{
#ifdef HAVE_FUSE_URING
    if (fuse_req_is_uring(req))
        return "io_uring";
#else
    (void)req;
#endif
    return "device";
}

/* The root or a control file (never a region). */
static bool
is_static_ino(fuse_ino_t ino)
{
    return ino == CFS_ROOT_INO || ino >= CONTROL_INO_BASE ||
           ino == CFS_NEW_INO || ino == CFS_STATS_INO || ino == CFS_MINE_INO;
}

/* The control file called @name, or 0. */
static fuse_ino_t
control_ino(const char *name)
{
    return strcmp(name, ".new") == 0 ? CFS_NEW_INO
         : strcmp(name, ".stats") == 0 ? CFS_STATS_INO
         : strcmp(name, ".mine") == 0 ? CFS_MINE_INO : 0;
}

/* Under the core lock, from here to the end of the section. */

static CfsNode *
node_find(CapshmFs *fs, fuse_ino_t ino)
{
    uint64_t key = ino;
    return g_hash_table_lookup(fs->nodes, &key);
}

/* The live region behind a region node, or NULL (ENOENT). */
static CapshmRegion *
node_region(CapshmFs *fs, fuse_ino_t ino, bool *is_ro)
{
    CfsNode *n = node_find(fs, ino);
    if (!n || !n->region || !region_is_alive(n->region))
        return NULL;
    if (is_ro)
        *is_ro = n->is_ro;
    return n->region;
}

static void
node_remember(CapshmFs *fs, CapshmRegion *r, bool is_ro)
{
    uint64_t ino = is_ro ? r->ro_ino : r->ino;
    CfsNode *n = node_find(fs, ino);
    if (!n) {
        n = g_new0(CfsNode, 1);
        n->ino = ino;
        n->region = region_ref(r);
        n->is_ro = is_ro;
        g_hash_table_insert(fs->nodes, &n->ino, n);
    }
    n->nlookup++;
}

static void
forget_one(CapshmFs *fs, fuse_ino_t ino, uint64_t nlookup)
{
    CfsNode *n = node_find(fs, ino);
    if (!n)
        return;
    n->nlookup -= MIN(nlookup, n->nlookup);
    if (n->nlookup == 0)
        g_hash_table_remove(fs->nodes, &n->ino);
}

static void
fill_static_attr(CapshmFs *fs, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = fs->owner_uid;
    st->st_gid = fs->owner_gid;
    st->st_blksize = 4096;
    st->st_atim = st->st_mtim = st->st_ctim = fs->mount_time;
    if (ino == CFS_ROOT_INO) {
        /* Capability names are secrets: nobody but root may read the root,
         * so neither readdir nor an inotify/fanotify watch reveals them (the
         * kernel refuses both without read permission).  Any uid may still
         * create (write) and open by name (search). */
        bool any = store_options(fs->store)->names == NAMES_MODE_ANY;
        st->st_mode = S_IFDIR | (any ? 01777 : 01733);
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
    }
}

/* Attributes of control node @n: its text's length (a name and its newline
 * for .new, minted at open). */
static void
fill_control_attr(CapshmFs *fs, const CfsNode *n, struct stat *st)
{
    fill_static_attr(fs, n->ino, st);
    st->st_size = n->control == CFS_NEW_INO ? NAMES_CAP_LEN + 1 : (off_t)strlen(n->text);
}

static void
fill_region_attr(CapshmStore *store, CapshmRegion *r, bool is_ro, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = is_ro ? r->ro_ino : r->ino;
    /* A read-only name never grants write, whatever the region's mode. */
    st->st_mode = S_IFREG | (is_ro ? (r->mode & 0444) : r->mode);
    st->st_nlink = r->nlink;
    if (r->is_dir) {
        st->st_mode = S_IFDIR | r->mode;
        st->st_nlink = r->unlinked ? 0 : 2 + r->nsubdirs;
    }
    st->st_uid = r->uid;
    st->st_gid = r->gid;
    st->st_size = (off_t)r->size;
    st->st_blksize = 4096;
    blkcnt_t blocks;
    if (store_region_blocks(store, r, &blocks) == 0)
        st->st_blocks = blocks;
    st->st_atim = r->atime;
    st->st_mtim = r->mtime;
    st->st_ctim = r->ctime;
}

/* Fill @e for @r and count the lookup the reply will give the kernel. */
static void
entry_prepare(CapshmFs *fs, CapshmRegion *r, bool is_ro, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = is_ro ? r->ro_ino : r->ino;
    e->attr_timeout = REGION_TIMEOUT;
    e->entry_timeout = REGION_TIMEOUT;
    fill_region_attr(fs->store, r, is_ro, &e->attr);
    node_remember(fs, r, is_ro);
}

/* Tell the kernel that the other name of @r has new attributes. */
static void
inval_other_name(CapshmFs *fs, CapshmRegion *r, bool is_ro)
{
    uint64_t other = is_ro ? r->ino : r->ro_ino;
    if (other)
        notifier_inval_inode(fs->notifier, other, -1, 0);
}

static void
drop_backing(CapshmFs *fs, CapshmRegion *r)
{
    gpointer id;
    if (g_hash_table_lookup_extended(fs->backing_ids, &r->ino, NULL, &id)) {
        if (fs->se)
            backing_close(fs, GPOINTER_TO_INT(id));
        g_hash_table_remove(fs->backing_ids, &r->ino);
    }
}

/* The kernel holds @r no more (no open file, no mapping): its backing id is
 * registered again by the next open. */
static void
on_region_unheld(CapshmRegion *r, void *data)
{
    drop_backing(data, r);
}

static void
on_region_destroyed(CapshmRegion *r, void *data)
{
    CapshmFs *fs = data;
    drop_backing(fs, r);
    /* The kernel may still cache the names (entry timeout): make later
     * lookups ask us, so a destroyed name is plain ENOENT at once. */
    if (!r->unlinked) {
        for (GList *l = r->links; l; l = l->next) {
            CapshmLink *k = l->data;
            notifier_inval_entry(fs->notifier, k->dir->ino, k->name);
        }
        if (r->ro_name)
            notifier_inval_entry(fs->notifier, CFS_ROOT_INO, r->ro_name);
    }
    if (!fs->in_unlink)
        notifier_inval_inode(fs->notifier, r->ino, 0, 0);
    if (r->ro_ino)
        notifier_inval_inode(fs->notifier, r->ro_ino, 0, 0);
}

/* --- init ------------------------------------------------------------------ */

static void
cfs_init(void *userdata, struct fuse_conn_info *conn)
{
    CapshmFs *fs = userdata;
#if FUSE_USE_VERSION >= 317
    /* 3.17: only the feature-flag helpers; mixing them with conn->want
     * makes libfuse refuse the mount. */
    fuse_unset_feature_flag(conn, FUSE_CAP_AUTO_INVAL_DATA);
    fuse_set_feature_flag(conn, FUSE_CAP_EXPLICIT_INVAL_DATA);
    fuse_unset_feature_flag(conn, FUSE_CAP_WRITEBACK_CACHE);
    /* O_TRUNC comes with OPEN, where the daemon checks it like a write
     * (a read-only name: EACCES; sealed: EPERM); without this the kernel
     * turns it into a SETATTR that cannot be told from truncate(2). */
    fuse_set_feature_flag(conn, FUSE_CAP_ATOMIC_O_TRUNC);
    fuse_unset_feature_flag(conn, FUSE_CAP_READDIRPLUS);
    /* No splice: libfuse needs a pipe as large as max_write plus a page,
     * beyond fs.pipe-max-size unless we hold CAP_SYS_RESOURCE, and its
     * fallback costs more than a plain copy (see cfs_read). */
    fuse_unset_feature_flag(conn, FUSE_CAP_SPLICE_WRITE);
    fuse_unset_feature_flag(conn, FUSE_CAP_SPLICE_READ);
    fuse_set_feature_flag(conn, FUSE_CAP_ASYNC_DIO);
    if (fs->want != DATAPATH_CACHE && fuse_set_feature_flag(conn, FUSE_CAP_PASSTHROUGH)) {
        conn->max_backing_stack_depth = 1;
        fs->passthrough_negotiated = true;
    }
#else
    conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_READDIRPLUS);
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_EXPLICIT_INVAL_DATA)
        conn->want |= FUSE_CAP_EXPLICIT_INVAL_DATA;
    conn->want &= ~(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_READ);
#endif
    g_atomic_int_set(&fs->init_done, 1);
}

static void
cfs_destroy(void *userdata)
{
    (void)userdata; /* the daemon frees everything after the loop ends */
}

/* --- names ----------------------------------------------------------------- */

/* The directory node @parent stands for (the root, or a names=any
 * directory), or NULL with *rc = -ENOTDIR or -ENOENT.  Under the core lock. */
static CapshmRegion *
parent_dir(CapshmFs *fs, fuse_ino_t parent, int *rc)
{
    if (parent == CFS_ROOT_INO)
        return store_root(fs->store);
    CapshmRegion *r = node_region(fs, parent, NULL);
    if (r && r->is_dir)
        return r;
    *rc = r || is_static_ino(parent) || node_find(fs, parent) ? -ENOTDIR : -ENOENT;
    return NULL;
}

/* LOOKUP in a directory other than the root (names=any). */
static void
lookup_in_dir(CapshmFs *fs, fuse_req_t req, fuse_ino_t parent, const char *name)
{
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    struct fuse_entry_param e;
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    CapshmRegion *r = dir ? store_lookup_at(fs->store, dir, name, NULL) : NULL;
    if (r)
        entry_prepare(fs, r, false, &e);
    core_leave(fs);
    if (!r)
        return reply_err(req, -rc);
    if (fuse_reply_entry(req, &e) != 0) {
        core_enter(fs);
        forget_one(fs, e.ino, 1);
        core_leave(fs);
    }
}

static void
cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    CFS_CALL(req);
    if (parent != CFS_ROOT_INO)
        return lookup_in_dir(fs, req, parent, name);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (names_is_control(name)) {
        fuse_ino_t which = control_ino(name);
        if (!which)
            return reply_err(req, ENOENT);
        struct fuse_entry_param e = { 0 };
        core_enter(fs);
        CfsNode *n = g_new0(CfsNode, 1);
        n->ino = fs->next_control_ino++;
        n->nlookup = 1;
        n->control = which;
        n->text = which == CFS_NEW_INO ? NULL : control_text(fs, req, which, NULL);
        g_hash_table_insert(fs->nodes, &n->ino, n);
        e.ino = n->ino;
        fill_control_attr(fs, n, &e.attr);
        core_leave(fs);
        e.attr_timeout = CONTROL_TIMEOUT;
        e.entry_timeout = 0; /* every path walk looks it up again */
        if (fuse_reply_entry(req, &e) != 0) {
            core_enter(fs);
            forget_one(fs, e.ino, 1);
            core_leave(fs);
        }
        return;
    }
    struct fuse_entry_param e;
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = store_lookup(fs->store, name, &is_ro);
    if (r)
        entry_prepare(fs, r, is_ro, &e);
    core_leave(fs);
    if (!r)
        return reply_err(req, ENOENT);
    if (fuse_reply_entry(req, &e) != 0) { /* interrupted: the kernel took no lookup */
        core_enter(fs);
        forget_one(fs, e.ino, 1);
        core_leave(fs);
    }
}

static void
cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    CFS_CALL(req);
    core_enter(fs);
    forget_one(fs, ino, nlookup);
    core_leave(fs);
    fuse_reply_none(req);
}

static void
cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    CFS_CALL(req);
    core_enter(fs);
    for (size_t i = 0; i < count; i++)
        forget_one(fs, forgets[i].ino, forgets[i].nlookup);
    core_leave(fs);
    fuse_reply_none(req);
}

static void
cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    CFS_CALL(req);
    struct stat st;
    if (ino == CFS_ROOT_INO) {
        fill_static_attr(fs, ino, &st);
        fuse_reply_attr(req, &st, CONTROL_TIMEOUT);
        return;
    }
    core_enter(fs);
    bool is_ro = false;
    CfsNode *n = node_find(fs, ino);
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    bool found = r || (n && n->control);
    if (r)
        fill_region_attr(fs->store, r, is_ro, &st);
    else if (found)
        fill_control_attr(fs, n, &st);
    core_leave(fs);
    if (!found)
        return reply_err(req, ENOENT);
    fuse_reply_attr(req, &st, r ? REGION_TIMEOUT : CONTROL_TIMEOUT);
}

/* SETATTR's work, under the core lock.  0 or a positive errno. */
static int
setattr_locked(CapshmFs *fs, CapshmRegion *r, bool is_ro, struct stat *attr, int to_set,
               bool with_handle)
{
    /* Nothing changes through a read-only name.  (An O_TRUNC open of it is
     * refused at OPEN, with EACCES as every write open of it.) */
    (void)with_handle;
    if (is_ro)
        return EPERM;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (attr->st_size < 0)
            return EINVAL;
        int rc = store_resize(fs->store, r, (uint64_t)attr->st_size);
        if (rc < 0)
            return -rc;
    }
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : r->uid;
        gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : r->gid;
        int rc = store_chown(fs->store, r, uid, gid);
        if (rc < 0)
            return -rc;
    }
    if (to_set & FUSE_SET_ATTR_MODE)
        store_chmod(fs->store, r, attr->st_mode);
    StoreTimes t = { 0 };
    t.set_atime = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW);
    t.atime_now = to_set & FUSE_SET_ATTR_ATIME_NOW;
    t.atime = attr->st_atim;
    t.set_mtime = to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
    t.mtime_now = to_set & FUSE_SET_ATTR_MTIME_NOW;
    t.mtime = attr->st_mtim;
    t.set_ctime = to_set & FUSE_SET_ATTR_CTIME;
    t.ctime = attr->st_ctim;
    if (t.set_atime || t.set_mtime || t.set_ctime)
        store_set_times(fs->store, r, &t);
    inval_other_name(fs, r, is_ro);
    return 0;
}

static void
cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
            struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (is_static_ino(ino))
        return reply_err(req, EPERM);
    struct stat st;
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    int err = r ? setattr_locked(fs, r, is_ro, attr, to_set, fi != NULL) : ENOENT;
    if (!err)
        fill_region_attr(fs->store, r, is_ro, &st);
    core_leave(fs);
    if (err)
        return reply_err(req, err);
    fuse_reply_attr(req, &st, REGION_TIMEOUT);
}

static void
cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    CFS_CALL(req);
    if (parent == CFS_ROOT_INO && names_is_control(name))
        return reply_err(req, control_ino(name) ? EPERM : ENOENT);
    core_enter(fs);
    int rc = -ENOENT;
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    bool is_ro = false;
    CapshmRegion *r = dir ? store_lookup_at(fs->store, dir, name, &is_ro) : NULL;
    if (r && !is_ro) {
        /* Its last name going takes its read-only name with it. */
        g_autofree char *ro_name = r->ro_name && r->nlink == 1 ? g_strdup(r->ro_name) : NULL;
        fs->in_unlink = true;
        rc = store_unlink_at(fs->store, dir, name);
        fs->in_unlink = false;
        if (rc == 0 && ro_name)
            notifier_inval_entry(fs->notifier, CFS_ROOT_INO, ro_name);
    } else if (r) {
        rc = -EPERM;
    }
    core_leave(fs);
    reply_err(req, -rc);
}

/* names=any: directories, hard links and renames, as tmpfs has them (store.h
 * "Directories and links").  names=capability refuses them all with EPERM:
 * capabilities are minted, never chosen, linked or moved. */

static bool
any_names(CapshmFs *fs)
{
    return store_options(fs->store)->names == NAMES_MODE_ANY;
}

/* Reply to an entry-making request (mkdir, mknod, link) for @r made in the
 * core section that ends here; undo the lookup count if the reply fails. */
static void
reply_new_entry(CapshmFs *fs, fuse_req_t req, CapshmRegion *r, int rc)
{
    struct fuse_entry_param e;
    if (rc == 0)
        entry_prepare(fs, r, false, &e);
    core_leave(fs);
    if (rc < 0)
        return reply_err(req, -rc);
    if (fuse_reply_entry(req, &e) != 0) {
        core_enter(fs);
        forget_one(fs, e.ino, 1);
        core_leave(fs);
    }
}

static void
cfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    CFS_CALL(req);
    if (!any_names(fs))
        return reply_err(req, EPERM);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (parent == CFS_ROOT_INO && control_ino(name))
        return reply_err(req, EEXIST);
    CapshmCaller c = caller_of(req);
    CapshmRegion *d = NULL;
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    if (dir)
        rc = store_mkdir(fs->store, &c, dir, name, mode, &d);
    reply_new_entry(fs, req, d, rc);
}

/* mknod makes regular files (an empty region, as open(O_CREAT|O_EXCL)
 * would, without opening it); FIFOs, sockets and devices are EPERM. */
static void
cfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    (void)rdev;
    CFS_CALL(req);
    if (!any_names(fs) || !S_ISREG(mode))
        return reply_err(req, EPERM);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (parent == CFS_ROOT_INO && names_is_control(name))
        return reply_err(req, control_ino(name) ? EEXIST : EACCES);
    CapshmCaller c = caller_of(req);
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    if (dir)
        rc = store_create_at(fs->store, &c, dir, name, mode, true, &r, &created);
    reply_new_entry(fs, req, r, rc);
}

static void
cfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    CFS_CALL(req);
    if (!any_names(fs))
        return reply_err(req, EPERM);
    if (parent == CFS_ROOT_INO && names_is_control(name))
        return reply_err(req, control_ino(name) ? ENOTDIR : ENOENT);
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    if (dir)
        rc = store_rmdir(fs->store, dir, name);
    core_leave(fs);
    reply_err(req, -rc);
}

/* No symbolic links: a region is memory, and nothing on /dev/shm needs one. */
static void
cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link; (void)parent; (void)name;
    CFS_CALL(req);
    reply_err(req, EPERM);
}

static void
cfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    CFS_CALL(req);
    if (!any_names(fs) || is_static_ino(ino))
        return reply_err(req, EPERM);
    if (strlen(newname) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (newparent == CFS_ROOT_INO && names_is_control(newname))
        return reply_err(req, control_ino(newname) ? EEXIST : EACCES);
    int rc = -ENOENT;
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    CapshmRegion *dir = parent_dir(fs, newparent, &rc);
    if (!r)
        rc = -ENOENT;
    else if (is_ro)
        rc = -EPERM; /* a read-only name never leads to a writable one */
    else if (dir)
        rc = store_link(fs->store, r, dir, newname);
    reply_new_entry(fs, req, r, rc);
}

static void
cfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
           const char *newname, unsigned int flags)
{
    CFS_CALL(req);
    if (!any_names(fs))
        return reply_err(req, EPERM);
    if (strlen(newname) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if ((parent == CFS_ROOT_INO && names_is_control(name)) ||
        (newparent == CFS_ROOT_INO && names_is_control(newname)))
        return reply_err(req, EPERM);
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *odir = parent_dir(fs, parent, &rc);
    CapshmRegion *ndir = odir ? parent_dir(fs, newparent, &rc) : NULL;
    if (odir && ndir) {
        /* A replaced file destroyed here needs no inode invalidation. */
        fs->in_unlink = true;
        rc = store_rename(fs->store, odir, name, ndir, newname, flags);
        fs->in_unlink = false;
    }
    core_leave(fs);
    reply_err(req, -rc);
}

/* --- open / create / release ------------------------------------------------ */

static bool
wants_write(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static CfsFile *
text_file(char *text)
{
    CfsFile *f = g_new0(CfsFile, 1);
    f->kind = FH_TEXT;
    f->text = text;
    f->len = strlen(text);
    return f;
}

static void
file_free(CfsFile *f)
{
    if (!f)
        return;
    region_unref(f->region);
    g_free(f->text);
    if (f->names)
        g_ptr_array_free(f->names, TRUE);
    if (f->dirents)
        g_array_free(f->dirents, TRUE);
    g_free(f);
}

/* Under the core lock. */
static void
release_region_file(CapshmFs *fs, CfsFile *f)
{
    store_released(fs->store, f->region, f->writable);
    g_hash_table_steal(fs->files, f);
    file_free(f);
}

/* Fill @fi for an open of region @r and account the open, under the core
 * lock.  Returns 0 or a positive errno. */
static int
open_region(CapshmFs *fs, fuse_req_t req, CapshmRegion *r, bool is_ro,
            struct fuse_file_info *fi, CfsFile **out)
{
    bool writable = wants_write(fi->flags);
    if (is_ro && writable)
        return EACCES;
    if (r->sealed && writable)
        return EPERM;
    if (fi->flags & O_TRUNC) {
        int rc = store_resize(fs->store, r, 0);
        if (rc < 0)
            return -rc;
        inval_other_name(fs, r, is_ro);
    }
    if (fs->path == CFS_PATH_PASSTHROUGH) {
#ifdef HAVE_FUSE_PASSTHROUGH
        int id = GPOINTER_TO_INT(g_hash_table_lookup(fs->backing_ids, &r->ino));
        if (id <= 0) {
            /* Registered while the region is held; dropped when the kernel
             * says it holds it no more (on_region_unheld). */
            int fd = store_backing_fd(fs->store, r);
            if (fd < 0)
                return -fd;
            id = backing_open(fs, fd);
            if (id < 0) {
                g_warning("passthrough backing file for a region: %s", g_strerror(-id));
                return EIO;
            }
            g_hash_table_insert(fs->backing_ids, g_memdup2(&r->ino, sizeof r->ino), GINT_TO_POINTER(id));
        }
        fi->backing_id = id;
        /* mmap goes straight to the region's file; read/write still come to us so
         * growth is charged to quota at the call (FOPEN_DIRECT_IO wins over
         * passthrough for read/write, not for mmap). */
        fi->direct_io = 1;
        fi->keep_cache = 0;
#endif
    } else {
        fi->keep_cache = 1;
        fi->direct_io = 0;
    }
    fi->noflush = 1;
    CfsFile *f = g_new0(CfsFile, 1);
    f->kind = FH_REGION;
    f->region = region_ref(r);
    f->tid = fuse_req_ctx(req)->pid;
    f->writable = (fi->flags & O_ACCMODE) != O_RDONLY;
    store_opened(fs->store, r, f->writable);
    fi->fh = (uint64_t)(uintptr_t)f;
    g_hash_table_add(fs->files, f);
    *out = f;
    return 0;
}

/* The text of control file @ino for the caller of @req, or NULL with *err.
 * Under the core lock. */
static char *
control_text(CapshmFs *fs, fuse_req_t req, fuse_ino_t ino, int *err)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    if (ino == CFS_NEW_INO) {
        char name[NAMES_BUF];
        int rc = store_mint(fs->store, ctx->uid, name);
        if (rc < 0) {
            if (err)
                *err = -rc;
            return NULL;
        }
        return g_strdup_printf("%s\n", name);
    }
    if (ino == CFS_MINE_INO) {
        g_autoptr(GPtrArray) regions = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
        store_list(fs->store, ctx->uid, ctx->uid == 0, regions);
        /* One name per line; with names=any a name may hold a newline or
         * a backslash: those are escaped C-style (\n, \\). */
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < regions->len; i++) {
            for (const char *c = ((CapshmRegion *)regions->pdata[i])->name; *c; c++) {
                if (*c == '\n')
                    g_string_append(s, "\\n");
                else if (*c == '\\')
                    g_string_append(s, "\\\\");
                else
                    g_string_append_c(s, *c);
            }
            g_string_append_c(s, '\n');
        }
        return g_string_free(s, FALSE);
    }
    return store_stats_json(fs->store, ctx->uid, ctx->uid == 0, cfs_datapath_name(fs),
                            request_transport(req),
                            __atomic_load_n(&fs->requests, __ATOMIC_RELAXED));
}

static void
cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (ino == CFS_ROOT_INO)
        return reply_err(req, EISDIR);
    if (is_static_ino(ino)) {
        if (wants_write(fi->flags))
            return reply_err(req, EACCES);
        int err = ENOENT;
        CfsFile *f = NULL;
        core_enter(fs);
        CfsNode *n = node_find(fs, ino);
        if (n && n->control) {
            /* .new mints now; .stats and .mine were made at LOOKUP, so that
             * their size was known: this inode is this caller's alone. */
            char *text = n->control == CFS_NEW_INO ? control_text(fs, req, n->control, &err)
                                                   : g_strdup(n->text);
            f = text ? text_file(text) : NULL;
        }
        if (f)
            g_hash_table_add(fs->files, f);
        core_leave(fs);
        if (!f)
            return reply_err(req, err);
        fi->fh = (uint64_t)(uintptr_t)f;
        /* Through the page cache of this inode of its own, with st_size
         * right: read, splice and sendfile all see the whole text. */
        fi->direct_io = 0;
        fi->keep_cache = 0;
        fi->noflush = 1;   /* nothing to flush: saves a FLUSH round trip per close */
        if (fuse_reply_open(req, fi) != 0) {
            core_enter(fs);
            g_hash_table_remove(fs->files, f);
            core_leave(fs);
        }
        return;
    }
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    CfsFile *f = NULL;
    int err = !r ? ENOENT : r->is_dir ? EISDIR : open_region(fs, req, r, is_ro, fi, &f);
    core_leave(fs);
    if (err)
        return reply_err(req, err);
    if (fuse_reply_open(req, fi) != 0) { /* interrupted: no RELEASE will come */
        core_enter(fs);
        release_region_file(fs, f);
        core_leave(fs);
    }
}

/* May caller @c open @r with @flags?  Used only when CREATE finds an
 * existing region (a race with another creator): the kernel checked nothing
 * in that case. */
static bool
may_open_existing(fuse_req_t req, const CapshmCaller *c, CapshmRegion *r, int flags)
{
    if (c->uid == 0)
        return true;
    mode_t m = r->mode;
    unsigned shift;
    if (c->uid == r->uid) {
        shift = 6;
    } else {
        shift = 0;
        gid_t groups[64];
        int n = fuse_req_getgroups(req, 64, groups);
        bool in_group = c->gid == r->gid;
        for (int i = 0; i < n && i < 64 && !in_group; i++)
            in_group = groups[i] == r->gid;
        if (in_group)
            shift = 3;
    }
    unsigned want = 0;
    if ((flags & O_ACCMODE) != O_WRONLY)
        want |= 4;
    if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC))
        want |= 2;
    return ((m >> shift) & want) == want;
}

/* CREATE's work under the core lock: 0 with @e and @f filled, or an errno. */
static int
create_locked(CapshmFs *fs, fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
              struct fuse_file_info *fi, struct fuse_entry_param *e, CfsFile **f)
{
    CapshmCaller c = caller_of(req);
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = -ENOENT;
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    if (!dir)
        return -rc;
    rc = store_create_at(fs->store, &c, dir, name, mode, (fi->flags & O_EXCL) != 0, &r, &created);
    if (rc < 0)
        return -rc;
    bool is_ro = false;
    if (!created) {
        store_lookup_at(fs->store, dir, name, &is_ro);
        if (!may_open_existing(req, &c, r, fi->flags))
            return EACCES;
    }
    /* A region we just made and cannot open lingers and goes; that is only
     * possible if passthrough registration failed. */
    int err = open_region(fs, req, r, is_ro, fi, f);
    if (err)
        return err;
    entry_prepare(fs, r, is_ro, e);
    return 0;
}

static void
cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
           struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (parent == CFS_ROOT_INO && names_is_control(name))
        return reply_err(req, control_ino(name) ? EEXIST : EACCES);
    struct fuse_entry_param e;
    CfsFile *f = NULL;
    core_enter(fs);
    int err = create_locked(fs, req, parent, name, mode, fi, &e, &f);
    core_leave(fs);
    if (err)
        return reply_err(req, err);
    if (fuse_reply_create(req, &e, fi) != 0) {
        core_enter(fs);
        forget_one(fs, e.ino, 1);
        release_region_file(fs, f);
        core_leave(fs);
    }
}

static void
cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    core_enter(fs);
    if (f && f->kind == FH_REGION)
        release_region_file(fs, f);
    else if (f)
        g_hash_table_remove(fs->files, f);
    core_leave(fs);
    reply_err(req, 0);
}

static void
cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino; (void)fi;
    CFS_CALL(req);
    reply_err(req, 0);
}

static void
cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino; (void)datasync; (void)fi;
    CFS_CALL(req);
    /* Memory has nowhere to be synced to. */
    reply_err(req, 0);
}

/* --- data -------------------------------------------------------------------- */

/* A private fd on @r's bytes for I/O outside the core lock (the store may
 * close or replace its own fd meanwhile, e.g. when sealing).  -errno. */
static int
dup_data_fd(CapshmFs *fs, CapshmRegion *r)
{
    int fd = store_data_fd(fs->store, r);
    if (fd < 0)
        return fd;
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy < 0 ? -errno : copy;
}

static void
cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (!f)
        return reply_err(req, EBADF);
    if (f->kind == FH_TEXT) { /* immutable once opened: no lock */
        if (off < 0 || (size_t)off >= f->len)
            return (void)fuse_reply_buf(req, NULL, 0);
        fuse_reply_buf(req, f->text + off, MIN(size, f->len - (size_t)off));
        return;
    }
    if (f->kind != FH_REGION)
        return reply_err(req, EISDIR);
    CapshmRegion *r = f->region;
    int fd = -EIO;
    uint64_t rsize = 0;
    core_enter(fs);
    if (region_is_alive(r)) {
        rsize = r->size;
        fd = off >= 0 && (uint64_t)off < rsize ? dup_data_fd(fs, r) : 0;
    }
    core_leave(fs);
    if (fd < 0)
        return reply_err(req, -fd);
    if (fd == 0)
        return (void)fuse_reply_buf(req, NULL, 0);
    size_t n = (size_t)MIN((uint64_t)size, rsize - (uint64_t)off);
    char *buf = readbuf_get(n);
    size_t got = 0;
    int err = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            err = errno;
            break;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (err)
        return reply_err(req, err);
    fuse_reply_buf(req, buf, got);
    /* Passthrough: mappings change the bytes behind the kernel's back, and
     * splice/sendfile/copy_file_range read through the FUSE inode's page
     * cache (FOPEN_DIRECT_IO sends them there).  Drop what this read may
     * have put in it, so the next such read asks us again. */
    if (fs->path == CFS_PATH_PASSTHROUGH && got > 0)
        notifier_inval_inode(fs->notifier, ino, off, (off_t)got);
}

static void
cfs_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
              struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (!f || f->kind != FH_REGION)
        return reply_err(req, EBADF);
    if (off < 0)
        return reply_err(req, EINVAL);
    CapshmRegion *r = f->region;
    size_t len = fuse_buf_size(in);
    uint64_t reserved_end = 0;
    int fd = -EIO;
    core_enter(fs);
    if (region_is_alive(r)) {
        fd = dup_data_fd(fs, r);
        if (fd >= 0) {
            int rc = store_write_begin(fs->store, r, (uint64_t)off, len, &reserved_end);
            if (rc < 0) {
                close(fd);
                fd = rc;
            }
        }
    }
    core_leave(fs);
    if (fd < 0)
        return reply_err(req, -fd);
    /* The copy itself runs without the lock: quota was reserved above. */
    struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    dst.buf[0].fd = fd;
    dst.buf[0].pos = off;
    ssize_t n = fuse_buf_copy(&dst, in, 0);
    close(fd);
    core_enter(fs);
    uint64_t old_size = r->size;
    store_write_done(fs->store, r, (uint64_t)off, n > 0 ? (uint64_t)n : 0, reserved_end);
    if (r->size != old_size)
        inval_other_name(fs, r, false);
    core_leave(fs);
    if (n < 0)
        return reply_err(req, (int)-n);
    fuse_reply_write(req, (size_t)n);
}

static void
cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
              struct fuse_file_info *fi)
{
    (void)fi;
    CFS_CALL(req);
    if (mode != 0)
        return reply_err(req, is_static_ino(ino) ? EPERM : EOPNOTSUPP);
    if (off < 0 || len <= 0)
        return reply_err(req, is_static_ino(ino) ? EPERM : EINVAL);
    uint64_t reserved_end = 0;
    int fd = -ENOENT;
    CapshmRegion *r = NULL;
    core_enter(fs);
    bool is_ro = false;
    r = node_region(fs, ino, &is_ro);
    if (!r) {
        fd = is_static_ino(ino) ? -EPERM : -ENOENT;
    } else if (is_ro) {
        fd = -EBADF;
    } else if ((fd = dup_data_fd(fs, r)) >= 0) {
        int rc = store_write_begin(fs->store, r, (uint64_t)off, (uint64_t)len, &reserved_end);
        if (rc < 0) {
            close(fd);
            fd = rc;
        } else {
            region_ref(r);
        }
    }
    core_leave(fs);
    if (fd < 0)
        return reply_err(req, -fd);
    /* Allocating pages takes time in proportion to len: not under the lock. */
    int err = fallocate(fd, 0, off, len) < 0 ? errno : 0;
    close(fd);
    core_enter(fs);
    store_write_done(fs->store, r, (uint64_t)off, err ? 0 : (uint64_t)len, reserved_end);
    if (!err)
        inval_other_name(fs, r, false);
    region_unref(r);
    core_leave(fs);
    reply_err(req, err);
}

/* --- directory --------------------------------------------------------------- */

static void
dir_add(CfsFile *f, const char *name, uint64_t ino, mode_t type)
{
    CfsDirent d = { .ino = ino, .type = type };
    g_ptr_array_add(f->names, g_strdup(name));
    g_array_append_val(f->dirents, d);
}

static void
cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    CFS_CALL(req);
    CfsFile *f = g_new0(CfsFile, 1);
    f->kind = FH_DIR;
    f->names = g_ptr_array_new_with_free_func(g_free);
    f->dirents = g_array_new(FALSE, FALSE, sizeof(CfsDirent));
    /* Snapshot at opendir.  With capability names only root gets here (the
     * root is 1733); with names=any every name is listed, as in /dev/shm. */
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) regions = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    int rc = -ENOTDIR;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, ino, &rc);
    if (dir) {
        CapshmRegion *up = dir->links ? ((CapshmLink *)dir->links->data)->dir : dir;
        dir_add(f, ".", ino, S_IFDIR);
        dir_add(f, "..", up->ino, S_IFDIR);
        if (ino == CFS_ROOT_INO) {
            dir_add(f, ".new", CFS_NEW_INO, S_IFREG);
            dir_add(f, ".stats", CFS_STATS_INO, S_IFREG);
            dir_add(f, ".mine", CFS_MINE_INO, S_IFREG);
        }
        store_list_dir(fs->store, dir, names, regions);
        for (guint i = 0; i < regions->len; i++) {
            CapshmRegion *r = regions->pdata[i];
            dir_add(f, names->pdata[i], r->ino, r->is_dir ? S_IFDIR : S_IFREG);
        }
        g_hash_table_add(fs->files, f);
    }
    core_leave(fs);
    if (!dir) {
        file_free(f);
        return reply_err(req, -rc);
    }
    fi->fh = (uint64_t)(uintptr_t)f;
    if (fuse_reply_open(req, fi) != 0) {
        core_enter(fs);
        g_hash_table_remove(fs->files, f);
        core_leave(fs);
    }
}

static void
cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (!f || f->kind != FH_DIR)
        return reply_err(req, EBADF);
    /* f->names is fixed at opendir: no lock. */
    char *buf = g_malloc(size);
    size_t used = 0;
    for (guint i = off < 0 ? 0 : (guint)off; i < f->names->len; i++) {
        const char *name = f->names->pdata[i];
        const CfsDirent *d = &g_array_index(f->dirents, CfsDirent, i);
        struct stat st = { 0 };
        st.st_ino = d->ino;
        st.st_mode = d->type;
        size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    fuse_reply_buf(req, buf, used);
    g_free(buf);
}

static void
cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    core_enter(fs);
    g_hash_table_remove(fs->files, (CfsFile *)(uintptr_t)fi->fh);
    core_leave(fs);
    reply_err(req, 0);
}

static void
cfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    CFS_CALL(req);
    struct statvfs sv = { 0 };
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_ffree = sv.f_favail = 1000000;
    sv.f_namemax = NAMES_MAX;
    core_enter(fs);
    Quota *q = store_quota(fs->store);
    sv.f_blocks = quota_size_limit(q) / 4096;
    uint64_t used = (quota_total_bytes(q) + 4095) / 4096;
    sv.f_files = store_region_count(fs->store) + 1000000;
    core_leave(fs);
    sv.f_bfree = sv.f_bavail = sv.f_blocks > used ? sv.f_blocks - used : 0;
    fuse_reply_statfs(req, &sv);
}

/* --- xattrs ------------------------------------------------------------------- */

static const char *const region_xattrs[] = {
    "ro", "holders", "pids", "state", "created", "pin", "seal", NULL,
};

static bool
is_owner_or_root(const struct fuse_ctx *ctx, const CapshmRegion *r)
{
    return ctx->uid == 0 || ctx->uid == r->uid;
}

static void
reply_xattr_value(fuse_req_t req, const char *val, size_t size)
{
    size_t len = strlen(val);
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, val, len);
}

/* user.capshm.holders / pids of a held region: looked up in /proc by the
 * scan pool's thread, which replies.  Display only (procwatch.h). */
typedef struct {
    fuse_req_t req;
    uint64_t ino, ro_ino;
    size_t size;
    bool want_pids;
} ScanJob;

/* Time one lookup may take; a busier machine gets a partial answer. */
#define SCAN_BUDGET_US (500 * 1000)
/* Lookups waiting at most; more get EAGAIN rather than a growing queue. */
#define SCAN_QUEUE_MAX 64

static void
scan_job(gpointer p, gpointer data)
{
    ScanJob *j = p;
    CapshmFs *fs = data;
    bool complete = false;
    g_autoptr(GArray) pids = procwatch_holders(fs->mount_dev, j->ino, j->ro_ino, SCAN_BUDGET_US, &complete);
    GString *s = g_string_new(NULL);
    if (j->want_pids) {
        for (guint i = 0; i < pids->len; i++)
            g_string_append_printf(s, "%s%d", i ? " " : "", (int)g_array_index(pids, pid_t, i));
    } else {
        /* The region is held (the kernel says so): at least one holder,
         * even if it is out of our sight. */
        g_string_append_printf(s, "%u", MAX(pids->len, 1u));
    }
    reply_xattr_value(j->req, s->str, j->size);
    g_string_free(s, TRUE);
    g_atomic_int_add(&fs->scans_queued, -1);
    g_free(j);
}

/* GETXATTR's work under the core lock: the value in *val, or a job for the
 * scan pool in *job, or an errno. */
static int
getxattr_locked(CapshmFs *fs, fuse_req_t req, fuse_ino_t ino, const char *key, size_t size,
                char **val, ScanJob **job)
{
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return is_static_ino(ino) ? ENODATA : ENOENT;
    if (r->is_dir)
        return ENODATA; /* directories have no user.capshm.* attributes */
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    bool want_pids = strcmp(key, "pids") == 0;
    if (strcmp(key, "ro") == 0) {
        if (fs->path != CFS_PATH_PASSTHROUGH)
            return ENOTSUP;
        /* Through the read-only name, its own name: never the rw name. */
        const char *ro = is_ro ? r->ro_name : store_ro_name(fs->store, r);
        if (!ro)
            return EIO;
        *val = g_strdup(ro);
    } else if (want_pids || strcmp(key, "holders") == 0) {
        if (want_pids && (!is_owner_or_root(ctx, r) || is_ro))
            return EACCES;
        if (!region_is_held(r) || fs->mount_dev == 0) {
            *val = g_strdup(want_pids ? "" : region_is_held(r) ? "1" : "0");
        } else {
            ScanJob *j = g_new0(ScanJob, 1);
            j->req = req;
            j->ino = r->ino;
            j->ro_ino = r->ro_ino;
            j->size = size;
            j->want_pids = want_pids;
            *job = j;
        }
    } else if (strcmp(key, "state") == 0) {
        *val = g_strdup(region_state_name(r));
    } else if (strcmp(key, "created") == 0) {
        *val = g_strdup_printf("%" G_GINT64_FORMAT, (gint64)r->created);
    } else if (strcmp(key, "pin") == 0) {
        *val = g_strdup(r->pinned ? "1" : "0");
    } else if (strcmp(key, "seal") == 0) {
        *val = g_strdup(r->sealed ? "1" : "0");
    } else {
        return ENODATA;
    }
    return 0;
}

static void
cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    CFS_CALL(req);
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0) {
        core_enter(fs);
        bool known = is_static_ino(ino) || node_region(fs, ino, NULL);
        core_leave(fs);
        return reply_err(req, known ? ENODATA : ENOENT);
    }
    g_autofree char *val = NULL;
    ScanJob *job = NULL;
    core_enter(fs);
    int err = getxattr_locked(fs, req, ino, name + strlen(XATTR_PREFIX), size, &val, &job);
    core_leave(fs);
    if (err)
        return reply_err(req, err);
    if (job) {
        if (g_atomic_int_add(&fs->scans_queued, 1) >= SCAN_QUEUE_MAX) {
            g_atomic_int_add(&fs->scans_queued, -1);
            g_free(job);
            return reply_err(req, EAGAIN);
        }
        g_thread_pool_push(fs->scan_pool, job, NULL);
        return;
    }
    reply_xattr_value(req, val, size);
}

static int
parse_bool_value(const char *value, size_t size, bool *out)
{
    /* Accept "0"/"1", with one trailing newline for `echo`-style callers. */
    if (size == 2 && value[1] == '\n')
        size = 1;
    if (size != 1 || (value[0] != '0' && value[0] != '1'))
        return -EINVAL;
    *out = value[0] == '1';
    return 0;
}

/* SETXATTR's work under the core lock; 0 or a positive errno. */
static int
setxattr_locked(CapshmFs *fs, fuse_req_t req, fuse_ino_t ino, const char *name,
                const char *value, size_t size)
{
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return is_static_ino(ino) ? EPERM : ENOENT;
    if (r->is_dir)
        return ENOTSUP;
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
        return ENOTSUP; /* we keep no arbitrary xattrs */
    const char *key = name + strlen(XATTR_PREFIX);
    bool v;
    if (strcmp(key, "pin") != 0 && strcmp(key, "seal") != 0)
        return EINVAL;
    if (parse_bool_value(value, size, &v) < 0)
        return EINVAL;
    if (is_ro || !is_owner_or_root(fuse_req_ctx(req), r))
        return EPERM;
    if (strcmp(key, "pin") == 0) {
        store_set_pinned(fs->store, r, v);
        return 0;
    }
    if (!v)
        return r->sealed ? EPERM : EINVAL; /* seals are forever */
    return -store_seal(fs->store, r);
}

static void
cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
             size_t size, int flags)
{
    (void)flags;
    CFS_CALL(req);
    core_enter(fs);
    int err = setxattr_locked(fs, req, ino, name, value, size);
    core_leave(fs);
    reply_err(req, err);
}

static void
cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    CFS_CALL(req);
    core_enter(fs);
    CapshmRegion *node = node_region(fs, ino, NULL);
    bool is_region = node && !node->is_dir, is_dir = node && node->is_dir;
    core_leave(fs);
    if (!is_region && !is_dir && !is_static_ino(ino))
        return reply_err(req, ENOENT);
    GString *s = g_string_new(NULL);
    for (const char *const *k = region_xattrs; is_region && *k; k++) {
        if (strcmp(*k, "ro") == 0 && fs->path != CFS_PATH_PASSTHROUGH)
            continue;
        g_string_append_printf(s, XATTR_PREFIX "%s", *k);
        g_string_append_c(s, '\0');
    }
    if (size == 0)
        fuse_reply_xattr(req, s->len);
    else if (size < s->len)
        reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, s->str, s->len);
    g_string_free(s, TRUE);
}

static void
cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino;
    CFS_CALL(req);
    reply_err(req, strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0 ? EINVAL : ENOTSUP);
}

static const struct fuse_lowlevel_ops ops = {
    .init = cfs_init,
    .destroy = cfs_destroy,
    .lookup = cfs_lookup,
    .forget = cfs_forget,
    .forget_multi = cfs_forget_multi,
    .getattr = cfs_getattr,
    .setattr = cfs_setattr,
    .mknod = cfs_mknod,
    .mkdir = cfs_mkdir,
    .unlink = cfs_unlink,
    .rmdir = cfs_rmdir,
    .symlink = cfs_symlink,
    .rename = cfs_rename,
    .link = cfs_link,
    .open = cfs_open,
    .read = cfs_read,
    .write_buf = cfs_write_buf,
    .flush = cfs_flush,
    .release = cfs_release,
    .fsync = cfs_fsync,
    .opendir = cfs_opendir,
    .readdir = cfs_readdir,
    .releasedir = cfs_releasedir,
    .statfs = cfs_statfs,
    .setxattr = cfs_setxattr,
    .getxattr = cfs_getxattr,
    .listxattr = cfs_listxattr,
    .removexattr = cfs_removexattr,
    .create = cfs_create,
    .fallocate = cfs_fallocate,
};

const struct fuse_lowlevel_ops *
cfs_ops(void)
{
    return &ops;
}
