/* SPDX-License-Identifier: MIT */
/* Unit tests for the store (src/core/store*.c): names, data accounting and
 * the lifetime state machine.
 *
 * Time comes from a fake clock the tests advance by hand.  The kernel's
 * answer to "is this region still open or mapped anywhere?" comes from a
 * fake hold probe (store_set_hold_probe): a set of node ids the fake kernel
 * says are held, a counter of questions, and an errno to answer with.  The
 * "kernel" test cases restore the default probe and ask the real kernel
 * about real mappings of files in the private tmpfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <dirent.h>
#include <glib.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/names.h"
#include "core/options.h"
#include "core/quota.h"
#include "core/region.h"
#include "core/store.h"
#include "suites.h"

#define KiB ((uint64_t)1 << 10)
#define SEC ((int64_t)G_USEC_PER_SEC)
#define MSEC ((int64_t)1000)

/* --- the fakes --------------------------------------------------------------- */

/* The fake kernel behind the hold probe. */
typedef struct {
    GHashTable *held;        /* node ids (GUINT_TO_POINTER) said to be held */
    int error;               /* nonzero: every question fails with it */
    unsigned calls;          /* questions asked */
    uint64_t last_ino;       /* the region of the last question */
    int last_own_fd;         /* the store's own fd it passed */
} FakeKernel;

typedef struct {
    CapshmStore *s;
    int64_t now;
    FakeKernel fk;
    GPtrArray *destroyed;    /* regions seen by the destroy hook (borrowed) */
    GPtrArray *kept;         /* references the test holds, so that it may look
                              * at a region after the store destroyed it */
    bool hook_saw_bytes;
    GPtrArray *unheld;       /* regions seen by the unheld hook (borrowed) */
    GString *events;         /* "u<ino> " per unheld hook, "d<ino> " per destroy */
    int anchor_at_unheld;    /* r->anchor_fd when the unheld hook last ran */
} Env;

static Env env;

static int64_t
fake_now(void *data)
{
    return *(int64_t *)data;
}

static int
fake_probe(CapshmRegion *r, int own_fd, void *data)
{
    FakeKernel *fk = data;
    fk->calls++;
    fk->last_ino = r->ino;
    fk->last_own_fd = own_fd;
    /* The store asks only about live regions that no handle holds. */
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(r->open_count, 0);
    if (fk->error)
        return fk->error;
    return g_hash_table_contains(fk->held, GUINT_TO_POINTER(r->ino)) ? 1 : 0;
}

static void
kernel_holds(const CapshmRegion *r)
{
    g_hash_table_add(env.fk.held, GUINT_TO_POINTER(r->ino));
}

static void
kernel_lets_go(const CapshmRegion *r)
{
    g_hash_table_remove(env.fk.held, GUINT_TO_POINTER(r->ino));
}

static unsigned
probes(void)
{
    return env.fk.calls;
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
    g_string_append_printf(e->events, "d%" G_GUINT64_FORMAT " ", r->ino);
}

static void
unheld_hook(CapshmRegion *r, void *data)
{
    Env *e = data;
    ck_assert(region_is_alive(r));
    ck_assert(!region_is_held(r));
    ck_assert(bytes_exist(r));
    e->anchor_at_unheld = r->anchor_fd;
    g_ptr_array_add(e->unheld, r);
    g_string_append_printf(e->events, "u%" G_GUINT64_FORMAT " ", r->ino);
}

/* How many times the unheld hook saw @r. */
static unsigned
unheld_count(const CapshmRegion *r)
{
    unsigned n = 0;
    for (guint i = 0; i < env.unheld->len; i++)
        n += env.unheld->pdata[i] == r;
    return n;
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
    env.fk.held = g_hash_table_new(g_direct_hash, g_direct_equal);
    env.fk.last_own_fd = -2;
    env.destroyed = g_ptr_array_new();
    env.kept = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    env.unheld = g_ptr_array_new();
    env.events = g_string_new(NULL);
    env.anchor_at_unheld = -2;

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
    store_set_hold_probe(env.s, fake_probe, &env.fk);
    store_set_destroy_hook(env.s, destroy_hook, &env);
    store_set_unheld_hook(env.s, unheld_hook, &env);
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
setup_cache_roomy(void) /* room for regions of tens of MiB */
{
    env_storage = STORAGE_MEMFD;
    env_start(false, "size=64M,quota=64M");
}

static void
setup_cache_tmpfs_roomy(void)
{
    env_storage = STORAGE_TMPFS;
    env_start(false, "size=64M,quota=64M");
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

/* Passthrough with the default probe: the real kernel, asked with file
 * leases.  As in the daemon, a lease broken meanwhile must not kill us. */
static void
setup_passthrough_kernel(void)
{
    signal(SIGIO, SIG_IGN);
    setup_passthrough_tmpfs();
    store_set_hold_probe(env.s, NULL, NULL);
}

static void
setup_passthrough_kernel_memfd(void)
{
    signal(SIGIO, SIG_IGN);
    setup_passthrough();
    store_set_hold_probe(env.s, NULL, NULL);
}

static void
teardown(void)
{
    store_free(env.s);
    env.s = NULL;
    g_hash_table_destroy(env.fk.held);
    g_ptr_array_free(env.destroyed, TRUE);
    g_ptr_array_free(env.kept, TRUE);
    g_ptr_array_free(env.unheld, TRUE);
    g_string_free(env.events, TRUE);
    env_storage = STORAGE_MEMFD;
}

static void
advance(int64_t us)
{
    env.now += us;
}

/* Move the clock to the next deadline store_next_due reports and tick. */
static int64_t
tick_when_due(void)
{
    int64_t due = store_next_due(env.s);
    ck_assert_int_ge(due, 0);
    advance(due);
    return store_tick(env.s);
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

/* A region created and opened once for writing (so it is held). */
static CapshmRegion *
make_held_region(uid_t uid)
{
    CapshmRegion *r = make_region(uid);
    store_opened(env.s, r, true);
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
    store_opened(env.s, r, true);

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
        make_held_region(1000);
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
    CapshmRegion *r = make_held_region(1000);
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

/* --- names=any: directories, links, renames, lifetime=unlink ------------------ */

/* @r, with a reference the test holds until teardown. */
static CapshmRegion *
keep(CapshmRegion *r)
{
    g_ptr_array_add(env.kept, region_ref(r));
    return r;
}

static CapshmRegion *
make_any(CapshmRegion *dir, const char *name)
{
    CapshmCaller c = caller(1000);
    CapshmRegion *r = NULL;
    bool created = false;
    ck_assert_int_eq(store_create_at(env.s, &c, dir, name, 0600, true, &r, &created), 0);
    ck_assert(created);
    return keep(r);
}

START_TEST(test_any_links)
{
    teardown();
    env_start(false, "names=any");
    CapshmRegion *r = make_any(NULL, "sem.tmp");
    ck_assert_uint_eq(r->nlink, 1);
    /* glibc sem_open: create a temporary name, link the real one, unlink the first. */
    ck_assert_int_eq(store_link(env.s, r, NULL, "sem.x"), 0);
    ck_assert_uint_eq(r->nlink, 2);
    ck_assert_int_eq(store_link(env.s, r, NULL, "sem.x"), -EEXIST);
    ck_assert_ptr_eq(store_lookup(env.s, "sem.x", NULL), r);
    ck_assert_int_eq(store_unlink_at(env.s, NULL, "sem.tmp"), 0);
    ck_assert_uint_eq(r->nlink, 1);
    ck_assert(!r->unlinked);
    ck_assert_str_eq(r->name, "sem.x");
    ck_assert_ptr_null(store_lookup(env.s, "sem.tmp", NULL));
    ck_assert_int_eq(store_unlink_at(env.s, NULL, "sem.tmp"), -ENOENT);
    ck_assert_uint_eq(store_region_count(env.s), 1);
    /* The last name goes: unheld, so the region goes at once. */
    ck_assert_int_eq(store_unlink_at(env.s, NULL, "sem.x"), 0);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(quota_total_bytes(store_quota(env.s)), 0);
}
END_TEST

START_TEST(test_any_lifetime_unlink_outlives_holders)
{
    teardown();
    env_start(false, "names=any");
    CapshmRegion *r = make_any(NULL, "PostgreSQL.1");
    store_opened(env.s, r, true);
    ck_assert_int_eq(store_resize(env.s, r, 4 * KiB), 0);
    store_released(env.s, r, true);
    /* No holder, no linger: it lives until unlinked, as on tmpfs. */
    ck_assert_int_eq(store_next_due(env.s), -1);
    advance(3600 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    ck_assert_str_eq(region_state_name(r), "live");
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    /* Unpinning does not start a linger either. */
    store_set_pinned(env.s, r, true);
    store_set_pinned(env.s, r, false);
    ck_assert_int_eq(store_next_due(env.s), -1);
    ck_assert_int_eq(store_unlink_at(env.s, NULL, "PostgreSQL.1"), 0);
    ck_assert(!region_is_alive(r));
    ck_assert_uint_eq(env.destroyed->len, 1);
}
END_TEST

START_TEST(test_any_lifetime_holders_destroys_every_name)
{
    teardown();
    env_start(false, "names=any,lifetime=holders");
    CapshmCaller c = caller(1000);
    CapshmRegion *d = NULL;
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "dir", 0755, &d), 0);
    keep(d);
    CapshmRegion *r = make_any(d, "f");
    ck_assert_int_eq(store_link(env.s, r, NULL, "g"), 0);
    tick_when_due();
    ck_assert(!region_is_alive(r));
    ck_assert_ptr_null(store_lookup(env.s, "g", NULL));
    ck_assert_ptr_null(store_lookup_at(env.s, d, "f", NULL));
    ck_assert_int_eq(store_rmdir(env.s, NULL, "dir"), 0);
}
END_TEST

START_TEST(test_any_directories)
{
    teardown();
    env_start(false, "names=any");
    CapshmCaller c = caller(1000);
    CapshmRegion *a = NULL, *b = NULL, *x = NULL;
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "a", 0755, &a), 0);
    keep(a);
    ck_assert(a->is_dir);
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "a", 0755, &x), -EEXIST);
    ck_assert_int_eq(store_mkdir(env.s, &c, a, "b", 0700, &b), 0);
    keep(b);
    ck_assert_uint_eq(a->nsubdirs, 1);
    ck_assert_uint_eq(store_dir_count(env.s), 2);
    /* A directory counts as one of its owner's regions (max_regions=4). */
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 2);
    /* Dot names are allowed below the root, not in it. */
    CapshmRegion *f = make_any(b, ".hidden");
    ck_assert_ptr_eq(store_lookup_at(env.s, b, ".hidden", NULL), f);
    ck_assert_ptr_eq(store_lookup_at(env.s, NULL, "a", NULL), a);
    ck_assert_int_eq(store_rmdir(env.s, NULL, "a"), -ENOTEMPTY);
    ck_assert_int_eq(store_unlink_at(env.s, NULL, "a"), -EISDIR);
    ck_assert_int_eq(store_rmdir(env.s, b, ".hidden"), -ENOTDIR);
    bool created;
    CapshmRegion *r = NULL;
    ck_assert_int_eq(store_create_at(env.s, &c, NULL, "a", 0600, false, &r, &created), -EISDIR);

    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *targets = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    store_list_dir(env.s, b, names, targets);
    ck_assert_uint_eq(names->len, 1);
    ck_assert_str_eq(names->pdata[0], ".hidden");
    ck_assert_ptr_eq(targets->pdata[0], f);
    g_ptr_array_free(names, TRUE);
    g_ptr_array_free(targets, TRUE);

    ck_assert_int_eq(store_unlink_at(env.s, b, ".hidden"), 0);
    ck_assert_int_eq(store_rmdir(env.s, a, "b"), 0);
    ck_assert(!region_is_alive(b));
    /* Nothing can be made in a removed directory. */
    ck_assert_int_eq(store_create_at(env.s, &c, b, "late", 0600, true, &r, &created), -ENOENT);
    ck_assert_int_eq(store_rmdir(env.s, NULL, "a"), 0);
    ck_assert_uint_eq(store_dir_count(env.s), 0);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).regions, 0);
}
END_TEST

