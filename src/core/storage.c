/* SPDX-License-Identifier: MIT */
/* storage — see storage.h. */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

struct CapshmStorage {
    StorageKind kind;
    int root;    /* tmpfs: the detached mount's root directory; -1 for memfd */
};

bool
storage_kind_parse(const char *s, StorageKind *out)
{
    static const char *const names[] = { "auto", "tmpfs", "memfd" };
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (StorageKind)i;
            return true;
        }
    return false;
}

const char *
storage_kind_name(StorageKind k)
{
    return k == STORAGE_TMPFS ? "tmpfs" : k == STORAGE_MEMFD ? "memfd" : "auto";
}

static void
key_name(uint64_t key, char out[24])
{
    snprintf(out, 24, "%" G_GINT64_MODIFIER "x", (guint64)key);
}

/* A read lease can only be taken while nobody has the file open for
 * writing: the one question tmpfs seals need answered. */
static int
no_writers(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (fcntl(fd, F_SETLEASE, F_RDLCK) < 0)
        rc = errno == EAGAIN ? -EBUSY : -errno;
    else
        (void)fcntl(fd, F_SETLEASE, F_UNLCK);
    close(fd);
    return rc;
}

static int
lease_free(int fd)
{
    if (fcntl(fd, F_SETLEASE, F_WRLCK) < 0)
        return errno == EAGAIN || errno == EBUSY ? 1 : -errno;
    (void)fcntl(fd, F_SETLEASE, F_UNLCK);
    return 0;
}

int
storage_probe_unheld(CapshmStorage *st, uint64_t key, int own_fd)
{
    if (st->kind == STORAGE_MEMFD) {
        /* A memfd is a pseudo file: its own open does not count as a reader
         * or writer, so a lease on it is never granted.  A read-only reopen
         * of it counts as exactly one reader: ask on that. */
        if (own_fd < 0)
            return -EBADF;
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", own_fd);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        int rc = lease_free(fd);
        close(fd);
        return rc;
    }
    if (own_fd >= 0)
        return lease_free(own_fd);
    char name[24];
    key_name(key, name);
    int fd = openat(st->root, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    int rc = lease_free(fd);
    close(fd);
    return rc;
}

/* No size or inode limit of its own: capshm's size/quota/max_regions
 * options are the limits, checked before any byte is allocated.  The same
 * options go to fsconfig() one by one and to mount(2) joined by commas. */
static const char *const tmpfs_options[][2] = {
    { "size", "0" }, { "nr_inodes", "0" }, { "mode", "0700" },
};
#define N_TMPFS_OPTIONS (sizeof tmpfs_options / sizeof tmpfs_options[0])

/* Where fsopen() is missing (valgrind does not know it, nor do kernels
 * before 5.2): mount on a fresh private directory, keep the root open and
 * detach at once, so the mount is reachable only through that fd. */
static int
mount_and_detach(const char **why)
{
    char dir[] = "/tmp/capshm-storage-XXXXXX";
    if (!mkdtemp(dir)) {
        *why = "creating a directory to mount a private tmpfs on failed";
        return -errno;
    }
    GString *data = g_string_new(NULL);
    for (size_t i = 0; i < N_TMPFS_OPTIONS; i++)
        g_string_append_printf(data, "%s%s=%s", i ? "," : "", tmpfs_options[i][0], tmpfs_options[i][1]);
    int rc = 0, fd = -1;
    int m = mount("capshm", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data->str);
    g_string_free(data, TRUE);
    if (m < 0) {
        rc = -errno;
        *why = rc == -EPERM ? "mounting a private tmpfs needs CAP_SYS_ADMIN"
                            : "mounting a private tmpfs failed";
    } else {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            *why = "opening the private tmpfs failed";
        }
        umount2(dir, MNT_DETACH);
    }
    rmdir(dir);
    return fd >= 0 ? fd : rc;
}

static bool force_mount_and_detach;
void storage_use_mount_and_detach(bool yes) { force_mount_and_detach = yes; }

