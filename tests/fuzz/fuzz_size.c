/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: options_parse_size() and options_parse_uint().
 *
 * Both are checked against an independent reference written the slow and
 * obvious way (digit by digit in 128-bit arithmetic):
 *   size:  DIGITS [kKmMgGtT]?  (powers of 1024), value <= INT64_MAX
 *          -EINVAL for anything that is not that shape, -ERANGE when it is
 *          but the value does not fit; leading zeros are fine.
 *   uint:  DIGITS, value <= max (max chosen by the fuzzer), else -ERANGE.
 * Neither may touch *out on failure.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/options.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_size: check failed: %s: ", #cond);            \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

static int
ref_digits(const char *s, size_t len, unsigned __int128 limit, uint64_t *out)
{
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
    unsigned __int128 v = 0;
    bool over = false;
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > limit) {
            over = true;
            v = limit + 1; /* keep it bounded; keep scanning nothing else */
        }
    }
    if (over)
        return -ERANGE;
    *out = (uint64_t)v;
    return 0;
}

static int
ref_size(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    unsigned shift = 0;
    if (len) {
        switch (s[len - 1]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        default: break;
        }
    }
    if (shift)
        len--;
    uint64_t v;
    int r = ref_digits(s, len, (unsigned __int128)INT64_MAX >> shift, &v);
    if (r < 0)
        return r;
    *out = v << shift;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* First 8 bytes (if any) choose the uint maximum; the rest is text. */
    uint64_t max = UINT64_MAX;
    if (size >= 9 && data[0] == '#') {
        memcpy(&max, data + 1, 8);
        data += 9;
        size -= 9;
    }
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    const uint64_t sentinel = 0xdeadbeefcafef00dULL;
    uint64_t got = sentinel, want = sentinel;
    int r = options_parse_size(s, &got);
    int w = ref_size(s, &want);
    CHECK(r == w, "options_parse_size(\"%s\") = %d, reference %d", s, r, w);
    CHECK(got == want, "options_parse_size(\"%s\") value %llu, reference %llu", s,
          (unsigned long long)got, (unsigned long long)want);
    if (r == 0)
        CHECK(got <= INT64_MAX, "size %llu beyond 63 bits", (unsigned long long)got);

    got = want = sentinel;
    r = options_parse_uint(s, max, &got);
    w = ref_digits(s, strlen(s), max, &want);
    CHECK(r == w, "options_parse_uint(\"%s\", %llu) = %d, reference %d", s,
          (unsigned long long)max, r, w);
    CHECK(got == want, "options_parse_uint(\"%s\", %llu) value %llu, reference %llu", s,
          (unsigned long long)max, (unsigned long long)got, (unsigned long long)want);
    if (r == 0)
        CHECK(got <= max, "uint %llu > max %llu", (unsigned long long)got, (unsigned long long)max);
    free(s);
    return 0;
}
