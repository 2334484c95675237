/* SPDX-License-Identifier: MIT */
/* Unit tests for src/core/names.c: encoder, minting, validation, comparison. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/names.h"
#include "suites.h"

static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* --- encoder ------------------------------------------------------------- */

START_TEST(test_encode_all_zero)
{
    unsigned char bytes[17] = { 0 };
    char out[NAMES_BUF];
    memset(out, 'X', sizeof out);
    ck_assert_int_eq(names_encode(bytes, sizeof bytes, out), 0);
    ck_assert_uint_eq(strlen(out), NAMES_CAP_LEN);
    ck_assert_str_eq(out, "aaaaaaaaaaaaaaaaaaaaaaaaaa");
}
END_TEST

START_TEST(test_encode_all_ones)
{
    unsigned char bytes[17];
    memset(bytes, 0xff, sizeof bytes);
    char out[NAMES_BUF];
    ck_assert_int_eq(names_encode(bytes, sizeof bytes, out), 0);
    ck_assert_uint_eq(strlen(out), NAMES_CAP_LEN);
    ck_assert_str_eq(out, "77777777777777777777777777");
}
END_TEST

START_TEST(test_encode_rfc4648_vector)
{
    /* RFC 4648: BASE32("foobar") = "MZXW6YTBOI======"; the 10th character
     * takes its low bits from the zero padding, as it does here. */
    unsigned char bytes[17] = { 'f', 'o', 'o', 'b', 'a', 'r' };
    char out[NAMES_BUF];
    ck_assert_int_eq(names_encode(bytes, sizeof bytes, out), 0);
    ck_assert_str_eq(out, "mzxw6ytboiaaaaaaaaaaaaaaaa");
}
END_TEST

START_TEST(test_encode_bit_positions)
{
    /* One set bit at position k (MSB first) must land in character k/5 as
     * the value 1 << (4 - k%5). */
    for (unsigned k = 0; k < NAMES_CAP_LEN * 5; k++) {
        unsigned char bytes[17] = { 0 };
        bytes[k / 8] = (unsigned char)(0x80u >> (k % 8));
        char out[NAMES_BUF];
        ck_assert_int_eq(names_encode(bytes, sizeof bytes, out), 0);
        for (unsigned i = 0; i < NAMES_CAP_LEN; i++) {
            char want = i == k / 5 ? alphabet[1u << (4 - k % 5)] : 'a';
            ck_assert_msg(out[i] == want, "bit %u: char %u is '%c', want '%c'", k, i, out[i], want);
        }
    }
}
END_TEST

START_TEST(test_encode_too_short)
{
    unsigned char bytes[17] = { 0 };
    char out[NAMES_BUF] = "untouched";
    /* 16 bytes = 128 bits < 130. */
    ck_assert_int_eq(names_encode(bytes, 16, out), -EINVAL);
    ck_assert_int_eq(names_encode(bytes, 0, out), -EINVAL);
    ck_assert_str_eq(out, "untouched");
    /* 17 bytes = 136 bits is enough. */
    ck_assert_int_eq(names_encode(bytes, 17, out), 0);
}
END_TEST

/* --- minting ------------------------------------------------------------- */

START_TEST(test_mint_valid_and_distinct)
{
    GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    bool used[32] = { false };
    for (int i = 0; i < 2000; i++) {
        char out[NAMES_BUF];
        ck_assert_int_eq(names_mint(out), 0);
        ck_assert_uint_eq(strlen(out), NAMES_CAP_LEN);
        ck_assert_msg(names_is_capability(out), "minted '%s' is not a capability", out);
        for (int j = 0; j < NAMES_CAP_LEN; j++) {
            const char *p = strchr(alphabet, out[j]);
            ck_assert_ptr_nonnull(p);
            used[p - alphabet] = true;
        }
        ck_assert_msg(g_hash_table_add(seen, g_strdup(out)), "duplicate mint '%s'", out);
    }
    /* 52000 random characters: every one of the 32 must have appeared. */
    for (int j = 0; j < 32; j++)
        ck_assert_msg(used[j], "character '%c' never minted", alphabet[j]);
    ck_assert_uint_eq(g_hash_table_size(seen), 2000);
    g_hash_table_destroy(seen);
}
END_TEST

/* --- capability names ----------------------------------------------------- */

