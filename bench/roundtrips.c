/* SPDX-License-Identifier: MIT */
/* roundtrips.c — the roundtrips workload of capshm-bench: how many FUSE
 * requests each user operation causes.
 *
 * One capshm target whose daemon runs with -f -d and its stderr in --log
 * FILE.  Every user operation (mint, create, ftruncate, mmap, ...) is done
 * between two reads of the log's new lines, which counts its "opcode: NAME"
 * lines.  --rounds passes; the reported count of an operation is its
 * smallest over the passes (a stray request, e.g. a LOOKUP after the kernel
 * reclaimed a dentry, must not be charged to the operation).
 *
 *   {"workload":"roundtrips","params":{"rounds":N},"targets":{NAME:
 *    {"kind":"capshm","ops":{OPERATION:{"total":N,"max":N,
 *     "ops":{OPCODE:N,...}}}}}}
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define RT_MAX_OPCODES 32
#define RT_MAX_OPS 32

/* The requests of one operation: opcode name -> count, in order seen. */
typedef struct {
    char names[RT_MAX_OPCODES][24];
    int counts[RT_MAX_OPCODES];
    int nn;
    int total;
} Count;

/* One user operation: its counts in every pass. */
typedef struct {
    const char *name;
    int n;
    Count pass[MAX_ROUNDS];
} RtOp;

/* The whole workload: the daemon's log and the operations seen. */
typedef struct {
    FILE *log;
    Count cur;
    RtOp ops[RT_MAX_OPS];
    int nops;
} Rt;

static void
settle(void)
{
    usleep(100000);
}

/* Skip to the end of the log: what the daemon logs from now on counts. */
static void
count_begin(Rt *rt)
{
    settle();
    fseek(rt->log, 0, SEEK_END);
    clearerr(rt->log);
    memset(&rt->cur, 0, sizeof rt->cur);
}

/* Count the "opcode: NAME" lines logged since count_begin into rt->cur. */
static void
count_end(Rt *rt)
{
    settle();
    Count *c = &rt->cur;
    char line[1024];
    while (fgets(line, sizeof line, rt->log)) {
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
        for (i = 0; i < c->nn; i++)
            if (strcmp(c->names[i], op) == 0)
                break;
        if (i == c->nn && c->nn < RT_MAX_OPCODES) {
            snprintf(c->names[c->nn], sizeof c->names[c->nn], "%s", op);
            c->counts[c->nn++] = 0;
        }
        if (i < c->nn)
            c->counts[i]++;
        c->total++;
    }
}

/* Keep rt->cur as this pass's count of operation @op. */
static void
rt_keep(Rt *rt, const char *op)
{
    int i;
    for (i = 0; i < rt->nops; i++)
        if (strcmp(rt->ops[i].name, op) == 0)
            break;
    if (i == rt->nops) {
        if (rt->nops == RT_MAX_OPS)
            die("too many operations");
        rt->ops[rt->nops++].name = op;
    }
    RtOp *o = &rt->ops[i];
    if (o->n < MAX_ROUNDS)
        o->pass[o->n++] = rt->cur;
}

