/* SPDX-License-Identifier: MIT */
/* procwatch — see procwatch.h. */
#include "procwatch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Parse one /proc/PID/maps line's device and inode fields. */
static bool
parse_maps_line(const char *line, unsigned *maj, unsigned *min, uint64_t *ino)
{
    /* addr perms offset dev inode [path] */
    const char *p = line;
    for (int field = 0; field < 3; field++) {
        p = strchr(p, ' ');
        if (!p)
            return false;
        p++;
    }
    char *end;
    unsigned long a = strtoul(p, &end, 16);
    if (*end != ':')
        return false;
    unsigned long b = strtoul(end + 1, &end, 16);
    if (*end != ' ')
        return false;
    unsigned long long i = strtoull(end + 1, &end, 10);
    *maj = (unsigned)a;
    *min = (unsigned)b;
    *ino = i;
    return true;
}

/* PROCMAP_QUERY (Linux 6.11): the VMAs of a process one ioctl at a time,
 * with device and inode and without formatting any path: less than half the
 * cost of reading /proc/PID/maps as text.  Debian 12's headers predate it. */
#ifndef PROCMAP_QUERY
struct procmap_query {
    uint64_t size, query_flags, query_addr;
    uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#define PROCMAP_QUERY_FILE_BACKED_VMA 0x20
#endif

static bool procmap_query_unsupported;

/* 1 if @fn returned true for a file mapping of @fd's process on @dev, 0 if
 * none did, -1 if this kernel has no PROCMAP_QUERY. */
static int
query_mappings(int fd, unsigned maj, unsigned min, bool (*fn)(uint64_t ino, void *data), void *data)
{
    uint64_t addr = 0;
    for (;;) {
        struct procmap_query q = {
            .size = sizeof q,
            .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_FILE_BACKED_VMA,
            .query_addr = addr,
        };
        if (ioctl(fd, PROCMAP_QUERY, &q) < 0) {
            if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP)
                return addr == 0 ? -1 : 0;
            return 0; /* ENOENT: no more mappings; ESRCH: the process went */
        }
        if (q.dev_major == maj && q.dev_minor == min && q.inode != 0 && fn(q.inode, data))
            return 1;
        if (q.vma_end <= addr)
            return 0;
        addr = q.vma_end;
    }
}

void procwatch_use_text_maps(bool yes) { procmap_query_unsupported = yes; }

/* Calls @fn for each mapping of a file on @dev in process @pid; stops when
 * @fn returns true.  Returns true if @fn did. */
static bool
for_each_mapping(pid_t pid, dev_t dev, bool (*fn)(uint64_t ino, void *data), void *data)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    unsigned want_maj = major(dev), want_min = minor(dev);
    if (!procmap_query_unsupported) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return false;
        int hit = query_mappings(fd, want_maj, want_min, fn, data);
        close(fd);
        if (hit >= 0)
            return hit == 1;
        procmap_query_unsupported = true;
    }
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool hit = false;
    while (!hit && getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        uint64_t ino;
        if (parse_maps_line(line, &maj, &min, &ino) && ino != 0 &&
            maj == want_maj && min == want_min)
            hit = fn(ino, data);
    }
    free(line);
    fclose(f);
    return hit;
}

typedef struct { uint64_t a, b; } InoPair;

static bool
match_pair(uint64_t ino, void *data)
{
    InoPair *p = data;
    return ino == p->a || (p->b && ino == p->b);
}

bool
procwatch_maps_node(pid_t pid, dev_t dev, uint64_t ino, uint64_t ino2)
{
    InoPair p = { ino, ino2 };
    return for_each_mapping(pid, dev, match_pair, &p);
}

/* Does process @pid have a file descriptor open on (@dev, @ino|@ino2)?
 * statx with AT_STATX_DONT_SYNC: the attributes the kernel has cached, so a
 * client's fd on a hung filesystem (or on our own mount) never blocks us. */
