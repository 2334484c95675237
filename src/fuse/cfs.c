/* SPDX-License-Identifier: MIT */
/* cfs — see cfs.h.
 *
 * Ownership model:
 *  - `nodes` maps a node id the kernel knows to a CfsNode holding one region
 *    reference; FORGET (or cfs_free, since unmount sends none) drops it.
 *  - Each open file handle (fi->fh) is a CfsFile holding one region reference
 *    (regions) or the generated text (control files); RELEASE frees it.
 *  - Region nodes are created on LOOKUP/CREATE replies only.  Root, .new and
 *    .stats are static and never counted.
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

typedef struct {
    uint64_t ino;
    CapshmRegion *region; /* owned reference */
    bool is_ro;
    uint64_t nlookup;
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
} CfsFile;

struct CapshmFs {
    CapshmStore *store;
    CapshmDatapath want;
    CfsDataPath path;
    struct fuse_session *se;
    GHashTable *nodes; /* ino -> CfsNode* (owned) */
    GHashTable *files; /* every open CfsFile (owned): unmount sends no RELEASE */
    Notifier *notifier;
    /* The core lock (see cfs.h), and what to run before releasing it at the
     * end of each callback. */
    pthread_mutex_t lock; /* pthread, not GMutex: ThreadSanitizer sees it */
    void (*after_request)(void *data);
    void *after_request_data;
    /* Set by INIT, which runs without the core lock: the daemon holds that
     * lock while it waits for INIT and settles the data path. */
    gint init_done;
    bool passthrough_negotiated;
    uid_t owner_uid;
    gid_t owner_gid;
    struct timespec mount_time;
    uint64_t requests;
    /* Set while UNLINK runs: a region destroyed there needs no inode
     * invalidation, the kernel drops its unlinked (nlink 0) inode itself. */
    bool in_unlink;
    /* READ replies are copied through this one buffer (grown to the largest
     * read asked, at most max_pages): libfuse's own fallback mallocs and
     * frees a fresh buffer per reply, which costs page faults. */
    char *readbuf;
    size_t readbuf_size;
};

static void on_region_destroyed(CapshmRegion *r, void *data);
static void file_free(CfsFile *f);

static void
node_free(gpointer p)
{
    CfsNode *n = p;
    region_unref(n->region);
    g_free(n);
}

CapshmFs *
cfs_new(CapshmStore *store, CapshmDatapath want)
{
    CapshmFs *fs = g_new0(CapshmFs, 1);
    fs->store = store;
    fs->want = want;
    fs->path = CFS_PATH_CACHE;
    pthread_mutex_init(&fs->lock, NULL);
    fs->nodes = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, node_free);
    fs->files = g_hash_table_new_full(NULL, NULL, (GDestroyNotify)file_free, NULL);
    fs->owner_uid = geteuid();
    fs->owner_gid = getegid();
    clock_gettime(CLOCK_REALTIME, &fs->mount_time);
    store_set_destroy_hook(store, on_region_destroyed, fs);
    return fs;
}

void
cfs_free(CapshmFs *fs)
{
    if (!fs)
        return;
    cfs_stop_notifier(fs);
    store_set_destroy_hook(fs->store, NULL, NULL);
    g_hash_table_destroy(fs->files); /* handles still open at unmount */
    g_hash_table_destroy(fs->nodes);
    g_free(fs->readbuf);
    pthread_mutex_destroy(&fs->lock);
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
void cfs_lock(CapshmFs *fs) { pthread_mutex_lock(&fs->lock); }
void cfs_unlock(CapshmFs *fs) { pthread_mutex_unlock(&fs->lock); }
pthread_mutex_t *cfs_core_lock(CapshmFs *fs) { return &fs->lock; }

void
cfs_set_after_request(CapshmFs *fs, void (*fn)(void *data), void *data)
{
    fs->after_request = fn;
    fs->after_request_data = data;
}

/* --- the core lock around every callback ------------------------------------ */

/* What a callback holds while it runs: the core lock, and cancellation
 * switched off (libfuse cancels its io_uring threads at unmount; a thread
 * cancelled inside a callback would never release the lock). */
typedef struct {
    CapshmFs *fs;
    int cancel_state;
} CfsCall;

static CfsCall
call_enter(fuse_req_t req)
{
    CfsCall c = { .fs = fuse_req_userdata(req) };
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &c.cancel_state);
    pthread_mutex_lock(&c.fs->lock);
    c.fs->requests++;
    return c;
}

