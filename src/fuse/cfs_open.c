/* SPDX-License-Identifier: MIT */
/* cfs_open — OPEN, CREATE, RELEASE, FLUSH, FSYNC, and the text of the
 * control files (.new, .stats, .mine).  See cfs.c for the ownership model
 * and the lock rule. */

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

void
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
char *
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
    /* Counts right after a close must not count a region the closer let go. */
    store_recheck_just_released(fs->store);
    return store_stats_json(fs->store, ctx->uid, ctx->uid == 0, cfs_datapath_name(fs),
                            request_transport(req),
                            __atomic_load_n(&fs->requests, __ATOMIC_RELAXED));
}

typedef struct {
    fuse_req_t req;
    fuse_ino_t ino;
    struct fuse_file_info fi;
} OpenJob;

/* OPEN of a region node, replied.  On the slow pool for a big O_TRUNC. */
static void
open_region_node(CapshmFs *fs, void *p)
{
    OpenJob *j = p;
    fuse_req_t req = j->req;
    struct fuse_file_info *fi = &j->fi;
    CapshmRegion *shrinking = (fi->flags & O_TRUNC) && wants_write(fi->flags)
        ? shrink_early(fs, j->ino, 0) : NULL;
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, j->ino, &is_ro);
    CfsFile *f = NULL;
    int err = !r ? ENOENT : r->is_dir ? EISDIR : open_region(fs, req, r, is_ro, fi, &f);
    shrink_early_end(fs, shrinking);
    core_leave(fs);
    if (err) {
        reply_err(req, err);
    } else if (fuse_reply_open(req, fi) != 0) { /* interrupted: no RELEASE will come */
        core_enter(fs);
        release_region_file(fs, f);
        core_leave(fs);
    }
    g_free(j);
}

void
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
    OpenJob *j = g_new(OpenJob, 1);
    *j = (OpenJob){ req, ino, *fi };
    if ((fi->flags & O_TRUNC) && wants_write(fi->flags) && shrink_is_slow(fs, ino, 0))
        run_slow(fs, open_region_node, j); /* its truncate frees many pages */
    else
        open_region_node(fs, j);
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
              struct fuse_file_info *fi, const CapshmCaller *caller, struct fuse_entry_param *e,
              CfsFile **f)
{
    CapshmCaller c = *caller;
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

void
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
    CapshmCaller c = caller_of(req);
    g_autofree char *cg_path = NULL;
    c.cgroup_id = caller_cgroup(fs, req, &cg_path);
    c.cgroup_path = cg_path;
    core_enter(fs);
    int err = create_locked(fs, req, parent, name, mode, fi, &c, &e, &f);
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

void
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

void
cfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino; (void)fi;
    CFS_CALL(req);
    reply_err(req, 0);
}

void
cfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    (void)ino; (void)datasync; (void)fi;
    CFS_CALL(req);
    /* Memory has nowhere to be synced to. */
    reply_err(req, 0);
}