static bool
has_fd_on(pid_t pid, dev_t dev, uint64_t ino, uint64_t ino2, int64_t deadline_us)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool hit = false;
    struct dirent *de;
    while (!hit && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct statx sx;
        if (statx(dirfd(d), de->d_name, AT_STATX_DONT_SYNC, STATX_INO, &sx) != 0)
            continue;
        hit = makedev(sx.stx_dev_major, sx.stx_dev_minor) == dev &&
              (sx.stx_ino == ino || (ino2 && sx.stx_ino == ino2));
        if (g_get_monotonic_time() > deadline_us)
            break;
    }
    closedir(d);
    return hit;
}

GArray *
procwatch_holders(dev_t dev, uint64_t ino, uint64_t ino2, int64_t budget_us, bool *complete)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(pid_t));
    int64_t deadline = g_get_monotonic_time() + budget_us;
    *complete = false;
    DIR *d = opendir("/proc");
    if (!d)
        return out;
    pid_t self = getpid();
    struct dirent *de;
    bool timed_out = false;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        if (g_get_monotonic_time() > deadline) {
            timed_out = true;
            break;
        }
        pid_t p = (pid_t)pid;
        if (procwatch_maps_node(p, dev, ino, ino2) || has_fd_on(p, dev, ino, ino2, deadline))
            g_array_append_val(out, p);
    }
    closedir(d);
    *complete = !timed_out;
    return out;
}

int
procwatch_mount_dev(const char *mountpoint, dev_t *dev)
{
    /* mountinfo: id parent maj:min root mountpoint ... ; the mountpoint has
     * spaces etc. escaped as \ooo.  The last matching line is the top mount. */
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int rc = -ENOENT;
    while (getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char mp[4096];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) != 3)
            continue;
        /* Unescape \ooo. */
        char un[4096];
        size_t j = 0;
        for (size_t i = 0; mp[i] && j < sizeof un - 1; i++) {
            if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '7' && mp[i + 2] && mp[i + 3]) {
                un[j++] = (char)(((mp[i + 1] - '0') << 6) | ((mp[i + 2] - '0') << 3) | (mp[i + 3] - '0'));
                i += 3;
            } else {
                un[j++] = mp[i];
            }
        }
        un[j] = '\0';
        if (strcmp(un, mountpoint) == 0) {
            *dev = makedev(maj, min);
            rc = 0;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

char *
procwatch_cgroup2_mount(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    char *line = NULL, *found = NULL;
    size_t cap = 0;
    while (!found && getline(&line, &cap, f) > 0) {
        /* id parent maj:min root mountpoint opts ... - fstype source ... */
        char mp[4096], fstype[64];
        const char *dash = strstr(line, " - ");
        if (dash && sscanf(dash, " - %63s", fstype) == 1 && strcmp(fstype, "cgroup2") == 0 &&
            sscanf(line, "%*u %*u %*s %*s %4095s", mp) == 1)
            found = g_strcompress(mp); /* \040 and the like */
    }
    free(line);
    fclose(f);
    return found;
}

uint64_t
procwatch_cgroup_of(pid_t tid, const char *cgroup2, char **path)
{
    if (path)
        *path = NULL;
    if (!cgroup2 || tid <= 0)
        return 0;
    char file[64];
    snprintf(file, sizeof file, "/proc/%d/cgroup", (int)tid);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(file, &text, NULL, NULL))
        return 0;
    /* cgroup v2: the line "0::/PATH" */
    for (char *l = text; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = '\0';
        if (g_str_has_prefix(l, "0::/")) {
            g_autofree char *dir = g_build_filename(cgroup2, l + 3, NULL);
            struct stat st;
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
                return 0;
            if (path)
                *path = g_strdup(l + 3);
            return (uint64_t)st.st_ino;
        }
        l = nl ? nl + 1 : NULL;
    }
    return 0;
}

bool
procwatch_cgroup_alive(const char *cgroup2, const char *path, uint64_t id)
{
    if (!cgroup2 || !path || !id)
        return true; /* unknown: never reclaim on a guess */
    g_autofree char *dir = g_build_filename(cgroup2, path, NULL);
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno != ENOENT && errno != ENOTDIR; /* other errors: assume alive */
    return (uint64_t)st.st_ino == id;
}
