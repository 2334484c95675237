/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/quota.c: per-uid and mount-wide accounting. */
#include <errno.h>
#include <glib.h>
#include <stdint.h>

#include "core/quota.h"
#include "suites.h"

/* A mount of 100 bytes, 60 bytes and 3 regions per uid. */
static Quota *q;

static void
setup(void)
{
    q = quota_new(100, 60, 3);
}

static void
teardown(void)
{
    quota_free(q);
    q = NULL;
}

typedef struct {
    QuotaUsage seen[16];
    unsigned n;
} Collect;

static void
collect(const QuotaUsage *u, void *data)
{
    Collect *c = data;
    ck_assert_uint_lt(c->n, G_N_ELEMENTS(c->seen));
    c->seen[c->n++] = *u;
}

static unsigned
uid_count(void)
{
    Collect c = { .n = 0 };
    quota_foreach(q, collect, &c);
    return c.n;
}

START_TEST(test_limits_reported)
{
    ck_assert_uint_eq(quota_size_limit(q), 100);
    ck_assert_uint_eq(quota_bytes_limit(q), 60);
    ck_assert_uint_eq(quota_regions_limit(q), 3);
    ck_assert_uint_eq(quota_total_bytes(q), 0);
    QuotaUsage u = quota_usage(q, 1234);
    ck_assert_uint_eq(u.uid, 1234);
    ck_assert_uint_eq(u.regions, 0);
    ck_assert_uint_eq(u.bytes, 0);
    ck_assert_uint_eq(u.mints, 0);
    ck_assert_uint_eq(uid_count(), 0);
}
END_TEST

START_TEST(test_charge_and_release_bytes)
{
    ck_assert_int_eq(quota_charge_bytes(q, 1000, 30), 0);
    ck_assert_int_eq(quota_charge_bytes(q, 1000, 0), 0);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 30);
    ck_assert_uint_eq(quota_total_bytes(q), 30);
    ck_assert_int_eq(quota_charge_bytes(q, 1000, 30), 0); /* exactly the quota */
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 60);

    quota_release_bytes(q, 1000, 25);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 35);
    ck_assert_uint_eq(quota_total_bytes(q), 35);
    /* What was released can be charged again. */
    ck_assert_int_eq(quota_charge_bytes(q, 1000, 25), 0);
    ck_assert_int_eq(quota_charge_bytes(q, 1000, 1), -EDQUOT);
    quota_release_bytes(q, 1000, 60);
    ck_assert_uint_eq(quota_usage(q, 1000).bytes, 0);
    ck_assert_uint_eq(quota_total_bytes(q), 0);
    /* A uid that holds nothing is forgotten. */
    ck_assert_uint_eq(uid_count(), 0);
    /* Releasing for an unknown uid is harmless. */
    quota_release_bytes(q, 4242, 10);
    quota_release_region(q, 4242);
    quota_release_mint(q, 4242);
    ck_assert_uint_eq(quota_total_bytes(q), 0);
    ck_assert_uint_eq(uid_count(), 0);
}
END_TEST

START_TEST(test_edquot_vs_enospc)
{
    ck_assert_int_eq(quota_charge_bytes(q, 1, 60), 0);
    /* Over the uid's quota. */
    ck_assert_int_eq(quota_charge_bytes(q, 1, 1), -EDQUOT);
    /* Within uid 2's quota but over the mount's size: ENOSPC. */
    ck_assert_int_eq(quota_charge_bytes(q, 2, 41), -ENOSPC);
    /* Over both: the uid's quota wins. */
    ck_assert_int_eq(quota_charge_bytes(q, 2, 61), -EDQUOT);
    /* A single delta larger than everything, without wrapping. */
    ck_assert_int_eq(quota_charge_bytes(q, 2, UINT64_MAX), -EDQUOT);
    ck_assert_int_eq(quota_charge_bytes(q, 1, UINT64_MAX - 30), -EDQUOT);
    /* Exactly filling the mount works. */
    ck_assert_int_eq(quota_charge_bytes(q, 2, 40), 0);
    ck_assert_uint_eq(quota_total_bytes(q), 100);
    ck_assert_int_eq(quota_charge_bytes(q, 3, 1), -ENOSPC);
}
END_TEST

START_TEST(test_failed_charge_changes_nothing)
{
    ck_assert_int_eq(quota_charge_bytes(q, 1, 50), 0);
    ck_assert_int_eq(quota_charge_bytes(q, 2, 45), 0);
    ck_assert_int_eq(quota_charge_region(q, 1), 0);

    ck_assert_int_eq(quota_charge_bytes(q, 1, 11), -EDQUOT);
    ck_assert_int_eq(quota_charge_bytes(q, 2, 6), -ENOSPC);
    ck_assert_int_eq(quota_charge_bytes(q, 7, 6), -ENOSPC);
    QuotaUsage u1 = quota_usage(q, 1), u2 = quota_usage(q, 2);
    ck_assert_uint_eq(u1.bytes, 50);
    ck_assert_uint_eq(u1.regions, 1);
    ck_assert_uint_eq(u2.bytes, 45);
    ck_assert_uint_eq(quota_total_bytes(q), 95);
    /* The failed uid 7 left no entry behind. */
    ck_assert_uint_eq(uid_count(), 2);
    ck_assert_uint_eq(quota_usage(q, 7).bytes, 0);
    /* Still exactly 5 bytes of room. */
    ck_assert_int_eq(quota_charge_bytes(q, 7, 5), 0);
    ck_assert_uint_eq(quota_total_bytes(q), 100);
}
END_TEST

