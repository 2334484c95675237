/* SPDX-License-Identifier: MIT */
/* libcapshm — see capshm.h. */
#include "capshm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define CAPSHM_DEFAULT_DIR "/run/capshm"

static const char *
mount_dir(const char *dir)
{
    if (dir && *dir)
        return dir;
    const char *env = getenv("CAPSHM_DIR");
    return env && *env ? env : CAPSHM_DEFAULT_DIR;
}

static int
valid_name(const char *name)
{
    size_t len = strnlen(name, 256);
    return len > 0 && len < 256 && name[0] != '.' && !strchr(name, '/');
}

static int
region_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* Read a freshly minted name from DIR/.new. */
static int
mint(const char *dir, char name[CAPSHM_NAME_BUF])
{
    char path[PATH_MAX];
    if (region_path(path, sizeof path, dir, ".new") < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[CAPSHM_NAME_BUF + 2];
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    /* A name, not a path or a control file: anything else means DIR is
     * not (or not only) a capshm mount. */
    if (n <= 0 || n >= CAPSHM_NAME_BUF || buf[0] == '.' || memchr(buf, '/', (size_t)n) ||
        memchr(buf, '\0', (size_t)n)) {
        errno = EPROTO;
        return -1;
    }
    memcpy(name, buf, (size_t)n);
    name[n] = '\0';
    return 0;
}

int
capshm_create(const char *dir, size_t size, mode_t mode, char name[CAPSHM_NAME_BUF])
{
    if (!name) {
        errno = EINVAL;
        return -1;
    }
    name[0] = '\0'; /* until a name is minted */
    if ((uint64_t)size > (uint64_t)INT64_MAX) {
        errno = EINVAL;
        return -1;
    }
    dir = mount_dir(dir);
    char fresh[CAPSHM_NAME_BUF];
    if (mint(dir, fresh) < 0)
        return -1;
    memcpy(name, fresh, CAPSHM_NAME_BUF); /* also on failure from here on */
    char path[PATH_MAX];
    if (region_path(path, sizeof path, dir, fresh) < 0)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    if (size > 0 && ftruncate(fd, (off_t)size) < 0) {
        int saved = errno;
        unlink(path);
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int
capshm_open(const char *dir, const char *name, int oflags)
{
    if (!name || !valid_name(name) || (oflags & O_CREAT)) {
        errno = EINVAL;
        return -1;
    }
    char path[PATH_MAX];
    if (region_path(path, sizeof path, mount_dir(dir), name) < 0)
        return -1;
    return open(path, oflags | O_CLOEXEC);
}

int
capshm_ro_name(int fd, char name[CAPSHM_NAME_BUF])
{
    if (!name) {
        errno = EINVAL;
        return -1;
    }
    char buf[CAPSHM_NAME_BUF];
    ssize_t n = fgetxattr(fd, "user.capshm.ro", buf, sizeof buf - 1);
    if (n < 0)
        return -1;
    if (n == 0) {
        errno = EPROTO;
        return -1;
    }
    buf[n] = '\0';
    memcpy(name, buf, (size_t)n + 1);
    return 0;
}