START_TEST(test_is_capability)
{
    ck_assert(names_is_capability("abcdefghijklmnopqrstuvwxyz"));
    ck_assert(names_is_capability("234567234567234567234567aa"));
    ck_assert(names_is_capability("aaaaaaaaaaaaaaaaaaaaaaaaaa"));

    ck_assert(!names_is_capability(NULL));
    ck_assert(!names_is_capability(""));
    ck_assert(!names_is_capability("aaaaaaaaaaaaaaaaaaaaaaaaa"));   /* 25 */
    ck_assert(!names_is_capability("aaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 27 */
    ck_assert(!names_is_capability("Aaaaaaaaaaaaaaaaaaaaaaaaaa"));  /* uppercase */
    ck_assert(!names_is_capability("aaaaaaaaaaaaaaaaaaaaaaaaaZ"));
    ck_assert(!names_is_capability("0aaaaaaaaaaaaaaaaaaaaaaaaa"));
    ck_assert(!names_is_capability("a1aaaaaaaaaaaaaaaaaaaaaaaa"));
    ck_assert(!names_is_capability("aaaaaaaaaaaaa8aaaaaaaaaaaa"));
    ck_assert(!names_is_capability("aaaaaaaaaaaaaaaaaaaaaaaaa9"));
    ck_assert(!names_is_capability(".aaaaaaaaaaaaaaaaaaaaaaaaa"));
    ck_assert(!names_is_capability("aaaaaaaaaaaa/aaaaaaaaaaaaa"));
    ck_assert(!names_is_capability("aaaaaaaaaaaa aaaaaaaaaaaaa"));
    /* A NUL in the middle: the 26 bytes are not all name characters. */
    static const char with_nul[27] = "aaaaaaaaaaaaa\0aaaaaaaaaaaa";
    ck_assert(!names_is_capability(with_nul));
    /* Minted names round-trip. */
    char out[NAMES_BUF];
    ck_assert_int_eq(names_mint(out), 0);
    ck_assert(names_is_capability(out));
}
END_TEST

/* --- names=any ------------------------------------------------------------ */

START_TEST(test_is_valid_any)
{
    char buf[NAMES_MAX + 2];

    ck_assert(names_is_valid_any("a"));
    ck_assert(names_is_valid_any("my-region_1"));
    ck_assert(names_is_valid_any("x.y"));
    ck_assert(names_is_valid_any("aaaaaaaaaaaaaaaaaaaaaaaaaa"));

    ck_assert(!names_is_valid_any(NULL));
    ck_assert(!names_is_valid_any(""));
    ck_assert(!names_is_valid_any("."));
    ck_assert(!names_is_valid_any(".."));
    ck_assert(!names_is_valid_any(".hidden"));
    ck_assert(!names_is_valid_any("a/b"));
    ck_assert(!names_is_valid_any("/"));
    ck_assert(!names_is_valid_any("ab/"));

    memset(buf, 'x', NAMES_MAX);
    buf[NAMES_MAX] = '\0';
    ck_assert_uint_eq(strlen(buf), 255);
    ck_assert(names_is_valid_any(buf));
    buf[NAMES_MAX - 1] = '/';
    ck_assert(!names_is_valid_any(buf)); /* '/' at the very end of 255 */

    memset(buf, 'x', NAMES_MAX + 1);
    buf[NAMES_MAX + 1] = '\0';
    ck_assert_uint_eq(strlen(buf), 256);
    ck_assert(!names_is_valid_any(buf));
}
END_TEST

START_TEST(test_is_control)
{
    ck_assert(names_is_control(".new"));
    ck_assert(names_is_control(".stats"));
    ck_assert(names_is_control("."));
    ck_assert(!names_is_control("new"));
    ck_assert(!names_is_control("a.new"));
    ck_assert(!names_is_control(""));
    ck_assert(!names_is_control(NULL));
}
END_TEST

/* --- comparison and hashing ------------------------------------------------ */

START_TEST(test_equal_ct)
{
    ck_assert(names_equal_ct("", ""));
    ck_assert(names_equal_ct("abc", "abc"));
    ck_assert(names_equal_ct("aaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaa"));

    ck_assert(!names_equal_ct("abc", "abd"));   /* last differs */
    ck_assert(!names_equal_ct("xbc", "abc"));   /* first differs */
    ck_assert(!names_equal_ct("abc", "ab"));    /* prefix */
    ck_assert(!names_equal_ct("ab", "abc"));
    ck_assert(!names_equal_ct("", "a"));
    ck_assert(!names_equal_ct("aaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaab"));
    /* Differences in any bit of a byte count. */
    for (int bit = 0; bit < 8; bit++) {
        char a[2] = { 'A', 0 }, b[2] = { (char)('A' ^ (1 << bit)), 0 };
        if (b[0] == 0)
            continue;
        ck_assert_msg(!names_equal_ct(a, b), "bit %d ignored", bit);
    }
}
END_TEST

START_TEST(test_hash)
{
    char a[] = "abcdefghijklmnopqrstuvwxyz";
    char b[] = "abcdefghijklmnopqrstuvwxyz";
    ck_assert_uint_eq(names_hash(a), names_hash(b));
    ck_assert_uint_ne(names_hash("abcdefghijklmnopqrstuvwxyz"), names_hash("abcdefghijklmnopqrstuvwxy2"));
    ck_assert_uint_ne(names_hash("ab"), names_hash("ba"));
    /* Distinct minted names spread over buckets: of 1000, almost none collide. */
    GHashTable *h = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (int i = 0; i < 1000; i++) {
        char out[NAMES_BUF];
        ck_assert_int_eq(names_mint(out), 0);
        g_hash_table_add(h, GUINT_TO_POINTER(names_hash(out)));
    }
    ck_assert_uint_ge(g_hash_table_size(h), 995);
    g_hash_table_destroy(h);
}
END_TEST

Suite *
names_suite(void)
{
    Suite *s = suite_create("names");

    TCase *tc = tcase_create("encode");
    tcase_add_test(tc, test_encode_all_zero);
    tcase_add_test(tc, test_encode_all_ones);
    tcase_add_test(tc, test_encode_rfc4648_vector);
    tcase_add_test(tc, test_encode_bit_positions);
    tcase_add_test(tc, test_encode_too_short);
    suite_add_tcase(s, tc);

    tc = tcase_create("mint");
    tcase_add_test(tc, test_mint_valid_and_distinct);
    suite_add_tcase(s, tc);

    tc = tcase_create("validate");
    tcase_add_test(tc, test_is_capability);
    tcase_add_test(tc, test_is_valid_any);
    tcase_add_test(tc, test_is_control);
    suite_add_tcase(s, tc);

    tc = tcase_create("compare");
    tcase_add_test(tc, test_equal_ct);
    tcase_add_test(tc, test_hash);
    suite_add_tcase(s, tc);
    return s;
}
