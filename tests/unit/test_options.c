/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/options.c: every -o option of capshmfs(8). */
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "core/options.h"
#include "suites.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

static CapshmOptions opts;

static void
setup(void)
{
    options_init(&opts);
}

static void
teardown(void)
{
    options_clear(&opts);
}

/* Parse @str into the fixture's options; it must succeed. */
static void
parse_ok(const char *str)
{
    GError *err = NULL;
    int r = options_parse(&opts, str, &err);
    ck_assert_msg(r == 0, "'%s' rejected: %s", str, err ? err->message : "(no message)");
    ck_assert_ptr_null(err);
}

/* Parse @str into a fresh CapshmOptions; it must fail with -EINVAL and a
 * message that mentions @needle.  The fixture's options stay untouched. */
static void
parse_bad(const char *str, const char *needle)
{
    CapshmOptions o;
    options_init(&o);
    GError *err = NULL;
    int r = options_parse(&o, str, &err);
    ck_assert_msg(r == -EINVAL, "'%s' gave %d, want -EINVAL", str, r);
    ck_assert_msg(err != NULL, "'%s' failed without a message", str);
    ck_assert_msg(strstr(err->message, needle) != NULL,
                  "message for '%s' does not name '%s': %s", str, needle, err->message);
    ck_assert_msg(strchr(err->message, '\n') == NULL, "message is not one line: %s", err->message);
    g_error_free(err);
    options_clear(&o);
}

/* --- defaults ------------------------------------------------------------ */

START_TEST(test_defaults)
{
    ck_assert_int_eq(opts.datapath, DATAPATH_AUTO);
    ck_assert_uint_eq(opts.linger_s, 5);
    ck_assert_uint_eq(opts.mint_ttl_s, 60);
    ck_assert_uint_eq(opts.max_regions, 4096);
    ck_assert_int_eq(opts.names, NAMES_MODE_CAPABILITY);
    ck_assert_int_eq(opts.allow_other, -1);
    ck_assert(!opts.size_set);
    ck_assert(!opts.quota_set);
    ck_assert_ptr_nonnull(opts.fuse_opts);
    ck_assert_uint_eq(opts.fuse_opts->len, 0);
    /* NULL and empty strings change nothing. */
    parse_ok(NULL);
    parse_ok("");
    parse_ok(",,");
    ck_assert_uint_eq(opts.linger_s, 5);
    ck_assert_uint_eq(opts.fuse_opts->len, 0);
}
END_TEST

/* --- each option ----------------------------------------------------------- */

START_TEST(test_datapath)
{
    parse_ok("datapath=passthrough");
    ck_assert_int_eq(opts.datapath, DATAPATH_PASSTHROUGH);
    parse_ok("datapath=cache");
    ck_assert_int_eq(opts.datapath, DATAPATH_CACHE);
    parse_ok("datapath=auto");
    ck_assert_int_eq(opts.datapath, DATAPATH_AUTO);

    parse_bad("datapath=fast", "datapath");
    parse_bad("datapath=", "datapath");
    parse_bad("datapath", "datapath");
    parse_bad("datapath=Cache", "datapath");

    ck_assert_str_eq(options_datapath_name(DATAPATH_PASSTHROUGH), "passthrough");
    ck_assert_str_eq(options_datapath_name(DATAPATH_CACHE), "cache");
    ck_assert_str_eq(options_datapath_name(DATAPATH_AUTO), "auto");
}
END_TEST

START_TEST(test_linger)
{
    parse_ok("linger=0");
    ck_assert_uint_eq(opts.linger_s, 0);
    parse_ok("linger=30");
    ck_assert_uint_eq(opts.linger_s, 30);
    parse_ok("linger=86400");
    ck_assert_uint_eq(opts.linger_s, 86400);

    parse_bad("linger", "linger");
    parse_bad("linger=", "linger");
    parse_bad("linger=abc", "linger");
    parse_bad("linger=-1", "linger");
    parse_bad("linger=1.5", "linger");
    parse_bad("linger=5s", "linger");
    parse_bad("linger=99999999999999999999999", "linger");
    /* Larger than 100 years is refused rather than wrapped. */
    parse_bad("linger=4294967296", "linger");
    ck_assert_uint_eq(opts.linger_s, 86400);
}
END_TEST

