/* SPDX-License-Identifier: MIT */
/* target.c — the directories capshm-bench measures (tmpfs or a capshm
 * mount), region names and regions in them, and what the driver can see of
 * a capshm daemon (its CPU time and memory) and of the kernel (slab). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bench.h"

#define FUSE_MAGIC 0x65735546

/* NAME=DIR[:PID].  DIR is capshm when it is a FUSE mount with a readable
 * DIR/.new, tmpfs (any other directory) otherwise. */
void
add_target(Bench *b, const char *spec)
{
    if (b->ntargets == MAX_TARGETS)
        die("too many targets");
    Target *t = &b->targets[b->ntargets];
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof t->name)
        die("bad target (want NAME=DIR[:PID]): %s", spec);
    memcpy(t->name, spec, (size_t)(eq - spec));
    t->name[eq - spec] = '\0';
    snprintf(t->dir, sizeof t->dir, "%s", eq + 1);
    char *colon = strrchr(t->dir, ':');
    if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
        t->daemon = (pid_t)atoi(colon + 1);
        *colon = '\0';
    }
    struct statfs sf;
    if (statfs(t->dir, &sf) < 0)
        die("%s: %s", t->dir, strerror(errno));
    char probe[PATH_MAX + 8];
    snprintf(probe, sizeof probe, "%s/.new", t->dir);
    t->kind = (sf.f_type == FUSE_MAGIC && access(probe, R_OK) == 0) ? KIND_CAPSHM : KIND_TMPFS;
    b->ntargets++;
}

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

/* A fresh name: minted by capshm, made up for tmpfs.  0 or -errno. */
int
new_name(const Target *t, char out[NAME_LEN])
{
    if (t->kind == KIND_CAPSHM) {
        char p[PATH_MAX + 8];
        snprintf(p, sizeof p, "%s/.new", t->dir);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        ssize_t n = read(fd, out, NAME_LEN - 1);
        int e = errno;
        close(fd);
        if (n <= 0)
            return n < 0 ? -e : -EIO;
        out[n] = '\0';
        out[strcspn(out, "\n")] = '\0';
        return 0;
    }
    unsigned char rnd[26];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -EIO;
    strcpy(out, "capshm-bench-");
    size_t o = strlen(out);
    for (size_t i = 0; i < sizeof rnd; i++)
        out[o++] = b32[rnd[i] & 31];
    out[o] = '\0';
    return 0;
}

void
region_path(const Target *t, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", t->dir, name);
}

/* Mint, create O_EXCL and size a region; the fd stays open, nothing mapped.
 * 0 or -errno. */
int
region_create(const Target *t, size_t size, Region *r)
{
    char name[NAME_LEN];
    int rc = new_name(t, name);
    if (rc < 0)
        return rc;
    region_path(t, name, r->path, sizeof r->path);
    r->fd = open(r->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (r->fd < 0)
        return -errno;
    r->map = NULL;
    r->size = size;
    if (size && ftruncate(r->fd, (off_t)size) < 0) {
        rc = -errno;
        close(r->fd);
        unlink(r->path);
        return rc;
    }
    return 0;
}

void
must_create(const Target *t, size_t size, Region *r)
{
    int rc = region_create(t, size, r);
    if (rc < 0)
        die("%s: creating a region of %zu bytes in %s: %s", t->name, size, t->dir, strerror(-rc));
}

void *
region_map(Region *r, int prot)
{
    r->map = mmap(NULL, r->size, prot, MAP_SHARED, r->fd, 0);
    if (r->map == MAP_FAILED)
        die("mmap %s (%zu bytes): %s", r->path, r->size, strerror(errno));
    return r->map;
}

void
region_drop(Region *r)
{
    if (r->map && r->map != MAP_FAILED)
        munmap(r->map, r->size);
    r->map = NULL;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    unlink(r->path); /* before or after the last close: both are allowed */
}

/* One faulted region of @size per target, @fill in every byte; still
 * mapped unless @unmap (then only the driver's fd holds it). */
void
create_each(Bench *b, Region reg[MAX_TARGETS], size_t size, int fill, bool unmap)
{
    for (int t = 0; t < b->ntargets; t++) {
        must_create(&b->targets[t], size, &reg[t]);
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), fill, size);
        if (unmap) {
            munmap(reg[t].map, size);
            reg[t].map = NULL;
        }
    }
}

void
drop_each(Bench *b, Region reg[MAX_TARGETS])
{
    for (int t = 0; t < b->ntargets; t++)
        region_drop(&reg[t]);
}

/* The sum of schedstat's first field over /proc/PID/task/: much less
 * sensitive to other load on the machine than wall-clock latency. */
double
daemon_cpu_ns(const Target *t)
{
    if (t->kind != KIND_CAPSHM || t->daemon <= 0)
        return -1;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)t->daemon);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    double sum = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s/schedstat", dir, de->d_name);
        FILE *f = fopen(p, "re");
        unsigned long long ns = 0;
        if (f) {
            if (fscanf(f, "%llu", &ns) == 1)
                sum += (double)ns;
            fclose(f);
        }
    }
    closedir(d);
    return sum;
}

/* The asynchronous requests (RELEASE, FORGET) of the operations just timed,
 * so that their CPU is counted. */
void
settle_daemon(void)
{
    usleep(20000);
}

long
status_kib(pid_t pid, const char *key)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Reclaimable + unreclaimable: what files cost the kernel. */
long
slab_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Slab: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}