START_TEST(test_any_rename)
{
    teardown();
    env_start(false, "names=any");
    CapshmCaller c = caller(1000);
    CapshmRegion *x = make_any(NULL, "x"), *y = make_any(NULL, "y");
    CapshmRegion *d = NULL, *e = NULL;
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "d", 0755, &d), 0);
    keep(d);
    ck_assert_int_eq(store_mkdir(env.s, &c, d, "e", 0755, &e), 0);
    keep(e);

    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "y", STORE_RENAME_NOREPLACE), -EEXIST);
    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "y", STORE_RENAME_EXCHANGE), 0);
    ck_assert_ptr_eq(store_lookup(env.s, "x", NULL), y);
    ck_assert_ptr_eq(store_lookup(env.s, "y", NULL), x);
    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "nope", STORE_RENAME_EXCHANGE), -ENOENT);
    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "y", 3), -EINVAL);
    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "y", 4), -EINVAL);
    /* Plain rename replaces a file: the replaced region (unheld) goes. */
    ck_assert_int_eq(store_rename(env.s, NULL, "x", NULL, "y", 0), 0);
    ck_assert(!region_is_alive(x));
    ck_assert_ptr_eq(store_lookup(env.s, "y", NULL), y);
    ck_assert_ptr_null(store_lookup(env.s, "x", NULL));
    ck_assert_uint_eq(y->nlink, 1);
    /* Two names of one file: nothing happens. */
    ck_assert_int_eq(store_link(env.s, y, d, "y2"), 0);
    ck_assert_int_eq(store_rename(env.s, NULL, "y", d, "y2", 0), 0);
    ck_assert_uint_eq(y->nlink, 2);
    /* Files and directories do not replace each other. */
    ck_assert_int_eq(store_rename(env.s, NULL, "y", NULL, "d", 0), -EISDIR);
    ck_assert_int_eq(store_rename(env.s, d, "e", NULL, "y", 0), -ENOTDIR);
    ck_assert_int_eq(store_rename(env.s, NULL, "d", d, "e2", 0), -EINVAL);
    ck_assert_int_eq(store_rename(env.s, NULL, "d", e, "x", 0), -EINVAL);
    ck_assert_int_eq(store_rename(env.s, NULL, "d", e, "x", STORE_RENAME_EXCHANGE), -ENOENT);
    /* Move a directory up; the empty one it replaces goes. */
    CapshmRegion *f = NULL;
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "f", 0755, &f), 0);
    keep(f);
    ck_assert_int_eq(store_rename(env.s, d, "e", NULL, "f", 0), 0);
    ck_assert(!region_is_alive(f));
    ck_assert_ptr_eq(store_lookup(env.s, "f", NULL), e);
    ck_assert_uint_eq(d->nsubdirs, 0);
    ck_assert_int_eq(store_rename(env.s, NULL, "f", NULL, "d", 0), -ENOTEMPTY);
    ck_assert_int_eq(store_unlink_at(env.s, d, "y2"), 0);
    ck_assert_int_eq(store_rename(env.s, NULL, "f", NULL, "d", 0), 0);
    ck_assert_ptr_eq(store_lookup(env.s, "d", NULL), e);
    ck_assert(!region_is_alive(d));
    ck_assert_uint_eq(store_dir_count(env.s), 1);
}
END_TEST

START_TEST(test_capability_refuses_links)
{
    CapshmRegion *r = make_held_region(1000);
    CapshmCaller c = caller(1000);
    CapshmRegion *d = NULL;
    ck_assert_int_eq(store_mkdir(env.s, &c, NULL, "d", 0755, &d), -EPERM);
    ck_assert_int_eq(store_link(env.s, r, NULL, "other"), -EPERM);
    ck_assert_int_eq(store_rename(env.s, NULL, r->name, NULL, "other", 0), -EPERM);
    ck_assert_uint_eq(r->nlink, 1);
}
END_TEST

