/* SPDX-License-Identifier: MIT */
/* store_data — a region's bytes and attributes: the data fd the FUSE layer
 * reads and writes through (store_close_idle_fd closes it when nobody has
 * the region open) and the backing fd lent for passthrough (closed by
 * store_lifetime.c once the kernel lets go), st_blocks, resize, the quota
 * reservations of writes in flight (store_write_begin/store_write_done:
 * the copy runs without the core lock), fallocate, chown (moving the quota
 * charge), chmod, times, and seal.
 */
#include "store_private.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_MAX_SIZE ((uint64_t)1 << 62)

int
store_data_fd(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->fd >= 0)
        return r->fd;
    /* Read-only once sealed: the tmpfs seal check counts our own writers. */
    int fd = storage_open(s->storage, r->ino, r->sealed ? O_RDONLY : O_RDWR);
    if (fd < 0)
        return fd;
    r->fd = fd;
    return fd;
}

/* Close the data fd of a region nobody has open, when the storage keeps
 * the bytes without it: idle regions cost no file descriptor. */
void
store_close_idle_fd(CapshmStore *s, CapshmRegion *r)
{
    if (r->fd >= 0 && r->open_count == 0 && !storage_needs_open_fd(s->storage)) {
        close(r->fd);
        r->fd = -1;
    }
}

int
store_backing_fd(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (storage_needs_open_fd(s->storage))
        return r->fd;
    if (r->anchor_fd < 0) {
        int fd = storage_open(s->storage, r->ino, O_RDONLY);
        if (fd < 0)
            return fd;
        r->anchor_fd = fd;
    }
    return r->anchor_fd;
}

int
store_region_blocks(CapshmStore *s, CapshmRegion *r, blkcnt_t *blocks)
{
    struct stat st;
    int rc;
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->fd >= 0)
        rc = fstat(r->fd, &st) < 0 ? -errno : 0;
    else
        rc = storage_stat(s->storage, r->ino, &st);
    if (rc == 0)
        *blocks = st.st_blocks;
    return rc;
}

/* What quota holds for @r: its size, or more while writes in flight have
 * reserved growth past it (they copy without the core lock). */
uint64_t
store_charged_bytes(const CapshmRegion *r)
{
    return MAX(r->size, r->writes_in_flight ? r->write_reserved_end : 0);
}

/* Move @r's charge from @before to @after bytes.  0, or -EDQUOT/-ENOSPC
 * (nothing charged then). */
static int
recharge(CapshmStore *s, CapshmRegion *r, uint64_t before, uint64_t after)
{
    if (after > before)
        return quota_charge_bytes(s->quota, r->uid, after - before);
    if (after < before)
        quota_release_bytes(s->quota, r->uid, before - after);
    return 0;
}

/* May @r's bytes or size change?  0, -ENOENT, -EISDIR or -EPERM (sealed). */
static int
bytes_may_change(const CapshmRegion *r)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->is_dir)
        return -EISDIR;
    return r->sealed ? -EPERM : 0;
}

int
store_resize(CapshmStore *s, CapshmRegion *r, uint64_t size)
{
    int rc = bytes_may_change(r);
    if (rc < 0)
        return rc;
    if (size > STORE_MAX_SIZE)
        return -EFBIG;
    if (size == r->size)
        return 0;
    uint64_t old_size = r->size, before = store_charged_bytes(r);
    r->size = size;
    rc = recharge(s, r, before, store_charged_bytes(r));
    if (rc < 0) {
        r->size = old_size;
        return rc;
    }
    int fd = store_data_fd(s, r);
    rc = fd < 0 ? fd : ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    store_close_idle_fd(s, r);
    if (rc < 0) {
        uint64_t now_charged = store_charged_bytes(r);
        r->size = old_size;
        int back = recharge(s, r, now_charged, before);
        g_warn_if_fail(back == 0); /* under the lock: the room we gave back is still free */
        return rc;
    }
    clock_gettime(CLOCK_REALTIME, &r->mtime);
    r->ctime = r->mtime;
    return 0;
}

int
store_fallocate_in_place(CapshmStore *s, CapshmRegion *r, bool punch, uint64_t off, uint64_t *len)
{
    (void)s;
    int rc = bytes_may_change(r);
    if (rc < 0)
        return rc;
    if (!punch)
        *len = off >= r->size ? 0 : MIN(*len, r->size - off);
    return 0;
}

bool
store_shrink_is_big(const CapshmRegion *r, uint64_t size)
{
    return bytes_may_change(r) == 0 && size < r->size && r->size - size >= STORE_SHRINK_OFF_LOCK;
}