static void
call_leave(CfsCall *c)
{
    if (c->fs->after_request)
        c->fs->after_request(c->fs->after_request_data);
    pthread_mutex_unlock(&c->fs->lock);
    pthread_setcancelstate(c->cancel_state, NULL);
}

/* First statement of every callback: declares `fs` and holds the core lock
 * until the callback returns (after its reply). */
#define CFS_CALL(req)                                                            \
    __attribute__((cleanup(call_leave))) CfsCall call_ = call_enter(req);        \
    CapshmFs *fs G_GNUC_UNUSED = call_.fs

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

static void
reply_err(fuse_req_t req, int err)
{
    /* err is a positive errno or 0. */
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
    if (!n || !region_is_alive(n->region))
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
fill_static_attr(CapshmFs *fs, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = fs->owner_uid;
    st->st_gid = fs->owner_gid;
    st->st_blksize = 4096;
    st->st_atim = st->st_mtim = st->st_ctim = fs->mount_time;
    if (ino == CFS_ROOT_INO) {
        st->st_mode = S_IFDIR | 01777;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
    }
}

static void
fill_region_attr(CapshmStore *store, CapshmRegion *r, bool is_ro, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = is_ro ? r->ro_ino : r->ino;
    /* A read-only name never grants write, whatever the region's mode. */
    st->st_mode = S_IFREG | (is_ro ? (r->mode & 0444) : r->mode);
    st->st_nlink = r->unlinked ? 0 : 1;
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

static bool
is_static_ino(fuse_ino_t ino)
{
    return ino == CFS_ROOT_INO || ino == CFS_NEW_INO || ino == CFS_STATS_INO;
}

static void
reply_region_entry(fuse_req_t req, CapshmFs *fs, CapshmRegion *r, bool is_ro)
{
    struct fuse_entry_param e = { 0 };
    e.ino = is_ro ? r->ro_ino : r->ino;
    e.attr_timeout = REGION_TIMEOUT;
    e.entry_timeout = REGION_TIMEOUT;
    fill_region_attr(fs->store, r, is_ro, &e.attr);
    node_remember(fs, r, is_ro);
    fuse_reply_entry(req, &e);
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
on_region_destroyed(CapshmRegion *r, void *data)
{
    CapshmFs *fs = data;
    if (r->backing_id > 0 && fs->se) {
        backing_close(fs, r->backing_id);
        r->backing_id = 0;
    }
    /* The kernel may still cache the names (entry timeout): make later
     * lookups ask us, so a destroyed name is plain ENOENT at once. */
    if (!r->unlinked) {
        notifier_inval_entry(fs->notifier, CFS_ROOT_INO, r->name);
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
    fuse_unset_feature_flag(conn, FUSE_CAP_ATOMIC_O_TRUNC);
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
    conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE |
                    FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_READDIRPLUS);
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

static void
cfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    CFS_CALL(req);
    if (parent != CFS_ROOT_INO)
        return reply_err(req, parent == CFS_NEW_INO || parent == CFS_STATS_INO ||
                                      node_find(fs, parent) ? ENOTDIR : ENOENT);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (names_is_control(name)) {
        fuse_ino_t ino = strcmp(name, ".new") == 0 ? CFS_NEW_INO
                       : strcmp(name, ".stats") == 0 ? CFS_STATS_INO : 0;
        if (!ino)
            return reply_err(req, ENOENT);
        struct fuse_entry_param e = { 0 };
        e.ino = ino;
        e.attr_timeout = e.entry_timeout = CONTROL_TIMEOUT;
        fill_static_attr(fs, ino, &e.attr);
        fuse_reply_entry(req, &e);
        return;
    }
    bool is_ro = false;
    CapshmRegion *r = store_lookup(fs->store, name, &is_ro);
    if (!r)
        return reply_err(req, ENOENT);
    reply_region_entry(req, fs, r, is_ro);
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
cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    CFS_CALL(req);
    forget_one(fs, ino, nlookup);
    fuse_reply_none(req);
}

static void
cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    CFS_CALL(req);
    for (size_t i = 0; i < count; i++)
        forget_one(fs, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void
cfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    CFS_CALL(req);
    struct stat st;
    if (is_static_ino(ino)) {
        fill_static_attr(fs, ino, &st);
        fuse_reply_attr(req, &st, CONTROL_TIMEOUT);
        return;
    }
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, ENOENT);
    fill_region_attr(fs->store, r, is_ro, &st);
    fuse_reply_attr(req, &st, REGION_TIMEOUT);
}

static void
set_time(struct timespec *dst, const struct timespec *src, bool now)
{
    if (now)
        clock_gettime(CLOCK_REALTIME, dst);
    else
        *dst = *src;
}

static void
cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
            struct fuse_file_info *fi)
{
    (void)fi;
    CFS_CALL(req);
    if (is_static_ino(ino))
        return reply_err(req, EPERM);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, ENOENT);
    if (is_ro)
        return reply_err(req, EPERM);

    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (attr->st_size < 0)
            return reply_err(req, EINVAL);
        int rc = store_resize(fs->store, r, (uint64_t)attr->st_size);
        if (rc < 0)
            return reply_err(req, -rc);
    }
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
        uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : r->uid;
        gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : r->gid;
        int rc = store_chown(fs->store, r, uid, gid);
        if (rc < 0)
            return reply_err(req, -rc);
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
        r->mode = attr->st_mode & 07777;
        clock_gettime(CLOCK_REALTIME, &r->ctime);
    }
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
        set_time(&r->atime, &attr->st_atim, to_set & FUSE_SET_ATTR_ATIME_NOW);
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
        set_time(&r->mtime, &attr->st_mtim, to_set & FUSE_SET_ATTR_MTIME_NOW);
    if (to_set & FUSE_SET_ATTR_CTIME)
        r->ctime = attr->st_ctim;
    else if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW |
                       FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
        clock_gettime(CLOCK_REALTIME, &r->ctime);

    inval_other_name(fs, r, is_ro);
    struct stat st;
    fill_region_attr(fs->store, r, is_ro, &st);
    fuse_reply_attr(req, &st, REGION_TIMEOUT);
}