START_TEST(test_list)
{
    CapshmRegion *a = make_held_region(1000);
    CapshmRegion *b = make_held_region(1001);
    CapshmRegion *c = make_held_region(1000);
    CapshmRegion *d = make_held_region(1000);
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
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    g_autofree char *name = g_strdup(r->name);
    region_ref(r); /* keep the struct to look at it after destruction */

    ck_assert_int_eq(store_tick(env.s), -1); /* held: nothing pending */
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
    g_autofree char *name = g_strdup(r->name);
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
    store_released(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    advance(3 * SEC);
    store_tick(env.s);
    store_opened(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), -1);
    advance(60 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(store_counters(env.s).destroyed, 0);
    /* The next linger starts afresh, the full 5 s. */
    store_released(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
}
END_TEST

START_TEST(test_handles_counted)
{
    CapshmRegion *r = make_held_region(1000);
    store_opened(env.s, r, false);
    store_opened(env.s, r, false);
    ck_assert_uint_eq(r->open_count, 3);
    ck_assert_uint_eq(r->writable_opens, 1);
    ck_assert(region_is_held(r));
    ck_assert(!r->kernel_held);

    store_released(env.s, r, true);
    ck_assert_uint_eq(r->open_count, 2);
    ck_assert_uint_eq(r->writable_opens, 0);
    ck_assert_int_eq(r->state, REGION_LIVE);
    store_released(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LIVE); /* one handle left */
    ck_assert_uint_eq(env.unheld->len, 0);
    store_released(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert(!region_is_held(r));
    ck_assert_uint_eq(r->open_count, 0);
    ck_assert_uint_eq(r->writable_opens, 0);
    /* A stray extra release (a bug elsewhere) does not wrap the counts. */
    store_released(env.s, r, true);
    ck_assert_uint_eq(r->open_count, 0);
    ck_assert_uint_eq(r->writable_opens, 0);
    ck_assert_int_eq(r->state, REGION_LINGERING);
}
END_TEST

START_TEST(test_pinned_never_expires)
{
    CapshmRegion *r = make_held_region(1000);
    store_set_pinned(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LIVE); /* held and pinned: live */
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
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
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
    store_released(env.s, r, true);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 1);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_int_eq(store_tick(env.s), -1);

    /* A pinned region goes too when unlinked. */
    CapshmRegion *p = make_held_region(1000);
    store_set_pinned(env.s, p, true);
    store_released(env.s, p, true);
    ck_assert_int_eq(p->state, REGION_PINNED);
    ck_assert_int_eq(store_unlink(env.s, p), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 2);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 0);
    ck_assert_uint_eq(env.destroyed->len, 2);
}
END_TEST

START_TEST(test_cache_path_never_probes)
{
    /* On the cache data path RELEASE only arrives after munmap: the store
     * never asks the kernel, and lingers at once, even where the (fake)
     * kernel would say the region is held. */
    CapshmRegion *r = make_held_region(1000);
    kernel_holds(r);
    store_released(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert(!r->kernel_held);
    ck_assert_uint_eq(probes(), 0);
    ck_assert_int_eq(store_next_due(env.s), 5 * SEC);
    store_opened(env.s, r, false);
    store_released(env.s, r, false);
    ck_assert_uint_eq(probes(), 0);
    advance(5 * SEC);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(probes(), 0);
}
END_TEST

/* --- lifetime with mappings that outlive handles (passthrough) ---------------- */

/* When the kernel is asked again while it keeps saying "held": 2, 10, 50 and
 * 250 ms after the previous answer, then every second. */
static const int64_t probe_schedule[] = {
    2 * MSEC, 10 * MSEC, 50 * MSEC, 250 * MSEC, SEC, SEC, SEC,
};

START_TEST(test_kernel_held_after_last_close)
{
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    g_autofree char *name = g_strdup(r->name);
    store_opened(env.s, r, false);
    kernel_holds(r);

    /* Not the last handle: nothing to ask. */
    store_released(env.s, r, true);
    ck_assert_uint_eq(probes(), 0);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(store_next_due(env.s), -1);

    /* The last handle: asked at once, and the kernel still holds it. */
    store_released(env.s, r, false);
    ck_assert_uint_eq(probes(), 1);
    ck_assert_uint_eq(env.fk.last_ino, r->ino);
    ck_assert_int_eq(env.fk.last_own_fd, r->fd); /* memfd: the store's own file */
    ck_assert_uint_eq(r->open_count, 0);
    ck_assert(r->kernel_held);
    ck_assert(region_is_held(r));
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_str_eq(region_state_name(r), "live");
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 0);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LIVE), 1);
    ck_assert_uint_eq(env.unheld->len, 0);

    /* Asked again on schedule, never early; store_next_due only looks. */
    unsigned asked = probes();
    for (guint i = 0; i < G_N_ELEMENTS(probe_schedule); i++) {
        int64_t d = probe_schedule[i];
        ck_assert_int_eq(store_next_due(env.s), d);
        ck_assert_int_eq(store_next_due(env.s), d);
        ck_assert_uint_eq(probes(), asked);
        advance(d - 1);
        ck_assert_int_eq(store_tick(env.s), 1);
        ck_assert_uint_eq(probes(), asked);
        advance(1);
        int64_t next = i + 1 < G_N_ELEMENTS(probe_schedule) ? probe_schedule[i + 1] : SEC;
        ck_assert_int_eq(store_tick(env.s), next);
        ck_assert_uint_eq(probes(), ++asked);
        ck_assert(r->kernel_held);
        ck_assert_int_eq(r->state, REGION_LIVE);
    }

    /* Far past linger (5 s): still alive, live, named and charged. */
    for (int i = 0; i < 60; i++) {
        advance(SEC);
        store_tick(env.s);
    }
    ck_assert_uint_eq(probes(), asked + 60);
    ck_assert(region_is_alive(r));
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert(r->kernel_held);
    ck_assert_ptr_eq(store_lookup(env.s, name, NULL), r);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    ck_assert_uint_eq(env.destroyed->len, 0);
    ck_assert_uint_eq(env.unheld->len, 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 0);
}
END_TEST

START_TEST(test_kernel_lets_go_starts_linger)
{
    CapshmRegion *r = make_held_region(1000);
    uint64_t ino = r->ino; /* r is freed once destroyed */
    g_autofree char *name = g_strdup(r->name);
    kernel_holds(r);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    /* Into the once-a-second probes. */
    for (int i = 0; i < 7; i++)
        tick_when_due();
    ck_assert_uint_eq(probes(), 8);
    ck_assert_int_eq(store_next_due(env.s), SEC);

    /* The last mapping goes between two questions: nothing changes until
     * the next one. */
    advance(400 * MSEC);
    kernel_lets_go(r);
    ck_assert_int_eq(store_tick(env.s), 600 * MSEC);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(env.unheld->len, 0);

    advance(600 * MSEC);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC); /* the linger, nothing else */
    ck_assert_uint_eq(probes(), 9);
    ck_assert(!r->kernel_held);
    ck_assert(!region_is_held(r));
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), 1);
    ck_assert_uint_eq(unheld_count(r), 1);

    /* Not asked any more; the linger runs its course. */
    advance(5 * SEC - 1);
    ck_assert_int_eq(store_tick(env.s), 1);
    ck_assert(region_is_alive(r));
    advance(1);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(probes(), 9);
    g_autofree char *want = g_strdup_printf("u%" G_GUINT64_FORMAT " d%" G_GUINT64_FORMAT " ",
                                            ino, ino);
    ck_assert_str_eq(env.events->str, want);
}
END_TEST

START_TEST(test_not_held_at_last_close_lingers)
{
    CapshmRegion *r = make_held_region(1000);
    store_released(env.s, r, true);
    ck_assert_uint_eq(probes(), 1); /* it did ask */
    ck_assert_uint_eq(env.fk.last_ino, r->ino);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(unheld_count(r), 1);
    ck_assert_int_eq(store_next_due(env.s), 5 * SEC); /* no question pending */
    advance(5 * SEC);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(probes(), 1);
    ck_assert_uint_eq(env.unheld->len, 1);
}
END_TEST

/* G_DEBUG=fatal-warnings makes every warning fatal; the store's one warning
 * about a failed kernel question is expected in the tests that cause it,
 * and counted instead. */
static unsigned probe_warnings;

static bool
is_probe_warning(const gchar *msg)
{
    return msg && strstr(msg, "asking the kernel whether a region is still mapped");
}

static void
count_probe_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)data;
    if (is_probe_warning(msg))
        probe_warnings++;
    else
        g_log_default_handler(domain, level, msg, NULL);
}

static gboolean
probe_warning_not_fatal(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)domain;
    (void)level;
    (void)data;
    return !is_probe_warning(msg);
}

static guint
expect_probe_warnings(void)
{
    probe_warnings = 0;
    g_test_log_set_fatal_handler(probe_warning_not_fatal, NULL);
    return g_log_set_handler(G_LOG_DOMAIN,
                             G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                             count_probe_warning, NULL);
}

static void
end_probe_warnings(guint handler)
{
    g_log_remove_handler(G_LOG_DOMAIN, handler);
    g_test_log_set_fatal_handler(NULL, NULL);
}

START_TEST(test_probe_error_counts_as_held)
{
    guint h = expect_probe_warnings();
    CapshmRegion *a = make_held_region(1000);
    CapshmRegion *b = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, b, 4096), 0);
    /* The kernel cannot be asked (e.g. the daemon is out of fds): never
     * take that for "free", a mapped region must not go. */
    env.fk.error = -EMFILE;
    store_released(env.s, a, true);
    store_released(env.s, b, true);
    ck_assert_uint_eq(probes(), 2);
    ck_assert(a->kernel_held && b->kernel_held);
    ck_assert_int_eq(a->state, REGION_LIVE);
    ck_assert_int_eq(b->state, REGION_LIVE);
    ck_assert_uint_eq(probe_warnings, 1); /* once, not once per question */
    ck_assert_int_eq(store_unlink(env.s, b), 0);
    ck_assert(region_is_alive(b));

    for (int i = 0; i < 40; i++)
        tick_when_due();
    ck_assert_uint_ge(probes(), 40);
    ck_assert(region_is_alive(a) && region_is_alive(b));
    ck_assert(a->kernel_held && b->kernel_held);
    ck_assert_int_eq(a->state, REGION_LIVE);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 0);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    ck_assert_uint_eq(env.unheld->len, 0);
    ck_assert_uint_eq(probe_warnings, 1);

    /* The kernel answers again, and nothing holds them: a lingers, the
     * unlinked b goes at once. */
    env.fk.error = 0;
    tick_when_due();
    ck_assert_int_eq(a->state, REGION_LINGERING);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_region_count(env.s), 1);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 0);
    ck_assert_uint_eq(env.unheld->len, 2);
    end_probe_warnings(h);
}
END_TEST