START_TEST(test_per_uid_independent)
{
    ck_assert_int_eq(quota_charge_bytes(q, 10, 20), 0);
    ck_assert_int_eq(quota_charge_bytes(q, 20, 30), 0);
    ck_assert_int_eq(quota_charge_region(q, 10), 0);
    ck_assert_uint_eq(quota_usage(q, 10).bytes, 20);
    ck_assert_uint_eq(quota_usage(q, 20).bytes, 30);
    ck_assert_uint_eq(quota_usage(q, 10).regions, 1);
    ck_assert_uint_eq(quota_usage(q, 20).regions, 0);
    ck_assert_uint_eq(quota_total_bytes(q), 50);

    quota_release_bytes(q, 10, 20);
    ck_assert_uint_eq(quota_usage(q, 10).bytes, 0);
    ck_assert_uint_eq(quota_usage(q, 20).bytes, 30);
    ck_assert_uint_eq(quota_total_bytes(q), 30);
    /* uid 10 still has a region, so it is still listed. */
    ck_assert_uint_eq(uid_count(), 2);
    quota_release_region(q, 10);
    ck_assert_uint_eq(uid_count(), 1);
}
END_TEST

START_TEST(test_max_regions)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(quota_charge_region(q, 5), 0);
    ck_assert_int_eq(quota_charge_region(q, 5), -EDQUOT);
    ck_assert_uint_eq(quota_usage(q, 5).regions, 3);
    /* Another uid is not affected. */
    ck_assert_int_eq(quota_charge_region(q, 6), 0);
    ck_assert_uint_eq(quota_usage(q, 6).regions, 1);
    /* Releasing one makes room for exactly one. */
    quota_release_region(q, 5);
    ck_assert_uint_eq(quota_usage(q, 5).regions, 2);
    ck_assert_int_eq(quota_charge_region(q, 5), 0);
    ck_assert_int_eq(quota_charge_region(q, 5), -EDQUOT);
    /* Regions do not count against bytes. */
    ck_assert_int_eq(quota_charge_bytes(q, 5, 60), 0);
}
END_TEST

START_TEST(test_mints_cap)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(quota_charge_mint(q, 5), 0);
    ck_assert_int_eq(quota_charge_mint(q, 5), -EDQUOT);
    ck_assert_uint_eq(quota_usage(q, 5).mints, 3);
    ck_assert_int_eq(quota_charge_mint(q, 6), 0);
    quota_release_mint(q, 5);
    ck_assert_uint_eq(quota_usage(q, 5).mints, 2);
    ck_assert_int_eq(quota_charge_mint(q, 5), 0);
    /* Mints and regions are counted separately. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(quota_charge_region(q, 5), 0);
    ck_assert_uint_eq(quota_usage(q, 5).mints, 3);
    ck_assert_uint_eq(quota_usage(q, 5).regions, 3);
    for (int i = 0; i < 3; i++) {
        quota_release_mint(q, 5);
        quota_release_region(q, 5);
    }
    ck_assert_uint_eq(quota_usage(q, 5).mints, 0);
    /* uid 5 is forgotten, uid 6 (one mint) is not. */
    ck_assert_uint_eq(uid_count(), 1);
}
END_TEST

START_TEST(test_foreach_order)
{
    const uid_t uids[] = { 1000, 5, 70000, 0, 65534, 4294967294u };
    for (guint i = 0; i < G_N_ELEMENTS(uids); i++)
        ck_assert_int_eq(quota_charge_bytes(q, uids[i], i + 1), 0);
    ck_assert_int_eq(quota_charge_mint(q, 77), 0);

    Collect c = { .n = 0 };
    quota_foreach(q, collect, &c);
    const uid_t want[] = { 0, 5, 77, 1000, 65534, 70000, 4294967294u };
    const uint64_t want_bytes[] = { 4, 2, 0, 1, 5, 3, 6 };
    ck_assert_uint_eq(c.n, G_N_ELEMENTS(want));
    for (guint i = 0; i < c.n; i++) {
        ck_assert_uint_eq(c.seen[i].uid, want[i]);
        ck_assert_uint_eq(c.seen[i].bytes, want_bytes[i]);
    }
    ck_assert_uint_eq(c.seen[2].mints, 1);
}
END_TEST

Suite *
quota_suite(void)
{
    Suite *s = suite_create("quota");
    TCase *tc = tcase_create("accounting");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_limits_reported);
    tcase_add_test(tc, test_charge_and_release_bytes);
    tcase_add_test(tc, test_edquot_vs_enospc);
    tcase_add_test(tc, test_failed_charge_changes_nothing);
    tcase_add_test(tc, test_per_uid_independent);
    tcase_add_test(tc, test_max_regions);
    tcase_add_test(tc, test_mints_cap);
    tcase_add_test(tc, test_foreach_order);
    suite_add_tcase(s, tc);
    return s;
}
