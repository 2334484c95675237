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
 *
 * This file: the CapshmFs itself, its tables and helpers, the data-path
 * negotiation and passthrough backing ids, INIT, and the operations table;
 * the callbacks live in cfs_names.c, cfs_open.c, cfs_data.c, cfs_dir.c and
 * cfs_xattr.c (cfs_private.h says what they share).
 */

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

#include "cfs_private.h"
#include "core/names.h"
#include "core/procwatch.h"
#include "notify.h"

static void on_region_destroyed(CapshmRegion *r, void *data);

/* Slow requests of different clients proceed side by side, a few at once. */
#define SLOW_THREADS 4

typedef struct {
    CfsSlowFn fn;
    void *job;
} SlowWork;

static void
slow_work_run(gpointer p, gpointer data)
{
    SlowWork *w = p;
    w->fn(data, w->job);
    g_free(w);
}

void
run_slow(CapshmFs *fs, CfsSlowFn fn, void *job)
{
    SlowWork *w = g_new(SlowWork, 1);
    w->fn = fn;
    w->job = job;
    g_thread_pool_push(fs->slow_pool, w, NULL);
}

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
    fs->slow_pool = g_thread_pool_new(slow_work_run, fs, SLOW_THREADS, FALSE, NULL);
    return fs;
}

void
cfs_free(CapshmFs *fs)
{
    if (!fs)
        return;
    /* Finish the scans first: they reply (harmlessly, after unmount). */
    g_thread_pool_free(fs->scan_pool, FALSE, TRUE);
    g_thread_pool_free(fs->slow_pool, FALSE, TRUE);
    cfs_stop_notifier(fs);
    store_set_destroy_hook(fs->store, NULL, NULL);
    store_set_unheld_hook(fs->store, NULL, NULL);
    g_hash_table_destroy(fs->files); /* handles still open at unmount */
    g_hash_table_destroy(fs->nodes);
    g_hash_table_destroy(fs->backing_ids);
    g_free(fs->cgroup2);
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
cfs_set_cgroup2(CapshmFs *fs, const char *mount)
{
    g_free(fs->cgroup2);
    fs->cgroup2 = g_strdup(mount);
}

uint64_t
caller_cgroup(CapshmFs *fs, fuse_req_t req, char **path)
{
    *path = NULL;
    if (!fs->cgroup2)
        return 0;
    return procwatch_cgroup_of(fuse_req_ctx(req)->pid, fs->cgroup2, path);
}

void
cfs_set_after_request(CapshmFs *fs, void (*fn)(void *data), void *data)
{
    fs->after_request = fn;
    fs->after_request_data = data;
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
int
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


void
reply_errno(fuse_req_t req, const char *op, int err)
{
    if (err != 0 && err != ENOENT)
        g_debug("%s: %s", g_str_has_prefix(op, "cfs_") ? op + 4 : op, g_strerror(err));
    fuse_reply_err(req, err);
}

CapshmCaller
caller_of(fuse_req_t req)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    return (CapshmCaller){ .uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid };
}

/* How @req reached us: over FUSE io_uring or read from /dev/fuse. */
const char *
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
bool
is_static_ino(fuse_ino_t ino)
{
    return ino == CFS_ROOT_INO || ino >= CONTROL_INO_BASE ||
           ino == CFS_NEW_INO || ino == CFS_STATS_INO || ino == CFS_MINE_INO;
}

/* The control file called @name, or 0. */
fuse_ino_t
control_ino(const char *name)
{
    return strcmp(name, ".new") == 0 ? CFS_NEW_INO
         : strcmp(name, ".stats") == 0 ? CFS_STATS_INO
         : strcmp(name, ".mine") == 0 ? CFS_MINE_INO : 0;
}

/* Under the core lock, from here to the end of the section. */

CfsNode *
node_find(CapshmFs *fs, fuse_ino_t ino)
{
    uint64_t key = ino;
    return g_hash_table_lookup(fs->nodes, &key);
}

/* The live region behind a region node, or NULL (ENOENT). */
CapshmRegion *
node_region(CapshmFs *fs, fuse_ino_t ino, bool *is_ro)
{
    CfsNode *n = node_find(fs, ino);
    if (!n || !n->region || !region_is_alive(n->region))
        return NULL;
    if (is_ro)
        *is_ro = n->is_ro;
    return n->region;
}

bool
shrink_is_slow(CapshmFs *fs, fuse_ino_t ino, uint64_t size)
{
    bool is_ro = false;
    core_enter(fs);
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    bool slow = r && !is_ro && store_shrink_is_big(r, size);
    core_leave(fs);
    return slow;
}

CapshmRegion *
shrink_early(CapshmFs *fs, fuse_ino_t ino, uint64_t size)
{
    uint64_t off = 0, len = 0;
    bool is_ro = false;
    core_enter(fs);
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    int fd = r && !is_ro ? store_shrink_begin(fs->store, r, size, &off, &len) : -1;
    if (fd >= 0)
        region_ref(r);
    core_leave(fs);
    if (fd < 0)
        return NULL;
    /* Best effort: what is not freed here the resize frees. */
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
        g_debug("freeing a shrinking region early: %s", g_strerror(errno));
    close(fd);
    return r;
}

void
shrink_early_end(CapshmFs *fs, CapshmRegion *r)
{
    if (r) {
        store_shrink_end(fs->store, r);
        region_unref(r);
    }
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

void
forget_one(CapshmFs *fs, fuse_ino_t ino, uint64_t nlookup)
{
    CfsNode *n = node_find(fs, ino);
    if (!n)
        return;
    n->nlookup -= MIN(nlookup, n->nlookup);
    if (n->nlookup == 0)
        g_hash_table_remove(fs->nodes, &n->ino);
}

void
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
void
fill_control_attr(CapshmFs *fs, const CfsNode *n, struct stat *st)
{
    fill_static_attr(fs, n->ino, st);
    st->st_size = n->control == CFS_NEW_INO ? NAMES_CAP_LEN + 1 : (off_t)strlen(n->text);
}

void
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
void
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
void
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
void
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