START_TEST(test_unlink_while_kernel_held)
{
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 8192), 0);
    g_autofree char *name = g_strdup(r->name);
    kernel_holds(r);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);

    ck_assert_int_eq(store_unlink(env.s, r), 0);
    ck_assert_ptr_null(store_lookup(env.s, name, NULL));
    /* The bytes stay for whoever maps them, and stay charged. */
    ck_assert(region_is_alive(r));
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert(bytes_exist(r));
    for (int i = 0; i < 20; i++)
        tick_when_due();
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(store_region_count(env.s), 1);
    QuotaUsage u = quota_usage(store_quota(env.s), 1000);
    ck_assert_uint_eq(u.bytes, 8192);
    ck_assert_uint_eq(u.regions, 1);
    ck_assert_uint_eq(quota_total_bytes(store_quota(env.s)), 8192);
    g_autofree char *js = store_stats_json(env.s, 1000, false, "passthrough", "device", 0);
    ck_assert_msg(strstr(js, "\"regions\":1,\"bytes\":8192,"), "stats: %s", js);
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)region_unref);
    store_list(env.s, 1000, true, out);
    ck_assert_uint_eq(out->len, 0); /* not listed */
    g_ptr_array_free(out, TRUE);
    ck_assert_uint_eq(env.destroyed->len, 0);

    /* The kernel lets go: destroyed at the next question, no linger. */
    kernel_lets_go(r);
    region_ref(r);
    ck_assert_int_eq(tick_when_due(), -1);
    ck_assert_int_eq(r->state, REGION_DESTROYED);
    ck_assert_uint_eq(store_region_count(env.s), 0);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(quota_total_bytes(store_quota(env.s)), 0);
    u = quota_usage(store_quota(env.s), 1000);
    ck_assert_uint_eq(u.bytes, 0);
    ck_assert_uint_eq(u.regions, 0);
    ck_assert(env.hook_saw_bytes);
    /* The unheld hook ran first, then the destroy hook. */
    g_autofree char *want = g_strdup_printf("u%" G_GUINT64_FORMAT " d%" G_GUINT64_FORMAT " ",
                                            r->ino, r->ino);
    ck_assert_str_eq(env.events->str, want);
    g_autofree char *after = store_stats_json(env.s, 1000, false, "passthrough", "device", 0);
    ck_assert_msg(strstr(after, "\"regions\":0,\"bytes\":0,"), "stats: %s", after);
    region_unref(r);
}
END_TEST

START_TEST(test_pinned_and_kernel_held)
{
    CapshmRegion *r = make_held_region(1000);
    store_set_pinned(env.s, r, true);
    kernel_holds(r);
    store_released(env.s, r, true);
    /* Held beats pinned: it is live while the kernel holds it. */
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 0);
    tick_when_due();
    ck_assert_int_eq(r->state, REGION_LIVE);

    kernel_lets_go(r);
    ck_assert_int_eq(tick_when_due(), -1); /* pinned: nothing pending */
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_PINNED);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 1);
    ck_assert_uint_eq(unheld_count(r), 1);
    unsigned asked = probes();
    advance(24 * 3600 * SEC);
    store_tick(env.s);
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(probes(), asked);

    /* Held again, unpinned meanwhile: lingers once the kernel lets go. */
    store_opened(env.s, r, false);
    kernel_holds(r);
    store_released(env.s, r, false);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    store_set_pinned(env.s, r, false);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_int_eq(store_next_due(env.s), 2 * MSEC);
    kernel_lets_go(r);
    ck_assert_int_eq(tick_when_due(), 5 * SEC);
    ck_assert_int_eq(r->state, REGION_LINGERING);

    /* Pinned, kernel-held and unlinked: destroyed when the kernel lets go. */
    CapshmRegion *p = make_held_region(1000);
    store_set_pinned(env.s, p, true);
    kernel_holds(p);
    store_released(env.s, p, true);
    ck_assert_int_eq(store_unlink(env.s, p), 0);
    ck_assert(region_is_alive(p));
    ck_assert_int_eq(p->state, REGION_LIVE);
    kernel_lets_go(p);
    tick_when_due();
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_PINNED), 0);
    ck_assert_uint_eq(unheld_count(p), 1);
}
END_TEST

START_TEST(test_reopen_while_kernel_held)
{
    CapshmRegion *r = make_held_region(1000);
    kernel_holds(r);
    store_released(env.s, r, true);
    tick_when_due();
    tick_when_due(); /* two questions after the close: at 2 and 10 ms */
    ck_assert_uint_eq(probes(), 3);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(store_next_due(env.s), 50 * MSEC);

    /* Opened again: a handle holds it, nothing to ask. */
    store_opened(env.s, r, false);
    ck_assert(!r->kernel_held);
    ck_assert(region_is_held(r));
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_uint_eq(r->probe_step, 0);
    ck_assert_int_eq(store_next_due(env.s), -1);
    for (int i = 0; i < 30; i++) {
        advance(SEC);
        ck_assert_int_eq(store_tick(env.s), -1);
    }
    ck_assert_uint_eq(probes(), 3);
    ck_assert_uint_eq(env.unheld->len, 0); /* it never stopped being held */

    /* Closed again while still mapped: the schedule starts over. */
    store_released(env.s, r, false);
    ck_assert_uint_eq(probes(), 4);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(store_next_due(env.s), 2 * MSEC);
    kernel_lets_go(r);
    ck_assert_int_eq(tick_when_due(), 5 * SEC);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(unheld_count(r), 1);

    /* Reopened while lingering, closed with nothing else holding it. */
    store_opened(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LIVE);
    store_released(env.s, r, true);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(probes(), 6);
    ck_assert_uint_eq(unheld_count(r), 2);
    ck_assert_int_eq(store_next_due(env.s), 5 * SEC);
}
END_TEST

START_TEST(test_unheld_hook_once_per_transition)
{
    CapshmRegion *r = make_held_region(1000);
    region_ref(r); /* to look at it after destruction */
    CapshmRegion *other = make_held_region(1000);
    store_opened(env.s, r, false);
    store_released(env.s, r, false); /* not the last handle */
    ck_assert_uint_eq(env.unheld->len, 0);

    /* Held -> unheld at the last close. */
    store_released(env.s, r, true);
    ck_assert_uint_eq(unheld_count(r), 1);
    ck_assert_uint_eq(env.unheld->len, 1);
    advance(SEC);
    store_tick(env.s);
    ck_assert_uint_eq(unheld_count(r), 1);

    /* Held by a handle, then by the kernel: no hook until the kernel lets go. */
    store_opened(env.s, r, false);
    kernel_holds(r);
    store_released(env.s, r, false);
    for (int i = 0; i < 10; i++)
        tick_when_due();
    ck_assert_uint_eq(unheld_count(r), 1);
    kernel_lets_go(r);
    tick_when_due();
    ck_assert_uint_eq(unheld_count(r), 2);
    /* Lingering, then destroyed: no more calls. */
    advance(5 * SEC);
    store_tick(env.s);
    ck_assert(!region_is_alive(r));
    ck_assert_uint_eq(unheld_count(r), 2);
    ck_assert_uint_eq(unheld_count(other), 0);
    ck_assert_uint_eq(env.unheld->len, 2);
    g_autofree char *want = g_strdup_printf("u%" G_GUINT64_FORMAT " u%" G_GUINT64_FORMAT
                                            " d%" G_GUINT64_FORMAT " ", r->ino, r->ino, r->ino);
    ck_assert_str_eq(env.events->str, want);
    region_unref(r);
}
END_TEST

START_TEST(test_switch_to_cache_path)
{
    CapshmRegion *r = make_held_region(1000);
    kernel_holds(r);
    store_set_mappings_outlive_handles(env.s, false);
    store_released(env.s, r, true);
    ck_assert_uint_eq(probes(), 0);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
}
END_TEST