static void
cfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    CFS_CALL(req);
    if (parent != CFS_ROOT_INO)
        return reply_err(req, ENOENT);
    if (names_is_control(name))
        return reply_err(req, strcmp(name, ".new") == 0 || strcmp(name, ".stats") == 0
                                  ? EPERM : ENOENT);
    bool is_ro = false;
    CapshmRegion *r = store_lookup(fs->store, name, &is_ro);
    if (!r)
        return reply_err(req, ENOENT);
    if (is_ro)
        return reply_err(req, EPERM);
    char *ro_name = r->ro_name ? g_strdup(r->ro_name) : NULL;
    fs->in_unlink = true;
    int rc = store_unlink(fs->store, r);
    fs->in_unlink = false;
    if (rc == 0 && ro_name)
        notifier_inval_entry(fs->notifier, CFS_ROOT_INO, ro_name);
    g_free(ro_name);
    reply_err(req, -rc);
}

static void
cfs_refuse(fuse_req_t req)
{
    CFS_CALL(req);
    reply_err(req, EPERM);
}

static void
cfs_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m)
{
    (void)p; (void)n; (void)m;
    cfs_refuse(req);
}
static void
cfs_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d)
{
    (void)p; (void)n; (void)m; (void)d;
    cfs_refuse(req);
}
static void
cfs_rmdir(fuse_req_t req, fuse_ino_t p, const char *n)
{
    (void)p; (void)n;
    cfs_refuse(req);
}
static void
cfs_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n)
{
    (void)l; (void)p; (void)n;
    cfs_refuse(req);
}
static void
cfs_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t p, const char *n)
{
    (void)i; (void)p; (void)n;
    cfs_refuse(req);
}
static void
cfs_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
           unsigned int flags)
{
    (void)p; (void)n; (void)np; (void)nn; (void)flags;
    cfs_refuse(req);
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
    g_free(f);
}

static void
release_region_file(CapshmFs *fs, CfsFile *f)
{
    store_released(fs->store, f->region, f->tid, f->writable);
    g_hash_table_steal(fs->files, f);
    file_free(f);
}

/* Fill @fi for an open of region @r and account the open.  Returns 0 or a
 * positive errno. */
