/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the store's state machine and its .stats JSON.
 *
 * The input is a program: a few setup bytes (names mode, data path, limits)
 * then operations, each an opcode byte and argument bytes: mint, create,
 * open, release, resize, write, fallocate, pin/unpin, unlink, tick (advance
 * a fake clock), seal, chown, read-only name, lookup, map/unmap by a fake
 * process, kill a fake process, holder pids and .stats.  Processes are
 * simulated through StoreProcOps (tgid_of, maps_node, watch/unwatch,
 * scan_all), so lifetime decisions run exactly as in the daemon.
 *
 * After every operation the harness checks the store against its own model:
 *  - quota_total_bytes() is the sum of the sizes of live regions, and per
 *    uid the regions and bytes match;
 *  - store_region_count() is the number of live regions, and the
 *    lingering/pinned counts match the regions' states;
 *  - an open region is live; an unlinked live region is held;
 *  - lookup finds a region by its names exactly while it is live and not
 *    unlinked;
 *  - every .stats output is strict JSON (see json_check.h) whose numbers
 *    agree with the store;
 *  - watch/unwatch calls balance: no unwatch of an unwatched process, and
 *    no watch left once the store is freed (a leaked watch is a leaked
 *    pidfd in the daemon).
 * ASan/UBSan/LSan catch memory errors and leaks (regions are refcounted).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/store.h"
#include "json_check.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_stats: check failed: %s: ", #cond);           \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

#define MAX_REGIONS 24
#define MAX_HANDLES 32
#define MAX_MINTS 16
#define NPROC 8 /* fake processes: tgid 1..NPROC; tids NPROC+1..2*NPROC are their threads */

typedef struct {
    CapshmRegion *r; /* harness reference */
    pid_t tid;
    bool writable;
} Handle;

typedef struct {
    const uint8_t *p, *end;
    CapshmStore *s;
    int64_t now;
    CapshmRegion *regions[MAX_REGIONS];
    unsigned nregions;
    Handle handles[MAX_HANDLES];
    unsigned nhandles;
    char mints[MAX_MINTS][NAMES_BUF];
    unsigned nmints;
    bool dead[NPROC + 1];
    GHashTable *maps;    /* "tgid:ino" strings: process maps node */
    GHashTable *watches; /* tgid -> count */
} Fuzz;

static uint8_t
next(Fuzz *f)
{
    return f->p < f->end ? *f->p++ : 0;
}

static uint64_t
next64(Fuzz *f, unsigned nbytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++)
        v = v << 8 | next(f);
    return v;
}

/* --- fake process world ------------------------------------------------------ */

static int64_t
fake_now(void *data)
{
    return ((Fuzz *)data)->now;
}

static pid_t
fake_tgid_of(void *data, pid_t tid)
{
    Fuzz *f = data;
    pid_t tg = tid > NPROC ? tid - NPROC : tid;
    if (tg <= 0 || tg > NPROC || f->dead[tg])
        return 0;
    return tg;
}

static char *
map_key(pid_t tgid, uint64_t ino)
{
    return g_strdup_printf("%d:%" G_GUINT64_FORMAT, (int)tgid, (guint64)ino);
}

static bool
fake_maps_node(void *data, pid_t tgid, uint64_t ino, uint64_t ro_ino)
{
    Fuzz *f = data;
    g_autofree char *a = map_key(tgid, ino);
    g_autofree char *b = ro_ino ? map_key(tgid, ro_ino) : NULL;
    return g_hash_table_contains(f->maps, a) || (b && g_hash_table_contains(f->maps, b));
}

static void
fake_watch(void *data, pid_t tgid)
{
    Fuzz *f = data;
    CHECK(tgid > 0 && tgid <= NPROC, "watch of tgid %d", (int)tgid);
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(f->watches, GINT_TO_POINTER(tgid)));
    g_hash_table_insert(f->watches, GINT_TO_POINTER(tgid), GUINT_TO_POINTER(n + 1));
}

static void
fake_unwatch(void *data, pid_t tgid)
{
    Fuzz *f = data;
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(f->watches, GINT_TO_POINTER(tgid)));
    CHECK(n > 0, "unwatch of unwatched tgid %d", (int)tgid);
    if (n == 1)
        g_hash_table_remove(f->watches, GINT_TO_POINTER(tgid));
    else
        g_hash_table_insert(f->watches, GINT_TO_POINTER(tgid), GUINT_TO_POINTER(n - 1));
}