/* store_tick asks at most 256 questions, and says when more are due. */
START_TEST(test_tick_probe_batch)
{
    teardown();
    env_start(true, "max_regions=400");
    enum { N = 300, BATCH = 256 };
    CapshmRegion *rs[N];
    for (int i = 0; i < N; i++) {
        rs[i] = make_held_region(1000);
        kernel_holds(rs[i]);
    }
    for (int i = 0; i < N; i++)
        store_released(env.s, rs[i], true); /* each close asks at once */
    ck_assert_uint_eq(probes(), N);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LIVE), N);
    ck_assert_int_eq(store_next_due(env.s), 2 * MSEC);

    advance(2 * MSEC);
    ck_assert_int_eq(store_tick(env.s), 0); /* more are due */
    ck_assert_uint_eq(probes(), N + BATCH);
    ck_assert_int_eq(store_next_due(env.s), 0);
    ck_assert_int_eq(store_tick(env.s), 10 * MSEC);
    ck_assert_uint_eq(probes(), 2 * N);
    for (int i = 0; i < N; i++)
        ck_assert_uint_eq(rs[i]->probe_step, 2);
    ck_assert_int_eq(store_tick(env.s), 10 * MSEC); /* none due: none asked */
    ck_assert_uint_eq(probes(), 2 * N);

    /* The same bound once they are asked once a second. */
    for (int step = 0; step < 3; step++) {
        unsigned before = probes();
        advance(store_next_due(env.s));
        ck_assert_int_eq(store_tick(env.s), 0);
        ck_assert_uint_eq(probes(), before + BATCH);
        ck_assert_int_gt(store_tick(env.s), 0);
        ck_assert_uint_eq(probes(), before + N);
    }
    advance(store_next_due(env.s));
    store_tick(env.s);
    store_tick(env.s);
    for (int i = 0; i < N; i++)
        ck_assert_uint_gt(rs[i]->probe_step, 4);
    unsigned before = probes();
    ck_assert_int_eq(store_next_due(env.s), SEC);
    advance(SEC);
    ck_assert_int_eq(store_tick(env.s), 0);
    ck_assert_uint_eq(probes(), before + BATCH);
    ck_assert_int_eq(store_tick(env.s), SEC);
    ck_assert_uint_eq(probes(), before + N);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LIVE), N);

    /* All let go: they linger, in two batches. */
    g_hash_table_remove_all(env.fk.held);
    advance(SEC);
    ck_assert_int_eq(store_tick(env.s), 0);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), BATCH);
    ck_assert_int_eq(store_tick(env.s), 5 * SEC);
    ck_assert_uint_eq(store_count_in_state(env.s, REGION_LINGERING), N);
    ck_assert_uint_eq(env.unheld->len, N);
    advance(5 * SEC);
    ck_assert_int_eq(store_tick(env.s), -1);
    ck_assert_uint_eq(store_region_count(env.s), 0);
}
END_TEST

START_TEST(test_store_free_destroys_all)
{
    CapshmRegion *a = make_held_region(1000);         /* held */
    CapshmRegion *b = make_held_region(1000);
    store_released(env.s, b, true);                  /* lingering */
    CapshmRegion *c = make_held_region(1001);
    store_set_pinned(env.s, c, true);
    store_released(env.s, c, true);                  /* pinned */
    CapshmRegion *d = make_held_region(1001);
    ck_assert_int_ge(store_backing_fd(env.s, d), 0); /* lent for passthrough */
    kernel_holds(d);
    store_released(env.s, d, true);                  /* held by the kernel only */
    ck_assert(d->kernel_held);
    CapshmRegion *e = make_held_region(1002);
    kernel_holds(e);
    store_released(env.s, e, true);
    ck_assert_int_eq(store_unlink(env.s, e), 0);     /* ... and unlinked */
    char spare[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 1002, spare), 0);  /* a pending mint */
    unsigned asked = probes();

    region_ref(a); /* as the FUSE layer would, for an open file */
    region_ref(d);
    store_free(env.s);
    env.s = NULL;
    ck_assert_uint_eq(env.destroyed->len, 5);
    CapshmRegion *want[] = { a, b, c, d, e };
    for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
        guint hits = 0;
        for (guint j = 0; j < env.destroyed->len; j++)
            hits += env.destroyed->pdata[j] == want[i];
        ck_assert_uint_eq(hits, 1);
    }
    ck_assert_uint_eq(probes(), asked); /* nobody asked on the way out */
    ck_assert_int_eq(a->state, REGION_DESTROYED);
    ck_assert_int_eq(a->fd, -1);
    ck_assert_int_eq(d->state, REGION_DESTROYED);
    ck_assert_int_eq(d->fd, -1);
    ck_assert_int_eq(d->anchor_fd, -1);
    region_unref(a);
    region_unref(d);
}
END_TEST

/* --- data ------------------------------------------------------------------------- */

START_TEST(test_resize_quota)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
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
    CapshmRegion *b = make_held_region(1001);
    ck_assert_int_eq(store_resize(env.s, b, 400 * KiB), 0);
    CapshmRegion *c = make_held_region(1002);
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
    CapshmRegion *r = make_held_region(1000);
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

/* Writes in flight at once (their copies run without the core lock). */
START_TEST(test_concurrent_writes_charge_growth_once)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
    uint64_t e1 = 0, e2 = 0;

    /* Overlapping growth: [0,100) and [50,150) charge 150, not 200. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 100, &e1), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 100);
    ck_assert_int_eq(store_write_begin(env.s, r, 50, 100, &e2), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);
    ck_assert_uint_eq(r->writes_in_flight, 2);
    ck_assert_uint_eq(r->size, 0); /* EOF moves only when bytes land */
    store_write_done(env.s, r, 0, 100, e1);
    ck_assert_uint_eq(r->size, 100);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150); /* still reserved */
    store_write_done(env.s, r, 50, 100, e2);
    ck_assert_uint_eq(r->size, 150);
    ck_assert_uint_eq(r->writes_in_flight, 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 150);
    ck_assert_uint_eq(quota_total_bytes(q), 150);

    /* The same range twice: charged once. */
    ck_assert_int_eq(store_write_begin(env.s, r, 150, 50, &e1), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 150, 50, &e2), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);
    store_write_done(env.s, r, 150, 50, e2);
    store_write_done(env.s, r, 150, 50, e1);
    ck_assert_uint_eq(r->size, 200);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);

    /* A write inside another's reservation charges nothing more, and may
     * settle first. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 1000, &e1), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1000);
    ck_assert_int_eq(store_write_begin(env.s, r, 500, 100, &e2), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1000);
    store_write_done(env.s, r, 500, 100, e2);
    ck_assert_uint_eq(r->size, 600);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1000);
    store_write_done(env.s, r, 0, 1000, e1);
    ck_assert_uint_eq(r->size, 1000);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 1000);
    ck_assert_uint_eq(r->write_reserved_end, 0);

    /* Growth past the quota counts what the others reserved. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 300 * KiB, &e1), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 300 * KiB, &e2), 0); /* no more */
    uint64_t e3 = 0;
    ck_assert_int_eq(store_write_begin(env.s, r, 300 * KiB, 300 * KiB, &e3), -EDQUOT);
    ck_assert_uint_eq(r->writes_in_flight, 2); /* the refused one is not in flight */
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 300 * KiB);
    store_write_done(env.s, r, 0, 300 * KiB, e1);
    store_write_done(env.s, r, 0, 300 * KiB, e2);
    ck_assert_uint_eq(r->size, 300 * KiB);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 300 * KiB);
}
END_TEST

START_TEST(test_failed_write_released_when_last_settles)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
    uint64_t ea = 0, eb = 0;

    /* b fails while a is still in flight: b's growth stays reserved until
     * a settles, then what nobody wrote goes back. */
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 100, &ea), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 100, 100, &eb), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);
    store_write_done(env.s, r, 100, 0, eb);
    ck_assert_uint_eq(r->size, 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);
    store_write_done(env.s, r, 0, 100, ea);
    ck_assert_uint_eq(r->size, 100);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 100);

    /* The failed write settles last. */
    ck_assert_int_eq(store_write_begin(env.s, r, 100, 100, &ea), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 200, 100, &eb), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 300);
    store_write_done(env.s, r, 100, 100, ea);
    ck_assert_uint_eq(r->size, 200);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 300);
    store_write_done(env.s, r, 200, 0, eb);
    ck_assert_uint_eq(r->size, 200);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);

    /* Both fail; a short write among them. */
    ck_assert_int_eq(store_write_begin(env.s, r, 1000, 100, &ea), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 5000, 100, &eb), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 5100);
    store_write_done(env.s, r, 5000, 0, eb);
    store_write_done(env.s, r, 1000, 0, ea);
    ck_assert_uint_eq(r->size, 200);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 200);
    ck_assert_int_eq(store_write_begin(env.s, r, 200, 100, &ea), 0);
    ck_assert_int_eq(store_write_begin(env.s, r, 250, 100, &eb), 0);
    store_write_done(env.s, r, 250, 20, eb);
    store_write_done(env.s, r, 200, 10, ea);
    ck_assert_uint_eq(r->size, 270);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 270);
    ck_assert_uint_eq(quota_total_bytes(q), 270);
    ck_assert_uint_eq(r->writes_in_flight, 0);
}
END_TEST

