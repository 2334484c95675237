/* SPDX-License-Identifier: MIT */
/* capshm-bench — data-path and metadata benchmarks, tmpfs vs capshm.
 *
 *   capshm-bench [OPTIONS] WORKLOAD
 *
 * Each run measures one WORKLOAD on one or more targets, alternating between
 * the targets round by round (the starting target rotates), and prints one
 * JSON object on stdout: per target, per figure, the median, min, max and the
 * samples of all rounds.  scripts/bench turns these into the results table.
 *
 * A target is NAME=DIR[:PID].  DIR is a tmpfs directory (/dev/shm) or a capshm
 * mount; which one is decided by statfs(2) (FUSE magic) and the presence of
 * DIR/.new.  On capshm, every region name is minted by reading DIR/.new; on
 * tmpfs the driver makes up a random name (capshm-bench-XXXX...).  PID is the
 * capshm daemon's pid: the population workload reads its VmRSS, and the
 * metadata workloads also report the daemon's CPU time per operation
 * (schedstat of every daemon thread; far less sensitive to other load than
 * latency).  Times come from clock_gettime(CLOCK_MONOTONIC).
 *
 * Workloads (figures in brackets):
 *   first-touch   fresh region of --size, MAP_SHARED, store one byte on each
 *                 page once                                          [gbps]
 *   rewrite       region already faulted; memset passes              [gbps]
 *   sustained     memset passes over a faulted region for --seconds  [gbps]
 *   attach-read   a region filled by this process; a second process
 *                 opens, maps and reads every 64-bit word            [gbps]
 *   pingpong      two processes, each with its own open+mmap of one region,
 *                 bounce a counter through an atomic word  [ns_per_rt, rt_per_s]
 *   open-close    existing region (held open by the driver): open+mmap+
 *                 close+munmap                                      [us_per_op]
 *   create-cycle  mint, create (O_CREAT|O_EXCL), ftruncate --size, mmap,
 *                 touch every page, munmap, close, unlink           [us_per_op]
 *   mint          read one name from DIR/.new (open, read, close)  [us_per_op]
 *   population    grow to each of --levels idle regions (mint, create,
 *                 ftruncate 4 KiB, close; held by nobody); at each level time
 *                 a batch of creates, open+close of random existing regions,
 *                 stat of missing names; daemon VmRSS and kernel slab per
 *                 region.  capshm mounts need a long linger for this.
 *   fanout        --procs processes open, map and store to every page of
 *                 one fresh region at once          [wall_ms, max_child_ms]
 *   roundtrips    (one capshm target, its daemon run with -f -d and stderr in
 *                 --log FILE) counts the FUSE requests each user operation
 *                 causes; --rounds passes, the smallest count of each kept
 *
 * Options:
 *   -t, --target NAME=DIR[:PID]  repeatable; at least one
 *   -r, --rounds N               rounds per target (default 5)
 *   -s, --size BYTES             region size; suffixes K M G (default 64M;
 *                                create-cycle: 4K)
 *   -n, --iters N                operations per round (default 2000)
 *   -S, --seconds X              sustained: seconds per round (default 3)
 *   -p, --procs N                fanout: processes (default 64)
 *   -l, --levels N,N,...         population levels (default 100,10000)
 *   -b, --batch N                population: creates/opens/stats per sample
 *                                (default 500)
 *   -B, --budget BYTES           first-touch/rewrite/attach-read: bytes of work
 *                                per round, small regions are repeated (256M)
 *   -L, --log FILE               roundtrips: the daemon's debug log
 *   -q, --quiet                  no progress on stderr
 *
 * Exit status: 0 ok, 1 a measurement failed (the JSON says which), 2 usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FUSE_MAGIC 0x65735546
#define MAX_TARGETS 8
#define MAX_ROUNDS 64
#define MAX_FIGS 48
#define NAME_LEN 64
#define PAGE 4096UL

/* --- small helpers --------------------------------------------------------- */

static bool quiet;

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("capshm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void
note(const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("capshm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* No libm: the build links only -lpthread. */
static double dmin(double a, double b) { return a < b ? a : b; }
static double dmax(double a, double b) { return a > b ? a : b; }

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median_of(const double *v, int n)
{
    if (n <= 0)
        return NAN;
    double tmp[4096];
    if (n > 4096)
        n = 4096;
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static uint64_t
parse_size(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        die("bad size: %s", s);
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        die("bad size: %s", s);
    return (uint64_t)v;
}

static void
read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("short read from a child: %s", n < 0 ? strerror(errno) : "EOF");
        p += n;
        len -= (size_t)n;
    }
}

static void
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);
        p += n;
        len -= (size_t)n;
    }
}

static void
pin_cpu(int cpu)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)ncpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
}