static void
fake_scan_all(void *data, GHashTable *wanted, GHashTable *owners)
{
    Fuzz *f = data;
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, f->maps);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        int tgid;
        guint64 ino;
        CHECK(sscanf(key, "%d:%" G_GUINT64_FORMAT, &tgid, &ino) == 2, "map key");
        if (g_hash_table_contains(wanted, &ino) && !g_hash_table_contains(owners, &ino)) {
            uint64_t *k = g_new(uint64_t, 1);
            *k = ino;
            g_hash_table_insert(owners, k, GINT_TO_POINTER(tgid));
        }
    }
}

/* --- model checks -------------------------------------------------------------- */

typedef struct {
    uid_t uid;
    unsigned regions;
    uint64_t bytes;
} UidSum;

static void
check_usage(const QuotaUsage *u, void *data)
{
    Fuzz *f = data;
    unsigned n = 0;
    uint64_t b = 0;
    for (unsigned i = 0; i < f->nregions; i++) {
        CapshmRegion *r = f->regions[i];
        if (region_is_alive(r) && r->uid == u->uid) {
            n++;
            b += r->size;
        }
    }
    CHECK(u->regions == n, "uid %u: quota says %u regions, model %u", (unsigned)u->uid, u->regions, n);
    CHECK(u->bytes == b, "uid %u: quota says %llu bytes, model %llu", (unsigned)u->uid,
          (unsigned long long)u->bytes, (unsigned long long)b);
}

static void
check_stats(Fuzz *f, uid_t uid, bool root)
{
    char *js = store_stats_json(f->s, uid, root, root ? "passthrough" : "cache", "device", 0);
    const char *why = NULL;
    CHECK(json_validate(js, strlen(js), &why), "invalid JSON (%s): %s", why, js);
    uint64_t v;
    CHECK(json_top_uint(js, "regions", &v) && v == store_region_count(f->s), "regions in %s", js);
    CHECK(json_top_uint(js, "bytes", &v) && v == quota_total_bytes(store_quota(f->s)), "bytes in %s", js);
    CHECK(json_top_uint(js, "lingering", &v) && v == store_count_in_state(f->s, REGION_LINGERING),
          "lingering in %s", js);
    CHECK(json_top_uint(js, "pinned", &v) && v == store_count_in_state(f->s, REGION_PINNED),
          "pinned in %s", js);
    StoreCounters c = store_counters(f->s);
    CHECK(json_top_uint(js, "created", &v) && v == c.created, "created in %s", js);
    CHECK(json_top_uint(js, "destroyed", &v) && v == c.destroyed, "destroyed in %s", js);
    CHECK(json_top_uint(js, "expired_mints", &v) && v == c.expired_mints, "expired_mints in %s", js);
    CHECK(c.created - c.destroyed == store_region_count(f->s), "created-destroyed != regions");
    CHECK((strstr(js, "\"per_uid\":") != NULL) == root, "per_uid only for root: %s", js);
    CHECK(strstr(js, "\"uid\":{\"uid\":") != NULL, "uid object in %s", js);
    g_free(js);
}

static void
check_model(Fuzz *f)
{
    unsigned alive = 0, lingering = 0, pinned = 0;
    uint64_t bytes = 0;
    for (unsigned i = 0; i < f->nregions; i++) {
        CapshmRegion *r = f->regions[i];
        if (!region_is_alive(r)) {
            CHECK(r->fd < 0, "destroyed region keeps its fd");
            CHECK(store_lookup(f->s, r->name, NULL) != r, "destroyed region found by name");
            continue;
        }
        alive++;
        bytes += r->size;
        lingering += r->state == REGION_LINGERING;
        pinned += r->state == REGION_PINNED;
        CHECK(r->fd >= 0, "live memfd region without its fd");
        struct stat st;
        CHECK(fstat(r->fd, &st) == 0 && (uint64_t)st.st_size == r->size,
              "region says %llu bytes, its memfd has %lld", (unsigned long long)r->size,
              (long long)st.st_size);
        if (r->open_count > 0)
            CHECK(r->state == REGION_LIVE, "open region in state %d", r->state);
        if (r->state == REGION_PINNED)
            CHECK(r->pinned, "state pinned but not pinned");
        if (r->unlinked)
            CHECK(r->state == REGION_LIVE, "unlinked unheld region survives (state %d)", r->state);
        CHECK(r->writable_opens <= r->open_count, "writable_opens > open_count");
        bool is_ro = true;
        CapshmRegion *found = store_lookup(f->s, r->name, &is_ro);
        if (r->unlinked) {
            CHECK(found != r, "unlinked region still found by name");
        } else {
            CHECK(found == r && !is_ro, "live region not found by its name");
            if (r->ro_name) {
                found = store_lookup(f->s, r->ro_name, &is_ro);
                CHECK(found == r && is_ro, "live region not found by its read-only name");
            }
        }
    }
    CHECK(store_region_count(f->s) == alive, "store has %u regions, model %u",
          store_region_count(f->s), alive);
    CHECK(quota_total_bytes(store_quota(f->s)) == bytes, "quota total %llu, model %llu",
          (unsigned long long)quota_total_bytes(store_quota(f->s)), (unsigned long long)bytes);
    CHECK(store_count_in_state(f->s, REGION_LINGERING) == lingering, "lingering count");
    CHECK(store_count_in_state(f->s, REGION_PINNED) == pinned, "pinned count");
    CHECK(bytes <= quota_size_limit(store_quota(f->s)), "over the size limit");
    quota_foreach(store_quota(f->s), check_usage, f);
}

