/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/store.c: names, data accounting and the lifetime
 * state machine.
 *
 * Time comes from a fake clock the tests advance by hand; processes come
 * from fake StoreProcOps: a table of which tgid maps which node id, a
 * thread -> process table, and counters that prove watch/unwatch balance.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <dirent.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/names.h"
#include "core/options.h"
#include "core/quota.h"
#include "core/region.h"
#include "core/store.h"
#include "suites.h"

#define KiB ((uint64_t)1 << 10)
#define SEC ((int64_t)G_USEC_PER_SEC)

/* --- the fakes --------------------------------------------------------------- */

typedef struct {
    pid_t tgid;
    uint64_t ino;
} FakeMap;

typedef struct {
    GArray *maps;            /* FakeMap: tgid maps node ino */
    GHashTable *threads;     /* tid -> tgid; tids not listed are their own tgid */
    GHashTable *watched;     /* tgid -> number of outstanding watches */
    unsigned watches, unwatches, bad_unwatches;
    unsigned scans, maps_calls;
} FakeProc;

typedef struct {
    CapshmStore *s;
    int64_t now;
    FakeProc fp;
    GPtrArray *destroyed;    /* regions seen by the destroy hook (borrowed) */
    bool hook_saw_bytes;
} Env;

static Env env;

static int64_t
fake_now(void *data)
{
    return *(int64_t *)data;
}

static pid_t
fake_tgid_of(void *data, pid_t tid)
{
    FakeProc *fp = data;
    gpointer v;
    if (g_hash_table_lookup_extended(fp->threads, GINT_TO_POINTER(tid), NULL, &v))
        return GPOINTER_TO_INT(v);
    return tid;
}

static bool
fake_maps_node(void *data, pid_t tgid, uint64_t ino, uint64_t ro_ino)
{
    FakeProc *fp = data;
    fp->maps_calls++;
    /* Like /proc/TID/maps: a thread id shows its process's mappings. */
    tgid = fake_tgid_of(data, tgid);
    for (guint i = 0; i < fp->maps->len; i++) {
        FakeMap *m = &g_array_index(fp->maps, FakeMap, i);
        if (m->tgid == tgid && (m->ino == ino || (ro_ino && m->ino == ro_ino)))
            return true;
    }
    return false;
}

static void
fake_watch(void *data, pid_t tgid)
{
    FakeProc *fp = data;
    fp->watches++;
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(fp->watched, GINT_TO_POINTER(tgid)));
    g_hash_table_insert(fp->watched, GINT_TO_POINTER(tgid), GUINT_TO_POINTER(n + 1));
}

static void
fake_unwatch(void *data, pid_t tgid)
{
    FakeProc *fp = data;
    fp->unwatches++;
    unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(fp->watched, GINT_TO_POINTER(tgid)));
    if (n == 0) {
        fp->bad_unwatches++;
        return;
    }
    if (n == 1)
        g_hash_table_remove(fp->watched, GINT_TO_POINTER(tgid));
    else
        g_hash_table_insert(fp->watched, GINT_TO_POINTER(tgid), GUINT_TO_POINTER(n - 1));
}

static void
fake_scan_all(void *data, GHashTable *wanted, GHashTable *owners)
{
    FakeProc *fp = data;
    fp->scans++;
    for (guint i = 0; i < fp->maps->len; i++) {
        FakeMap *m = &g_array_index(fp->maps, FakeMap, i);
        if (g_hash_table_contains(wanted, &m->ino) && !g_hash_table_contains(owners, &m->ino)) {
            uint64_t *key = g_new(uint64_t, 1);
            *key = m->ino;
            g_hash_table_insert(owners, key, GINT_TO_POINTER(m->tgid));
        }
    }
}

static void
fake_map(pid_t tgid, uint64_t ino)
{
    FakeMap m = { tgid, ino };
    g_array_append_val(env.fp.maps, m);
}

static void
fake_unmap(pid_t tgid, uint64_t ino)
{
    for (guint i = env.fp.maps->len; i-- > 0;) {
        FakeMap *m = &g_array_index(env.fp.maps, FakeMap, i);
        if (m->tgid == tgid && m->ino == ino)
            g_array_remove_index(env.fp.maps, i);
    }
}

static void
fake_thread(pid_t tid, pid_t tgid)
{
    g_hash_table_insert(env.fp.threads, GINT_TO_POINTER(tid), GINT_TO_POINTER(tgid));
}

static unsigned
watched_count(pid_t tgid)
{
    return GPOINTER_TO_UINT(g_hash_table_lookup(env.fp.watched, GINT_TO_POINTER(tgid)));
}

static void
assert_watches_balanced(void)
{
    ck_assert_uint_eq(env.fp.bad_unwatches, 0);
    ck_assert_uint_eq(env.fp.watches, env.fp.unwatches);
    ck_assert_uint_eq(g_hash_table_size(env.fp.watched), 0);
}

/* Whether @r's bytes still exist in the storage (an open memfd, or the
 * region's file in the private tmpfs). */
static bool
bytes_exist(const CapshmRegion *r)
{
    struct stat st;
    if (storage_needs_open_fd(store_storage(env.s)))
        return r->fd >= 0;
    return storage_stat(store_storage(env.s), r->ino, &st) == 0;
}

static void
destroy_hook(CapshmRegion *r, void *data)
{
    Env *e = data;
    ck_assert(region_is_alive(r));
    if (bytes_exist(r))
        e->hook_saw_bytes = true;
    g_ptr_array_add(e->destroyed, r);
}

/* --- fixture ------------------------------------------------------------------ */

/* size 1 MiB, quota 512 KiB, 4 regions per uid, linger 5 s, mint_ttl 60 s. */
/* The storage the fixture gives the store: memfd by default; the "tmpfs"
 * test cases switch it (they only run with CAP_SYS_ADMIN, see store_suite). */
static StorageKind env_storage = STORAGE_MEMFD;

static void
env_start(bool outlive, const char *extra_opts)
{
    memset(&env, 0, sizeof env);
    env.now = 1000 * SEC;
    env.fp.maps = g_array_new(FALSE, FALSE, sizeof(FakeMap));
    env.fp.threads = g_hash_table_new(g_direct_hash, g_direct_equal);
    env.fp.watched = g_hash_table_new(g_direct_hash, g_direct_equal);
    env.destroyed = g_ptr_array_new();

    CapshmOptions o;
    options_init(&o);
    GError *err = NULL;
    ck_assert_int_eq(options_parse(&o, "size=1M,quota=512k,max_regions=4,linger=5,mint_ttl=60", &err), 0);
    if (extra_opts)
        ck_assert_int_eq(options_parse(&o, extra_opts, &err), 0);
    ck_assert_int_eq(options_finish(&o, (uint64_t)64 << 30, false, &err), 0);
    GError *serr = NULL;
    CapshmStorage *storage = storage_new(env_storage, NULL, &serr);
    if (!storage)
        ck_abort_msg("storage: %s", serr->message);
    ck_assert_int_eq(storage_kind(storage), env_storage);
    env.s = store_new(&o, outlive, storage);
    options_clear(&o); /* the store copied what it needs */

    store_set_clock(env.s, fake_now, &env.now);
    StoreProcOps ops = {
        .tgid_of = fake_tgid_of,
        .maps_node = fake_maps_node,
        .watch = fake_watch,
        .unwatch = fake_unwatch,
        .scan_all = fake_scan_all,
        .data = &env.fp,
    };
    store_set_proc_ops(env.s, &ops);
    store_set_destroy_hook(env.s, destroy_hook, &env);
}