static int
open_region(CapshmFs *fs, fuse_req_t req, CapshmRegion *r, bool is_ro,
            struct fuse_file_info *fi, CfsFile **out)
{
    bool writable = wants_write(fi->flags);
    if (is_ro && writable)
        return EACCES;
    if (r->sealed && writable)
        return EPERM;
    if (fi->flags & O_DIRECT) {
        /* The kernel would bypass the page cache and break coherence with
         * mappings; serve such opens like any other. */
    }
    if (fs->path == CFS_PATH_PASSTHROUGH) {
#ifdef HAVE_FUSE_PASSTHROUGH
        if (r->backing_id <= 0) {
            int fd = store_open_backing(fs->store, r);
            if (fd < 0)
                return -fd;
            int id = backing_open(fs, fd);
            close(fd);
            if (id < 0) {
                g_warning("passthrough backing file for a region: %s", g_strerror(-id));
                return EIO;
            }
            r->backing_id = id;
        }
        fi->backing_id = r->backing_id;
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
    store_opened(fs->store, r, f->tid, f->writable);
    fi->fh = (uint64_t)(uintptr_t)f;
    g_hash_table_add(fs->files, f);
    *out = f;
    return 0;
}

static void
cfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (ino == CFS_NEW_INO || ino == CFS_STATS_INO) {
        if (wants_write(fi->flags))
            return reply_err(req, EACCES);
        const struct fuse_ctx *ctx = fuse_req_ctx(req);
        char *text;
        if (ino == CFS_NEW_INO) {
            char name[NAMES_BUF];
            int rc = store_mint(fs->store, ctx->uid, name);
            if (rc < 0)
                return reply_err(req, -rc);
            text = g_strdup_printf("%s\n", name);
        } else {
            text = store_stats_json(fs->store, ctx->uid, ctx->uid == 0,
                                    cfs_datapath_name(fs), request_transport(req),
                                    fs->requests);
        }
        CfsFile *f = text_file(text);
        fi->fh = (uint64_t)(uintptr_t)f;
        g_hash_table_add(fs->files, f);
        fi->direct_io = 1; /* generated per open; size 0 in stat */
        fi->noflush = 1;   /* nothing to flush: saves a FLUSH round trip per close */
        if (fuse_reply_open(req, fi) != 0)
            g_hash_table_remove(fs->files, f);
        return;
    }
    if (ino == CFS_ROOT_INO)
        return reply_err(req, EISDIR);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, ENOENT);
    CfsFile *f = NULL;
    int err = open_region(fs, req, r, is_ro, fi, &f);
    if (err)
        return reply_err(req, err);
    if (fuse_reply_open(req, fi) != 0) /* interrupted: no RELEASE will come */
        release_region_file(fs, f);
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

static void
cfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
           struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (parent != CFS_ROOT_INO)
        return reply_err(req, ENOTDIR);
    if (strlen(name) > NAMES_MAX)
        return reply_err(req, ENAMETOOLONG);
    if (names_is_control(name))
        return reply_err(req, strcmp(name, ".new") == 0 || strcmp(name, ".stats") == 0
                                  ? EEXIST : EACCES);
    CapshmCaller c = caller_of(req);
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = store_create(fs->store, &c, name, mode, (fi->flags & O_EXCL) != 0, &r, &created);
    if (rc < 0)
        return reply_err(req, -rc);
    bool is_ro = false;
    if (!created) {
        store_lookup(fs->store, name, &is_ro);
        if (!may_open_existing(req, &c, r, fi->flags))
            return reply_err(req, EACCES);
    }
    CfsFile *f = NULL;
    int err = open_region(fs, req, r, is_ro, fi, &f);
    if (err) {
        /* A region we just made and cannot open lingers and goes; that is
         * only possible if passthrough registration failed. */
        return reply_err(req, err);
    }
    struct fuse_entry_param e = { 0 };
    e.ino = is_ro ? r->ro_ino : r->ino;
    e.attr_timeout = e.entry_timeout = REGION_TIMEOUT;
    fill_region_attr(fs->store, r, is_ro, &e.attr);
    node_remember(fs, r, is_ro);
    if (fuse_reply_create(req, &e, fi) != 0) {
        forget_one(fs, e.ino, 1);
        release_region_file(fs, f);
    }
}