/* --- operations ------------------------------------------------------------------- */

static CapshmRegion *
pick_region(Fuzz *f)
{
    uint8_t b = next(f);
    return f->nregions ? f->regions[b % f->nregions] : NULL;
}

static void
track_region(Fuzz *f, CapshmRegion *r)
{
    for (unsigned i = 0; i < f->nregions; i++)
        if (f->regions[i] == r)
            return;
    CHECK(f->nregions < MAX_REGIONS, "region table full");
    f->regions[f->nregions++] = region_ref(r);
}

static void
add_handle(Fuzz *f, CapshmRegion *r, pid_t tid, bool writable)
{
    if (f->nhandles >= MAX_HANDLES || !region_is_alive(r))
        return;
    store_opened(f->s, r, tid, writable);
    f->handles[f->nhandles++] = (Handle){ region_ref(r), tid, writable };
}

static void
release_handle(Fuzz *f, unsigned i)
{
    Handle h = f->handles[i];
    f->handles[i] = f->handles[--f->nhandles];
    store_released(f->s, h.r, h.tid, h.writable);
    region_unref(h.r);
}

static void
kill_process(Fuzz *f, pid_t tgid)
{
    /* The kernel drops its mappings (exit_mm), closes its files (RELEASE
     * arrives while /proc/PID is gone), then the pidfd fires (only if
     * someone watches it). */
    GHashTableIter it;
    gpointer key;
    g_autofree char *prefix = g_strdup_printf("%d:", (int)tgid);
    g_hash_table_iter_init(&it, f->maps);
    while (g_hash_table_iter_next(&it, &key, NULL))
        if (g_str_has_prefix(key, prefix))
            g_hash_table_iter_remove(&it);
    f->dead[tgid] = true;
    for (unsigned i = f->nhandles; i-- > 0;)
        if (f->handles[i].tid == tgid || f->handles[i].tid == tgid + NPROC)
            release_handle(f, i);
    if (g_hash_table_contains(f->watches, GINT_TO_POINTER(tgid)))
        store_process_exited(f->s, tgid);
    /* A new process may later reuse the pid. */
    f->dead[tgid] = false;
}

static const char *
pick_name(Fuzz *f, char buf[NAMES_MAX + 1])
{
    uint8_t how = next(f);
    switch (how % 5) {
    case 0:
        if (f->nmints)
            return f->mints[next(f) % f->nmints];
        break;
    case 1: {
        CapshmRegion *r = pick_region(f);
        if (r)
            return r->name;
        break;
    }
    case 2: {
        CapshmRegion *r = pick_region(f);
        if (r && r->ro_name)
            return r->ro_name;
        break;
    }
    case 3: {
        /* A near miss of a known name: one character changed. */
        CapshmRegion *r = pick_region(f);
        if (r) {
            g_strlcpy(buf, r->name, NAMES_MAX + 1);
            size_t len = strlen(buf);
            uint8_t c = next(f);
            buf[next(f) % len] = c ? (char)c : 'x';
            return buf;
        }
        break;
    }
    default:
        break;
    }
    /* Raw bytes from the input. */
    size_t len = next(f) % 40;
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t c = next(f);
        buf[i] = c ? (char)c : 'a';
    }
    buf[i] = '\0';
    return buf;
}

