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
 *
 * This file reads the options and runs the workload; bench.h says which
 * file holds what.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

static const struct {
    const char *name;
    void (*run)(Bench *b);
} workloads[] = {
    { "first-touch", run_first_touch },
    { "rewrite", run_rewrite },
    { "sustained", run_sustained },
    { "attach-read", run_attach_read },
    { "pingpong", run_pingpong },
    { "open-close", run_open_close },
    { "create-cycle", run_create_cycle },
    { "mint", run_mint },
    { "population", run_population },
    { "fanout", run_fanout },
    { "roundtrips", run_roundtrips },
};

static void
usage(FILE *o)
{
    fputs("usage: capshm-bench [-t NAME=DIR[:PID]]... [-r ROUNDS] [-s SIZE] [-n ITERS] [-S SECONDS]\n"
          "                    [-p PROCS] [-l LEVELS] [-b BATCH] [-L LOG] [-q] WORKLOAD\n"
          "workloads: first-touch rewrite sustained attach-read pingpong open-close create-cycle\n"
          "           mint population fanout roundtrips\n", o);
}

/* Fills @b from the command line; returns the workload's name, or NULL
 * after printing the usage (*status: 0 for --help, 2 otherwise). */
static const char *
parse_args(Bench *b, int argc, char **argv, int *status)
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
    b->rounds = 5;
    b->size = 64ULL << 20;
    b->iters = 2000;
    b->seconds = 3.0;
    b->procs = 64;
    b->levels[0] = 100;
    b->levels[1] = 10000;
    b->nlevels = 2;
    b->batch = 500;
    b->budget = 256ULL << 20;
    *status = 2;
    int c;
    while ((c = getopt_long(argc, argv, "t:r:s:n:S:p:l:b:B:L:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 't': add_target(b, optarg); break;
        case 'r': b->rounds = atoi(optarg); break;
        case 's': b->size = parse_size(optarg); b->size_given = true; break;
        case 'n': b->iters = atol(optarg); break;
        case 'S': b->seconds = atof(optarg); break;
        case 'p': b->procs = atoi(optarg); break;
        case 'b': b->batch = atol(optarg); break;
        case 'B': b->budget = parse_size(optarg); break;
        case 'L': b->logpath = optarg; break;
        case 'q': b->quiet = true; break;
        case 'l': {
            b->nlevels = 0;
            char *save = NULL;
            for (char *s = strtok_r(optarg, ",", &save); s && b->nlevels < MAX_LEVELS;
                 s = strtok_r(NULL, ",", &save))
                b->levels[b->nlevels++] = atol(s);
            break;
        }
        case 'h': usage(stdout); *status = 0; return NULL;
        default: usage(stderr); return NULL;
        }
    }
    if (optind != argc - 1 || b->ntargets == 0 || b->rounds < 1 || b->rounds > MAX_ROUNDS ||
        b->iters < 1 || b->procs < 1 || b->batch < 1 || b->nlevels < 1 || b->seconds <= 0) {
        usage(stderr);
        return NULL;
    }
    for (int l = 1; l < b->nlevels; l++)
        if (b->levels[l] < b->levels[l - 1])
            die("--levels must be ascending");
    return argv[optind];
}

int
main(int argc, char **argv)
{
    Bench *b = calloc(1, sizeof *b);
    if (!b)
        die("out of memory");
    int status;
    const char *w = parse_args(b, argc, argv, &status);
    if (!w)
        return status;
    signal(SIGPIPE, SIG_IGN);
    /* fanout and population may want many processes/files. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (b->size < PAGE && strcmp(w, "create-cycle") != 0)
        b->size = PAGE;

    size_t i;
    for (i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(w, workloads[i].name) == 0)
            break;
    if (i == sizeof workloads / sizeof workloads[0]) {
        usage(stderr);
        return 2;
    }
    workloads[i].run(b);
    int rc = 0;
    for (int t = 0; t < b->ntargets; t++)
        if (b->errors[t][0])
            rc = 1;
    free(b);
    return rc;
}