/* A tmpfs mounted nowhere: fsopen/fsmount, else mount_and_detach(). */
static int
mount_private_tmpfs(const char **why)
{
    if (force_mount_and_detach)
        return mount_and_detach(why);
    int fsfd = fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fsfd < 0) {
        if (errno == ENOSYS)
            return mount_and_detach(why);
        *why = errno == EPERM ? "mounting a private tmpfs needs CAP_SYS_ADMIN"
                              : "the kernel cannot create a detached tmpfs (fsopen)";
        return -errno;
    }
    int rc = 0;
    for (size_t i = 0; i < N_TMPFS_OPTIONS && rc == 0; i++)
        if (fsconfig(fsfd, FSCONFIG_SET_STRING, tmpfs_options[i][0], tmpfs_options[i][1], 0) < 0)
            rc = -errno;
    if (rc == 0 && fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        rc = -errno;
    if (rc < 0) {
        *why = "configuring a private tmpfs failed";
        close(fsfd);
        return rc;
    }
    int mnt = fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    rc = -errno;
    close(fsfd);
    if (mnt < 0)
        *why = "mounting a private tmpfs failed";
    return mnt < 0 ? rc : mnt;
}

/* Mount a private tmpfs nowhere and check it does what we need: files can
 * be created, and the writer check works (leases may be disabled by
 * fs.leases-enable).  Returns the root fd or -errno, with *why set. */
static int
open_private_tmpfs(const char **why)
{
    int mnt = mount_private_tmpfs(why);
    if (mnt < 0)
        return mnt;
    int rc;
    int fd = openat(mnt, "probe", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        *why = "creating a file in the private tmpfs failed";
        close(mnt);
        return rc;
    }
    /* The writer check must say busy while we hold it writable, free after. */
    int busy = no_writers(mnt, "probe");
    close(fd);
    int free_ = no_writers(mnt, "probe");
    unlinkat(mnt, "probe", 0);
    if (busy != -EBUSY || free_ != 0) {
        *why = "file leases do not work here (fs.leases-enable = 0?), so tmpfs regions could not be sealed";
        close(mnt);
        return -ENOTSUP;
    }
    return mnt;
}

CapshmStorage *
storage_new(StorageKind want, const char **why_not_tmpfs, GError **err)
{
    const char *why = NULL;
    int root = -1;
    if (want != STORAGE_MEMFD) {
        root = open_private_tmpfs(&why);
        if (root < 0 && want == STORAGE_TMPFS) {
            g_set_error(err, G_FILE_ERROR, g_file_error_from_errno(-root), "storage=tmpfs: %s: %s",
                        why, g_strerror(-root));
            return NULL;
        }
    }
    if (why_not_tmpfs)
        *why_not_tmpfs = want == STORAGE_AUTO && root < 0 ? why : NULL;
    CapshmStorage *st = g_new0(CapshmStorage, 1);
    st->kind = root >= 0 ? STORAGE_TMPFS : STORAGE_MEMFD;
    st->root = root;
    return st;
}

void
storage_free(CapshmStorage *st)
{
    if (!st)
        return;
    if (st->root >= 0)
        close(st->root);
    g_free(st);
}

StorageKind storage_kind(const CapshmStorage *st) { return st->kind; }
bool storage_needs_open_fd(const CapshmStorage *st) { return st->kind == STORAGE_MEMFD; }

int
storage_create(CapshmStorage *st, uint64_t key)
{
    int fd;
    if (st->kind == STORAGE_MEMFD) {
        fd = memfd_create("capshm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    } else {
        char name[24];
        key_name(key, name);
        fd = openat(st->root, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    return fd < 0 ? -errno : fd;
}

int
storage_open(CapshmStorage *st, uint64_t key, int flags)
{
    if (st->kind == STORAGE_MEMFD)
        return -ENOTSUP;
    char name[24];
    key_name(key, name);
    int fd = openat(st->root, name, (flags & O_ACCMODE) | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

void
storage_remove(CapshmStorage *st, uint64_t key)
{
    if (st->kind == STORAGE_MEMFD)
        return;
    char name[24];
    key_name(key, name);
    if (unlinkat(st->root, name, 0) < 0 && errno != ENOENT)
        g_warning("removing region file %s: %s", name, g_strerror(errno));
}

int
storage_stat(CapshmStorage *st, uint64_t key, struct stat *out)
{
    if (st->kind == STORAGE_MEMFD)
        return -ENOTSUP;
    char name[24];
    key_name(key, name);
    return fstatat(st->root, name, out, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

int
storage_seal(CapshmStorage *st, uint64_t key, int fd)
{
    if (st->kind == STORAGE_MEMFD) {
        /* The memfd's own seals refuse while a writable shared mapping of
         * it exists (passthrough maps the memfd itself). */
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
            return errno == EBUSY ? -EBUSY : -errno;
        return 0;
    }
    char name[24];
    key_name(key, name);
    return no_writers(st->root, name);
}