static void
op_create(Fuzz *f)
{
    char buf[NAMES_MAX + 1];
    const char *name = pick_name(f, buf);
    uint8_t a = next(f);
    CapshmCaller c = { .uid = a % 3 == 0 ? 0 : 1000 + a % 3, .gid = 100, .pid = next(f) % (2 * NPROC + 1) };
    mode_t mode = (mode_t)next64(f, 2);
    bool excl = a & 8;
    bool open_it = a & 16;
    if (f->nregions >= MAX_REGIONS)
        return;
    g_autofree char *name_copy = g_strdup(name); /* a mint buffer may be reused */
    bool existed = store_lookup(f->s, name_copy, NULL) != NULL;
    CapshmRegion *r = NULL;
    bool created = false;
    int rc = store_create(f->s, &c, name_copy, mode, excl, &r, &created);
    if (existed) {
        CHECK(excl ? rc == -EEXIST : (rc == 0 && !created && r), "create of existing: %d", rc);
    }
    if (rc == 0) {
        CHECK(r && region_is_alive(r), "create returned no live region");
        if (created) {
            CHECK(!existed && strcmp(r->name, name_copy) == 0 && r->uid == c.uid, "created region");
            CHECK(r->size == 0 && (r->mode & ~07777u) == 0, "fresh region attributes");
        }
        track_region(f, r);
        if (open_it)
            add_handle(f, r, c.pid, a & 32);
    } else {
        CHECK(rc == -EACCES || rc == -EEXIST || rc == -EDQUOT, "create gave %d", rc);
        CHECK(r == NULL && !created, "failed create returned a region");
    }
}

static void
op_write(Fuzz *f, CapshmRegion *r, uint64_t off, uint64_t len)
{
    uint64_t reserved;
    uint64_t before_total = quota_total_bytes(store_quota(f->s));
    int rc = store_write_begin(f->s, r, off, len, &reserved);
    if (rc < 0) {
        CHECK(rc == -EDQUOT || rc == -ENOSPC || rc == -EFBIG || rc == -EPERM || rc == -ENOENT,
              "write_begin gave %d", rc);
        CHECK(quota_total_bytes(store_quota(f->s)) == before_total, "failed write_begin charged");
        return;
    }
    /* Land a prefix of the write, as a short write would. */
    uint64_t upto = (uint64_t)next(f) * 64; /* not inside MIN(): it evaluates twice */
    uint64_t want = MIN(len, upto);
    ssize_t n = 0;
    if (want) {
        char *buf = g_malloc0(want);
        n = pwrite(store_data_fd(f->s, r), buf, want, (off_t)off);
        g_free(buf);
    }
    store_write_done(f->s, r, off, n > 0 ? (uint64_t)n : 0, reserved);
}