static void
cfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (f && f->kind == FH_REGION)
        release_region_file(fs, f);
    else if (f)
        g_hash_table_remove(fs->files, f);
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

static void
cfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (!f)
        return reply_err(req, EBADF);
    if (f->kind == FH_TEXT) {
        if (off < 0 || (size_t)off >= f->len)
            return (void)fuse_reply_buf(req, NULL, 0);
        fuse_reply_buf(req, f->text + off, MIN(size, f->len - (size_t)off));
        return;
    }
    if (f->kind != FH_REGION)
        return reply_err(req, EISDIR);
    CapshmRegion *r = f->region;
    if (!region_is_alive(r))
        return reply_err(req, EIO);
    if (off < 0 || (uint64_t)off >= r->size)
        return (void)fuse_reply_buf(req, NULL, 0);
    int fd = store_data_fd(fs->store, r);
    if (fd < 0)
        return reply_err(req, -fd);
    size_t n = (size_t)MIN((uint64_t)size, r->size - (uint64_t)off);
    if (n > fs->readbuf_size) {
        g_free(fs->readbuf);
        fs->readbuf = g_malloc(n);
        fs->readbuf_size = n;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, fs->readbuf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return reply_err(req, errno);
        if (k == 0)
            break;
        got += (size_t)k;
    }
    fuse_reply_buf(req, fs->readbuf, got);
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
    CapshmRegion *r = f->region;
    if (!region_is_alive(r))
        return reply_err(req, EIO);
    if (off < 0)
        return reply_err(req, EINVAL);
    int fd = store_data_fd(fs->store, r);
    if (fd < 0)
        return reply_err(req, -fd);
    size_t len = fuse_buf_size(in);
    uint64_t reserved_end;
    int rc = store_write_begin(fs->store, r, (uint64_t)off, len, &reserved_end);
    if (rc < 0)
        return reply_err(req, -rc);
    struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    dst.buf[0].fd = fd;
    dst.buf[0].pos = off;
    ssize_t n = fuse_buf_copy(&dst, in, 0);
    uint64_t old_size = r->size;
    store_write_done(fs->store, r, (uint64_t)off, n > 0 ? (uint64_t)n : 0, reserved_end);
    if (r->size != old_size)
        inval_other_name(fs, r, false);
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
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, is_static_ino(ino) ? EPERM : ENOENT);
    if (is_ro)
        return reply_err(req, EBADF);
    if (mode != 0)
        return reply_err(req, EOPNOTSUPP);
    if (off < 0 || len <= 0)
        return reply_err(req, EINVAL);
    int rc = store_fallocate(fs->store, r, (uint64_t)off, (uint64_t)len);
    if (rc == 0)
        inval_other_name(fs, r, false);
    reply_err(req, -rc);
}

/* --- directory --------------------------------------------------------------- */

static void
cfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (ino != CFS_ROOT_INO)
        return reply_err(req, ENOTDIR);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    CfsFile *f = g_new0(CfsFile, 1);
    f->kind = FH_DIR;
    f->names = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(f->names, g_strdup("."));
    g_ptr_array_add(f->names, g_strdup(".."));
    g_ptr_array_add(f->names, g_strdup(".new"));
    g_ptr_array_add(f->names, g_strdup(".stats"));
    /* Snapshot at opendir: a listing never shows another uid's names. */
    g_autoptr(GPtrArray) regions = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    store_list(fs->store, ctx->uid, ctx->uid == 0, regions);
    for (guint i = 0; i < regions->len; i++)
        g_ptr_array_add(f->names, g_strdup(((CapshmRegion *)regions->pdata[i])->name));
    fi->fh = (uint64_t)(uintptr_t)f;
    g_hash_table_add(fs->files, f);
    if (fuse_reply_open(req, fi) != 0)
        g_hash_table_remove(fs->files, f);
}

static void
cfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    CfsFile *f = (CfsFile *)(uintptr_t)fi->fh;
    if (!f || f->kind != FH_DIR)
        return reply_err(req, EBADF);
    char *buf = g_malloc(size);
    size_t used = 0;
    for (guint i = off < 0 ? 0 : (guint)off; i < f->names->len; i++) {
        const char *name = f->names->pdata[i];
        struct stat st = { 0 };
        st.st_ino = i == 0 || i == 1 ? CFS_ROOT_INO : i == 2 ? CFS_NEW_INO
                  : i == 3 ? CFS_STATS_INO : 0;
        st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
        if (st.st_ino == 0)
            st.st_ino = 0xFFFFFFFF; /* real ids come with lookup */
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
    g_hash_table_remove(fs->files, (CfsFile *)(uintptr_t)fi->fh);
    reply_err(req, 0);
}

