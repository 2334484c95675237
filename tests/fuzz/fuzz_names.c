/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: the names module (src/core/names.c).
 *
 * Properties checked on every input:
 *  - names_encode() of >= 17 bytes gives a capability name whose 26 base32
 *    digits decode back to exactly the first 130 input bits; fewer bytes
 *    give -EINVAL and leave the output alone.
 *  - names_is_capability(), names_is_valid_any() and names_is_control()
 *    agree with a straightforward reference on arbitrary strings.
 *  - names_equal_ct() agrees with strcmp() == 0, and names_hash() of equal
 *    strings is equal.
 *  - Changing any one character of a capability name gives a different
 *    name (no aliasing), which is a capability name exactly when the new
 *    character is in the alphabet.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/names.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_names: check failed: %s: ", #cond);           \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

static int
b32_value(char c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

static bool
ref_is_capability(const char *s)
{
    if (strlen(s) != NAMES_CAP_LEN)
        return false;
    for (size_t i = 0; i < NAMES_CAP_LEN; i++)
        if (b32_value(s[i]) < 0)
            return false;
    return true;
}

static bool
ref_is_valid_any(const char *s)
{
    size_t len = strlen(s);
    return len >= 1 && len <= NAMES_MAX && s[0] != '.' && !strchr(s, '/');
}

static void
check_string(const char *s)
{
    CHECK(names_is_capability(s) == ref_is_capability(s), "is_capability(\"%s\")", s);
    CHECK(names_is_valid_any(s) == ref_is_valid_any(s), "is_valid_any(\"%s\")", s);
    CHECK(names_is_control(s) == (s[0] == '.'), "is_control(\"%s\")", s);
    /* A capability name is always acceptable in names=any mode too. */
    if (names_is_capability(s))
        CHECK(names_is_valid_any(s) && !names_is_control(s), "capability \"%s\"", s);
}

static void
check_roundtrip(const uint8_t *bytes, size_t n)
{
    char out[NAMES_BUF];
    memset(out, 'X', sizeof out);
    int r = names_encode(bytes, n, out);
    if (n * 8 < 130) {
        CHECK(r == -EINVAL, "encode of %zu bytes gave %d", n, r);
        for (size_t i = 0; i < sizeof out; i++)
            CHECK(out[i] == 'X', "encode of %zu bytes wrote the output", n);
        return;
    }
    CHECK(r == 0, "encode of %zu bytes gave %d", n, r);
    CHECK(names_is_capability(out), "encoded \"%.32s\" is not a capability", out);
    /* Decode: 26 x 5 bits, most significant first. */
    uint8_t back[17] = { 0 };
    for (size_t i = 0; i < NAMES_CAP_LEN; i++) {
        int v = b32_value(out[i]);
        CHECK(v >= 0, "char %zu of \"%s\"", i, out);
        for (int b = 0; b < 5; b++) {
            size_t k = i * 5 + (size_t)b;
            if ((v >> (4 - b)) & 1)
                back[k / 8] |= (uint8_t)(0x80u >> (k % 8));
        }
    }
    for (size_t k = 0; k < 130; k++) {
        unsigned a = (bytes[k / 8] >> (7 - k % 8)) & 1u;
        unsigned b = (back[k / 8] >> (7 - k % 8)) & 1u;
        CHECK(a == b, "bit %zu lost in \"%s\"", k, out);
    }
    /* Single-character changes never alias and keep the form exactly when
     * the replacement is in the alphabet. */
    for (size_t i = 0; i < NAMES_CAP_LEN; i++) {
        char m[NAMES_BUF];
        memcpy(m, out, sizeof m);
        uint8_t c = bytes[i % n];
        if (c == 0 || c == (uint8_t)m[i])
            c = (uint8_t)(m[i] == 'a' ? 'b' : 'a');
        m[i] = (char)c;
        CHECK(!names_equal_ct(m, out), "one-char change %zu equals original", i);
        CHECK(names_is_capability(m) == (b32_value((char)c) >= 0), "mutant \"%s\"", m);
    }
    /* One char short / long. */
    char shortn[NAMES_BUF], longn[NAMES_BUF + 1];
    memcpy(shortn, out, NAMES_CAP_LEN - 1);
    shortn[NAMES_CAP_LEN - 1] = '\0';
    memcpy(longn, out, NAMES_CAP_LEN);
    longn[NAMES_CAP_LEN] = 'a';
    longn[NAMES_CAP_LEN + 1] = '\0';
    CHECK(!names_is_capability(shortn) && !names_is_capability(longn), "length variants");
    CHECK(!names_equal_ct(shortn, out) && !names_equal_ct(longn, out), "length variants equal");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_roundtrip(data, size);

    /* Two strings: the input split at its first NUL (or halved). */
    char *buf = malloc(size + 2);
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = '\0';
    char *a = buf;
    char *nul = memchr(buf, '\0', size);
    char *b = nul ? nul + 1 : buf + size + 1;
    check_string(a);
    check_string(b);

    bool eq = strcmp(a, b) == 0;
    CHECK(names_equal_ct(a, b) == eq, "equal_ct(\"%s\", \"%s\")", a, b);
    CHECK(names_equal_ct(b, a) == eq, "equal_ct not symmetric");
    CHECK(names_equal_ct(a, a), "equal_ct not reflexive");
    if (eq)
        CHECK(names_hash(a) == names_hash(b), "hash differs for equal names");
    char *copy = strdup(a);
    CHECK(names_hash(copy) == names_hash(a), "hash not deterministic");
    free(copy);
    free(buf);
    return 0;
}