START_TEST(test_mint_ttl)
{
    parse_ok("mint_ttl=1");
    ck_assert_uint_eq(opts.mint_ttl_s, 1);
    parse_ok("mint_ttl=3600");
    ck_assert_uint_eq(opts.mint_ttl_s, 3600);

    parse_bad("mint_ttl=0", "mint_ttl");
    parse_bad("mint_ttl", "mint_ttl");
    parse_bad("mint_ttl=", "mint_ttl");
    parse_bad("mint_ttl=ten", "mint_ttl");
    parse_bad("mint_ttl=-5", "mint_ttl");
}
END_TEST

START_TEST(test_size_and_quota)
{
    parse_ok("size=1024");
    ck_assert_uint_eq(opts.size_bytes, 1024);
    ck_assert(opts.size_set);
    ck_assert(!opts.quota_set);
    parse_ok("size=4k");
    ck_assert_uint_eq(opts.size_bytes, 4 * KiB);
    parse_ok("size=4K");
    ck_assert_uint_eq(opts.size_bytes, 4 * KiB);
    parse_ok("size=2M");
    ck_assert_uint_eq(opts.size_bytes, 2 * MiB);
    parse_ok("size=2m");
    ck_assert_uint_eq(opts.size_bytes, 2 * MiB);
    parse_ok("size=3G");
    ck_assert_uint_eq(opts.size_bytes, 3 * GiB);
    parse_ok("size=3g");
    ck_assert_uint_eq(opts.size_bytes, 3 * GiB);
    parse_ok("size=1T");
    ck_assert_uint_eq(opts.size_bytes, TiB);

    parse_ok("quota=512M");
    ck_assert_uint_eq(opts.quota_bytes, 512 * MiB);
    ck_assert(opts.quota_set);
    ck_assert_uint_eq(opts.size_bytes, TiB); /* untouched */

    const char *keys[] = { "size", "quota" };
    for (int i = 0; i < 2; i++) {
        const char *k = keys[i];
        g_autofree char *s0 = g_strdup_printf("%s=0", k);
        g_autofree char *s1 = g_strdup_printf("%s=abc", k);
        g_autofree char *s2 = g_strdup_printf("%s=1X", k);
        g_autofree char *s3 = g_strdup_printf("%s=-1", k);
        g_autofree char *s4 = g_strdup_printf("%s=", k);
        g_autofree char *s5 = g_strdup_printf("%s", k);
        g_autofree char *s6 = g_strdup_printf("%s=99999999999T", k);
        g_autofree char *s7 = g_strdup_printf("%s=1.5G", k);
        g_autofree char *s8 = g_strdup_printf("%s=M", k);
        g_autofree char *s9 = g_strdup_printf("%s=99999999999999999999999", k);
        parse_bad(s0, k);
        parse_bad(s1, k);
        parse_bad(s2, k);
        parse_bad(s3, k);
        parse_bad(s4, k);
        parse_bad(s5, k);
        parse_bad(s6, k);
        parse_bad(s7, k);
        parse_bad(s8, k);
        parse_bad(s9, k);
    }
    ck_assert_uint_eq(opts.size_bytes, TiB);
    ck_assert_uint_eq(opts.quota_bytes, 512 * MiB);
}
END_TEST

START_TEST(test_max_regions)
{
    parse_ok("max_regions=1");
    ck_assert_uint_eq(opts.max_regions, 1);
    parse_ok("max_regions=100000000");
    ck_assert_uint_eq(opts.max_regions, 100000000);
    parse_ok("max_regions=17");
    ck_assert_uint_eq(opts.max_regions, 17);

    parse_bad("max_regions=0", "max_regions");
    parse_bad("max_regions=100000001", "max_regions");
    parse_bad("max_regions=lots", "max_regions");
    parse_bad("max_regions=-1", "max_regions");
    parse_bad("max_regions=", "max_regions");
    parse_bad("max_regions", "max_regions");
    parse_bad("max_regions=1k", "max_regions");
    ck_assert_uint_eq(opts.max_regions, 17);
}
END_TEST

START_TEST(test_names_option)
{
    parse_ok("names=any");
    ck_assert_int_eq(opts.names, NAMES_MODE_ANY);
    parse_ok("names=capability");
    ck_assert_int_eq(opts.names, NAMES_MODE_CAPABILITY);

    parse_bad("names=posix", "names");
    parse_bad("names=", "names");
    parse_bad("names", "names");
    parse_bad("names=ANY", "names");
}
END_TEST

