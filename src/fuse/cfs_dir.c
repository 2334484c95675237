/* SPDX-License-Identifier: MIT */
/* cfs_dir — OPENDIR, READDIR, RELEASEDIR and STATFS.  See cfs.c. */

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

/* --- directory --------------------------------------------------------------- */

static void
dir_add(CfsFile *f, const char *name, uint64_t ino, mode_t type)
{
    CfsDirent d = { .ino = ino, .type = type };
    g_ptr_array_add(f->names, g_strdup(name));
    g_array_append_val(f->dirents, d);
}

void
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

void
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

void
cfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    CFS_CALL(req);
    core_enter(fs);
    g_hash_table_remove(fs->files, (CfsFile *)(uintptr_t)fi->fh);
    core_leave(fs);
    reply_err(req, 0);
}

void
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