static void
unpin_cpu(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int
wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* --- targets and regions ------------------------------------------------------ */

typedef enum { KIND_TMPFS, KIND_CAPSHM } Kind;

typedef struct {
    char name[32];
    char dir[3072];
    Kind kind;
    pid_t daemon;
} Target;

typedef struct {
    char path[PATH_MAX];
    int fd;
    void *map;
    size_t size;
} Region;

static Target targets[MAX_TARGETS];
static int ntargets;

static void
add_target(const char *spec)
{
    if (ntargets == MAX_TARGETS)
        die("too many targets");
    Target *t = &targets[ntargets];
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
    ntargets++;
}

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

/* A fresh name: minted by capshm, made up for tmpfs.  0 or -errno. */
static int
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

static void
region_path(const Target *t, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", t->dir, name);
}

/* Mint, create O_EXCL and size a region; the fd stays open, nothing mapped.
 * 0 or -errno. */
static int
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

static void *
region_map(Region *r, int prot)
{
    r->map = mmap(NULL, r->size, prot, MAP_SHARED, r->fd, 0);
    if (r->map == MAP_FAILED)
        die("mmap %s (%zu bytes): %s", r->path, r->size, strerror(errno));
    return r->map;
}

static void
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

static void
must_create(const Target *t, size_t size, Region *r)
{
    int rc = region_create(t, size, r);
    if (rc < 0)
        die("%s: creating a region of %zu bytes in %s: %s", t->name, size, t->dir, strerror(-rc));
}

static void
touch_pages(volatile char *p, size_t size, char v)
{
    for (size_t off = 0; off < size; off += PAGE)
        p[off] = v;
}

/* --- results ------------------------------------------------------------------ */

typedef struct {
    char name[48];
    const char *unit;
    double v[MAX_TARGETS][MAX_ROUNDS];
    int n[MAX_TARGETS];
} Figure;

static Figure figs[MAX_FIGS];
static int nfigs;
static char errors[MAX_TARGETS][256];

static Figure *
fig(const char *name, const char *unit)
{
    for (int i = 0; i < nfigs; i++)
        if (strcmp(figs[i].name, name) == 0)
            return &figs[i];
    if (nfigs == MAX_FIGS)
        die("too many figures");
    Figure *f = &figs[nfigs++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->unit = unit;
    return f;
}

static void
record(int ti, const char *name, const char *unit, double v)
{
    Figure *f = fig(name, unit);
    if (f->n[ti] < MAX_ROUNDS)
        f->v[ti][f->n[ti]++] = v;
}

static void
print_num(FILE *o, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", o);
    else
        fprintf(o, "%.6g", v);
}

static void
emit_json(const char *workload, const char *params)
{
    FILE *o = stdout;
    fprintf(o, "{\"workload\":\"%s\",\"params\":{%s},\"targets\":{", workload, params);
    for (int t = 0; t < ntargets; t++) {
        fprintf(o, "%s\"%s\":{\"kind\":\"%s\",\"dir\":\"%s\"", t ? "," : "", targets[t].name,
                targets[t].kind == KIND_CAPSHM ? "capshm" : "tmpfs", targets[t].dir);
        if (errors[t][0])
            fprintf(o, ",\"error\":\"%s\"", errors[t]);
        fputs(",\"figures\":{", o);
        bool first = true;
        for (int i = 0; i < nfigs; i++) {
            Figure *f = &figs[i];
            int n = f->n[t];
            if (!n)
                continue;
            double mn = f->v[t][0], mx = f->v[t][0];
            for (int k = 1; k < n; k++) {
                mn = dmin(mn, f->v[t][k]);
                mx = dmax(mx, f->v[t][k]);
            }
            fprintf(o, "%s\"%s\":{\"unit\":\"%s\",\"median\":", first ? "" : ",", f->name, f->unit);
            print_num(o, median_of(f->v[t], n));
            fputs(",\"min\":", o);
            print_num(o, mn);
            fputs(",\"max\":", o);
            print_num(o, mx);
            fputs(",\"samples\":[", o);
            for (int k = 0; k < n; k++) {
                if (k)
                    fputc(',', o);
                print_num(o, f->v[t][k]);
            }
            fputs("]}", o);
            first = false;
        }
        fputs("}}", o);
    }
    fputs("}}\n", o);
    fflush(o);
}

/* --- options -------------------------------------------------------------------- */

static int rounds = 5;
static uint64_t size_opt = 64ULL << 20;
static bool size_given;
static long iters = 2000;
static double seconds = 3.0;
static int procs = 64;
static long levels[8] = { 100, 10000 };
static int nlevels = 2;
static long batch = 500;
static const char *logpath;

/* Round-robin order: round r starts at target r % ntargets. */
#define FOR_EACH_TARGET_IN_ROUND(r, ti)                                              \
    for (int k_ = 0, ti = (r) % ntargets; k_ < ntargets; k_++, ti = ((r) + k_) % ntargets)

/* --- data-path workloads ---------------------------------------------------------- */

/* Bytes of work per round for the short per-size workloads, so that small
 * regions are measured over many repetitions. */
static uint64_t
reps_for(uint64_t size, uint64_t budget, uint64_t max_reps)
{
    uint64_t reps = size ? budget / size : 1;
    if (reps < 1)
        reps = 1;
    return reps > max_reps ? max_reps : reps;
}

static uint64_t budget_bytes = 256ULL << 20;

static void
run_first_touch(void)
{
    size_t size = (size_t)size_opt;
    /* Every repetition is a fresh region; creation is not timed. */
    uint64_t reps = reps_for(size, budget_bytes, 256);
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            double t = 0;
            for (uint64_t k = 0; k < reps; k++) {
                Region reg;
                must_create(&targets[ti], size, &reg);
                char *p = region_map(&reg, PROT_READ | PROT_WRITE);
                double t0 = now_s();
                touch_pages(p, size, 1);
                t += now_s() - t0;
                region_drop(&reg);
            }
            record(ti, "gbps", "GB/s", (double)size * (double)reps / t / 1e9);
        }
    }
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"reps\":%" PRIu64 ",\"rounds\":%d", size, reps, rounds);
    emit_json("first_touch", params);
}

