/* SPDX-License-Identifier: MIT */
/* datapath.c — the data-path workloads of capshm-bench: how fast mapped
 * memory is once a region exists.
 *
 *   first-touch   fresh region, store one byte on each page once    [gbps]
 *   rewrite       region already faulted; memset passes             [gbps]
 *   sustained     memset passes over a faulted region for --seconds [gbps]
 *   attach-read   a second process opens, maps and reads every word [gbps]
 *   pingpong      two processes bounce a counter through an atomic word
 *                                                    [ns_per_rt, rt_per_s]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

/* Repetitions per round for the short per-size workloads, so that small
 * regions are measured over @budget bytes of work. */
static uint64_t
reps_for(uint64_t size, uint64_t budget, uint64_t max_reps)
{
    uint64_t reps = size ? budget / size : 1;
    if (reps < 1)
        reps = 1;
    return reps > max_reps ? max_reps : reps;
}

void
run_first_touch(Bench *b)
{
    size_t size = (size_t)b->size;
    /* Every repetition is a fresh region; creation is not timed. */
    uint64_t reps = reps_for(size, b->budget, 256);
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            double t = 0;
            for (uint64_t k = 0; k < reps; k++) {
                Region reg;
                must_create(&b->targets[ti], size, &reg);
                char *p = region_map(&reg, PROT_READ | PROT_WRITE);
                double t0 = now_s();
                touch_pages(p, size, 1);
                t += now_s() - t0;
                region_drop(&reg);
            }
            record(b, ti, "gbps", "GB/s", (double)size * (double)reps / t / 1e9);
        }
    }
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_int(p, "reps", (int64_t)reps);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "first_touch", p);
}

void
run_rewrite(Bench *b)
{
    size_t size = (size_t)b->size;
    uint64_t passes = reps_for(size, b->budget * 4, 1u << 20);
    Region reg[MAX_TARGETS];
    create_each(b, reg, size, 0, false);
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            char *p = reg[ti].map;
            double t0 = now_s();
            for (uint64_t k = 0; k < passes; k++)
                memset(p, (int)(k + 1), size);
            double t = now_s() - t0;
            record(b, ti, "gbps", "GB/s", (double)size * (double)passes / t / 1e9);
        }
    }
    drop_each(b, reg);
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_int(p, "passes", (int64_t)passes);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "rewrite", p);
}

void
run_sustained(Bench *b)
{
    size_t size = (size_t)b->size;
    Region reg[MAX_TARGETS];
    create_each(b, reg, size, 0, false);
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            char *p = reg[ti].map;
            uint64_t bytes = 0;
            double t0 = now_s(), t;
            int k = 0;
            do {
                memset(p, ++k, size);
                bytes += size;
                t = now_s() - t0;
            } while (t < b->seconds);
            record(b, ti, "gbps", "GB/s", (double)bytes / t / 1e9);
        }
    }
    drop_each(b, reg);
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_num(p, "seconds", b->seconds);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "sustained", p);
}

/* What an attach-read child sends back. */
typedef struct {
    double t;
    uint64_t sum;
} AttachMsg;

/* The child half of attach-read: open, map, read every word; sends the
 * elapsed seconds and the sum down @out. */
static void
attach_child(const char *path, size_t size, int out)
{
    double t0 = now_s();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        _exit(4);
    const volatile uint64_t *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        _exit(5);
    uint64_t sum = 0;
    for (size_t i = 0; i < size / 8; i++)
        sum += p[i];
    double t = now_s() - t0;
    munmap((void *)p, size);
    close(fd);
    AttachMsg msg = { t, sum };
    write_all(out, &msg, sizeof msg);
    _exit(0);
}

/* One attach-read by a fresh child; its seconds. */
static double
attach_once(const char *path, size_t size)
{
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(pp[0]);
        attach_child(path, size, pp[1]);
    }
    close(pp[1]);
    AttachMsg msg;
    read_all(pp[0], &msg, sizeof msg);
    close(pp[0]);
    if (wait_child(pid) != 0)
        die("attach-read child failed");
    if (msg.sum != (uint64_t)(size / 8) * 0x0101010101010101ULL)
        die("attach-read: the reader saw other bytes than the writer stored");
    return msg.t;
}

void
run_attach_read(Bench *b)
{
    size_t size = (size_t)b->size;
    uint64_t reps = reps_for(size, b->budget, 64);
    Region reg[MAX_TARGETS];
    /* The creator keeps its fd (a holder), not its mapping: the reader
     * must not inherit one through fork. */
    create_each(b, reg, size, 1, true);
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            double total = 0;
            for (uint64_t k = 0; k < reps; k++)
                total += attach_once(reg[ti].path, size);
            record(b, ti, "gbps", "GB/s", (double)size * (double)reps / total / 1e9);
        }
    }
    drop_each(b, reg);
    JsonBuilder *p = params_new();
    params_int(p, "size", (int64_t)size);
    params_int(p, "reps", (int64_t)reps);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "attach_read", p);
}

/* Ping-pong layout: word at 0, child-ready flag at 64. */
static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void
pingpong_child(const char *path, long n)
{
    pin_cpu(1);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        _exit(4);
    uint64_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        _exit(5);
    close(fd);
    __atomic_store_n(&p[8], 1, __ATOMIC_RELEASE);
    for (long i = 0; i < n; i++) {
        uint64_t want = 2 * (uint64_t)i + 1;
        while (__atomic_load_n(&p[0], __ATOMIC_ACQUIRE) != want)
            cpu_relax();
        __atomic_store_n(&p[0], want + 1, __ATOMIC_RELEASE);
    }
    munmap(p, PAGE);
    _exit(0);
}

/* One round of @n round trips with a fresh child; its seconds. */
static double
pingpong_once(const Region *reg, long n)
{
    /* Map after fork so the child has only its own mapping. */
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0)
        pingpong_child(reg->path, n);
    pin_cpu(0);
    uint64_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, reg->fd, 0);
    if (p == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    double deadline = now_s() + 10;
    while (!__atomic_load_n(&p[8], __ATOMIC_ACQUIRE)) {
        if (now_s() > deadline)
            die("pingpong: the child never came up");
        cpu_relax();
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        uint64_t v = 2 * (uint64_t)i + 1;
        __atomic_store_n(&p[0], v, __ATOMIC_RELEASE);
        while (__atomic_load_n(&p[0], __ATOMIC_ACQUIRE) != v + 1)
            cpu_relax();
    }
    double t = now_s() - t0;
    if (wait_child(pid) != 0)
        die("pingpong child failed");
    p[0] = 0;
    p[8] = 0;
    munmap(p, PAGE);
    unpin_cpu();
    return t;
}

void
run_pingpong(Bench *b)
{
    long n = b->iters;
    Region reg[MAX_TARGETS];
    create_each(b, reg, PAGE, 0, true);
    for (int r = 0; r < b->rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(b, r, ti) {
            double t = pingpong_once(&reg[ti], n);
            record(b, ti, "ns_per_rt", "ns", t / (double)n * 1e9);
            record(b, ti, "rt_per_s", "1/s", (double)n / t);
        }
    }
    drop_each(b, reg);
    JsonBuilder *p = params_new();
    params_int(p, "iters", n);
    params_int(p, "rounds", b->rounds);
    emit_results(b, "pingpong", p);
}