START_TEST(test_allow_other)
{
    parse_ok("allow_other");
    ck_assert_int_eq(opts.allow_other, 1);
    /* allow_other is ours to decide; it is not passed along twice. */
    ck_assert(strstr(opts.fuse_opts->str, "allow_other") == NULL);
    parse_ok("noallow_other");
    ck_assert_int_eq(opts.allow_other, 0);
    parse_bad("allow_other=1", "allow_other");
}
END_TEST

START_TEST(test_later_values_win)
{
    parse_ok("linger=1,linger=2");
    ck_assert_uint_eq(opts.linger_s, 2);
    parse_ok("linger=7");
    ck_assert_uint_eq(opts.linger_s, 7);
    parse_ok("datapath=cache,datapath=passthrough");
    ck_assert_int_eq(opts.datapath, DATAPATH_PASSTHROUGH);
}
END_TEST

START_TEST(test_unknown_rejected)
{
    parse_bad("frobnicate", "frobnicate");
    parse_bad("frobnicate=1", "frobnicate");
    parse_bad("linger=3,bogus_opt", "bogus_opt");
    /* Generic flags take no value. */
    parse_bad("rw=1", "rw");
    parse_bad("Linger=3", "Linger");
    /* User input quoted in the message cannot break it onto two lines. */
    parse_bad("evil\nline", "evil");
    parse_bad("linger=1\n2", "linger");
}
END_TEST

START_TEST(test_generic_options_collected)
{
    parse_ok("rw,nosuid,nodev,noatime");
    ck_assert_str_eq(opts.fuse_opts->str, "rw,nosuid,nodev,noatime");
    /* Mixed with our own: ours are consumed, generic ones collected. */
    options_clear(&opts);
    options_init(&opts);
    parse_ok("size=1M,rw,linger=3,nosuid,names=any");
    ck_assert_str_eq(opts.fuse_opts->str, "rw,nosuid");
    ck_assert_uint_eq(opts.size_bytes, MiB);
    ck_assert_uint_eq(opts.linger_s, 3);
    ck_assert_int_eq(opts.names, NAMES_MODE_ANY);
    /* A second -o appends. */
    parse_ok("nodev");
    ck_assert_str_eq(opts.fuse_opts->str, "rw,nosuid,nodev");
}
END_TEST

START_TEST(test_fstab_words_dropped)
{
    parse_ok("defaults,auto,noauto,user,_netdev,nofail");
    ck_assert_uint_eq(opts.fuse_opts->len, 0);
    parse_ok("defaults,rw,nofail,noatime,_netdev");
    ck_assert_str_eq(opts.fuse_opts->str, "rw,noatime");
    /* Always-on / our-own-business options are accepted and dropped. */
    parse_ok("default_permissions,fsname=capshm,subtype=capshmfs");
    ck_assert_str_eq(opts.fuse_opts->str, "rw,noatime");
}
END_TEST

/* --- number parsers ---------------------------------------------------------- */