static void
cfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    CFS_CALL(req);
    Quota *q = store_quota(fs->store);
    struct statvfs sv = { 0 };
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_blocks = quota_size_limit(q) / 4096;
    uint64_t used = (quota_total_bytes(q) + 4095) / 4096;
    sv.f_bfree = sv.f_bavail = sv.f_blocks > used ? sv.f_blocks - used : 0;
    sv.f_files = store_region_count(fs->store) + 1000000;
    sv.f_ffree = sv.f_favail = 1000000;
    sv.f_namemax = NAMES_MAX;
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

static void
cfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    CFS_CALL(req);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, is_static_ino(ino) ? ENODATA : ENOENT);
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
        return reply_err(req, ENODATA);
    const char *key = name + strlen(XATTR_PREFIX);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    g_autofree char *val = NULL;

    if (strcmp(key, "ro") == 0) {
        if (fs->path != CFS_PATH_PASSTHROUGH)
            return reply_err(req, ENOTSUP);
        /* Through the read-only name, its own name: never the rw name. */
        const char *ro = is_ro ? r->ro_name : store_ro_name(fs->store, r);
        if (!ro)
            return reply_err(req, EIO);
        val = g_strdup(ro);
    } else if (strcmp(key, "holders") == 0) {
        val = g_strdup_printf("%u", region_holder_count(r));
    } else if (strcmp(key, "pids") == 0) {
        if (!is_owner_or_root(ctx, r) || is_ro)
            return reply_err(req, EACCES);
        g_autoptr(GArray) pids = store_holder_pids(fs->store, r);
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < pids->len; i++)
            g_string_append_printf(s, "%s%d", i ? " " : "", (int)g_array_index(pids, pid_t, i));
        val = g_string_free(s, FALSE);
    } else if (strcmp(key, "state") == 0) {
        val = g_strdup(region_state_name(r));
    } else if (strcmp(key, "created") == 0) {
        val = g_strdup_printf("%" G_GINT64_FORMAT, (gint64)r->created);
    } else if (strcmp(key, "pin") == 0) {
        val = g_strdup(r->pinned ? "1" : "0");
    } else if (strcmp(key, "seal") == 0) {
        val = g_strdup(r->sealed ? "1" : "0");
    } else {
        return reply_err(req, ENODATA);
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

static void
cfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
             size_t size, int flags)
{
    (void)flags;
    CFS_CALL(req);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    if (!r)
        return reply_err(req, is_static_ino(ino) ? EPERM : ENOENT);
    if (strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) != 0)
        return reply_err(req, ENOTSUP); /* we keep no arbitrary xattrs */
    const char *key = name + strlen(XATTR_PREFIX);
    bool v;
    if (strcmp(key, "pin") != 0 && strcmp(key, "seal") != 0)
        return reply_err(req, EINVAL);
    if (parse_bool_value(value, size, &v) < 0)
        return reply_err(req, EINVAL);
    if (is_ro || !is_owner_or_root(fuse_req_ctx(req), r))
        return reply_err(req, EPERM);
    if (strcmp(key, "pin") == 0) {
        store_set_pinned(fs->store, r, v);
        return reply_err(req, 0);
    }
    if (!v)
        return reply_err(req, r->sealed ? EPERM : EINVAL); /* seals are forever */
    int rc = store_seal(fs->store, r);
    reply_err(req, -rc);
}

static void
cfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    CFS_CALL(req);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    GString *s = g_string_new(NULL);
    if (r) {
        for (const char *const *k = region_xattrs; *k; k++) {
            if (strcmp(*k, "ro") == 0 && fs->path != CFS_PATH_PASSTHROUGH)
                continue;
            g_string_append_printf(s, XATTR_PREFIX "%s", *k);
            g_string_append_c(s, '\0');
        }
    } else if (!is_static_ino(ino)) {
        g_string_free(s, TRUE);
        return reply_err(req, ENOENT);
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
    (void)ino; (void)name;
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
