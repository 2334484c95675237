/* SPDX-License-Identifier: MIT */
/* cfs_names — callbacks on names and attributes: LOOKUP, FORGET, GETATTR,
 * SETATTR, UNLINK, and the directory-changing calls (MKDIR, MKNOD, RMDIR,
 * SYMLINK, LINK, RENAME: names=any only).  See cfs.c for the ownership
 * model and the lock rule. */

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

/* --- names ----------------------------------------------------------------- */

/* The directory node @parent stands for (the root, or a names=any
 * directory), or NULL with *rc = -ENOTDIR or -ENOENT.  Under the core lock. */
CapshmRegion *
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

void
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

void
cfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    CFS_CALL(req);
    core_enter(fs);
    forget_one(fs, ino, nlookup);
    core_leave(fs);
    fuse_reply_none(req);
}

void
cfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    CFS_CALL(req);
    core_enter(fs);
    for (size_t i = 0; i < count; i++)
        forget_one(fs, forgets[i].ino, forgets[i].nlookup);
    core_leave(fs);
    fuse_reply_none(req);
}

void
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

typedef struct {
    fuse_req_t req;
    fuse_ino_t ino;
    struct stat attr;
    int to_set;
    bool with_handle;
} SetattrJob;

/* SETATTR of a region node, replied.  On the slow pool for a big shrink. */
static void
setattr_region(CapshmFs *fs, void *p)
{
    SetattrJob *j = p;
    fuse_req_t req = j->req;
    fuse_ino_t ino = j->ino;
    struct stat *attr = &j->attr;
    int to_set = j->to_set;
    struct stat st;
    CapshmRegion *shrinking = (to_set & FUSE_SET_ATTR_SIZE) && attr->st_size >= 0
        ? shrink_early(fs, ino, (uint64_t)attr->st_size) : NULL;
    core_enter(fs);
    bool is_ro = false;
    CapshmRegion *r = node_region(fs, ino, &is_ro);
    int err = r ? setattr_locked(fs, r, is_ro, attr, to_set, j->with_handle) : ENOENT;
    if (!err)
        fill_region_attr(fs->store, r, is_ro, &st);
    shrink_early_end(fs, shrinking);
    core_leave(fs);
    g_free(j);
    if (err)
        return reply_err(req, err);
    fuse_reply_attr(req, &st, REGION_TIMEOUT);
}

void
cfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
            struct fuse_file_info *fi)
{
    CFS_CALL(req);
    if (is_static_ino(ino))
        return reply_err(req, EPERM);
    SetattrJob *j = g_new(SetattrJob, 1);
    *j = (SetattrJob){ req, ino, *attr, to_set, fi != NULL };
    if ((to_set & FUSE_SET_ATTR_SIZE) && attr->st_size >= 0 &&
        shrink_is_slow(fs, ino, (uint64_t)attr->st_size))
        run_slow(fs, setattr_region, j);
    else
        setattr_region(fs, j);
}

void
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

void
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
void
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
    g_autofree char *cg_path = NULL;
    c.cgroup_id = caller_cgroup(fs, req, &cg_path);
    c.cgroup_path = cg_path;
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = -ENOENT;
    core_enter(fs);
    CapshmRegion *dir = parent_dir(fs, parent, &rc);
    if (dir)
        rc = store_create_at(fs->store, &c, dir, name, mode, true, &r, &created);
    reply_new_entry(fs, req, r, rc);
}

void
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
void
cfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link; (void)parent; (void)name;
    CFS_CALL(req);
    reply_err(req, EPERM);
}

void
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

void
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
