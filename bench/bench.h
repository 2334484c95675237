/* SPDX-License-Identifier: MIT */
/* bench.h — what the parts of capshm-bench share.
 *
 * The whole state of a run is one Bench, made by main() (capshm-bench.c)
 * and passed to every workload: the options, the targets, and the figures
 * the workload records.  Nothing else is kept at file scope.
 *
 *   capshm-bench.c  options, usage, which workload runs
 *   util.c          errors and progress, timing, medians, sizes, pipes,
 *                   children, CPU pinning
 *   target.c        targets (tmpfs or capshm), names, regions, the daemon's
 *                   CPU time and memory
 *   results.c       figures per target and round; the JSON line (json-glib)
 *   datapath.c      first-touch, rewrite, sustained, attach-read, pingpong
 *   metadata.c      open-close, create-cycle, mint, fanout
 *   population.c    population
 *   roundtrips.c    roundtrips (FUSE requests per user operation)
 */
#ifndef CAPSHM_BENCH_H
#define CAPSHM_BENCH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-glib/json-glib.h>

#define MAX_TARGETS 8
#define MAX_ROUNDS 64
#define MAX_FIGS 48
#define MAX_LEVELS 8
#define NAME_LEN 64
#define PAGE 4096UL

/* --- targets and regions (target.c) ---------------------------------------- */

typedef enum { KIND_TMPFS, KIND_CAPSHM } Kind;

typedef struct {
    char name[32];
    char dir[3072];
    Kind kind;
    pid_t daemon; /* the capshm daemon's pid, 0 if not given */
} Target;

/* A region made by the driver: its path, the fd it holds, its mapping. */
typedef struct {
    char path[PATH_MAX];
    int fd;
    void *map;
    size_t size;
} Region;

/* --- results (results.c) ----------------------------------------------------- */

/* One figure (e.g. "gbps"): the samples of every round, per target. */
typedef struct {
    char name[48];
    const char *unit;
    double v[MAX_TARGETS][MAX_ROUNDS];
    int n[MAX_TARGETS];
} Figure;

/* --- the run ------------------------------------------------------------------ */

typedef struct {
    /* options (set by main, read by the workloads) */
    int rounds;
    uint64_t size;
    bool size_given;
    long iters;
    double seconds;
    int procs;
    long levels[MAX_LEVELS];
    int nlevels;
    long batch;
    uint64_t budget;
    const char *logpath;
    bool quiet;

    Target targets[MAX_TARGETS];
    int ntargets;

    /* what the workload measured; errors[t] non-empty: target t failed */
    Figure figs[MAX_FIGS];
    int nfigs;
    char errors[MAX_TARGETS][256];
} Bench;

/* Round-robin order: round r starts at target r % ntargets. */
#define FOR_EACH_TARGET_IN_ROUND(b, r, ti)                                               \
    for (int k_ = 0, ti = (r) % (b)->ntargets; k_ < (b)->ntargets;                       \
         k_++, ti = ((r) + k_) % (b)->ntargets)

/* --- util.c --------------------------------------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
/* Progress on stderr, unless --quiet. */
__attribute__((format(printf, 2, 3))) void note(const Bench *b, const char *fmt, ...);

/* No libm needed. */
static inline double dmin(double a, double b) { return a < b ? a : b; }
static inline double dmax(double a, double b) { return a > b ? a : b; }

double now_s(void); /* CLOCK_MONOTONIC, seconds */
double median_of(const double *v, int n);
uint64_t parse_size(const char *s); /* suffixes K M G; dies on a bad one */
void read_all(int fd, void *buf, size_t len);        /* dies on a short read */
void write_all(int fd, const void *buf, size_t len); /* for children: _exit(3) */
void pin_cpu(int cpu);
void unpin_cpu(void);
int wait_child(pid_t pid); /* exit status, 128+signal, or -1 */
void touch_pages(volatile char *p, size_t size, char v);

/* --- target.c ------------------------------------------------------------------- */

void add_target(Bench *b, const char *spec); /* NAME=DIR[:PID]; dies if bad */
int new_name(const Target *t, char out[NAME_LEN]);                /* 0 or -errno */
void region_path(const Target *t, const char *name, char *out, size_t len);
int region_create(const Target *t, size_t size, Region *r);      /* 0 or -errno */
void must_create(const Target *t, size_t size, Region *r);       /* dies */
void *region_map(Region *r, int prot);                            /* dies */
void region_drop(Region *r);
/* One region of @size per target, faulted with @fill in every byte; still
 * mapped unless @unmap (then only the driver's fd holds it).  Dies. */
void create_each(Bench *b, Region reg[MAX_TARGETS], size_t size, int fill, bool unmap);
void drop_each(Bench *b, Region reg[MAX_TARGETS]);
/* CPU time of all the daemon's threads, ns; -1 if unknown. */
double daemon_cpu_ns(const Target *t);
/* Lets the daemon finish the asynchronous requests just caused. */
void settle_daemon(void);
long status_kib(pid_t pid, const char *key); /* /proc/PID/status KEY, KiB; -1 */
long slab_kib(void);                         /* kernel slab, KiB; -1 */

/* --- results.c ------------------------------------------------------------------ */

void record(Bench *b, int ti, const char *name, const char *unit, double v);
/* Records the daemon's CPU per operation since @cpu0 (from daemon_cpu_ns). */
void record_daemon_cpu(Bench *b, int ti, const char *name, double cpu0, long ops);
/* A workload's "params" object: params_new(), then params_* to add members;
 * emit_results() takes it over. */
JsonBuilder *params_new(void);
void params_int(JsonBuilder *p, const char *key, int64_t v);
void params_num(JsonBuilder *p, const char *key, double v);
void params_int_array(JsonBuilder *p, const char *key, const long *v, int n);
/* Prints the workload's JSON line: params, and per target its figures. */
void emit_results(const Bench *b, const char *workload, JsonBuilder *params);
/* Prints @root (taken over) as one JSON line on stdout. */
void print_json_line(JsonNode *root);

/* --- the workloads ---------------------------------------------------------------- */

void run_first_touch(Bench *b);
void run_rewrite(Bench *b);
void run_sustained(Bench *b);
void run_attach_read(Bench *b);
void run_pingpong(Bench *b);
void run_open_close(Bench *b);
void run_create_cycle(Bench *b);
void run_mint(Bench *b);
void run_fanout(Bench *b);
void run_population(Bench *b);
void run_roundtrips(Bench *b);

/* One full create cycle (mint, create, size, map, touch, unmap, close,
 * unlink); 0 or -errno naming the failed step in *step. */
int create_cycle(const Target *t, size_t size, const char **step);

#endif