static void
setup_cache(void)
{
    env_storage = STORAGE_MEMFD;
    env_start(false, NULL);
}

static void
setup_passthrough(void)
{
    env_storage = STORAGE_MEMFD;
    env_start(true, NULL);
}

static void
setup_cache_tmpfs(void)
{
    env_storage = STORAGE_TMPFS;
    env_start(false, NULL);
}

static void
setup_passthrough_tmpfs(void)
{
    env_storage = STORAGE_TMPFS;
    env_start(true, NULL);
}

static void
teardown(void)
{
    store_free(env.s);
    env.s = NULL;
    g_array_free(env.fp.maps, TRUE);
    g_hash_table_destroy(env.fp.threads);
    g_hash_table_destroy(env.fp.watched);
    g_ptr_array_free(env.destroyed, TRUE);
    env_storage = STORAGE_MEMFD;
}

static void
advance(int64_t us)
{
    env.now += us;
}

static CapshmCaller
caller(uid_t uid)
{
    return (CapshmCaller){ .uid = uid, .gid = uid + 1, .pid = 0 };
}

/* Mint and create a region for @uid; returns it (borrowed). */
static CapshmRegion *
make_region(uid_t uid)
{
    char name[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, uid, name), 0);
    CapshmCaller c = caller(uid);
    CapshmRegion *r = NULL;
    bool created = false;
    ck_assert_int_eq(store_create(env.s, &c, name, 0600, true, &r, &created), 0);
    ck_assert(created);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A region created and opened once by @tid (so it is held). */
static CapshmRegion *
make_held_region(uid_t uid, pid_t tid)
{
    CapshmRegion *r = make_region(uid);
    store_opened(env.s, r, tid, true);
    ck_assert_int_eq(r->state, REGION_LIVE);
    return r;
}

/* Size of @r's bytes as the storage sees it. */
static uint64_t
bytes_size(const CapshmRegion *r)
{
    struct stat st;
    if (r->fd >= 0)
        ck_assert_int_eq(fstat(r->fd, &st), 0);
    else
        ck_assert_int_eq(storage_stat(store_storage(env.s), r->ino, &st), 0);
    return (uint64_t)st.st_size;
}

/* --- names ---------------------------------------------------------------------- */

START_TEST(test_mint_then_create_same_uid)
{
    char name[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1000, name), 0);
    ck_assert(names_is_capability(name));
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).mints, 1);
    /* Minted but not created: ENOENT, like any unknown name. */
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));

    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created = false;
    ck_assert_int_eq(store_create(env.s, &c, name, 0100640, false, &r, &created), 0);
    ck_assert(created);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, name);
    ck_assert_uint_eq(r->uid, 1000);
    ck_assert_uint_eq(r->gid, 1001);
    ck_assert_uint_eq(r->mode, 0640);
    ck_assert_uint_eq(r->size, 0);
    ck_assert(bytes_exist(r));
    ck_assert_uint_eq(bytes_size(r), 0);
    ck_assert_uint_ne(r->ino, 0);
    ck_assert_int_gt(r->created, 0);

    bool is_ro = true;
    ck_assert_ptr_eq(store_lookup(env.s, name, &is_ro), r);
    ck_assert(!is_ro);
    ck_assert_uint_eq(store_region_count(env.s), 1);
    ck_assert_uint_eq(store_counters(env.s).created, 1);
    QuotaUsage u = quota_usage(store_quota(env.s), 1000);
    ck_assert_uint_eq(u.regions, 1);
    ck_assert_uint_eq(u.mints, 0); /* the mint was used up */

    /* The name exists now: plain O_CREAT opens it, O_EXCL is EEXIST. */
    CapshmRegion *r2 = NULL;
    ck_assert_int_eq(store_create(env.s, &c, name, 0600, false, &r2, &created), 0);
    ck_assert(!created);
    ck_assert_ptr_eq(r2, r);
    ck_assert_int_eq(store_create(env.s, &c, name, 0600, true, &r2, &created), -EEXIST);
    ck_assert(!created);
    ck_assert_uint_eq(store_region_count(env.s), 1);
    ck_assert_uint_eq(store_counters(env.s).created, 1);

    /* A second region gets a different node id. */
    CapshmRegion *r3 = make_region(1000);
    ck_assert_uint_ne(r3->ino, r->ino);
    ck_assert_str_ne(r3->name, r->name);
}
END_TEST

START_TEST(test_create_other_uid_eacces)
{
    char name[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1000, name), 0);
    CapshmCaller other = caller(1001);
    CapshmRegion *r = NULL;
    bool created = true;
    ck_assert_int_eq(store_create(env.s, &other, name, 0600, false, &r, &created), -EACCES);
    ck_assert(!created);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1001).regions, 0);
    /* The attempt did not burn the minter's name. */
    CapshmCaller owner = caller(1000);
    ck_assert_int_eq(store_create(env.s, &owner, name, 0600, true, &r, &created), 0);
    ck_assert(created);
    ck_assert_uint_eq(r->uid, 1000);
}
END_TEST

START_TEST(test_create_unminted_eacces)
{
    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created;
    char fresh[NAMES_BUF];
    ck_assert_int_eq(names_mint(fresh), 0); /* right form, never minted by the store */
    const char *names[] = { fresh, "hello", ".new", ".stats", "", "AAAAAAAAAAAAAAAAAAAAAAAAAA" };
    for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
        ck_assert_msg(store_create(env.s, &c, names[i], 0600, false, &r, &created) == -EACCES,
                      "create '%s' was not EACCES", names[i]);
        ck_assert_msg(store_create(env.s, &c, names[i], 0600, true, &r, &created) == -EACCES,
                      "create excl '%s' was not EACCES", names[i]);
    }
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_counters(env.s).created, 0);
    QuotaUsage u = quota_usage(store_quota(env.s), 1000);
    ck_assert_uint_eq(u.regions, 0);
    ck_assert_uint_eq(u.mints, 0);
}
END_TEST

