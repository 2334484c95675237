/* SPDX-License-Identifier: MIT */
/* cfs_xattr — the user.capshm.* extended attributes; holders and pids are
 * looked up in /proc by the scan pool's thread, which replies itself.
 * See cfs.c. */

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

void
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
        store_recheck_held(fs->store, r);
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

void
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

void
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

void
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

void
cfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino;
    CFS_CALL(req);
    reply_err(req, strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0 ? EINVAL : ENOTSUP);
}