/* A truncate (SETATTR size: store_resize under the core lock) or a chown
 * can come while a write's copy runs without the lock (cfs_write_buf,
 * cfs_fallocate).  Once every write settled, what is charged must be the
 * region's size, to its owner.  These fail against the store as it is:
 * store_resize charges/releases from r->size without regard to the growth
 * writes in flight reserved (grow: charged twice, a leak; shrink: the
 * write's bytes end up uncharged, a quota bypass, and quota_release_bytes
 * underflows when the region goes), and store_chown moves r->size but not
 * the reservation.  Tagged "write-races": CK_EXCLUDE_TAGS=write-races
 * leaves them out. */
START_TEST(test_resize_during_write_grow)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
    uint64_t e = 0;
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 100, &e), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 100);
    ck_assert_int_eq(store_resize(env.s, r, 50), 0); /* inside the reservation */
    store_write_done(env.s, r, 0, 100, e);
    ck_assert_uint_eq(r->size, 100);
    ck_assert_msg(quota_usage(q, 1000).bytes == r->size,
                  "charged %" G_GUINT64_FORMAT " for a region of %" G_GUINT64_FORMAT " bytes",
                  quota_usage(q, 1000).bytes, r->size);
}
END_TEST

START_TEST(test_resize_during_write_shrink)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 200), 0);
    uint64_t e = 0;
    ck_assert_int_eq(store_write_begin(env.s, r, 150, 100, &e), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 250);
    ck_assert_int_eq(store_resize(env.s, r, 0), 0);
    store_write_done(env.s, r, 150, 100, e);
    ck_assert_uint_eq(r->size, 250);
    ck_assert_msg(quota_usage(q, 1000).bytes == r->size,
                  "charged %" G_GUINT64_FORMAT " for a region of %" G_GUINT64_FORMAT " bytes",
                  quota_usage(q, 1000).bytes, r->size);
}
END_TEST

START_TEST(test_chown_during_write)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
    uint64_t e = 0;
    ck_assert_int_eq(store_write_begin(env.s, r, 0, 100, &e), 0);
    ck_assert_int_eq(store_chown(env.s, r, 1001, 1001), 0);
    store_write_done(env.s, r, 0, 100, e);
    ck_assert_uint_eq(r->size, 100);
    ck_assert_msg(quota_usage(q, 1000).bytes == 0 && quota_usage(q, 1001).bytes == 100,
                  "uid 1000 charged %" G_GUINT64_FORMAT ", uid 1001 (the owner) %" G_GUINT64_FORMAT
                  " for a region of 100 bytes",
                  quota_usage(q, 1000).bytes, quota_usage(q, 1001).bytes);
}
END_TEST

START_TEST(test_seal)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, false);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    ck_assert_int_eq(pwrite(store_data_fd(env.s, r), "hello", 5, 0), 5);
    store_opened(env.s, r, true);
    ck_assert_uint_eq(r->writable_opens, 1);
    ck_assert_int_eq(store_seal(env.s, r), -EBUSY);
    ck_assert(!r->sealed);
    store_released(env.s, r, true);
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

/* A big shrink frees the doomed bytes early, off the lock: store_shrink_begin
 * lends an fd and the range, sealing waits for store_shrink_end, and a small
 * shrink (or one of a sealed region) is left to store_resize. */
START_TEST(test_shrink_early)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, false);
    uint64_t big = 2 * STORE_SHRINK_OFF_LOCK, off = 1, len = 1;
    ck_assert_int_eq(store_resize(env.s, r, big), 0);
    ck_assert_int_eq(pwrite(store_data_fd(env.s, r), "keep", 4, 100), 4);
    ck_assert_int_eq(store_shrink_begin(env.s, r, big - 4096, &off, &len), -1);
    ck_assert_int_eq(store_shrink_begin(env.s, r, big, &off, &len), -1);
    int fd = store_shrink_begin(env.s, r, 4096, &off, &len);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(off, 4096);
    ck_assert_uint_eq(len, big - 4096);
    ck_assert_int_eq(store_seal(env.s, r), -EBUSY);
    ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len), 0);
    close(fd);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    store_shrink_end(env.s, r);
    ck_assert_uint_eq(r->size, 4096);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    char buf[4];
    ck_assert_int_eq(pread(store_data_fd(env.s, r), buf, 4, 100), 4);
    ck_assert_int_eq(memcmp(buf, "keep", 4), 0);
    ck_assert_int_eq(store_seal(env.s, r), 0);
    ck_assert_int_eq(store_resize(env.s, r, big), -EPERM);
    ck_assert_int_eq(store_shrink_begin(env.s, r, 0, &off, &len), -1);
}
END_TEST

/* Fallocates that change no size: preallocation stops at EOF (nothing
 * uncharged is allocated), a hole may go anywhere, a sealed region refuses. */
START_TEST(test_fallocate_in_place)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, false);
    ck_assert_int_eq(store_resize(env.s, r, 8192), 0);
    uint64_t len = 65536;
    ck_assert_int_eq(store_fallocate_in_place(env.s, r, false, 4096, &len), 0);
    ck_assert_uint_eq(len, 4096);
    len = 100;
    ck_assert_int_eq(store_fallocate_in_place(env.s, r, false, 8192, &len), 0);
    ck_assert_uint_eq(len, 0);
    len = 65536;
    ck_assert_int_eq(store_fallocate_in_place(env.s, r, true, 4096, &len), 0);
    ck_assert_uint_eq(len, 65536);
    ck_assert_uint_eq(r->size, 8192);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 8192);
    ck_assert_int_eq(store_seal(env.s, r), 0);
    ck_assert_int_eq(store_fallocate_in_place(env.s, r, true, 0, &len), -EPERM);
    ck_assert_int_eq(store_fallocate_in_place(env.s, r, false, 0, &len), -EPERM);
}
END_TEST

START_TEST(test_chown_moves_quota)
{
    Quota *q = store_quota(env.s);
    CapshmRegion *r = make_held_region(1000);
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
    CapshmRegion *big = make_held_region(1002);
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
        make_held_region(1002);
    ck_assert_int_eq(store_resize(env.s, r, 0), 0);
    ck_assert_int_eq(store_chown(env.s, r, 1002, 5), -EDQUOT);
    ck_assert_uint_eq(r->uid, 1001);
    ck_assert_uint_eq(quota_usage(q, 1002).regions, 4);
    ck_assert_uint_eq(quota_usage(q, 1001).regions, 1);

    /* Destruction releases the new owner's charge. */
    ck_assert_int_eq(store_resize(env.s, r, 1000), 0);
    store_released(env.s, r, true);
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
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    CapshmRegion *l = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, l, 100), 0);
    store_released(env.s, l, true);                 /* lingering */
    CapshmRegion *p = make_held_region(2000);
    store_set_pinned(env.s, p, true);
    store_released(env.s, p, true);                 /* pinned */
    char spare[NAMES_BUF];
    ck_assert_int_eq(store_mint(env.s, 3000, spare), 0);
    advance(60 * SEC);
    store_tick(env.s); /* expires the mint and destroys l */
    CapshmRegion *gone = make_held_region(1000);
    ck_assert_int_eq(store_unlink(env.s, gone), 0);
    store_released(env.s, gone, true);

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
    store_released(env.s, r, true);
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
    store_opened(env.s, r, true);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    int fd = store_data_fd(env.s, r);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "abc", 3, 0), 3);
    store_released(env.s, r, true);
    /* Nobody has it open: no fd, but the bytes stay while it lingers. */
    ck_assert_int_eq(r->fd, -1);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert(bytes_exist(r));
    ck_assert_uint_eq(bytes_size(r), 4096);
    blkcnt_t blocks = 0;
    ck_assert_int_eq(store_region_blocks(env.s, r, &blocks), 0);
    ck_assert_int_gt(blocks, 0);
    /* Opened again: the same bytes. */
    store_opened(env.s, r, false);
    char buf[3];
    ck_assert_int_eq(pread(store_data_fd(env.s, r), buf, 3, 0), 3);
    ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
    /* A truncate by path (no open) does not leave an fd behind. */
    store_released(env.s, r, false);
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
        store_opened(env.s, r, true);
        ck_assert_int_eq(store_resize(env.s, r, 1), 0);
        store_set_pinned(env.s, r, true);
        store_released(env.s, r, true);
        ck_assert_int_eq(r->state, REGION_PINNED);
    }
    ck_assert_uint_eq(store_region_count(env.s), 300);
    ck_assert_int_eq(open_fd_count(), before);
}
END_TEST