static void
run_rewrite(void)
{
    size_t size = (size_t)size_opt;
    uint64_t passes = reps_for(size, budget_bytes * 4, 1u << 20);
    Region reg[MAX_TARGETS];
    for (int t = 0; t < ntargets; t++) {
        must_create(&targets[t], size, &reg[t]);
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), 0, size);
    }
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            char *p = reg[ti].map;
            double t0 = now_s();
            for (uint64_t k = 0; k < passes; k++)
                memset(p, (int)(k + 1), size);
            double t = now_s() - t0;
            record(ti, "gbps", "GB/s", (double)size * (double)passes / t / 1e9);
        }
    }
    for (int t = 0; t < ntargets; t++)
        region_drop(&reg[t]);
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"passes\":%" PRIu64 ",\"rounds\":%d", size, passes, rounds);
    emit_json("rewrite", params);
}

static void
run_sustained(void)
{
    size_t size = (size_t)size_opt;
    Region reg[MAX_TARGETS];
    for (int t = 0; t < ntargets; t++) {
        must_create(&targets[t], size, &reg[t]);
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), 0, size);
    }
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            char *p = reg[ti].map;
            uint64_t bytes = 0;
            double t0 = now_s(), t;
            int k = 0;
            do {
                memset(p, ++k, size);
                bytes += size;
                t = now_s() - t0;
            } while (t < seconds);
            record(ti, "gbps", "GB/s", (double)bytes / t / 1e9);
        }
    }
    for (int t = 0; t < ntargets; t++)
        region_drop(&reg[t]);
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"seconds\":%g,\"rounds\":%d", size, seconds, rounds);
    emit_json("sustained", params);
}

/* The child half of attach-read: open, map, read every word; sends the
 * elapsed seconds (double) and the sum down @out. */
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
    struct { double t; uint64_t sum; } msg = { t, sum };
    write_all(out, &msg, sizeof msg);
    _exit(0);
}

static void
run_attach_read(void)
{
    size_t size = (size_t)size_opt;
    uint64_t reps = reps_for(size, budget_bytes, 64);
    Region reg[MAX_TARGETS];
    for (int t = 0; t < ntargets; t++) {
        must_create(&targets[t], size, &reg[t]);
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), 1, size);
        /* The creator keeps its fd (a holder), not its mapping: the reader
         * must not inherit one through fork. */
        munmap(reg[t].map, size);
        reg[t].map = NULL;
    }
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            double total = 0;
            for (uint64_t k = 0; k < reps; k++) {
                int pp[2];
                if (pipe2(pp, O_CLOEXEC) < 0)
                    die("pipe: %s", strerror(errno));
                pid_t pid = fork();
                if (pid < 0)
                    die("fork: %s", strerror(errno));
                if (pid == 0) {
                    close(pp[0]);
                    attach_child(reg[ti].path, size, pp[1]);
                }
                close(pp[1]);
                struct { double t; uint64_t sum; } msg;
                read_all(pp[0], &msg, sizeof msg);
                close(pp[0]);
                if (wait_child(pid) != 0)
                    die("attach-read child failed");
                if (msg.sum != (uint64_t)(size / 8) * 0x0101010101010101ULL)
                    die("attach-read: the reader saw other bytes than the writer stored");
                total += msg.t;
            }
            record(ti, "gbps", "GB/s", (double)size * (double)reps / total / 1e9);
        }
    }
    for (int t = 0; t < ntargets; t++)
        region_drop(&reg[t]);
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"reps\":%" PRIu64 ",\"rounds\":%d", size, reps, rounds);
    emit_json("attach_read", params);
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