START_TEST(test_parse_size)
{
    uint64_t v = 12345;
    ck_assert_int_eq(options_parse_size("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(options_parse_size("1", &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(options_parse_size("1k", &v), 0);
    ck_assert_uint_eq(v, KiB);
    ck_assert_int_eq(options_parse_size("10K", &v), 0);
    ck_assert_uint_eq(v, 10 * KiB);
    ck_assert_int_eq(options_parse_size("7M", &v), 0);
    ck_assert_uint_eq(v, 7 * MiB);
    ck_assert_int_eq(options_parse_size("7G", &v), 0);
    ck_assert_uint_eq(v, 7 * GiB);
    ck_assert_int_eq(options_parse_size("7T", &v), 0);
    ck_assert_uint_eq(v, 7 * TiB);
    ck_assert_int_eq(options_parse_size("9223372036854775807", &v), 0);
    ck_assert_uint_eq(v, (uint64_t)INT64_MAX);
    ck_assert_int_eq(options_parse_size("8388607T", &v), 0);
    ck_assert_uint_eq(v, 8388607 * TiB);
    /* Leading zeros are still a number. */
    ck_assert_int_eq(options_parse_size("0000000000000000000000042k", &v), 0);
    ck_assert_uint_eq(v, 42 * KiB);

    /* Does not fit in 63 bits. */
    v = 777;
    ck_assert_int_eq(options_parse_size("9223372036854775808", &v), -ERANGE);
    ck_assert_int_eq(options_parse_size("18446744073709551616", &v), -ERANGE);
    ck_assert_int_eq(options_parse_size("8388608T", &v), -ERANGE);     /* 2^63 */
    ck_assert_int_eq(options_parse_size("8796093022208G", &v), -ERANGE); /* 2^63 */
    ck_assert_int_eq(options_parse_size("9007199254740992k", &v), -ERANGE);
    ck_assert_int_eq(options_parse_size("123456789012345678901234567890", &v), -ERANGE);
    ck_assert_uint_eq(v, 777); /* untouched on error */

    /* Not a number. */
    ck_assert_int_eq(options_parse_size(NULL, &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("k", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("-1", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("+1", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size(" 1", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("1 ", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("1.5", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("12x", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("1kk", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("1P", &v), -EINVAL);
    ck_assert_int_eq(options_parse_size("0x10", &v), -EINVAL);
    /* Long junk is junk, not "too large". */
    ck_assert_int_eq(options_parse_size("abcdefghijklmnopqrstuvwxyz", &v), -EINVAL);
    ck_assert_uint_eq(v, 777);
}
END_TEST

START_TEST(test_parse_uint)
{
    uint64_t v = 5;
    ck_assert_int_eq(options_parse_uint("0", 10, &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(options_parse_uint("100", 100, &v), 0);
    ck_assert_uint_eq(v, 100);
    ck_assert_int_eq(options_parse_uint("18446744073709551615", UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);

    v = 5;
    ck_assert_int_eq(options_parse_uint("101", 100, &v), -ERANGE);
    ck_assert_int_eq(options_parse_uint("18446744073709551616", UINT64_MAX, &v), -ERANGE);
    ck_assert_int_eq(options_parse_uint("99999999999999999999999", UINT64_MAX, &v), -ERANGE);
    /* A single digit above a small maximum. */
    ck_assert_int_eq(options_parse_uint("4", 3, &v), -ERANGE);
    ck_assert_int_eq(options_parse_uint("9", 0, &v), -ERANGE);
    ck_assert_int_eq(options_parse_uint("13", 12, &v), -ERANGE);
    ck_assert_uint_eq(v, 5);

    ck_assert_int_eq(options_parse_uint("", 10, &v), -EINVAL);
    ck_assert_int_eq(options_parse_uint(NULL, 10, &v), -EINVAL);
    ck_assert_int_eq(options_parse_uint("1a", 100, &v), -EINVAL);
    ck_assert_int_eq(options_parse_uint("-1", 100, &v), -EINVAL);
    ck_assert_uint_eq(v, 5);
}
END_TEST

/* --- options_finish ---------------------------------------------------------- */

START_TEST(test_finish_defaults)
{
    GError *err = NULL;
    ck_assert_int_eq(options_finish(&opts, 16 * GiB, false, &err), 0);
    ck_assert_ptr_null(err);
    ck_assert_uint_eq(opts.size_bytes, 8 * GiB);
    ck_assert_uint_eq(opts.quota_bytes, 8 * GiB);
    ck_assert_int_eq(opts.allow_other, 0);

    CapshmOptions o;
    options_init(&o);
    ck_assert_int_eq(options_finish(&o, 3 * GiB, true, NULL), 0);
    ck_assert_uint_eq(o.size_bytes, 3 * GiB / 2);
    ck_assert_uint_eq(o.quota_bytes, 3 * GiB / 2);
    ck_assert_int_eq(o.allow_other, 1);
    options_clear(&o);
}
END_TEST

START_TEST(test_lifetime_defaults_by_names_mode)
{
    ck_assert_int_eq(options_finish(&opts, 16 * GiB, false, NULL), 0);
    ck_assert_int_eq(opts.lifetime, LIFETIME_HOLDERS);

    CapshmOptions o;
    options_init(&o);
    GError *err = NULL;
    ck_assert_int_eq(options_parse(&o, "names=any", &err), 0);
    ck_assert_int_eq(options_finish(&o, 16 * GiB, false, NULL), 0);
    ck_assert_int_eq(o.lifetime, LIFETIME_UNLINK);
    ck_assert_str_eq(options_lifetime_name(o.lifetime), "unlink");
    options_clear(&o);

    options_init(&o);
    ck_assert_int_eq(options_parse(&o, "names=any,lifetime=holders", &err), 0);
    ck_assert_int_eq(options_finish(&o, 16 * GiB, false, NULL), 0);
    ck_assert_int_eq(o.lifetime, LIFETIME_HOLDERS);
    ck_assert_int_eq(options_parse(&o, "lifetime=unlink", &err), 0);
    ck_assert_int_eq(o.lifetime, LIFETIME_UNLINK);
    ck_assert_int_eq(options_parse(&o, "lifetime=cgroup", &err), 0);
    ck_assert_int_eq(o.lifetime, LIFETIME_CGROUP);
    ck_assert_str_eq(options_lifetime_name(o.lifetime), "cgroup");
    ck_assert_int_eq(options_parse(&o, "lifetime=forever", &err), -EINVAL);
    ck_assert_ptr_nonnull(err);
    g_clear_error(&err);
    ck_assert_int_eq(options_parse(&o, "lifetime", &err), -EINVAL);
    g_clear_error(&err);
    options_clear(&o);
}
END_TEST

START_TEST(test_finish_explicit_values)
{
    parse_ok("size=2G,quota=1G,noallow_other");
    ck_assert_int_eq(options_finish(&opts, 64 * GiB, true, NULL), 0);
    ck_assert_uint_eq(opts.size_bytes, 2 * GiB);
    ck_assert_uint_eq(opts.quota_bytes, GiB);
    ck_assert_int_eq(opts.allow_other, 0); /* explicit beats is_root */

    CapshmOptions o;
    options_init(&o);
    GError *err = NULL;
    ck_assert_int_eq(options_parse(&o, "size=1G,allow_other", &err), 0);
    ck_assert_int_eq(options_finish(&o, 64 * GiB, false, NULL), 0);
    ck_assert_uint_eq(o.size_bytes, GiB);
    ck_assert_uint_eq(o.quota_bytes, GiB); /* quota defaults to size, not RAM */
    ck_assert_int_eq(o.allow_other, 1);
    options_clear(&o);
}
END_TEST

START_TEST(test_finish_quota_above_size_kept)
{
    /* An explicit quota above the size is kept (size answers ENOSPC first),
     * whatever the order. */
    parse_ok("quota=16G,size=2G");
    ck_assert_int_eq(options_finish(&opts, 64 * GiB, false, NULL), 0);
    ck_assert_uint_eq(opts.size_bytes, 2 * GiB);
    ck_assert_uint_eq(opts.quota_bytes, 16 * GiB);

    /* Likewise above the RAM-derived size. */
    CapshmOptions o;
    options_init(&o);
    GError *err = NULL;
    ck_assert_int_eq(options_parse(&o, "quota=100G", &err), 0);
    ck_assert_int_eq(options_finish(&o, 8 * GiB, false, NULL), 0);
    ck_assert_uint_eq(o.size_bytes, 4 * GiB);
    ck_assert_uint_eq(o.quota_bytes, 100 * GiB);
    options_clear(&o);
}
END_TEST

Suite *
options_suite(void)
{
    Suite *s = suite_create("options");

    TCase *tc = tcase_create("parse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_datapath);
    tcase_add_test(tc, test_linger);
    tcase_add_test(tc, test_mint_ttl);
    tcase_add_test(tc, test_size_and_quota);
    tcase_add_test(tc, test_max_regions);
    tcase_add_test(tc, test_names_option);
    tcase_add_test(tc, test_allow_other);
    tcase_add_test(tc, test_later_values_win);
    tcase_add_test(tc, test_unknown_rejected);
    tcase_add_test(tc, test_generic_options_collected);
    tcase_add_test(tc, test_fstab_words_dropped);
    suite_add_tcase(s, tc);

    tc = tcase_create("numbers");
    tcase_add_test(tc, test_parse_size);
    tcase_add_test(tc, test_parse_uint);
    suite_add_tcase(s, tc);

    tc = tcase_create("finish");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_finish_defaults);
    tcase_add_test(tc, test_lifetime_defaults_by_names_mode);
    tcase_add_test(tc, test_finish_explicit_values);
    tcase_add_test(tc, test_finish_quota_above_size_kept);
    suite_add_tcase(s, tc);
    return s;
}
