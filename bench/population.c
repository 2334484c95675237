/* SPDX-License-Identifier: MIT */
/* population.c — the population workload of capshm-bench: does capshm slow
 * down, or cost more memory, as idle regions pile up?
 *
 * Grows every target to each of --levels idle regions (mint, create,
 * ftruncate 4 KiB, close; held by nobody).  At each level it times a batch
 * of creates, open+close of random existing regions and stat of missing
 * names [create_us@L, open_us@L, lookup_miss_us@L, and the daemon's CPU for
 * each]; over the growth from the first level to the last, the daemon's
 * VmRSS and the kernel's slab per region [daemon_rss_bytes_per_region,
 * kernel_slab_bytes_per_region].  capshm mounts need a long linger for this.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

/* The idle regions of one target, and what its growth cost. */
typedef struct {
    char (*names)[NAME_LEN];
    long n, cap;
    bool failed;
    long rss0;         /* daemon VmRSS at the first level, KiB; -1 unknown */
    double slab_grown; /* kernel slab grown past the first level, bytes */
    long grown;        /* regions added past the first level */
} Population;

/* One run: every target's population and the random picks. */
typedef struct {
    Population pop[MAX_TARGETS];
    uint64_t rnd;
} PopRun;

static uint64_t
rnd64(PopRun *run)
{
    uint64_t s = run->rnd;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return run->rnd = s;
}

/* Create one idle region (mint, create, size 4 KiB, close) and remember its
 * name.  0 or -errno. */