START_TEST(test_mint_expiry)
{
    ck_assert_int_eq(store_tick(env.s), -1); /* nothing pending */
    char a[NAMES_BUF], b[NAMES_BUF], c_[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1000, a), 0);
    ck_assert_int_eq(store_tick(env.s), 60 * SEC);
    advance(10 * SEC);
    ck_assert_int_eq(store_mint(env.s, 1000, b), 0);
    ck_assert_int_eq(store_mint(env.s, 1000, c_), 0);
    ck_assert_int_eq(store_tick(env.s), 50 * SEC);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).mints, 3);

    /* One microsecond before its deadline, a is still good. */
    advance(50 * SEC - 1);
    ck_assert_int_eq(store_tick(env.s), 1);
    ck_assert_uint_eq(store_counters(env.s).expired_mints, 0);
    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created;
    ck_assert_int_eq(store_create(env.s, &c, a, 0600, true, &r, &created), 0);
    ck_assert(created);
    store_opened(env.s, r, 100, true);

    /* At b's deadline it is refused even before the tick runs... */
    advance(10 * SEC + 1);
    ck_assert_int_eq(store_create(env.s, &c, b, 0600, true, &r, &created), -EACCES);
    /* ...and the tick retires both b and c. */
    store_tick(env.s);
    ck_assert_uint_eq(store_counters(env.s).expired_mints, 2);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).mints, 0);
    ck_assert_int_eq(store_create(env.s, &c, c_, 0600, true, &r, &created), -EACCES);
    ck_assert_ptr_null(store_lookup(env.s, b, NULL));
    /* The region made from a is untouched by mint expiry. */
    ck_assert_uint_eq(store_region_count(env.s), 1);
    ck_assert_int_eq(store_tick(env.s), -1);
}
END_TEST

START_TEST(test_mint_cap)
{
    char name[NAMES_BUF];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(store_mint(env.s, 1000, name), 0);
    ck_assert_int_eq(store_mint(env.s, 1000, name), -EDQUOT);
    ck_assert_int_eq(store_mint(env.s, 1001, name), 0); /* per uid */
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).mints, 4);
    advance(60 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_counters(env.s).expired_mints, 5);
    ck_assert_int_eq(store_mint(env.s, 1000, name), 0);
}
END_TEST

START_TEST(test_create_max_regions)
{
    for (int i = 0; i < 4; i++)
        make_held_region(1000, 100);
    char name[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1000, name), 0);
    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created;
    ck_assert_int_eq(store_create(env.s, &c, name, 0600, true, &r, &created), -EDQUOT);
    ck_assert_uint_eq(store_region_count(env.s), 4);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 4);
    /* The mint survives the refusal. */
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).mints, 1);
    /* Another uid is not limited by uid 1000's regions. */
    make_region(1001);
}
END_TEST

START_TEST(test_ro_name)
{
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_ptr_null(r->ro_name);
    const char *ro = store_ro_name(env.s, r);
    ck_assert_ptr_nonnull(ro);
    ck_assert(names_is_capability(ro));
    ck_assert_str_ne(ro, r->name);
    ck_assert_ptr_eq(store_ro_name(env.s, r), ro); /* minted once */
    ck_assert_uint_ne(r->ro_ino, 0);
    ck_assert_uint_ne(r->ro_ino, r->ino);
    bool is_ro = false;
    ck_assert_ptr_eq(store_lookup(env.s, ro, &is_ro), r);
    ck_assert(is_ro);
    /* O_CREAT|O_EXCL on the read-only name is EEXIST too. */
    CapshmCaller c = caller(1000);
    CapshmRegion *out = NULL;
    bool created;
    ck_assert_int_eq(store_create(env.s, &c, ro, 0600, true, &out, &created), -EEXIST);
    /* Unlink removes both names. */
    g_autofree char *ro_copy = g_strdup(ro);
    g_autofree char *rw_copy = g_strdup(r->name);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_ptr_null(store_lookup(env.s, ro_copy, NULL));
    ck_assert_ptr_null(store_lookup(env.s, rw_copy, NULL));
}
END_TEST

START_TEST(test_names_any)
{
    teardown();
    env_start(false, "names=any");
    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created;
    ck_assert_int_eq(store_create(env.s, &c, "my-region", 0600, true, &r, &created), 0);
    ck_assert(created);
    ck_assert_ptr_eq(store_lookup(env.s, "my-region", NULL), r);
    /* Any uid may open an existing name in this mode (mode bits decide). */
    CapshmCaller other = caller(1001);
    CapshmRegion *r2 = NULL;
    ck_assert_int_eq(store_create(env.s, &other, "my-region", 0600, false, &r2, &created), 0);
    ck_assert(!created);
    ck_assert_ptr_eq(r2, r);

    char long_name[NAMES_MAX + 2];
    memset(long_name, 'x', NAMES_MAX + 1);
    long_name[NAMES_MAX + 1] = '\0';
    ck_assert_int_eq(store_create(env.s, &c, long_name, 0600, true, &r2, &created), -EACCES);
    long_name[NAMES_MAX] = '\0';
    ck_assert_int_eq(store_create(env.s, &c, long_name, 0600, true, &r2, &created), 0);
    ck_assert_int_eq(store_create(env.s, &c, "a/b", 0600, true, &r2, &created), -EACCES);
    ck_assert_int_eq(store_create(env.s, &c, ".hidden", 0600, true, &r2, &created), -EACCES);
    ck_assert_int_eq(store_create(env.s, &c, "", 0600, true, &r2, &created), -EACCES);
    ck_assert_uint_eq(store_region_count(env.s), 2);
}
END_TEST

START_TEST(test_list)
{
    CapshmRegion *a = make_held_region(1000, 100);
    CapshmRegion *b = make_held_region(1001, 101);
    CapshmRegion *c = make_held_region(1000, 100);
    CapshmRegion *d = make_held_region(1000, 100);
    ck_assert_int_eq(store_unlink(env.s, d), 0); /* unlinked: not listed */

    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    store_list(env.s, 1000, false, out);
    ck_assert_uint_eq(out->len, 2);
    ck_assert_ptr_eq(out->pdata[0], a); /* creation order */
    ck_assert_ptr_eq(out->pdata[1], c);
    ck_assert_int_eq(a->refcount, 2); /* the list holds references */
    g_ptr_array_set_size(out, 0);
    ck_assert_int_eq(a->refcount, 1);

    store_list(env.s, 4242, false, out);
    ck_assert_uint_eq(out->len, 0);
    store_list(env.s, 4242, true, out);
    ck_assert_uint_eq(out->len, 3);
    ck_assert_ptr_eq(out->pdata[0], a);
    ck_assert_ptr_eq(out->pdata[1], b);
    ck_assert_ptr_eq(out->pdata[2], c);
    g_ptr_array_free(out, TRUE);
}
END_TEST

/* --- lifetime ---------------------------------------------------------------------- */

START_TEST(test_linger_exact_then_destroyed)
{
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    g_autofree char *name = g_strdup(r->name);
    region_ref(r); /* keep the struct to look at it after destruction */

    ck_assert_int_eq(store_tick(env.s), -1); /* held: nothing pending */
    store_released(env.s, r, 100, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_str_eq(region_state_name(r), "lingering");
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 1);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);

    advance(5 * SEC - 1);
    ck_assert_int_eq(store_tick(env.s), 1);
    ck_assert_ptr_eq(store_lookup(env.s, name, NULL), r);
    ck_assert_uint_eq(env.destroyed->len, 0);

    advance(1);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_int_eq(r->state, REGION_DESTROYED);
    ck_assert_int_eq(r->fd, -1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(quota_total_bytes(store_quota(env.s)), 0);
    QuotaUsage u = quota_usage(store_quota(env.s), 1000);
    ck_assert_uint_eq(u.regions, 0);
    ck_assert_uint_eq(u.bytes, 0);
    ck_assert_uint_eq(env.destroyed->len, 1);
    ck_assert_ptr_eq(env.destroyed->pdata[0], r);
    ck_assert(env.hook_saw_bytes); /* hook runs before the bytes go */
    /* Destroyed regions refuse data operations. */
    ck_assert_int_eq(store_resize(env.s, r, 10), -ENOENT);
    ck_assert_int_eq(store_unlink(env.s, r), -ENOENT);
    ck_assert_int_eq(r->refcount, 1);
    region_unref(r);
}
END_TEST