/* One pass over the user operations, counting each one's requests. */
static void
rt_sequence(Rt *rt, const Target *t)
{
    char name[NAME_LEN], path[PATH_MAX], p2[PATH_MAX + 8];

    /* Warm up the control-file dentries, as any client after the first. */
    new_name(t, name);
    count_begin(rt);
    int rc = new_name(t, name);
    count_end(rt);
    if (rc < 0)
        die("mint: %s", strerror(-rc));
    rt_keep(rt, "read .new (open+read+close)");

    region_path(t, name, path, sizeof path);
    count_begin(rt);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    count_end(rt);
    if (fd < 0)
        die("create: %s", strerror(errno));
    rt_keep(rt, "create (O_CREAT|O_EXCL)");

    count_begin(rt);
    if (ftruncate(fd, 1 << 20) < 0)
        die("ftruncate: %s", strerror(errno));
    count_end(rt);
    rt_keep(rt, "ftruncate");

    struct stat st;
    count_begin(rt);
    fstat(fd, &st);
    count_end(rt);
    rt_keep(rt, "fstat");

    count_begin(rt);
    char *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    count_end(rt);
    if (m == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    rt_keep(rt, "mmap");

    count_begin(rt);
    touch_pages(m, 1 << 20, 1);
    count_end(rt);
    rt_keep(rt, "first touch of 1 MiB");

    count_begin(rt);
    munmap(m, 1 << 20);
    count_end(rt);
    rt_keep(rt, "munmap");

    count_begin(rt);
    close(fd);
    count_end(rt);
    rt_keep(rt, "close (last)");

    count_begin(rt);
    stat(path, &st);
    count_end(rt);
    rt_keep(rt, "stat (after create, mmap, close)");

    count_begin(rt);
    fd = open(path, O_RDWR | O_CLOEXEC);
    count_end(rt);
    if (fd < 0)
        die("open: %s", strerror(errno));
    rt_keep(rt, "open existing");

    count_begin(rt);
    int fd2 = open(path, O_RDWR | O_CLOEXEC);
    m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
    close(fd2);
    munmap(m, PAGE);
    count_end(rt);
    rt_keep(rt, "open+mmap+close+munmap (another fd held)");

    count_begin(rt);
    close(fd);
    count_end(rt);
    rt_keep(rt, "close (last, not mapped)");

    snprintf(p2, sizeof p2, "%s/%s", t->dir, "aaaaaaaaaaaaaaaaaaaaaaaaaa");
    count_begin(rt);
    stat(p2, &st);
    count_end(rt);
    rt_keep(rt, "stat of a missing name");

    count_begin(rt);
    unlink(path);
    count_end(rt);
    rt_keep(rt, "unlink");

    snprintf(p2, sizeof p2, "%s/.stats", t->dir);
    count_begin(rt);
    int sfd = open(p2, O_RDONLY | O_CLOEXEC);
    char buf[8192];
    while (sfd >= 0 && read(sfd, buf, sizeof buf) > 0)
        ;
    if (sfd >= 0)
        close(sfd);
    count_end(rt);
    rt_keep(rt, "read .stats (open+read+close)");

    /* The whole create cycle of the create-cycle workload, 4 KiB, in a
     * steady state (after one cycle, as in the loop). */
    const char *step;
    rc = create_cycle(t, PAGE, &step);
    if (rc < 0)
        die("create cycle, %s: %s", step, strerror(-rc));
    count_begin(rt);
    rc = create_cycle(t, PAGE, &step);
    count_end(rt);
    if (rc < 0)
        die("create cycle, %s: %s", step, strerror(-rc));
    rt_keep(rt, "full create cycle (4 KiB), in a loop");
}

/* {OPERATION:{"total":least,"max":most,"ops":{OPCODE:N}}}, the opcodes
 * those of the pass with the least. */
static void
add_ops(JsonBuilder *j, const Rt *rt)
{
    json_builder_begin_object(j);
    for (int i = 0; i < rt->nops; i++) {
        const RtOp *o = &rt->ops[i];
        int best = 0, mx = o->pass[0].total;
        for (int k = 1; k < o->n; k++) {
            if (o->pass[k].total < o->pass[best].total)
                best = k;
            if (o->pass[k].total > mx)
                mx = o->pass[k].total;
        }
        const Count *c = &o->pass[best];
        json_builder_set_member_name(j, o->name);
        json_builder_begin_object(j);
        json_builder_set_member_name(j, "total");
        json_builder_add_int_value(j, c->total);
        json_builder_set_member_name(j, "max");
        json_builder_add_int_value(j, mx);
        json_builder_set_member_name(j, "ops");
        json_builder_begin_object(j);
        for (int k = 0; k < c->nn; k++) {
            json_builder_set_member_name(j, c->names[k]);
            json_builder_add_int_value(j, c->counts[k]);
        }
        json_builder_end_object(j);
        json_builder_end_object(j);
    }
    json_builder_end_object(j);
}

void
run_roundtrips(Bench *b)
{
    if (b->ntargets != 1 || b->targets[0].kind != KIND_CAPSHM || !b->logpath)
        die("roundtrips needs exactly one capshm target and --log");
    const Target *t = &b->targets[0];
    Rt *rt = calloc(1, sizeof *rt);
    if (!rt)
        die("out of memory");
    rt->log = fopen(b->logpath, "re");
    if (!rt->log)
        die("%s: %s", b->logpath, strerror(errno));
    for (int r = 0; r < b->rounds; r++)
        rt_sequence(rt, t);
    fclose(rt->log);

    JsonBuilder *j = json_builder_new();
    json_builder_begin_object(j);
    json_builder_set_member_name(j, "workload");
    json_builder_add_string_value(j, "roundtrips");
    json_builder_set_member_name(j, "params");
    json_builder_begin_object(j);
    json_builder_set_member_name(j, "rounds");
    json_builder_add_int_value(j, b->rounds);
    json_builder_end_object(j);
    json_builder_set_member_name(j, "targets");
    json_builder_begin_object(j);
    json_builder_set_member_name(j, t->name);
    json_builder_begin_object(j);
    json_builder_set_member_name(j, "kind");
    json_builder_add_string_value(j, "capshm");
    json_builder_set_member_name(j, "ops");
    add_ops(j, rt);
    json_builder_end_object(j);
    json_builder_end_object(j);
    json_builder_end_object(j);
    print_json_line(json_builder_get_root(j));
    g_object_unref(j);
    free(rt);
}