START_TEST(test_tmpfs_seal_sees_other_writers)
{
    CapshmRegion *r = make_region(1000);
    store_opened(env.s, r, false);
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
    /* The file lent for passthrough is read-only: it is borrowed, stays
     * the same while lent, and never counts as a writer. */
    int backing = store_backing_fd(env.s, r);
    ck_assert_int_ge(backing, 0);
    ck_assert_int_eq(store_backing_fd(env.s, r), backing);
    ck_assert_int_eq(fcntl(backing, F_GETFL) & O_ACCMODE, O_RDONLY);
    CapshmRegion *r2 = make_region(1000);
    store_opened(env.s, r2, false);
    ck_assert_int_ge(store_backing_fd(env.s, r2), 0);
    ck_assert_int_eq(store_seal(env.s, r2), 0);
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

/* The file lent by store_backing_fd stays open while the kernel holds the
 * region, is what the kernel is asked about, and is closed right after the
 * unheld hook ran. */
START_TEST(test_tmpfs_backing_fd_lent_while_held)
{
    CapshmRegion *r = make_held_region(1000);
    int anchor = store_backing_fd(env.s, r);
    ck_assert_int_ge(anchor, 0);
    ck_assert_int_eq(r->anchor_fd, anchor);
    ck_assert_int_eq(store_backing_fd(env.s, r), anchor);
    ck_assert_int_eq(fcntl(anchor, F_GETFL) & O_ACCMODE, O_RDONLY);
    ck_assert_int_ge(r->fd, 0);

    kernel_holds(r);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(env.fk.last_own_fd, anchor);
    /* The store's writable data fd is closed before it asks: its own
     * writer would count as a holder. */
    ck_assert_int_eq(r->fd, -1);
    ck_assert_int_eq(r->anchor_fd, anchor);
    ck_assert_int_ne(fcntl(anchor, F_GETFD), -1);
    tick_when_due();
    ck_assert_int_eq(env.fk.last_own_fd, anchor);

    kernel_lets_go(r);
    tick_when_due();
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_int_eq(env.anchor_at_unheld, anchor); /* still open in the hook */
    ck_assert_int_eq(r->anchor_fd, -1);
    errno = 0;
    ck_assert_int_eq(fcntl(anchor, F_GETFD), -1);
    ck_assert_int_eq(errno, EBADF);

    /* Never lent: the store asks without a file of its own. */
    CapshmRegion *q = make_held_region(1000);
    store_released(env.s, q, true);
    ck_assert_int_eq(env.fk.last_own_fd, -1);
    ck_assert_int_eq(q->anchor_fd, -1);
    ck_assert_int_eq(env.anchor_at_unheld, -1);
}
END_TEST

/* --- the real kernel's answer (tmpfs storage, default probe) ------------------ */

/* A file of @r of our own, as the kernel opens for a client's passthrough
 * open: tmpfs storage opens the region's file again, a memfd is reopened
 * through /proc. */
static int
open_region_file(CapshmRegion *r, int flags)
{
    int fd;
    if (storage_needs_open_fd(store_storage(env.s))) {
        char path[64];
        ck_assert_int_ge(r->fd, 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", r->fd);
        fd = open(path, flags | O_CLOEXEC);
    } else {
        fd = storage_open(store_storage(env.s), r->ino, flags);
    }
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* Map @r's file (via a file of our own) and close that file: only the
 * mapping holds it then. */
static void *
map_region(CapshmRegion *r, int flags, int prot)
{
    int fd = open_region_file(r, flags);
    void *m = mmap(NULL, 4096, prot, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    close(fd);
    return m;
}

START_TEST(test_kernel_mapping_holds)
{
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    ck_assert_int_eq(pwrite(store_data_fd(env.s, r), "held", 4, 0), 4);
    int anchor = store_backing_fd(env.s, r);
    ck_assert_int_ge(anchor, 0);
    char *m = map_region(r, O_RDONLY, PROT_READ);

    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_int_eq(r->anchor_fd, anchor);
    ck_assert_uint_eq(env.unheld->len, 0);
    for (int i = 0; i < 6; i++)
        tick_when_due();
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    ck_assert_int_eq(memcmp(m, "held", 4), 0);

    ck_assert_int_eq(munmap(m, 4096), 0);
    ck_assert(r->kernel_held); /* until the next question */
    ck_assert_int_eq(tick_when_due(), 5 * SEC);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(unheld_count(r), 1);
    ck_assert_int_eq(env.anchor_at_unheld, anchor);
    ck_assert_int_eq(r->anchor_fd, -1);
}
END_TEST

START_TEST(test_kernel_not_held_when_nothing_open)
{
    /* Lent backing file or not, nothing else open: free at the close. */
    CapshmRegion *a = make_held_region(1000);
    ck_assert_int_ge(store_backing_fd(env.s, a), 0);
    store_released(env.s, a, true);
    ck_assert(!a->kernel_held);
    ck_assert_int_eq(a->state, REGION_LINGERING);
    CapshmRegion *b = make_held_region(1000);
    store_released(env.s, b, true);
    ck_assert(!b->kernel_held);
    ck_assert_int_eq(b->state, REGION_LINGERING);
    /* Unlinked with nothing open: destroyed at the close. */
    CapshmRegion *c = make_held_region(1000);
    ck_assert_int_ge(store_backing_fd(env.s, c), 0);
    ck_assert_int_eq(store_unlink(env.s, c), 0);
    store_released(env.s, c, true);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);
    ck_assert_uint_eq(env.unheld->len, 3);
}
END_TEST

START_TEST(test_kernel_open_file_holds)
{
    /* An open file without any mapping holds it too (it could map later). */
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_ge(store_backing_fd(env.s, r), 0);
    int fd = storage_open(store_storage(env.s), r->ino, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    tick_when_due();
    ck_assert(r->kernel_held);
    close(fd);
    tick_when_due();
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);

    /* A writable mapping, and no file lent: held the same way. */
    CapshmRegion *w = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, w, 4096), 0);
    char *m = map_region(w, O_RDWR, PROT_READ | PROT_WRITE);
    m[0] = 'x';
    store_released(env.s, w, true);
    ck_assert(w->kernel_held);
    ck_assert_int_eq(w->anchor_fd, -1);
    ck_assert_int_eq(munmap(m, 4096), 0);
    tick_when_due();
    ck_assert(!w->kernel_held);
    ck_assert_int_eq(w->state, REGION_LINGERING);
}
END_TEST

START_TEST(test_kernel_unlinked_mapped_region_stays_charged)
{
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    ck_assert_int_ge(store_backing_fd(env.s, r), 0);
    uint64_t ino = r->ino;
    char *m = map_region(r, O_RDONLY, PROT_READ);
    store_released(env.s, r, true);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    for (int i = 0; i < 6; i++)
        tick_when_due();
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    struct stat st;
    ck_assert_int_eq(storage_stat(store_storage(env.s), ino, &st), 0);
    ck_assert_int_eq(munmap(m, 4096), 0);
    region_ref(r);
    ck_assert_int_eq(tick_when_due(), -1);
    ck_assert_int_eq(r->state, REGION_DESTROYED);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 0);
    ck_assert_int_eq(storage_stat(store_storage(env.s), ino, &st), -ENOENT);
    region_unref(r);
}
END_TEST

/* A child process that maps @r's file (or, with !map, only keeps a file of
 * it open), closes every other fd, tells us through a pipe, and waits to be
 * killed. */
static pid_t
spawn_holder(CapshmRegion *r, bool map)
{
    int fd = open_region_file(r, O_RDWR);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char c = 'k';
        if (map) {
            void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (m == MAP_FAILED)
                c = 'f';
        }
        /* Nothing of the parent's but the mapping (or this one file): the
         * store's own files, inherited, would hold the region too. */
        for (int i = 3; i < 4096; i++)
            if (i != p[1] && (map || i != fd))
                close(i);
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    close(fd);
    char c = 0;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    close(p[0]);
    ck_assert_int_eq(c, 'k');
    return pid;
}

static void
kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
}

START_TEST(test_kernel_child_mapping_holds)
{
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    int anchor = store_backing_fd(env.s, r);
    ck_assert_int_ge(anchor, 0);
    pid_t child = spawn_holder(r, true);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    for (int i = 0; i < 6; i++)
        tick_when_due();
    ck_assert(r->kernel_held);
    kill_and_reap(child); /* and with it its mapping */
    ck_assert_int_eq(tick_when_due(), 5 * SEC);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert_uint_eq(unheld_count(r), 1);
    ck_assert_int_eq(r->anchor_fd, -1);

    /* A child with only an open file holds it as well. */
    store_opened(env.s, r, false);
    child = spawn_holder(r, false);
    store_released(env.s, r, false);
    ck_assert(r->kernel_held);
    tick_when_due();
    ck_assert(r->kernel_held);
    kill_and_reap(child);
    tick_when_due();
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
}
END_TEST