START_TEST(test_linger_zero)
{
    teardown();
    env_start(false, "linger=0");
    CapshmRegion *r = make_held_region(1000, 100);
    g_autofree char *name = g_strdup(r->name);
    store_released(env.s, r, 100, true);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
}
END_TEST

START_TEST(test_created_but_never_opened_lingers)
{
    /* A create whose open then fails must not leak the region forever. */
    CapshmRegion *r = make_region(1000);
    g_autofree char *name = g_strdup(r->name);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 0);
}
END_TEST

START_TEST(test_reopen_cancels_linger)
{
    CapshmRegion *r = make_held_region(1000, 100);
    store_released(env.s, r, 100, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    advance(3 * SEC);
    store_tick(env.s);
    store_opened(env.s, r, 200, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), -1);
    advance(60 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(store_counters(env.s).destroyed, 0);
    /* The next linger starts afresh, the full 5 s. */
    store_released(env.s, r, 200, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
}
END_TEST

START_TEST(test_holders_counted)
{
    CapshmRegion *r = make_held_region(1000, 100);
    store_opened(env.s, r, 200, false);
    store_opened(env.s, r, 200, false);
    ck_assert_uint_eq(r->open_count, 3);
    ck_assert_uint_eq(r->writable_opens, 1);
    ck_assert_uint_eq(region_holder_count(r), 2);
    GArray *pids = store_holder_pids(env.s, r);
    ck_assert_uint_eq(pids->len, 2);
    g_array_free(pids, TRUE);

    store_released(env.s, r, 100, true);
    ck_assert_uint_eq(region_holder_count(r), 1);
    pids = store_holder_pids(env.s, r);
    ck_assert_uint_eq(pids->len, 1);
    ck_assert_int_eq(g_array_index(pids, pid_t, 0), 200);
    g_array_free(pids, TRUE);
    ck_assert_int_eq(r->state, REGION_LIVE);
    store_released(env.s, r, 200, false);
    ck_assert_int_eq(r->state, REGION_LIVE); /* one handle left */
    store_released(env.s, r, 200, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(region_holder_count(r), 0);
    ck_assert_uint_eq(r->writable_opens, 0);
}
END_TEST

START_TEST(test_pinned_never_expires)
{
    CapshmRegion *r = make_held_region(1000, 100);
    store_set_pinned(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LIVE); /* held and pinned: live */
    store_released(env.s, r, 100, true);
    ck_assert_int_eq(r->state, REGION_PINNED);
    ck_assert_str_eq(region_state_name(r), "pinned");
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 1);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), -1);
    advance(24 * 3600 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));

    store_set_pinned(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 0);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
}
END_TEST

START_TEST(test_pin_during_linger)
{
    CapshmRegion *r = make_held_region(1000, 100);
    store_released(env.s, r, 100, true);
    advance(3 * SEC);
    store_set_pinned(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_PINNED);
    ck_assert_int_eq(store_tick(env.s), -1);
    advance(10 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    /* Unpinning starts a full linger, not the 2 s that were left. */
    store_set_pinned(env.s, r, false);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    advance(5 * SEC - 1);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    advance(1);
    store_tick(env.s);
    ck_assert_uint_eq(store_region_count(env.s), 0);
}
END_TEST

START_TEST(test_unlink_held)
{
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, r, 8192), 0);
    g_autofree char *name = g_strdup(r->name);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_int_eq(store_unlink(env.s, r), -ENOENT);
    /* The memory stays for the holder, and stays counted. */
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(store_region_count(env.s), 1);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 8192);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 1);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0); /* still usable */
    /* The name cannot be re-created (the mint was used). */
    CapshmCaller c = caller(1000);
    CapshmRegion *r2 = NULL;
    bool created;
    ck_assert_int_eq(store_create(env.s, &c, name, 0600, true, &r2, &created), -EACCES);
    /* It is not listed. */
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    store_list(env.s, 1000, true, out);
    ck_assert_uint_eq(out->len, 0);
    g_ptr_array_free(out, TRUE);

    /* The last release destroys at once: no linger for a nameless region. */
    store_released(env.s, r, 100, true);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(quota_total_bytes(store_quota(env.s)), 0);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 0);
    ck_assert_uint_eq(env.destroyed->len, 1);
    ck_assert_int_eq(store_tick(env.s), -1);
}
END_TEST

START_TEST(test_unlink_unheld)
{
    CapshmRegion *r = make_held_region(1000, 100);
    store_released(env.s, r, 100, true);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 1);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), -1);

    /* A pinned region goes too when unlinked. */
    CapshmRegion *p = make_held_region(1000, 100);
    store_set_pinned(env.s, p, true);
    store_released(env.s, p, 100, true);
    ck_assert_int_eq(p->state, REGION_PINNED);
    ck_assert_int_eq(store_unlink(env.s, p), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 2);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 0);
    ck_assert_uint_eq(env.destroyed->len, 2);
}
END_TEST

START_TEST(test_cache_mode_ignores_mappings)
{
    /* In cache mode RELEASE only arrives after munmap: the store does not
     * ask about mappings, and lingers at once. */
    CapshmRegion *r = make_held_region(1000, 100);
    fake_map(100, r->ino);
    store_released(env.s, r, 100, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(env.fp.watches, 0);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(env.fp.scans, 0);
}
END_TEST

/* --- lifetime with mappings that outlive handles (passthrough) ---------------- */

START_TEST(test_mapper_keeps_live_until_poll)
{
    CapshmRegion *r = make_held_region(1000, 4242);
    fake_thread(4242, 4200);
    fake_map(4200, r->ino);
    g_autofree char *name = g_strdup(r->name);

    store_released(env.s, r, 4242, true);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(r->open_count, 0);
    ck_assert_uint_eq(env.fp.watches, 1);
    ck_assert_uint_eq(watched_count(4200), 1);
    ck_assert_uint_eq(region_holder_count(r), 1);
    GArray *pids = store_holder_pids(env.s, r);
    ck_assert_uint_eq(pids->len, 1);
    ck_assert_int_eq(g_array_index(pids, pid_t, 0), 4200); /* the process, not the thread */
    g_array_free(pids, TRUE);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), 1 * SEC); /* next poll */

    /* Still mapped at the poll: still live. */
    advance(1 * SEC);
    store_tick(env.s);
    ck_assert_int_eq(r->state, REGION_LIVE);
    advance(30 * SEC);
    store_tick(env.s);
    ck_assert_int_eq(r->state, REGION_LIVE);

    /* Unmapped: the next poll starts linger. */
    fake_unmap(4200, r->ino);
    advance(1 * SEC);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    assert_watches_balanced();
    ck_assert_uint_eq(region_holder_count(r), 0);

    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    assert_watches_balanced();
}
END_TEST