static void
run_op(Fuzz *f, uint8_t op)
{
    switch (op % 20) {
    case 0: {
        uid_t uid = next(f) % 3 == 0 ? 0 : 1001;
        char name[NAMES_BUF];
        int rc = store_mint(f->s, uid, name);
        CHECK(rc == 0 || rc == -EDQUOT, "mint gave %d", rc);
        if (rc == 0) {
            CHECK(names_is_capability(name), "minted \"%s\"", name);
            CHECK(store_lookup(f->s, name, NULL) == NULL, "minted name already names a region");
            memcpy(f->mints[f->nmints < MAX_MINTS ? f->nmints++ : next(f) % MAX_MINTS], name, NAMES_BUF);
        }
        break;
    }
    case 1:
    case 2:
        op_create(f);
        break;
    case 3: {
        CapshmRegion *r = pick_region(f);
        if (r)
            add_handle(f, r, next(f) % (2 * NPROC + 1), next(f) & 1);
        break;
    }
    case 4:
        if (f->nhandles)
            release_handle(f, next(f) % f->nhandles);
        break;
    case 5: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t size = how & 0x80 ? next64(f, 8) : next64(f, 3);
        if (!r)
            break;
        uint64_t before = r->size;
        int rc = store_resize(f->s, r, size);
        if (rc == 0)
            CHECK(r->size == size, "resize to %llu left %llu", (unsigned long long)size,
                  (unsigned long long)r->size);
        else
            CHECK(r->size == before && (rc == -EDQUOT || rc == -ENOSPC || rc == -EFBIG ||
                                        rc == -EPERM || rc == -ENOENT),
                  "resize gave %d", rc);
        break;
    }
    case 6: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t off = how & 0x80 ? next64(f, 8) : next64(f, 3);
        uint64_t len = how & 0x40 ? next64(f, 8) : next64(f, 2);
        if (r && region_is_alive(r))
            op_write(f, r, off, len);
        break;
    }
    case 7: {
        CapshmRegion *r = pick_region(f);
        uint8_t how = next(f);
        uint64_t off = how & 0x80 ? next64(f, 8) : next64(f, 3);
        uint64_t len = how & 0x40 ? next64(f, 8) : next64(f, 2);
        if (!r || off > INT64_MAX || len > INT64_MAX)
            break; /* the FUSE layer refuses negative off_t values */
        int rc = store_fallocate(f->s, r, off, len);
        CHECK(rc <= 0, "fallocate gave %d", rc);
        break;
    }
    case 8: {
        CapshmRegion *r = pick_region(f);
        if (r)
            store_set_pinned(f->s, r, next(f) & 1);
        break;
    }
    case 9: {
        CapshmRegion *r = pick_region(f);
        if (!r)
            break;
        bool was = region_is_alive(r) && !r->unlinked;
        int rc = store_unlink(f->s, r);
        CHECK(was ? rc == 0 : rc == -ENOENT, "unlink gave %d (was named: %d)", rc, was);
        CHECK(store_lookup(f->s, r->name, NULL) != r, "unlinked name still found");
        break;
    }
    case 10: {
        /* Advance the clock by up to ~65 s and run what is due. */
        f->now += (int64_t)next64(f, 2) * 1000;
        int64_t d = store_tick(f->s);
        CHECK(d >= -1, "store_tick gave %lld", (long long)d);
        break;
    }
    case 11: {
        CapshmRegion *r = pick_region(f);
        if (!r)
            break;
        int rc = store_seal(f->s, r);
        CHECK(rc == 0 || rc == -EBUSY || rc == -ENOENT, "seal gave %d", rc);
        if (rc == 0) {
            CHECK(r->sealed, "seal returned 0 but not sealed");
            CHECK(store_resize(f->s, r, r->size + 1) == -EPERM, "sealed region grew");
        }
        break;
    }
    case 12: {
        CapshmRegion *r = pick_region(f);
        uint8_t a = next(f);
        if (!r)
            break;
        int rc = store_chown(f->s, r, a % 3 == 0 ? 0 : 1000 + a % 3, a);
        CHECK(rc == 0 || rc == -EDQUOT || rc == -ENOSPC || rc == -ENOENT, "chown gave %d", rc);
        break;
    }
    case 13: {
        CapshmRegion *r = pick_region(f);
        if (r && region_is_alive(r)) {
            const char *ro = store_ro_name(f->s, r);
            CHECK(ro && names_is_capability(ro) && strcmp(ro, r->name) != 0, "ro name");
            CHECK(store_ro_name(f->s, r) == ro, "ro name changes");
        }
        break;
    }
    case 14: {
        char buf[NAMES_MAX + 1];
        const char *name = pick_name(f, buf);
        bool is_ro = false;
        CapshmRegion *r = store_lookup(f->s, name, &is_ro);
        if (r) {
            CHECK(region_is_alive(r) && !r->unlinked, "lookup found a dead or unlinked region");
            CHECK(strcmp(is_ro ? r->ro_name : r->name, name) == 0, "lookup found the wrong region");
        }
        break;
    }
    case 15: {
        /* Process maps (or unmaps) a region. */
        CapshmRegion *r = pick_region(f);
        uint8_t a = next(f);
        pid_t tgid = 1 + a % NPROC;
        if (!r)
            break;
        g_autofree char *k = map_key(tgid, (a & 0x80) && r->ro_ino ? r->ro_ino : r->ino);
        if (a & 0x40)
            g_hash_table_remove(f->maps, k);
        else
            g_hash_table_add(f->maps, g_steal_pointer(&k));
        break;
    }
    case 16:
        kill_process(f, 1 + next(f) % NPROC);
        break;
    case 17: {
        CapshmRegion *r = pick_region(f);
        if (!r)
            break;
        g_autoptr(GArray) pids = store_holder_pids(f->s, r);
        for (guint i = 0; i < pids->len; i++) {
            pid_t p = g_array_index(pids, pid_t, i);
            CHECK(p > 0, "holder pid %d", (int)p);
            for (guint j = 0; j < i; j++)
                CHECK(g_array_index(pids, pid_t, j) != p, "holder pid %d twice", (int)p);
        }
        break;
    }
    case 18: {
        uint8_t a = next(f);
        check_stats(f, a % 3 == 0 ? 0 : 1000 + a % 3, a & 4);
        break;
    }
    default: {
        GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
        uid_t uid = next(f) % 3 == 0 ? 0 : 1001;
        store_list(f->s, uid, uid == 0, list);
        for (guint i = 0; i < list->len; i++) {
            CapshmRegion *r = list->pdata[i];
            CHECK(region_is_alive(r) && !r->unlinked, "listed a dead or unlinked region");
            CHECK(uid == 0 || r->uid == uid, "listed another uid's region");
        }
        g_ptr_array_free(list, TRUE);
        break;
    }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* g_warn_if_fail / g_return_if_fail in the core are bugs here. */
    g_log_set_always_fatal(G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL | G_LOG_FATAL_MASK);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Fuzz f = { .p = data, .end = data + size, .now = 1000000 };
    uint8_t cfg = next(&f);
    CapshmOptions o;
    options_init(&o);
    o.names = cfg & 1 ? NAMES_MODE_ANY : NAMES_MODE_CAPABILITY;
    o.linger_s = (cfg >> 2) & 3;
    o.mint_ttl_s = 1 + ((cfg >> 4) & 3) * 20;
    o.size_bytes = (uint64_t)(1 + next(&f) % 16) << 18;   /* 256 KiB .. 4 MiB */
    o.quota_bytes = next(&f) & 1 ? o.size_bytes : o.size_bytes / 2;
    o.max_regions = 1 + next(&f) % 8;
    o.size_set = o.quota_set = true;
    /* memfd storage: a private tmpfs per input would cost a mount each. */
    f.s = store_new(&o, cfg & 2, storage_new(STORAGE_MEMFD, NULL, NULL));
    options_clear(&o);
    f.maps = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    f.watches = g_hash_table_new(g_direct_hash, g_direct_equal);
    store_set_clock(f.s, fake_now, &f);
    StoreProcOps ops = {
        .tgid_of = fake_tgid_of, .maps_node = fake_maps_node, .watch = fake_watch,
        .unwatch = fake_unwatch, .scan_all = cfg & 0x40 ? NULL : fake_scan_all, .data = &f,
    };
    store_set_proc_ops(f.s, &ops);

    unsigned nops = 0;
    static int trace = -1;
    if (trace < 0)
        trace = getenv("FUZZ_TRACE") != NULL;
    while (f.p < f.end && nops++ < 400) {
        uint8_t op = next(&f);
        const uint8_t *args = f.p;
        run_op(&f, op);
        if (trace) {
            fprintf(stderr, "op %2u args", op % 20);
            for (const uint8_t *a = args; a < f.p; a++)
                fprintf(stderr, " %02x", *a);
            fprintf(stderr, "\n");
            for (unsigned i = 0; i < f.nregions; i++) {
                CapshmRegion *r = f.regions[i];
                fprintf(stderr, "  region %u: ino %llu uid %u size %llu state %d open %u unlinked %d pinned %d sealed %d\n",
                        i, (unsigned long long)r->ino, (unsigned)r->uid, (unsigned long long)r->size,
                        r->state, r->open_count, r->unlinked, r->pinned, r->sealed);
            }
            fprintf(stderr, "  quota total %llu\n", (unsigned long long)quota_total_bytes(store_quota(f.s)));
        }
        check_model(&f);
    }
    check_stats(&f, 0, true);

    /* Everyone goes away: every unpinned region must then expire. */
    while (f.nhandles)
        release_handle(&f, f.nhandles - 1);
    for (pid_t p = 1; p <= NPROC; p++)
        kill_process(&f, p);
    for (int i = 0; i < 4; i++) {
        f.now += 200 * G_USEC_PER_SEC;
        store_tick(f.s);
    }
    check_model(&f);
    for (unsigned i = 0; i < f.nregions; i++) {
        CapshmRegion *r = f.regions[i];
        CHECK(!region_is_alive(r) || (r->pinned && !r->unlinked),
              "region %u (state %d, pinned %d) outlived every holder", i, r->state, r->pinned);
    }
    store_free(f.s);
    CHECK(g_hash_table_size(f.watches) == 0, "%u watches left after store_free",
          g_hash_table_size(f.watches));
    for (unsigned i = 0; i < f.nregions; i++) {
        CHECK(!region_is_alive(f.regions[i]), "store_free left a live region");
        region_unref(f.regions[i]);
    }
    g_hash_table_destroy(f.maps);
    g_hash_table_destroy(f.watches);
    return 0;
}