/* The same questions about a memfd (memfd storage, the fallback where the
 * daemon may not mount a tmpfs). */
START_TEST(test_kernel_memfd)
{
    /* Nothing else open: free at the close. */
    CapshmRegion *a = make_held_region(1000);
    ck_assert_int_eq(store_backing_fd(env.s, a), a->fd);
    store_released(env.s, a, true);
    ck_assert(!a->kernel_held);
    ck_assert_int_eq(a->state, REGION_LINGERING);
    ck_assert_int_eq(store_unlink(env.s, a), 0); /* gone: out of the way */
    ck_assert_uint_eq(store_counters(env.s).destroyed, 1);

    /* A mapping holds it until it goes. */
    CapshmRegion *r = make_held_region(1000);
    ck_assert_int_eq(store_resize(env.s, r, 4096), 0);
    char *m = map_region(r, O_RDONLY, PROT_READ);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LIVE);
    for (int i = 0; i < 6; i++)
        tick_when_due();
    ck_assert(r->kernel_held);
    ck_assert_int_eq(munmap(m, 4096), 0);
    ck_assert_int_eq(tick_when_due(), 5 * SEC);
    ck_assert(!r->kernel_held);
    ck_assert_int_eq(r->state, REGION_LINGERING);
    ck_assert(bytes_exist(r));

    /* So does an open file, and a writable mapping in another process. */
    store_opened(env.s, r, false);
    int fd = open_region_file(r, O_RDONLY);
    store_released(env.s, r, false);
    ck_assert(r->kernel_held);
    close(fd);
    tick_when_due();
    ck_assert(!r->kernel_held);
    store_opened(env.s, r, true);
    pid_t child = spawn_holder(r, true);
    store_released(env.s, r, true);
    ck_assert(r->kernel_held);
    ck_assert_int_eq(store_unlink(env.s, r), 0);
    tick_when_due();
    ck_assert(region_is_alive(r));
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 4096);
    kill_and_reap(child);
    ck_assert_int_eq(tick_when_due(), -1);
    ck_assert_uint_eq(store_counters(env.s).destroyed, 2);
    ck_assert_uint_eq(quota_usage(store_quota(env.s), 1000).bytes, 0);
    ck_assert_uint_eq(env.unheld->len, 4);
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

/* The kernel probe asks with file leases, which fs.leases-enable can turn
 * off (then the daemon falls back to memfd storage, and nothing can tell
 * whether a region is still mapped). */
static bool
leases_enabled(void)
{
    FILE *f = fopen("/proc/sys/fs/leases-enable", "r");
    int on = 1;
    if (f) {
        if (fscanf(f, "%d", &on) != 1)
            on = 1;
        fclose(f);
    }
    return on != 0;
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
    tcase_add_test(tc, test_any_links);
    tcase_add_test(tc, test_any_lifetime_unlink_outlives_holders);
    tcase_add_test(tc, test_any_lifetime_holders_destroys_every_name);
    tcase_add_test(tc, test_any_directories);
    tcase_add_test(tc, test_any_rename);
    tcase_add_test(tc, test_capability_refuses_links);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_linger_exact_then_destroyed);
    tcase_add_test(tc, test_linger_zero);
    tcase_add_test(tc, test_created_but_never_opened_lingers);
    tcase_add_test(tc, test_reopen_cancels_linger);
    tcase_add_test(tc, test_handles_counted);
    tcase_add_test(tc, test_pinned_never_expires);
    tcase_add_test(tc, test_pin_during_linger);
    tcase_add_test(tc, test_unlink_held);
    tcase_add_test(tc, test_unlink_unheld);
    tcase_add_test(tc, test_cache_path_never_probes);
    suite_add_tcase(s, tc);

    /* Passthrough: the (fake) kernel decides once the last handle closed. */
    tc = tcase_create("kernel-held");
    tcase_add_checked_fixture(tc, setup_passthrough, teardown);
    tcase_add_test(tc, test_kernel_held_after_last_close);
    tcase_add_test(tc, test_kernel_lets_go_starts_linger);
    tcase_add_test(tc, test_not_held_at_last_close_lingers);
    tcase_add_test(tc, test_probe_error_counts_as_held);
    tcase_add_test(tc, test_unlink_while_kernel_held);
    tcase_add_test(tc, test_pinned_and_kernel_held);
    tcase_add_test(tc, test_reopen_while_kernel_held);
    tcase_add_test(tc, test_unheld_hook_once_per_transition);
    tcase_add_test(tc, test_switch_to_cache_path);
    tcase_add_test(tc, test_tick_probe_batch);
    tcase_add_test(tc, test_store_free_destroys_all);
    /* The handle-only lifetime holds on this path too. */
    tcase_add_test(tc, test_linger_exact_then_destroyed);
    tcase_add_test(tc, test_handles_counted);
    tcase_add_test(tc, test_unlink_held);
    tcase_add_test(tc, test_unlink_unheld);
    suite_add_tcase(s, tc);

    tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_resize_quota);
    tcase_add_test(tc, test_write_accounting);
    tcase_add_test(tc, test_concurrent_writes_charge_growth_once);
    tcase_add_test(tc, test_failed_write_released_when_last_settles);
    tcase_add_test(tc, test_seal);
    tcase_add_test(tc, test_fallocate_in_place);
    tcase_add_test(tc, test_chown_moves_quota);
    suite_add_tcase(s, tc);

    /* Accounting when a truncate or chown comes while a write's copy runs
     * without the core lock (see the comment above the tests). */
    tc = tcase_create("write-races");
    tcase_set_tags(tc, "write-races");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_resize_during_write_grow);
    tcase_add_test(tc, test_resize_during_write_shrink);
    tcase_add_test(tc, test_chown_during_write);
    suite_add_tcase(s, tc);

    tc = tcase_create("shrink");
    tcase_add_checked_fixture(tc, setup_cache_roomy, teardown);
    tcase_add_test(tc, test_shrink_early);
    suite_add_tcase(s, tc);

    tc = tcase_create("stats");
    tcase_add_checked_fixture(tc, setup_cache, teardown);
    tcase_add_test(tc, test_json_checker_itself);
    tcase_add_test(tc, test_stats_json);
    tcase_add_test(tc, test_stats_json_empty);
    tcase_add_test(tc, test_storage_kind_names);
    suite_add_tcase(s, tc);

    if (leases_enabled()) {
        tc = tcase_create("kernel-memfd");
        tcase_add_checked_fixture(tc, setup_passthrough_kernel_memfd, teardown);
        tcase_add_test(tc, test_kernel_memfd);
        suite_add_tcase(s, tc);
    } else {
        fprintf(stderr, "store: kernel probe tests not run (fs.leases-enable is 0)\n");
    }

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
    tcase_add_test(tc, test_concurrent_writes_charge_growth_once);
    tcase_add_test(tc, test_seal);
    tcase_add_test(tc, test_fallocate_in_place);
    tcase_add_test(tc, test_chown_moves_quota);
    tcase_add_test(tc, test_tmpfs_idle_region_holds_no_fd);
    tcase_add_test(tc, test_tmpfs_many_regions_cost_no_fds);
    tcase_add_test(tc, test_tmpfs_seal_sees_other_writers);
    tcase_add_test(tc, test_tmpfs_destroy_removes_file);
    tcase_add_test(tc, test_tmpfs_mount_and_detach);
    suite_add_tcase(s, tc);

    tc = tcase_create("tmpfs-shrink");
    tcase_add_checked_fixture(tc, setup_cache_tmpfs_roomy, teardown);
    tcase_add_test(tc, test_shrink_early);
    suite_add_tcase(s, tc);

    tc = tcase_create("tmpfs-kernel-held");
    tcase_add_checked_fixture(tc, setup_passthrough_tmpfs, teardown);
    tcase_add_test(tc, test_kernel_held_after_last_close);
    tcase_add_test(tc, test_kernel_lets_go_starts_linger);
    tcase_add_test(tc, test_unlink_while_kernel_held);
    tcase_add_test(tc, test_store_free_destroys_all);
    tcase_add_test(tc, test_tmpfs_backing_fd_lent_while_held);
    suite_add_tcase(s, tc);

    /* The default probe: the real kernel, about real files and mappings. */
    tc = tcase_create("kernel");
    tcase_add_checked_fixture(tc, setup_passthrough_kernel, teardown);
    tcase_add_test(tc, test_kernel_not_held_when_nothing_open);
    tcase_add_test(tc, test_kernel_mapping_holds);
    tcase_add_test(tc, test_kernel_open_file_holds);
    tcase_add_test(tc, test_kernel_unlinked_mapped_region_stays_charged);
    tcase_add_test(tc, test_kernel_child_mapping_holds);
    suite_add_tcase(s, tc);
    return s;
}