START_TEST(test_mapper_exit_starts_linger)
{
    CapshmRegion *r = make_held_region(1000, 4200);
    fake_map(4200, r->ino);
    store_released(env.s, r, 4200, true);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(watched_count(4200), 1);

    /* Another process's exit changes nothing. */
    store_process_exited(env.s, 9999);
    ck_assert_int_eq(r->state, REGION_LIVE);

    /* The mapper dies (and with it its mapping): linger starts now, with
     * no poll needed. */
    fake_unmap(4200, r->ino);
    store_process_exited(env.s, 4200);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    assert_watches_balanced();
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
}
END_TEST

START_TEST(test_opener_not_mapping_lingers)
{
    CapshmRegion *r = make_held_region(1000, 4200);
    store_released(env.s, r, 4200, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(env.fp.watches, 0);
    ck_assert_uint_ge(env.fp.maps_calls, 1); /* it did ask */
}
END_TEST

START_TEST(test_mapper_via_ro_name)
{
    CapshmRegion *r = make_held_region(1000, 4200);
    ck_assert_ptr_nonnull(store_ro_name(env.s, r));
    fake_map(4200, r->ro_ino);
    store_released(env.s, r, 4200, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    fake_unmap(4200, r->ro_ino);
    advance(1 * SEC);
    store_tick(env.s);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    assert_watches_balanced();
}
END_TEST

START_TEST(test_threads_of_one_mapper_watched_once)
{
    CapshmRegion *r = make_held_region(1000, 4201);
    store_opened(env.s, r, 4202, false);
    fake_thread(4201, 4200);
    fake_thread(4202, 4200);
    fake_map(4200, r->ino);
    store_released(env.s, r, 4201, true);
    /* Its handle closed but the process maps it: a holder, watched, even
     * though another handle is still open. */
    ck_assert_uint_eq(watched_count(4200), 1);
    store_released(env.s, r, 4202, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(watched_count(4200), 1);
    ck_assert_uint_eq(region_holder_count(r), 1);
    GArray *pids = store_holder_pids(env.s, r);
    ck_assert_uint_eq(pids->len, 1);
    ck_assert_int_eq(g_array_index(pids, pid_t, 0), 4200);
    g_array_free(pids, TRUE);
    store_process_exited(env.s, 4200);
    fake_unmap(4200, r->ino);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    assert_watches_balanced();
}
END_TEST

START_TEST(test_mapper_then_reopen_then_exit)
{
    /* A maps and closes; B opens; A exits; B closes without mapping. */
    CapshmRegion *r = make_held_region(1000, 4200);
    fake_map(4200, r->ino);
    store_released(env.s, r, 4200, true);
    ck_assert_uint_eq(watched_count(4200), 1);
    store_opened(env.s, r, 5200, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_int_eq(store_tick(env.s), -1); /* open: no poll needed */
    fake_unmap(4200, r->ino);
    store_process_exited(env.s, 4200);
    ck_assert_uint_eq(watched_count(4200), 0);
    ck_assert_int_eq(r->state, REGION_LIVE);
    store_released(env.s, r, 5200, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    assert_watches_balanced();
}
END_TEST

START_TEST(test_scan_all_rescues_unknown_mapper)
{
    /* The opener closed without mapping (so the store knows no mapper), but
     * a process it never saw (a forked child) maps the region. */
    CapshmRegion *r = make_held_region(1000, 4200);
    store_released(env.s, r, 4200, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    fake_map(5555, r->ino);

    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(env.fp.scans, 1);
    ck_assert(region_is_alive(r));
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 0);
    ck_assert_uint_eq(watched_count(5555), 1);
    GArray *pids = store_holder_pids(env.s, r);
    ck_assert_uint_eq(pids->len, 1);
    ck_assert_int_eq(g_array_index(pids, pid_t, 0), 5555);
    g_array_free(pids, TRUE);

    /* The child unmaps: the poll starts a fresh linger, and at its end the
     * scan finds nobody. */
    fake_unmap(5555, r->ino);
    advance(1 * SEC);
    store_tick(env.s);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(env.fp.scans, 2);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    assert_watches_balanced();
}
END_TEST

START_TEST(test_store_free_destroys_all)
{
    CapshmRegion *a = make_held_region(1000, 100);         /* held */
    CapshmRegion *b = make_held_region(1000, 101);
    store_released(env.s, b, 101, true);                  /* lingering */
    CapshmRegion *c = make_held_region(1001, 102);
    store_set_pinned(env.s, c, true);
    store_released(env.s, c, 102, true);                  /* pinned */
    CapshmRegion *d = make_held_region(1001, 4200);
    fake_map(4200, d->ino);
    store_released(env.s, d, 4200, true);                 /* mapped only */
    ck_assert_uint_eq(watched_count(4200), 1);
    char spare[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1002, spare), 0);  /* a pending mint */

    region_ref(a); /* as the FUSE layer would, for an open file */
    store_free(env.s);
    env.s = NULL;
    ck_assert_uint_eq(env.destroyed->len, 4);
    CapshmRegion *want[] = { a, b, c, d };
    for (guint i = 0; i < 4; i++) {
        guint hits = 0;
        for (guint j = 0; j < env.destroyed->len; j++)
            hits += env.destroyed->pdata[j] == want[i];
        ck_assert_uint_eq(hits, 1);
    }
    assert_watches_balanced();
    ck_assert_int_eq(a->state, REGION_DESTROYED);
    ck_assert_int_eq(a->fd, -1);
    region_unref(a);
}
END_TEST

/* --- data ------------------------------------------------------------------------- */

START_TEST(test_resize_quota)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    ck_assert_uint_eq(r->size, 4096);
    ck_assert_uint_eq(bytes_size(r), 4096);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 4096);
    ck_assert_int_eq(store_resize(env.s, r, 1024), 0);
    ck_assert_uint_eq(bytes_size(r), 1024);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1024);
    ck_assert_uint_eq(quota_total_bytes(q), 1024);

    /* Past the uid's quota. */
    ck_assert_int_eq(store_resize(env.s, r, 512 * KiB + 1), -EDQUOT);
    ck_assert_uint_eq(r->size, 1024);
    ck_assert_uint_eq(bytes_size(r), 1024);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1024);
    ck_assert_int_eq(store_resize(env.s, r, 512 * KiB), 0); /* exactly the quota */

    /* Past the mount's size while within the uid's quota. */
    CapshmRegion *b = make_held_region(1001, 101);
    ck_assert_int_eq(store_resize(env.s, b, 400 * KiB), 0);
    CapshmRegion *c = make_held_region(1002, 102);
    ck_assert_int_eq(store_resize(env.s, c, 113 * KiB), -ENOSPC);
    ck_assert_uint_eq(c->size, 0);
    ck_assert_int_eq(store_resize(env.s, c, 112 * KiB), 0);
    ck_assert_uint_eq(quota_total_bytes(q), 1024 * KiB);

    /* Beyond 2^62: EFBIG before any quota question. */
    ck_assert_int_eq(store_resize(env.s, c, ((uint64_t)1 << 62) + 1), -EFBIG);
    ck_assert_int_eq(store_resize(env.s, c, UINT64_MAX), -EFBIG);
    ck_assert_int_eq(store_resize(env.s, c, (uint64_t)1 << 62), -EDQUOT);
    ck_assert_uint_eq(c->size, 112 * KiB);

    /* Shrinking to zero gives everything back. */
    ck_assert_int_eq(store_resize(env.s, r, 0), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 0);
    ck_assert_uint_eq(quota_total_bytes(q), 512 * KiB);
}
END_TEST

