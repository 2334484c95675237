/* SPDX-License-Identifier: MIT */
/* cfs_data — READ, WRITE and FALLOCATE of region bytes, done without the
 * core lock on a private dup of the region's fd; quota is reserved before
 * and settled after.  See cfs.c for the lock rule. */

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

void
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

void
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

typedef struct {
    fuse_req_t req;
    CapshmRegion *r; /* a reference */
    int fd;          /* a dup of the region's data fd */
    int mode;
    off_t off, len;
    uint64_t reserved_end; /* mode 0 */
} FallocateJob;

/* Allocate, settle the reservation, reply.  On the slow pool when @len is big. */
static void
fallocate_finish(CapshmFs *fs, void *p)
{
    FallocateJob *j = p;
    /* Allocating pages takes time in proportion to len: not under the lock. */
    int err = j->len == 0 ? 0 : fallocate(j->fd, j->mode, j->off, j->len) < 0 ? errno : 0;
    close(j->fd);
    core_enter(fs);
    if (j->mode == 0)
        store_write_done(fs->store, j->r, (uint64_t)j->off, err ? 0 : (uint64_t)j->len,
                         j->reserved_end);
    if (!err)
        inval_other_name(fs, j->r, false);
    region_unref(j->r);
    core_leave(fs);
    reply_err(j->req, err);
    g_free(j);
}

void
cfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
              struct fuse_file_info *fi)
{
    (void)fi;
    CFS_CALL(req);
    /* The modes tmpfs has: allocate (and grow), preallocate, punch a hole. */
    bool punch = mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
    if (mode != 0 && mode != FALLOC_FL_KEEP_SIZE && !punch)
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
        uint64_t in_place = (uint64_t)len;
        int rc = mode == 0 ? store_write_begin(fs->store, r, (uint64_t)off, (uint64_t)len, &reserved_end)
                           : store_fallocate_in_place(fs->store, r, punch, (uint64_t)off, &in_place);
        len = (off_t)in_place;
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
    FallocateJob *j = g_new(FallocateJob, 1);
    *j = (FallocateJob){ req, r, fd, mode, off, len, reserved_end };
    if ((uint64_t)len >= CFS_SLOW_BYTES)
        run_slow(fs, fallocate_finish, j);
    else
        fallocate_finish(fs, j);
}
