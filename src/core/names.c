/* SPDX-License-Identifier: MIT */
/* names — see names.h. */
#include "names.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

int
names_encode(const unsigned char *bytes, size_t n, char out[NAMES_BUF])
{
    if (n * 8 < NAMES_CAP_LEN * 5)
        return -EINVAL;
    /* 26 groups of 5 bits, most significant bit first. */
    for (size_t i = 0; i < NAMES_CAP_LEN; i++) {
        size_t bit = i * 5;
        unsigned v = 0;
        for (size_t b = 0; b < 5; b++) {
            size_t k = bit + b;
            v = (v << 1) | ((bytes[k / 8] >> (7 - k % 8)) & 1u);
        }
        out[i] = base32_alphabet[v];
    }
    out[NAMES_CAP_LEN] = '\0';
    return 0;
}

int
names_mint(char out[NAMES_BUF])
{
    unsigned char buf[17]; /* 136 bits; 130 are used */
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = getrandom(buf + got, sizeof buf - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return names_encode(buf, sizeof buf, out);
}

static bool
is_base32_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

bool
names_is_capability(const char *name)
{
    if (!name)
        return false;
    size_t i;
    for (i = 0; i < NAMES_CAP_LEN; i++)
        if (!is_base32_char(name[i]))
            return false;
    return name[i] == '\0';
}

bool
names_is_valid_any(const char *name)
{
    if (!name || name[0] == '\0' || name[0] == '.')
        return false;
    size_t len = strnlen(name, NAMES_MAX + 1);
    if (len > NAMES_MAX)
        return false;
    return memchr(name, '/', len) == NULL;
}

bool
names_is_control(const char *name)
{
    return name && name[0] == '.';
}

bool
names_equal_ct(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

unsigned
names_hash(const void *p)
{
    /* FNV-1a: no data-dependent branches. */
    const unsigned char *s = p;
    unsigned h = 2166136261u;
    for (; *s; s++) {
        h ^= *s;
        h *= 16777619u;
    }
    return h;
}