START_TEST(test_write_accounting)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000, 100);
    uint64_t end = 0;

    /* A full write from 0. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 100, &end), 0);
    ck_assert_uint_eq(end, 100);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 100); /* reserved up front */
    store_write_done(env.s, r, 0, 100, end);
    ck_assert_uint_eq(r->size, 100);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 100);

    /* A short write gives back what it did not use. */
    ck_assert_int_eq(store_write_begin(env.s, r, 100, 200, &end), 0);
    ck_assert_uint_eq(end, 300);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 300);
    store_write_done(env.s, r, 100, 50, end);
    ck_assert_uint_eq(r->size, 150);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);

    /* A failed write gives back everything. */
    ck_assert_int_eq(store_write_begin(env.s, r, 1000, 10, &end), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1010);
    store_write_done(env.s, r, 1000, 0, end);
    ck_assert_uint_eq(r->size, 150);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);

    /* A write inside the current size charges nothing. */
    ck_assert_int_eq(store_write_begin(env.s, r, 10, 20, &end), 0);
    ck_assert_uint_eq(end, 150);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);
    store_write_done(env.s, r, 10, 20, end);
    ck_assert_uint_eq(r->size, 150);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);

    /* Limits, before any byte moves. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 512 * KiB + 1, &end), -EDQUOT);
    ck_assert_int_eq(store_write_begin(env.s, r, (uint64_t)1 << 62, 1, &end), -EFBIG);
    ck_assert_int_eq(store_write_begin(env.s, r, UINT64_MAX, 2, &end), -EFBIG);
    ck_assert_int_eq(store_write_begin(env.s, r, 1, UINT64_MAX, &end), -EFBIG);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);
    ck_assert_uint_eq(quota_total_bytes(q), 150);

    /* fallocate grows like a write and backs the memfd. */
    ck_assert_int_eq(store_fallocate(env.s, r, 0, 8192), 0);
    ck_assert_uint_eq(r->size, 8192);
    ck_assert_uint_eq(bytes_size(r), 8192);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 8192);
    ck_assert_int_eq(store_fallocate(env.s, r, 0, 0), -EINVAL);
    ck_assert_int_eq(store_fallocate(env.s, r, 0, 512 * KiB + 1), -EDQUOT);
    ck_assert_uint_eq(r->size, 8192);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 8192);
}
END_TEST

START_TEST(test_seal)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, 100, false);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    ck_assert_int_eq(pwrite(store_data_fd(env.s, r), "hello", 5, 0), 5);
    store_opened(env.s, r, 101, true);
    ck_assert_uint_eq(r->writable_opens, 1);
    ck_assert_int_eq(store_seal(env.s, r), -EBUSY);
    ck_assert(!r->sealed);
    store_released(env.s, r, 101, true);
    ck_assert_uint_eq(r->writable_opens, 0);

    ck_assert_int_eq(store_seal(env.s, r), 0);
    ck_assert(r->sealed);
    ck_assert_str_eq(region_state_name(r), "sealed");
    ck_assert_int_eq(store_seal(env.s, r), 0); /* already sealed */
    ck_assert_int_eq(store_resize(env.s, r, 8192), -EPERM);
    ck_assert_int_eq(store_resize(env.s, r, 0), -EPERM);
    uint64_t end;
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 1, &end), -EPERM);
    ck_assert_int_eq(store_fallocate(env.s, r, 0, 8192), -EPERM);
    ck_assert_uint_eq(r->size, 4096);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    /* The data fd itself refuses writes now (memfd: sealed; tmpfs: opened
     * read-only); reads still work. */
    int fd = store_data_fd(env.s, r);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "x", 1, 0), -1);
    char buf[5];
    ck_assert_int_eq(pread(fd, buf, 5, 0), 5);
    ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
}
END_TEST

START_TEST(test_chown_moves_quota)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);

    ck_assert_int_eq(store_chown(env.s, r, 1001, 77), 0);
    ck_assert_uint_eq(r->uid, 1001);
    ck_assert_uint_eq(r->gid, 77);
    ck_assert_uint_eq(quota_usage(q, 1000).regions, 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 0);
    ck_assert_uint_eq(quota_usage(q, 1001).regions, 1);
    ck_assert_uint_eq(quota_usage(q, 1001).bytes, 4096);
    ck_assert_uint_eq(quota_total_bytes(q), 4096);

    /* Same uid: only the group changes. */
    ck_assert_int_eq(store_chown(env.s, r, 1001, 78), 0);
    ck_assert_uint_eq(r->gid, 78);
    ck_assert_uint_eq(quota_usage(q, 1001).bytes, 4096);

    /* A new owner without room for the bytes: nothing changes. */
    CapshmRegion *big = make_held_region(1002, 102);
    ck_assert_int_eq(store_resize(env.s, big, 510 * KiB), 0);
    ck_assert_int_eq(store_chown(env.s, r, 1002, 5), -EDQUOT);
    ck_assert_uint_eq(r->uid, 1001);
    ck_assert_uint_eq(r->gid, 78);
    ck_assert_uint_eq(quota_usage(q, 1001).regions, 1);
    ck_assert_uint_eq(quota_usage(q, 1001).bytes, 4096);
    ck_assert_uint_eq(quota_usage(q, 1002).regions, 1);
    ck_assert_uint_eq(quota_usage(q, 1002).bytes, 510 * KiB);
    ck_assert_uint_eq(quota_total_bytes(q), 4096 + 510 * KiB);

    /* A new owner at max_regions: nothing changes. */
    for (int i = 0; i < 3; i++)
        make_held_region(1002, 102);
    ck_assert_int_eq(store_resize(env.s, r, 0), 0);
    ck_assert_int_eq(store_chown(env.s, r, 1002, 5), -EDQUOT);
    ck_assert_uint_eq(r->uid, 1001);
    ck_assert_uint_eq(quota_usage(q, 1002).regions, 4);
    ck_assert_uint_eq(quota_usage(q, 1001).regions, 1);

    /* Destruction releases the new owner's charge. */
    ck_assert_int_eq(store_resize(env.s, r, 1000), 0);
    store_released(env.s, r, 100, true);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(quota_usage(q, 1001).regions, 0);
    ck_assert_uint_eq(quota_usage(q, 1001).bytes, 0);
}
END_TEST

/* --- reporting ----------------------------------------------------------------------- */

/* A small JSON syntax checker: enough to prove the .stats text parses. */
static const char *json_value(const char *p, int depth);

static const char *
json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *
json_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (!*p || !strchr("\"\\/bfnrtu", *p))
                return NULL;
        }
    }
    return *p == '"' ? p + 1 : NULL;
}

static const char *
json_number(const char *p)
{
    const char *start = p;
    if (*p == '-')
        p++;
    if (!g_ascii_isdigit(*p))
        return NULL;
    if (*p == '0' && g_ascii_isdigit(p[1]))
        return NULL;
    while (g_ascii_isdigit(*p))
        p++;
    if (*p == '.') {
        p++;
        if (!g_ascii_isdigit(*p))
            return NULL;
        while (g_ascii_isdigit(*p))
            p++;
    }
    return p > start ? p : NULL;
}

