/* SPDX-License-Identifier: MIT */
/* json_check — a small strict JSON (RFC 8259) validator for the fuzz
 * harnesses, plus a helper that reads top-level integer members.
 *
 * Strict means: exactly one value, optional whitespace around it; objects
 * with string keys and no duplicate keys at one level; no trailing commas;
 * numbers in JSON grammar (no leading zeros, no '+', no bare '.', no NaN);
 * strings with valid escapes, no raw control characters, valid UTF-8;
 * nesting limited to 64 levels.  Header-only; every function is static.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
    int depth;
    const char *error; /* static text, set on the first failure */
} JsonCursor;

static bool json_value(JsonCursor *c);

static bool
json_fail(JsonCursor *c, const char *why)
{
    if (!c->error)
        c->error = why;
    return false;
}

static void
json_ws(JsonCursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool
json_lit(JsonCursor *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return json_fail(c, "bad literal");
    c->p += n;
    return true;
}

static int
json_hex(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Parse a string; if @out is non-NULL, copy its raw (still escaped) body,
 * NUL-terminated, into a malloc'd buffer. */
static bool
json_string(JsonCursor *c, char **out)
{
    if (c->p >= c->end || *c->p != '"')
        return json_fail(c, "expected string");
    const char *start = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            if (out) {
                size_t n = (size_t)(c->p - start);
                *out = malloc(n + 1);
                memcpy(*out, start, n);
                (*out)[n] = '\0';
            }
            c->p++;
            return true;
        }
        if (ch < 0x20)
            return json_fail(c, "raw control character in string");
        if (ch == '\\') {
            c->p++;
            if (c->p >= c->end)
                return json_fail(c, "truncated escape");
            char e = *c->p++;
            if (e == 'u') {
                if (c->end - c->p < 4)
                    return json_fail(c, "truncated \\u escape");
                for (int i = 0; i < 4; i++)
                    if (json_hex(c->p[i]) < 0)
                        return json_fail(c, "bad \\u escape");
                c->p += 4;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return json_fail(c, "bad escape");
            }
            continue;
        }
        if (ch < 0x80) {
            c->p++;
            continue;
        }
        /* UTF-8: lead byte and continuation bytes, no overlongs/surrogates. */
        int n;
        uint32_t cp;
        if (ch >= 0xc2 && ch <= 0xdf) { n = 1; cp = ch & 0x1f; }
        else if (ch >= 0xe0 && ch <= 0xef) { n = 2; cp = ch & 0x0f; }
        else if (ch >= 0xf0 && ch <= 0xf4) { n = 3; cp = ch & 0x07; }
        else return json_fail(c, "invalid UTF-8 lead byte");
        if (c->end - c->p <= n)
            return json_fail(c, "truncated UTF-8");
        for (int i = 1; i <= n; i++) {
            unsigned char cc = (unsigned char)c->p[i];
            if ((cc & 0xc0) != 0x80)
                return json_fail(c, "invalid UTF-8 continuation");
            cp = cp << 6 | (cc & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return json_fail(c, "overlong or surrogate UTF-8");
        c->p += n + 1;
    }
    return json_fail(c, "unterminated string");
}

static bool
json_number(JsonCursor *c)
{
    const char *p = c->p;
    if (p < c->end && *p == '-')
        p++;
    if (p >= c->end)
        return json_fail(c, "truncated number");
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return json_fail(c, "bad number");
    }
    if (p < c->end && *p == '.') {
        p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return json_fail(c, "bad fraction");
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < c->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= c->end || *p < '0' || *p > '9')
            return json_fail(c, "bad exponent");
        while (p < c->end && *p >= '0' && *p <= '9')
            p++;
    }
    c->p = p;
    return true;
}

typedef struct JsonKey {
    char *key;
    struct JsonKey *next;
} JsonKey;

static bool
json_object(JsonCursor *c)
{
    c->p++; /* { */
    JsonKey *keys = NULL;
    bool ok = false;
    json_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return true;
    }
    for (;;) {
        json_ws(c);
        char *k = NULL;
        if (!json_string(c, &k))
            goto out;
        for (JsonKey *e = keys; e; e = e->next)
            if (strcmp(e->key, k) == 0) {
                free(k);
                json_fail(c, "duplicate key");
                goto out;
            }
        JsonKey *e = malloc(sizeof *e);
        e->key = k;
        e->next = keys;
        keys = e;
        json_ws(c);
        if (c->p >= c->end || *c->p != ':') {
            json_fail(c, "expected ':'");
            goto out;
        }
        c->p++;
        if (!json_value(c))
            goto out;
        json_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            ok = true;
            goto out;
        }
        json_fail(c, "expected ',' or '}'");
        goto out;
    }
out:
    while (keys) {
        JsonKey *n = keys->next;
        free(keys->key);
        free(keys);
        keys = n;
    }
    return ok;
}

static bool
json_array(JsonCursor *c)
{
    c->p++; /* [ */
    json_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return true;
    }
    for (;;) {
        if (!json_value(c))
            return false;
        json_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return true;
        }
        return json_fail(c, "expected ',' or ']'");
    }
}

static bool
json_value(JsonCursor *c)
{
    json_ws(c);
    if (c->p >= c->end)
        return json_fail(c, "expected a value");
    if (++c->depth > 64)
        return json_fail(c, "nested too deeply");
    bool ok;
    switch (*c->p) {
    case '{': ok = json_object(c); break;
    case '[': ok = json_array(c); break;
    case '"': ok = json_string(c, NULL); break;
    case 't': ok = json_lit(c, "true"); break;
    case 'f': ok = json_lit(c, "false"); break;
    case 'n': ok = json_lit(c, "null"); break;
    default: ok = json_number(c); break;
    }
    c->depth--;
    return ok;
}

/* True if [text, text+len) is exactly one JSON value (with whitespace). */
static bool
json_validate(const char *text, size_t len, const char **error)
{
    JsonCursor c = { text, text + len, 0, NULL };
    bool ok = json_value(&c);
    if (ok) {
        json_ws(&c);
        if (c.p != c.end)
            ok = json_fail(&c, "trailing garbage");
    }
    if (error)
        *error = c.error;
    return ok;
}

/* Value of the top-level member "@key" (a non-negative integer) of a
 * validated object, found by a plain scan at nesting depth 1.  Returns
 * false if absent or not an unsigned integer. */
static bool
json_top_uint(const char *text, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    int depth = 0;
    bool in_str = false;
    for (const char *p = text; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            if (depth == 1 && strncmp(p + 1, key, klen) == 0 && p[1 + klen] == '"' &&
                p[2 + klen] == ':') {
                const char *v = p + 3 + klen;
                if (*v < '0' || *v > '9')
                    return false;
                *out = strtoull(v, NULL, 10);
                return true;
            }
            in_str = true;
        }
    }
    return false;
}