static void
run_pingpong(void)
{
    long n = iters;
    Region reg[MAX_TARGETS];
    for (int t = 0; t < ntargets; t++) {
        must_create(&targets[t], PAGE, &reg[t]);
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), 0, PAGE);
        munmap(reg[t].map, PAGE);
        reg[t].map = NULL;
    }
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            /* Map after fork so the child has only its own mapping. */
            pid_t pid = fork();
            if (pid < 0)
                die("fork: %s", strerror(errno));
            if (pid == 0)
                pingpong_child(reg[ti].path, n);
            pin_cpu(0);
            uint64_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, reg[ti].fd, 0);
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
            record(ti, "ns_per_rt", "ns", t / (double)n * 1e9);
            record(ti, "rt_per_s", "1/s", (double)n / t);
        }
    }
    for (int t = 0; t < ntargets; t++)
        region_drop(&reg[t]);
    char params[128];
    snprintf(params, sizeof params, "\"iters\":%ld,\"rounds\":%d", n, rounds);
    emit_json("pingpong", params);
}

/* --- metadata workloads ------------------------------------------------------------ */

/* CPU time the daemon (all its threads) has used, ns; -1 if unknown.  Much
 * less sensitive to other load on the machine than wall-clock latency. */
static double
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

/* Lets the daemon finish the asynchronous requests (RELEASE, FORGET) of the
 * operations just timed, so that their CPU is counted. */
static void
settle_daemon(void)
{
    usleep(20000);
}

/* Records the daemon's CPU per operation since @cpu0 (from daemon_cpu_ns). */
static void
record_daemon_cpu(int ti, const char *name, double cpu0, long ops)
{
    if (cpu0 < 0 || ops <= 0)
        return;
    double cpu1 = daemon_cpu_ns(&targets[ti]);
    if (cpu1 >= cpu0)
        record(ti, name, "us", (cpu1 - cpu0) / 1e3 / (double)ops);
}

static void
run_open_close(void)
{
    Region reg[MAX_TARGETS];
    for (int t = 0; t < ntargets; t++) {
        must_create(&targets[t], PAGE, &reg[t]); /* the fd is the holder */
        memset(region_map(&reg[t], PROT_READ | PROT_WRITE), 0, PAGE);
        munmap(reg[t].map, PAGE);
        reg[t].map = NULL;
    }
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            const char *path = reg[ti].path;
            double cpu0 = daemon_cpu_ns(&targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < iters; i++) {
                int fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                    die("open %s: %s", path, strerror(errno));
                void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p == MAP_FAILED)
                    die("mmap: %s", strerror(errno));
                close(fd);
                munmap(p, PAGE);
            }
            record(ti, "us_per_op", "us", (now_s() - t0) / (double)iters * 1e6);
            settle_daemon();
            record_daemon_cpu(ti, "daemon_cpu_us_per_op", cpu0, iters);
        }
    }
    for (int t = 0; t < ntargets; t++)
        region_drop(&reg[t]);
    char params[128];
    snprintf(params, sizeof params, "\"iters\":%ld,\"rounds\":%d", iters, rounds);
    emit_json("open_close", params);
}

/* One full create cycle; 0 or -errno naming the step in *step. */
static int
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

static void
run_create_cycle(void)
{
    size_t size = size_given && size_opt ? (size_t)size_opt : PAGE;
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            double cpu0 = daemon_cpu_ns(&targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < iters; i++) {
                const char *step;
                int rc = create_cycle(&targets[ti], size, &step);
                if (rc < 0)
                    die("%s: create cycle, %s: %s", targets[ti].name, step, strerror(-rc));
            }
            record(ti, "us_per_op", "us", (now_s() - t0) / (double)iters * 1e6);
            settle_daemon();
            record_daemon_cpu(ti, "daemon_cpu_us_per_op", cpu0, iters);
        }
    }
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"iters\":%ld,\"rounds\":%d", size, iters, rounds);
    emit_json("create_cycle", params);
}

/* Minting alone: open+read+close of DIR/.new (tmpfs: a made-up name). */
static void
run_mint(void)
{
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            char name[NAME_LEN];
            double cpu0 = daemon_cpu_ns(&targets[ti]);
            double t0 = now_s();
            for (long i = 0; i < iters; i++) {
                int rc = new_name(&targets[ti], name);
                if (rc < 0)
                    die("%s: mint: %s", targets[ti].name, strerror(-rc));
            }
            record(ti, "us_per_op", "us", (now_s() - t0) / (double)iters * 1e6);
            settle_daemon();
            record_daemon_cpu(ti, "daemon_cpu_us_per_op", cpu0, iters);
        }
    }
    char params[128];
    snprintf(params, sizeof params, "\"iters\":%ld,\"rounds\":%d", iters, rounds);
    emit_json("mint", params);
}

