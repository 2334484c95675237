/* SPDX-License-Identifier: MIT */
/* metadata.c — the metadata workloads of capshm-bench: what it costs to
 * reach a region, not to use its memory.  On a capshm target given with its
 * daemon's pid, each also records the daemon's CPU time per operation.
 *
 *   open-close    existing region (held open by the driver): open+mmap+
 *                 close+munmap                                  [us_per_op]
 *   create-cycle  mint, create, size, map, touch, unmap, close, unlink
 *                                                               [us_per_op]
 *   mint          read one name from DIR/.new (open, read, close)
 *                                                               [us_per_op]
 *   fanout        --procs processes open, map and store to every page of
 *                 one fresh region at once      [wall_ms, max_child_ms, ...]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

/* Records "us_per_op" of @ops operations since @t0 and the daemon's CPU per
 * operation since @cpu0. */
static void
record_per_op(Bench *b, int ti, double t0, double cpu0, long ops)
{
    record(b, ti, "us_per_op", "us", (now_s() - t0) / (double)ops * 1e6);
    settle_daemon();
    record_daemon_cpu(b, ti, "daemon_cpu_us_per_op", cpu0, ops);
}

void
run_open_close(Bench *b)
{
    Region reg[MAX_TARGETS];
    create_each(b, reg, PAGE, 0, true); /* the fd is the holder */
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            const char *path = reg[ti].path;
            double cpu0 = daemon_cpu_ns(&b->targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < b->iters; i++) {
                int fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                    die("open %s: %s", path, strerror(errno));
                void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p == MAP_FAILED)
                    die("mmap: %s", strerror(errno));
                close(fd);
                munmap(p, PAGE);
            }
            record_per_op(b, ti, t0, cpu0, b->iters);
        }
    }
    drop_each(b, reg);
    JsonBuilder *p = params_new();
    params_int(p, "iters", b->iters);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "open_close", p);
}

int
create_cycle(const Target *t, size_t size, const char **step)
{
    char name[NAME_LEN], path[PATH_MAX];
    *step = "mint";
    int rc = new_name(t, name);
    if (rc < 0)
        return rc;
    region_path(t, name, path, sizeof path);
    *step = "create";
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    *step = "ftruncate";
    if (ftruncate(fd, (off_t)size) < 0)
        return -errno;
    *step = "mmap";
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    touch_pages(p, size, 1);
    munmap(p, size);
    close(fd);
    *step = "unlink";
    /* With linger=0 the region may already be gone: that is fine. */
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

void
run_create_cycle(Bench *b)
{
    size_t size = b->size_given && b->size ? (size_t)b->size : PAGE;
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            double cpu0 = daemon_cpu_ns(&b->targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < b->iters; i++) {
                const char *step;
                int rc = create_cycle(&b->targets[ti], size, &step);
                if (rc < 0)
                    die("%s: create cycle, %s: %s", b->targets[ti].name, step, strerror(-rc));
            }
            record_per_op(b, ti, t0, cpu0, b->iters);
        }
    }
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_int(p, "iters", b->iters);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "create_cycle", p);
}

/* Minting alone: open+read+close of DIR/.new (tmpfs: a made-up name). */
void
run_mint(Bench *b)
{
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            char name[NAME_LEN];
            double cpu0 = daemon_cpu_ns(&b->targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < b->iters; i++) {
                int rc = new_name(&b->targets[ti], name);
                if (rc < 0)
                    die("%s: mint: %s", b->targets[ti].name, strerror(-rc));
            }
            record_per_op(b, ti, t0, cpu0, b->iters);
        }
    }
    JsonBuilder *p = params_new();
    params_int(p, "iters", b->iters);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "mint", p);
}

/* A fanout child: waits for EOF on @go, then opens, maps and stores to
 * every page of @path; sends its start and end times down @res. */
static void
fanout_child(const char *path, size_t size, int c, int go, int res)
{
    char ch;
    if (read(go, &ch, 1) < 0) /* EOF: go */
        _exit(6);
    double t0 = now_s();
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        _exit(4);
    volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        _exit(5);
    close(fd);
    for (size_t off = 0; off < size; off += PAGE)
        p[off + (size_t)(c % 64) * 8] = (char)c;
    munmap((void *)p, size);
    double msg[2] = { t0, now_s() };
    write_all(res, msg, sizeof msg);
    _exit(0);
}

/* One fanout round on target @ti. */
static void
fanout_once(Bench *b, int ti, size_t size)
{
    int procs = b->procs;
    Region reg;
    must_create(&b->targets[ti], size, &reg); /* fresh, unfaulted; fd held */
    int go[2], res[2];
    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    pid_t *pids = calloc((size_t)procs, sizeof *pids);
    for (int c = 0; c < procs; c++) {
        pids[c] = fork();
        if (pids[c] < 0)
            die("fork: %s", strerror(errno));
        if (pids[c] == 0) {
            close(go[1]);
            close(res[0]);
            fanout_child(reg.path, size, c, go[0], res[1]);
        }
    }
    close(go[0]);
    close(res[1]);
    /* Let every child reach its read() before the start. */
    usleep(100000 + 2000 * (useconds_t)procs);
    double t0 = now_s();
    close(go[1]);
    double maxc = 0, sumc = 0;
    for (int c = 0; c < procs; c++) {
        double msg[2];
        read_all(res[0], msg, sizeof msg);
        maxc = dmax(maxc, msg[1] - msg[0]);
        sumc += msg[1] - msg[0];
    }
    double wall = now_s() - t0;
    close(res[0]);
    for (int c = 0; c < procs; c++)
        if (wait_child(pids[c]) != 0)
            die("fanout child %d failed", c);
    free(pids);
    region_drop(&reg);
    record(b, ti, "wall_ms", "ms", wall * 1e3);
    record(b, ti, "max_child_ms", "ms", maxc * 1e3);
    record(b, ti, "mean_child_ms", "ms", sumc / procs * 1e3);
}

void
run_fanout(Bench *b)
{
    size_t size = (size_t)b->size;
    for (int r = 0; r < b->rounds; r++)
        FOR_EACH_TARGET_IN_ROUND(b, r, ti)
            fanout_once(b, ti, size);
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_int(p, "procs", b->procs);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "fanout", p);
}