static int
pop_add(const Target *t, Population *pop)
{
    char name[NAME_LEN], path[PATH_MAX];
    int rc = new_name(t, name);
    if (rc < 0)
        return rc;
    region_path(t, name, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = ftruncate(fd, PAGE) < 0 ? -errno : 0;
    close(fd);
    if (rc < 0)
        return rc;
    if (pop->n == pop->cap) {
        pop->cap = pop->cap ? pop->cap * 2 : 1024;
        pop->names = realloc(pop->names, (size_t)pop->cap * NAME_LEN);
        if (!pop->names)
            die("out of memory");
    }
    memcpy(pop->names[pop->n++], name, NAME_LEN);
    return 0;
}

static void
pop_unlink_tail(const Target *t, Population *pop, long keep)
{
    char path[PATH_MAX];
    while (pop->n > keep) {
        region_path(t, pop->names[--pop->n], path, sizeof path);
        unlink(path);
    }
}

/* Grow target @ti to level @l; the growth is timed (bulk create rate).
 * Memory per region is taken over the growth from the first level to the
 * last: the daemon's VmRSS, and the machine's slab (kernel inodes,
 * dentries, files), counted only while this target grew (other activity on
 * the machine adds noise to the latter). */
static void
grow(Bench *b, PopRun *run, int ti, int l)
{
    const Target *t = &b->targets[ti];
    Population *p = &run->pop[ti];
    long level = b->levels[l];
    long from = p->n, slab_before = slab_kib();
    double t0 = now_s();
    while (p->n < level) {
        int rc = pop_add(t, p);
        if (rc < 0) {
            snprintf(b->errors[ti], sizeof b->errors[ti], "creating region %ld: %s", p->n + 1,
                     strerror(-rc));
            note(b, "%s: %s", t->name, b->errors[ti]);
            p->failed = true;
            break;
        }
    }
    double dt = now_s() - t0;
    if (l == 0)
        p->rss0 = t->daemon ? status_kib(t->daemon, "VmRSS") : -1;
    if (l > 0) {
        p->slab_grown += (double)(slab_kib() - slab_before) * 1024.0;
        p->grown += p->n - from;
    }
    if (!p->failed && p->n > from) {
        char fname[48];
        snprintf(fname, sizeof fname, "bulk_create_us@%ld", level);
        record(b, ti, fname, "us", dt / (double)(p->n - from) * 1e6);
    }
    note(b, "%s: %ld regions", t->name, p->n);
    if (l == b->nlevels - 1 && !p->failed && p->grown > 0) {
        if (p->rss0 >= 0) {
            long rss1 = status_kib(t->daemon, "VmRSS");
            record(b, ti, "daemon_rss_bytes_per_region", "B",
                   (double)(rss1 - p->rss0) * 1024.0 / (double)p->grown);
        }
        record(b, ti, "kernel_slab_bytes_per_region", "B", p->slab_grown / (double)p->grown);
    }
}

/* One round at @level on target @ti: a batch of creates on top of the level
 * (removed again), of open+close of random existing regions, of stat of
 * missing names. */
static void
measure(Bench *b, PopRun *run, int ti, long level)
{
    const Target *t = &b->targets[ti];
    Population *p = &run->pop[ti];
    long batch = b->batch;
    char fname[48], path[PATH_MAX];

    double cpu0 = daemon_cpu_ns(t);
    double t0 = now_s();
    for (long i = 0; i < batch; i++) {
        int rc = pop_add(t, p);
        if (rc < 0) {
            snprintf(b->errors[ti], sizeof b->errors[ti], "creating region %ld: %s", p->n + 1,
                     strerror(-rc));
            p->failed = true;
            break;
        }
    }
    double tc = now_s() - t0;
    settle_daemon();
    snprintf(fname, sizeof fname, "daemon_cpu_create_us@%ld", level);
    record_daemon_cpu(b, ti, fname, cpu0, batch);
    pop_unlink_tail(t, p, level);
    if (p->failed)
        return;
    snprintf(fname, sizeof fname, "create_us@%ld", level);
    record(b, ti, fname, "us", tc / (double)batch * 1e6);

    cpu0 = daemon_cpu_ns(t);
    t0 = now_s();
    for (long i = 0; i < batch; i++) {
        region_path(t, p->names[rnd64(run) % (uint64_t)p->n], path, sizeof path);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            die("%s: open %s: %s", t->name, path, strerror(errno));
        close(fd);
    }
    snprintf(fname, sizeof fname, "open_us@%ld", level);
    record(b, ti, fname, "us", (now_s() - t0) / (double)batch * 1e6);
    settle_daemon();
    snprintf(fname, sizeof fname, "daemon_cpu_open_us@%ld", level);
    record_daemon_cpu(b, ti, fname, cpu0, batch);

    /* A name that does not exist: always a real lookup. */
    cpu0 = daemon_cpu_ns(t);
    t0 = now_s();
    for (long i = 0; i < batch; i++) {
        char miss[NAME_LEN];
        snprintf(miss, sizeof miss, "%s", p->names[rnd64(run) % (uint64_t)p->n]);
        miss[strlen(miss) - 1] = miss[strlen(miss) - 1] == 'a' ? 'b' : 'a';
        region_path(t, miss, path, sizeof path);
        struct stat st;
        if (stat(path, &st) == 0 || errno != ENOENT)
            die("%s: stat of a missing name did not say ENOENT", t->name);
    }
    snprintf(fname, sizeof fname, "lookup_miss_us@%ld", level);
    record(b, ti, fname, "us", (now_s() - t0) / (double)batch * 1e6);
    snprintf(fname, sizeof fname, "daemon_cpu_lookup_us@%ld", level);
    record_daemon_cpu(b, ti, fname, cpu0, batch);
}

void
run_population(Bench *b)
{
    PopRun *run = calloc(1, sizeof *run);
    if (!run)
        die("out of memory");
    run->rnd = 0x9e3779b97f4a7c15ULL;

    for (int l = 0; l < b->nlevels; l++) {
        long level = b->levels[l];
        /* Grow every target to this level, one target after another. */
        for (int ti = 0; ti < b->ntargets; ti++)
            if (!run->pop[ti].failed)
                grow(b, run, ti, l);
        /* Measure at this level, alternating targets. */
        for (int r = 0; r < b->rounds; r++) {
            FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
                Population *p = &run->pop[ti];
                if (!p->failed && p->n >= level)
                    measure(b, run, ti, level);
            }
        }
    }
    for (int ti = 0; ti < b->ntargets; ti++) {
        Population *p = &run->pop[ti];
        double t0 = now_s();
        long n = p->n;
        pop_unlink_tail(&b->targets[ti], p, 0);
        if (n)
            record(b, ti, "unlink_us", "us", (now_s() - t0) / (double)n * 1e6);
        free(p->names);
    }
    free(run);
    JsonBuilder *p = params_new();
    params_int_array(p, "levels", b->levels, b->nlevels);
    params_int(p, "batch", b->batch);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "population", p);
}