/* --- population ------------------------------------------------------------------ */

typedef struct {
    char (*names)[NAME_LEN];
    long n, cap;
    bool failed;
} Population;

static long
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

/* Kernel slab (reclaimable + unreclaimable), KiB: what files cost the kernel. */
static long
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

static uint64_t
rnd64(void)
{
    static uint64_t s = 0x9e3779b97f4a7c15ULL;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void
run_population(void)
{
    Population pop[MAX_TARGETS] = { 0 };
    long rss0[MAX_TARGETS];
    double slab_grown[MAX_TARGETS] = { 0 };
    long grown[MAX_TARGETS] = { 0 };
    char lv[128] = "";
    for (int l = 0; l < nlevels; l++)
        snprintf(lv + strlen(lv), sizeof lv - strlen(lv), "%s%ld", l ? "," : "", levels[l]);

    for (int l = 0; l < nlevels; l++) {
        long level = levels[l];
        /* Grow every target to this level, one target after another; the
         * growth is timed (bulk create rate).  Memory per region is taken
         * over the growth from the first level to the last: the daemon's
         * VmRSS, and the machine's slab (kernel inodes, dentries, files),
         * counted only while this target grew (other activity on the
         * machine adds noise to the latter). */
        for (int t = 0; t < ntargets; t++) {
            if (pop[t].failed)
                continue;
            long from = pop[t].n, slab_before = slab_kib();
            double t0 = now_s();
            while (pop[t].n < level) {
                int rc = pop_add(&targets[t], &pop[t]);
                if (rc < 0) {
                    snprintf(errors[t], sizeof errors[t], "creating region %ld: %s", pop[t].n + 1,
                             strerror(-rc));
                    note("%s: %s", targets[t].name, errors[t]);
                    pop[t].failed = true;
                    break;
                }
            }
            double dt = now_s() - t0;
            if (l == 0)
                rss0[t] = targets[t].daemon ? status_kib(targets[t].daemon, "VmRSS") : -1;
            if (l > 0) {
                slab_grown[t] += (double)(slab_kib() - slab_before) * 1024.0;
                grown[t] += pop[t].n - from;
            }
            if (!pop[t].failed && pop[t].n > from) {
                char fname[48];
                snprintf(fname, sizeof fname, "bulk_create_us@%ld", level);
                record(t, fname, "us", dt / (double)(pop[t].n - from) * 1e6);
            }
            note("%s: %ld regions", targets[t].name, pop[t].n);
            if (l == nlevels - 1 && !pop[t].failed && grown[t] > 0) {
                if (rss0[t] >= 0) {
                    long rss1 = status_kib(targets[t].daemon, "VmRSS");
                    record(t, "daemon_rss_bytes_per_region", "B",
                           (double)(rss1 - rss0[t]) * 1024.0 / (double)grown[t]);
                }
                record(t, "kernel_slab_bytes_per_region", "B", slab_grown[t] / (double)grown[t]);
            }
        }

        /* Measure at this level, alternating targets. */
        for (int r = 0; r < rounds; r++) {
            FOR_EACH_TARGET_IN_ROUND(r, ti) {
                const Target *t = &targets[ti];
                Population *p = &pop[ti];
                if (p->failed || p->n < level)
                    continue;
                char fname[48], path[PATH_MAX];
                /* create: a batch on top of the level, then removed again */
                double cpu0 = daemon_cpu_ns(t);
                double t0 = now_s();
                for (long i = 0; i < batch; i++) {
                    int rc = pop_add(t, p);
                    if (rc < 0) {
                        snprintf(errors[ti], sizeof errors[ti], "creating region %ld: %s",
                                 p->n + 1, strerror(-rc));
                        p->failed = true;
                        break;
                    }
                }
                double tc = now_s() - t0;
                settle_daemon();
                snprintf(fname, sizeof fname, "daemon_cpu_create_us@%ld", level);
                record_daemon_cpu(ti, fname, cpu0, batch);
                pop_unlink_tail(t, p, level);
                if (p->failed)
                    continue;
                snprintf(fname, sizeof fname, "create_us@%ld", level);
                record(ti, fname, "us", tc / (double)batch * 1e6);
                /* open+close of random existing regions */
                cpu0 = daemon_cpu_ns(t);
                t0 = now_s();
                for (long i = 0; i < batch; i++) {
                    region_path(t, p->names[rnd64() % (uint64_t)p->n], path, sizeof path);
                    int fd = open(path, O_RDWR | O_CLOEXEC);
                    if (fd < 0)
                        die("%s: open %s: %s", t->name, path, strerror(errno));
                    close(fd);
                }
                snprintf(fname, sizeof fname, "open_us@%ld", level);
                record(ti, fname, "us", (now_s() - t0) / (double)batch * 1e6);
                settle_daemon();
                snprintf(fname, sizeof fname, "daemon_cpu_open_us@%ld", level);
                record_daemon_cpu(ti, fname, cpu0, batch);
                /* stat of names that do not exist: always a real lookup */
                cpu0 = daemon_cpu_ns(t);
                t0 = now_s();
                for (long i = 0; i < batch; i++) {
                    char miss[NAME_LEN];
                    snprintf(miss, sizeof miss, "%s", p->names[rnd64() % (uint64_t)p->n]);
                    miss[strlen(miss) - 1] = miss[strlen(miss) - 1] == 'a' ? 'b' : 'a';
                    region_path(t, miss, path, sizeof path);
                    struct stat st;
                    if (stat(path, &st) == 0 || errno != ENOENT)
                        die("%s: stat of a missing name did not say ENOENT", t->name);
                }
                snprintf(fname, sizeof fname, "lookup_miss_us@%ld", level);
                record(ti, fname, "us", (now_s() - t0) / (double)batch * 1e6);
                snprintf(fname, sizeof fname, "daemon_cpu_lookup_us@%ld", level);
                record_daemon_cpu(ti, fname, cpu0, batch);
            }
        }
    }
    for (int t = 0; t < ntargets; t++) {
        double t0 = now_s();
        long n = pop[t].n;
        pop_unlink_tail(&targets[t], &pop[t], 0);
        if (n)
            record(t, "unlink_us", "us", (now_s() - t0) / (double)n * 1e6);
        free(pop[t].names);
    }
    char params[256];
    snprintf(params, sizeof params, "\"levels\":[%s],\"batch\":%ld,\"rounds\":%d", lv, batch, rounds);
    emit_json("population", params);
}

/* --- fanout ---------------------------------------------------------------------------- */

static void
run_fanout(void)
{
    size_t size = (size_t)size_opt;
    for (int r = 0; r < rounds; r++) {
        FOR_EACH_TARGET_IN_ROUND(r, ti) {
            Region reg;
            must_create(&targets[ti], size, &reg); /* fresh, unfaulted; fd held */
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
                    char b;
                    if (read(go[0], &b, 1) < 0) /* EOF: go */
                        _exit(6);
                    double t0 = now_s();
                    int fd = open(reg.path, O_RDWR | O_CLOEXEC);
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
                    write_all(res[1], msg, sizeof msg);
                    _exit(0);
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
            record(ti, "wall_ms", "ms", wall * 1e3);
            record(ti, "max_child_ms", "ms", maxc * 1e3);
            record(ti, "mean_child_ms", "ms", sumc / procs * 1e3);
        }
    }
    char params[128];
    snprintf(params, sizeof params, "\"size\":%zu,\"procs\":%d,\"rounds\":%d", size, procs, rounds);
    emit_json("fanout", params);
}

/* --- round trips ------------------------------------------------------------------------- */

/* Counts "opcode: NAME" lines appended to the daemon's debug log. */
typedef struct {
    FILE *log;
    char ops[1024];
    int total;
} Counter;

static void
settle(void)
{
    usleep(100000);
}

static void
count_begin(Counter *c)
{
    settle();
    fseek(c->log, 0, SEEK_END);
    clearerr(c->log);
    c->ops[0] = '\0';
    c->total = 0;
}

static void
count_end(Counter *c)
{
    settle();
    char line[1024];
    /* opcode name -> count, kept as "NAME:N" pairs */
    char names[32][24];
    int counts[32], nn = 0;
    while (fgets(line, sizeof line, c->log)) {
        char *p = strstr(line, "opcode: ");
        if (!p)
            continue;
        p += 8;
        char op[24];
        size_t k = 0;
        while (p[k] && p[k] != ' ' && p[k] != ',' && k < sizeof op - 1) {
            op[k] = p[k];
            k++;
        }
        op[k] = '\0';
        /* GETATTR of the root is the kernel revalidating the directory
         * (after a create/unlink changed it): name it apart. */
        const char *nid = strstr(line, "nodeid: ");
        if (strcmp(op, "GETATTR") == 0 && nid && strncmp(nid + 8, "1,", 2) == 0)
            snprintf(op, sizeof op, "GETATTR(root)");
        int i;
        for (i = 0; i < nn; i++)
            if (strcmp(names[i], op) == 0)
                break;
        if (i == nn && nn < 32) {
            snprintf(names[nn], sizeof names[nn], "%s", op);
            counts[nn++] = 0;
        }
        if (i < nn)
            counts[i]++;
        c->total++;
    }
    for (int i = 0; i < nn; i++)
        snprintf(c->ops + strlen(c->ops), sizeof c->ops - strlen(c->ops), "%s\"%s\":%d",
                 i ? "," : "", names[i], counts[i]);
}

/* Counts per operation and repetition; the reported count of an operation
 * is its smallest over the repetitions (a stray request, e.g. a LOOKUP after
 * the kernel reclaimed a dentry, must not be charged to the operation). */
#define RT_MAX_OPS 32
typedef struct {
    const char *name;
    int n;
    int total[MAX_ROUNDS];
    char ops[MAX_ROUNDS][1024];
} RtOp;
static RtOp rt_ops[RT_MAX_OPS];
static int rt_nops;

static void
rt_emit(bool *first, const char *op, const Counter *c)
{
    (void)first;
    int i;
    for (i = 0; i < rt_nops; i++)
        if (strcmp(rt_ops[i].name, op) == 0)
            break;
    if (i == rt_nops) {
        if (rt_nops == RT_MAX_OPS)
            die("too many operations");
        rt_ops[rt_nops++].name = op;
    }
    RtOp *o = &rt_ops[i];
    if (o->n < MAX_ROUNDS) {
        o->total[o->n] = c->total;
        snprintf(o->ops[o->n], sizeof o->ops[o->n], "%s", c->ops);
        o->n++;
    }
}

/* One pass over the user operations, counting each one's requests. */
static void
rt_sequence(const Target *t, FILE *log)
{
    Counter c = { 0 };
    c.log = log;
    char name[NAME_LEN], path[PATH_MAX], p2[PATH_MAX + 8];
    bool first = true;

    /* Warm up the control-file dentries, as any client after the first. */
    new_name(t, name);
    count_begin(&c);
    int rc = new_name(t, name);
    count_end(&c);
    if (rc < 0)
        die("mint: %s", strerror(-rc));
    rt_emit(&first, "read .new (open+read+close)", &c);

    region_path(t, name, path, sizeof path);
    count_begin(&c);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    count_end(&c);
    if (fd < 0)
        die("create: %s", strerror(errno));
    rt_emit(&first, "create (O_CREAT|O_EXCL)", &c);

    count_begin(&c);
    if (ftruncate(fd, 1 << 20) < 0)
        die("ftruncate: %s", strerror(errno));
    count_end(&c);
    rt_emit(&first, "ftruncate", &c);

    struct stat st;
    count_begin(&c);
    fstat(fd, &st);
    count_end(&c);
    rt_emit(&first, "fstat", &c);

    count_begin(&c);
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    count_end(&c);
    if (m == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    rt_emit(&first, "mmap", &c);

    count_begin(&c);
    touch_pages(m, 1 << 20, 1);
    count_end(&c);
    rt_emit(&first, "first touch of 1 MiB", &c);

    count_begin(&c);
    munmap(m, 1 << 20);
    count_end(&c);
    rt_emit(&first, "munmap", &c);

    count_begin(&c);
    close(fd);
    count_end(&c);
    rt_emit(&first, "close (last)", &c);

    count_begin(&c);
    stat(path, &st);
    count_end(&c);
    rt_emit(&first, "stat (after create, mmap, close)", &c);

    count_begin(&c);
    fd = open(path, O_RDWR | O_CLOEXEC);
    count_end(&c);
    if (fd < 0)
        die("open: %s", strerror(errno));
    rt_emit(&first, "open existing", &c);

    count_begin(&c);
    int fd2 = open(path, O_RDWR | O_CLOEXEC);
    m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    close(fd2);
    munmap(m, PAGE);
    count_end(&c);
    rt_emit(&first, "open+mmap+close+munmap (another fd held)", &c);

    count_begin(&c);
    close(fd);
    count_end(&c);
    rt_emit(&first, "close (last, not mapped)", &c);

    snprintf(p2, sizeof p2, "%s/%s", t->dir, "aaaaaaaaaaaaaaaaaaaaaaaaaa");
    count_begin(&c);
    stat(p2, &st);
    count_end(&c);
    rt_emit(&first, "stat of a missing name", &c);

    count_begin(&c);
    unlink(path);
    count_end(&c);
    rt_emit(&first, "unlink", &c);

    snprintf(p2, sizeof p2, "%s/.stats", t->dir);
    count_begin(&c);
    int sfd = open(p2, O_RDONLY | O_CLOEXEC);
    char buf[8192];
    while (sfd >= 0 && read(sfd, buf, sizeof buf) > 0)
        ;
    if (sfd >= 0)
        close(sfd);
    count_end(&c);
    rt_emit(&first, "read .stats (open+read+close)", &c);

    /* The whole create cycle of the create-cycle workload, 4 KiB, in a
     * steady state (after one cycle, as in the loop). */
    const char *step;
    rc = create_cycle(t, PAGE, &step);
    if (rc < 0)
        die("create cycle, %s: %s", step, strerror(-rc));
    count_begin(&c);
    rc = create_cycle(t, PAGE, &step);
    count_end(&c);
    if (rc < 0)
        die("create cycle, %s: %s", step, strerror(-rc));
    rt_emit(&first, "full create cycle (4 KiB), in a loop", &c);
}

static void
run_roundtrips(void)
{
    if (ntargets != 1 || targets[0].kind != KIND_CAPSHM || !logpath)
        die("roundtrips needs exactly one capshm target and --log");
    const Target *t = &targets[0];
    FILE *log = fopen(logpath, "re");
    if (!log)
        die("%s: %s", logpath, strerror(errno));
    for (int r = 0; r < rounds; r++)
        rt_sequence(t, log);
    fclose(log);
    printf("{\"workload\":\"roundtrips\",\"params\":{\"rounds\":%d},\"targets\":{\"%s\":"
           "{\"kind\":\"capshm\",\"ops\":{", rounds, t->name);
    for (int i = 0; i < rt_nops; i++) {
        RtOp *o = &rt_ops[i];
        int best = 0, mx = o->total[0];
        for (int k = 1; k < o->n; k++) {
            if (o->total[k] < o->total[best])
                best = k;
            if (o->total[k] > mx)
                mx = o->total[k];
        }
        printf("%s\"%s\":{\"total\":%d,\"max\":%d,\"ops\":{%s}}", i ? "," : "", o->name,
               o->total[best], mx, o->ops[best]);
    }
    printf("}}}}\n");
}

/* --- main ------------------------------------------------------------------------------ */

static void
usage(FILE *o)
{
    fputs("usage: capshm-bench [-t NAME=DIR[:PID]]... [-r ROUNDS] [-s SIZE] [-n ITERS] [-S SECONDS]\n"
          "                    [-p PROCS] [-l LEVELS] [-b BATCH] [-L LOG] [-q] WORKLOAD\n"
          "workloads: first-touch rewrite sustained attach-read pingpong open-close create-cycle\n"
          "           mint population fanout roundtrips\n", o);
}

int
main(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "target", required_argument, NULL, 't' },
        { "rounds", required_argument, NULL, 'r' },
        { "size", required_argument, NULL, 's' },
        { "iters", required_argument, NULL, 'n' },
        { "seconds", required_argument, NULL, 'S' },
        { "procs", required_argument, NULL, 'p' },
        { "levels", required_argument, NULL, 'l' },
        { "batch", required_argument, NULL, 'b' },
        { "budget", required_argument, NULL, 'B' },
        { "log", required_argument, NULL, 'L' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "t:r:s:n:S:p:l:b:B:L:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 't': add_target(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 's': size_opt = parse_size(optarg); size_given = true; break;
        case 'n': iters = atol(optarg); break;
        case 'S': seconds = atof(optarg); break;
        case 'p': procs = atoi(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'B': budget_bytes = parse_size(optarg); break;
        case 'L': logpath = optarg; break;
        case 'q': quiet = true; break;
        case 'l': {
            nlevels = 0;
            for (char *s = strtok(optarg, ","); s && nlevels < 8; s = strtok(NULL, ","))
                levels[nlevels++] = atol(s);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || ntargets == 0 || rounds < 1 || rounds > MAX_ROUNDS || iters < 1 ||
        procs < 1 || batch < 1 || nlevels < 1 || seconds <= 0) {
        usage(stderr);
        return 2;
    }
    for (int l = 1; l < nlevels; l++)
        if (levels[l] < levels[l - 1])
            die("--levels must be ascending");
    const char *w = argv[optind];
    signal(SIGPIPE, SIG_IGN);
    /* fanout and population may want many processes/files. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (size_opt < PAGE && strcmp(w, "create-cycle") != 0)
        size_opt = PAGE;

    if (strcmp(w, "first-touch") == 0)
        run_first_touch();
    else if (strcmp(w, "rewrite") == 0)
        run_rewrite();
    else if (strcmp(w, "sustained") == 0)
        run_sustained();
    else if (strcmp(w, "attach-read") == 0)
        run_attach_read();
    else if (strcmp(w, "pingpong") == 0)
        run_pingpong();
    else if (strcmp(w, "open-close") == 0)
        run_open_close();
    else if (strcmp(w, "create-cycle") == 0)
        run_create_cycle();
    else if (strcmp(w, "mint") == 0)
        run_mint();
    else if (strcmp(w, "population") == 0)
        run_population();
    else if (strcmp(w, "fanout") == 0)
        run_fanout();
    else if (strcmp(w, "roundtrips") == 0)
        run_roundtrips();
    else {
        usage(stderr);
        return 2;
    }
    for (int t = 0; t < ntargets; t++)
        if (errors[t][0])
            return 1;
    return 0;
}