static const char *
json_value(const char *p, int depth)
{
    if (depth > 32)
        return NULL;
    p = json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                p = json_string(json_ws(p));
                if (!p)
                    return NULL;
                p = json_ws(p);
                if (*p != ':')
                    return NULL;
                p++;
            }
            p = json_value(p, depth + 1);
            if (!p)
                return NULL;
            p = json_ws(p);
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p++;
        }
    }
    if (*p == '"')
        return json_string(p);
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    return json_number(p);
}

static bool
json_valid(const char *text)
{
    const char *end = json_value(text, 0);
    return end && *json_ws(end) == '\0';
}

START_TEST(test_json_checker_itself)
{
    ck_assert(json_valid("{\"a\":1,\"b\":[1,2,{\"c\":\"x\"}],\"d\":true}\n"));
    ck_assert(!json_valid("{\"a\":1,}"));
    ck_assert(!json_valid("{\"a\":1"));
    ck_assert(!json_valid("{\"a\" 1}"));
    ck_assert(!json_valid("{\"a\":1}}"));
    ck_assert(!json_valid("[1,,2]"));
}
END_TEST

#define ck_assert_has(hay, needle) \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not in: %s", (needle), (hay))

START_TEST(test_stats_json)
{
    CapshmRegion *r = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    CapshmRegion *l = make_held_region(1000, 100);
    ck_assert_int_eq(store_resize(env.s, l, 100), 0);
    store_released(env.s, l, 100, true);                 /* lingering */
    CapshmRegion *p = make_held_region(2000, 200);
    store_set_pinned(env.s, p, true);
    store_released(env.s, p, 200, true);                 /* pinned */
    char spare[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 3000, spare), 0);
    advance(60 * SEC);
    store_tick(env.s); /* expires the mint and destroys l */
    CapshmRegion *gone = make_held_region(1000, 100);
    ck_assert_int_eq(store_unlink(env.s, gone), 0);
    store_released(env.s, gone, 100, true);

    g_autofree char *js = store_stats_json(env.s, 1000, false, "cache", "io_uring", 42);
    ck_assert(json_valid(js));
    ck_assert_has(js, "\"requests\":42");
    ck_assert_has(js, "\"version\":\"" PACKAGE_VERSION "\"");
    ck_assert_has(js, "\"datapath\":\"cache\"");
    ck_assert_has(js, "\"transport\":\"io_uring\"");
    ck_assert_has(js, "\"regions\":2,");
    ck_assert_has(js, "\"bytes\":4096,");
    ck_assert_has(js, "\"lingering\":0");
    ck_assert_has(js, "\"pinned\":1");
    ck_assert_has(js, "\"created\":4");
    ck_assert_has(js, "\"destroyed\":2");
    ck_assert_has(js, "\"expired_mints\":1");
    ck_assert_has(js, "\"uid\":{\"uid\":1000,\"regions\":1,\"bytes\":4096,"
                      "\"quota_bytes\":524288,\"max_regions\":4}");
    ck_assert(strstr(js, "per_uid") == NULL); /* not for non-root */

    g_autofree char *other = store_stats_json(env.s, 2000, false, "passthrough", "device", 0);
    ck_assert(json_valid(other));
    ck_assert_has(other, "\"datapath\":\"passthrough\"");
    ck_assert_has(other, "\"uid\":{\"uid\":2000,\"regions\":1,\"bytes\":0,");

    g_autofree char *root = store_stats_json(env.s, 0, true, "cache", "device", 0);
    ck_assert(json_valid(root));
    ck_assert_has(root, "\"uid\":{\"uid\":0,\"regions\":0,\"bytes\":0,");
    ck_assert_has(root, "\"per_uid\":[{\"uid\":1000,\"regions\":1,\"bytes\":4096");
    ck_assert_has(root, "{\"uid\":2000,\"regions\":1,\"bytes\":0");

    /* A lingering region counts as a live region and as lingering. */
    store_released(env.s, r, 100, true);
    g_autofree char *after = store_stats_json(env.s, 1000, false, "cache", "device", 0);
    ck_assert(json_valid(after));
    ck_assert_has(after, "\"regions\":2,");
    ck_assert_has(after, "\"lingering\":1");
}
END_TEST

START_TEST(test_stats_json_empty)
{
    g_autofree char *js = store_stats_json(env.s, 0, true, "cache", "device", 0);
    ck_assert(json_valid(js));
    ck_assert_has(js, "\"regions\":0,");
    ck_assert_has(js, "\"per_uid\":[]");
}
END_TEST

/* --- tmpfs storage ------------------------------------------------------------ */

static int
open_fd_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

START_TEST(test_tmpfs_idle_region_holds_no_fd)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, 100, true);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    int fd = store_data_fd(env.s, r);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "abc", 3, 0), 3);
    store_released(env.s, r, 100, true);
    /* Nobody has it open: no fd, but the bytes stay while it lingers. */
    ck_assert_int_eq(r->fd, -1);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert(bytes_exist(r));
    ck_assert_uint_eq(bytes_size(r), 4096);
    blkcnt_t blocks = 0;
    ck_assert_int_eq(store_region_blocks(env.s, r, &blocks), 0);
    ck_assert_int_gt(blocks, 0);
    /* Opened again: the same bytes. */
    store_opened(env.s, r, 101, false);
    char buf[3];
    ck_assert_int_eq(pread(store_data_fd(env.s, r), buf, 3, 0), 3);
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    /* A truncate by path (no open) does not leave an fd behind. */
    store_released(env.s, r, 101, false);
    ck_assert_int_eq(store_resize(env.s, r, 8192), 0);
    ck_assert_int_eq(r->fd, -1);
    ck_assert_uint_eq(bytes_size(r), 8192);
}
END_TEST

START_TEST(test_tmpfs_many_regions_cost_no_fds)
{
    int before = open_fd_count();
    for (int i = 0; i < 300; i++) {
        CapshmRegion *r = make_region(1000 + (uid_t)(i % 100));
        store_opened(env.s, r, 100, true);
        ck_assert_int_eq(store_resize(env.s, r, 1), 0);
        store_set_pinned(env.s, r, true);
        store_released(env.s, r, 100, true);
        ck_assert_int_eq(r->state, REGION_PINNED);
    }
    ck_assert_uint_eq(store_region_count(env.s), 300);
    ck_assert_int_eq(open_fd_count(), before);
}
END_TEST

START_TEST(test_tmpfs_seal_sees_other_writers)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, 100, false);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    /* A writable file of the region that the store does not account: what
     * a writable mapping left behind by a closed passthrough open is. */
    int writer = storage_open(store_storage(env.s), r->ino, O_RDWR);
    ck_assert_int_ge(writer, 0);
    ck_assert_int_eq(store_seal(env.s, r), -EBUSY);
    ck_assert(!r->sealed);
    close(writer);
    ck_assert_int_eq(store_seal(env.s, r), 0);
    ck_assert(r->sealed);
    /* From now on the daemon's own fd is read-only. */
    int fd = store_data_fd(env.s, r);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    /* A read-only file never counts as a writer. */
    int reader = store_open_backing(env.s, r);
    ck_assert_int_ge(reader, 0);
    ck_assert_int_eq(fcntl(reader, F_GETFL) & O_ACCMODE, O_RDONLY);
    close(reader);
}
END_TEST