int
store_shrink_begin(CapshmStore *s, CapshmRegion *r, uint64_t size, uint64_t *off, uint64_t *len)
{
    if (!store_shrink_is_big(r, size))
        return -1;
    int fd = store_data_fd(s, r);
    int early = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
    store_close_idle_fd(s, r);
    if (early < 0)
        return -1; /* then the resize frees it all, under the lock */
    r->shrinks_in_flight++;
    *off = size;
    *len = r->size - size;
    return early;
}

void
store_shrink_end(CapshmStore *s, CapshmRegion *r)
{
    (void)s;
    if (r->shrinks_in_flight > 0)
        r->shrinks_in_flight--;
}

int
store_write_begin(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len,
                  uint64_t *reserved_end)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->sealed)
        return -EPERM;
    if (off > STORE_MAX_SIZE || len > STORE_MAX_SIZE - off)
        return -EFBIG;
    uint64_t end = off + len;
    uint64_t before = store_charged_bytes(r);
    uint64_t after = MAX(before, end);
    int rc = recharge(s, r, before, after);
    if (rc < 0)
        return rc;
    /* Growth another write in flight reserved is charged already. */
    r->write_reserved_end = MAX(r->writes_in_flight ? r->write_reserved_end : 0, end);
    r->writes_in_flight++;
    g_warn_if_fail(store_charged_bytes(r) == after);
    *reserved_end = after;
    return 0;
}

void
store_write_done(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t written,
                 uint64_t reserved_end)
{
    (void)reserved_end;
    uint64_t before = store_charged_bytes(r);
    /* Only bytes that landed move EOF: a failed write past EOF must not. */
    if (written)
        r->size = MAX(r->size, off + written);
    if (r->writes_in_flight > 0)
        r->writes_in_flight--;
    if (r->writes_in_flight == 0)
        r->write_reserved_end = 0;
    /* Never more than before: what landed was reserved. */
    int rc = recharge(s, r, before, store_charged_bytes(r));
    g_warn_if_fail(rc == 0);
}

int
store_fallocate(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len)
{
    uint64_t reserved_end;
    if (len == 0)
        return -EINVAL;
    int rc = store_write_begin(s, r, off, len, &reserved_end);
    if (rc < 0)
        return rc;
    int fd = store_data_fd(s, r);
    rc = fd < 0 ? fd : fallocate(fd, 0, (off_t)off, (off_t)len) < 0 ? -errno : 0;
    store_close_idle_fd(s, r);
    store_write_done(s, r, off, rc < 0 ? 0 : len, reserved_end);
    return rc;
}

int
store_chown(CapshmStore *s, CapshmRegion *r, uid_t uid, gid_t gid)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (uid != r->uid) {
        int rc = quota_charge_region(s->quota, uid);
        if (rc < 0)
            return rc;
        /* Move the bytes: release first so the global size check does not
         * count them twice. */
        uint64_t charged = store_charged_bytes(r);
        quota_release_bytes(s->quota, r->uid, charged);
        rc = quota_charge_bytes(s->quota, uid, charged);
        if (rc < 0) {
            int back = quota_charge_bytes(s->quota, r->uid, charged);
            g_warn_if_fail(back == 0);
            quota_release_region(s->quota, uid);
            return rc;
        }
        quota_release_region(s->quota, r->uid);
        r->uid = uid;
    }
    r->gid = gid;
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    return 0;
}

void
store_chmod(CapshmStore *s, CapshmRegion *r, mode_t mode)
{
    (void)s;
    r->mode = mode & 07777;
    clock_gettime(CLOCK_REALTIME, &r->ctime);
}

void
store_set_times(CapshmStore *s, CapshmRegion *r, const StoreTimes *t)
{
    (void)s;
    struct timespec now_ts;
    clock_gettime(CLOCK_REALTIME, &now_ts);
    if (t->set_atime)
        r->atime = t->atime_now ? now_ts : t->atime;
    if (t->set_mtime)
        r->mtime = t->mtime_now ? now_ts : t->mtime;
    r->ctime = t->set_ctime ? t->ctime : now_ts;
}

int
store_seal(CapshmStore *s, CapshmRegion *r)
{
    (void)s;
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->sealed)
        return 0;
    if (r->writable_opens > 0 || r->shrinks_in_flight > 0)
        return -EBUSY;
    if (!storage_needs_open_fd(s->storage) && r->fd >= 0) {
        /* Our own writable fd would count as a writer; it is reopened
         * read-only when next needed. */
        close(r->fd);
        r->fd = -1;
    }
    int rc = storage_seal(s->storage, r->ino, r->fd);
    if (rc < 0)
        return rc;
    r->sealed = true;
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    return 0;
}