START_TEST(test_tmpfs_destroy_removes_file)
{
    CapshmRegion *r = make_region(1000);
    uint64_t ino = r->ino;
    struct stat st;
    ck_assert_int_eq(storage_stat(store_storage(env.s), ino, &st), 0);
    region_ref(r);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_int_eq(r->state, REGION_DESTROYED);
    ck_assert_int_eq(storage_stat(store_storage(env.s), ino, &st), -ENOENT);
    ck_assert_int_eq(store_data_fd(env.s, r), -ENOENT);
    region_unref(r);
}
END_TEST

START_TEST(test_storage_kind_names)
{
    StorageKind k;
    ck_assert(storage_kind_parse("auto", &k) && k == STORAGE_AUTO);
    ck_assert(storage_kind_parse("tmpfs", &k) && k == STORAGE_TMPFS);
    ck_assert(storage_kind_parse("memfd", &k) && k == STORAGE_MEMFD);
    ck_assert(!storage_kind_parse("TMPFS", &k));
    ck_assert(!storage_kind_parse("", &k));
    ck_assert(!storage_kind_parse(NULL, &k));
    ck_assert_str_eq(storage_kind_name(STORAGE_TMPFS), "tmpfs");
    /* memfd storage needs no privilege and never refuses. */
    CapshmStorage *st = storage_new(STORAGE_MEMFD, NULL, NULL);
    ck_assert_ptr_nonnull(st);
    ck_assert(storage_needs_open_fd(st));
    ck_assert_int_eq(storage_open(st, 1, O_RDONLY), -ENOTSUP);
    storage_free(st);
}
END_TEST

/* The fallback for kernels (and valgrind) without fsopen(): mounted on a
 * fresh directory and detached at once, so no mount table shows it. */
START_TEST(test_tmpfs_mount_and_detach)
{
    storage_use_mount_and_detach(true);
    CapshmStorage *st = storage_new(STORAGE_TMPFS, NULL, NULL);
    storage_use_mount_and_detach(false);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(storage_kind(st), STORAGE_TMPFS);
    int fd = storage_create(st, 7);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "kept", 4, 0), 4);
    close(fd);
    fd = storage_open(st, 7, O_RDONLY);
    char buf[4];
    ck_assert_int_eq(pread(fd, buf, 4, 0), 4);
    ck_assert_int_eq(memcmp(buf, "kept", 4), 0);
    close(fd);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    while (fgets(line, sizeof line, f))
        ck_assert_msg(!strstr(line, "capshm-storage-"), "still mounted: %s", line);
    fclose(f);
    storage_free(st);
}
END_TEST

/* True if this process may mount (CAP_SYS_ADMIN effective): then the tmpfs
 * storage must work and its tests run; without it (a package build under
 * fakeroot) they cannot. */
static bool
may_mount(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long eff = 0;
    if (!f)
        return false;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return (eff >> 21) & 1; /* CAP_SYS_ADMIN */
}

Suite *
store_suite(void)
{
    Suite *s = suite_create("store");

    TCase *tc = tcase_create("names");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_mint_then_create_same_uid);
    tcase_add_test(tc, test_create_other_uid_eacces);
    tcase_add_test(tc, test_create_unminted_eacces);
    tcase_add_test(tc, test_mint_expiry);
    tcase_add_test(tc, test_mint_cap);
    tcase_add_test(tc, test_create_max_regions);
    tcase_add_test(tc, test_ro_name);
    tcase_add_test(tc, test_names_any);
    tcase_add_test(tc, test_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_linger_exact_then_destroyed);
    tcase_add_test(tc, test_linger_zero);
    tcase_add_test(tc, test_created_but_never_opened_lingers);
    tcase_add_test(tc, test_reopen_cancels_linger);
    tcase_add_test(tc, test_holders_counted);
    tcase_add_test(tc, test_pinned_never_expires);
    tcase_add_test(tc, test_pin_during_linger);
    tcase_add_test(tc, test_unlink_held);
    tcase_add_test(tc, test_unlink_unheld);
    tcase_add_test(tc, test_cache_mode_ignores_mappings);
    suite_add_tcase(s, tc);

    tc = tcase_create("mappings");
    tcase_add_checked_fixture(tc, setup_passthrough, teardown);
    tcase_add_test(tc, test_mapper_keeps_live_until_poll);
    tcase_add_test(tc, test_mapper_exit_starts_linger);
    tcase_add_test(tc, test_opener_not_mapping_lingers);
    tcase_add_test(tc, test_mapper_via_ro_name);
    tcase_add_test(tc, test_threads_of_one_mapper_watched_once);
    tcase_add_test(tc, test_mapper_then_reopen_then_exit);
    tcase_add_test(tc, test_scan_all_rescues_unknown_mapper);
    tcase_add_test(tc, test_store_free_destroys_all);
    suite_add_tcase(s, tc);

    tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_resize_quota);
    tcase_add_test(tc, test_write_accounting);
    tcase_add_test(tc, test_seal);
    tcase_add_test(tc, test_chown_moves_quota);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_json_checker_itself);
    tcase_add_test(tc, test_stats_json);
    tcase_add_test(tc, test_stats_json_empty);
    tcase_add_test(tc, test_storage_kind_names);
    suite_add_tcase(s, tc);

    if (!may_mount()) {
        fprintf(stderr, "store: tmpfs storage tests not run (no CAP_SYS_ADMIN)\n");
        return s;
    }
    /* The same data and lifetime tests on tmpfs storage, and its own. */
    tc = tcase_create("tmpfs");
    tcase_add_checked_fixture(tc, setup_cache_tmpfs, teardown);
    tcase_add_test(tc, test_mint_then_create_same_uid);
    tcase_add_test(tc, test_linger_exact_then_destroyed);
    tcase_add_test(tc, test_unlink_held);
    tcase_add_test(tc, test_unlink_unheld);
    tcase_add_test(tc, test_resize_quota);
    tcase_add_test(tc, test_write_accounting);
    tcase_add_test(tc, test_seal);
    tcase_add_test(tc, test_chown_moves_quota);
    tcase_add_test(tc, test_tmpfs_idle_region_holds_no_fd);
    tcase_add_test(tc, test_tmpfs_many_regions_cost_no_fds);
    tcase_add_test(tc, test_tmpfs_seal_sees_other_writers);
    tcase_add_test(tc, test_tmpfs_destroy_removes_file);
    tcase_add_test(tc, test_tmpfs_mount_and_detach);
    suite_add_tcase(s, tc);

    tc = tcase_create("tmpfs-mappings");
    tcase_add_checked_fixture(tc, setup_passthrough_tmpfs, teardown);
    tcase_add_test(tc, test_mapper_exit_starts_linger);
    tcase_add_test(tc, test_store_free_destroys_all);
    suite_add_tcase(s, tc);
    return s;
}
