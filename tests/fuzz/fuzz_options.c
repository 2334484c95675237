/* SPDX-License-Identifier: MIT */
/* libFuzzer harness: options_parse() / options_finish() on arbitrary -o
 * strings (the daemon's whole command-line surface for mount options).
 *
 * Properties:
 *  - returns 0 with no error, or -EINVAL with a non-empty one-line message
 *    that names an option (contains "option");
 *  - on success every field is within its documented range, and the generic
 *    options handed to libfuse are a comma-separated list of known words
 *    only (no '=' and nothing the fuzzer invented can reach libfuse);
 *  - parsing is deterministic, and parsing each comma-separated part in
 *    turn gives the same result as parsing the whole string;
 *  - options_finish() fills size (half of RAM) and quota (= size) when
 *    unset, keeps what was set, and leaves allow_other 0 or 1.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "core/options.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "fuzz_options: check failed: %s: ", #cond);         \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            abort();                                                             \
        }                                                                        \
    } while (0)

static const char *const generic_words[] = {
    "rw", "ro", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
    "atime", "noatime", "relatime", "norelatime", "strictatime",
    "nodiratime", "diratime", "sync", "async", "dirsync", NULL,
};

static bool
is_generic_word(const char *w)
{
    for (const char *const *p = generic_words; *p; p++)
        if (strcmp(*p, w) == 0)
            return true;
    return false;
}

static void
check_fields(const CapshmOptions *o, const char *in)
{
    CHECK(o->datapath == DATAPATH_AUTO || o->datapath == DATAPATH_PASSTHROUGH ||
          o->datapath == DATAPATH_CACHE, "datapath %d for \"%s\"", o->datapath, in);
    CHECK(o->linger_s <= 100u * 365 * 24 * 3600, "linger %u for \"%s\"", o->linger_s, in);
    CHECK(o->mint_ttl_s >= 1 && o->mint_ttl_s <= 100u * 365 * 24 * 3600,
          "mint_ttl %u for \"%s\"", o->mint_ttl_s, in);
    CHECK(o->max_regions >= 1 && o->max_regions <= 100000000u,
          "max_regions %u for \"%s\"", o->max_regions, in);
    CHECK(o->names == NAMES_MODE_CAPABILITY || o->names == NAMES_MODE_ANY, "names for \"%s\"", in);
    CHECK(o->allow_other >= -1 && o->allow_other <= 1, "allow_other for \"%s\"", in);
    CHECK(!o->size_set || (o->size_bytes > 0 && o->size_bytes <= INT64_MAX),
          "size %llu for \"%s\"", (unsigned long long)o->size_bytes, in);
    CHECK(!o->quota_set || (o->quota_bytes > 0 && o->quota_bytes <= INT64_MAX),
          "quota %llu for \"%s\"", (unsigned long long)o->quota_bytes, in);
    /* The only text that reaches libfuse's -o. */
    const char *f = o->fuse_opts->str;
    CHECK(o->fuse_opts->len == strlen(f), "NUL inside fuse_opts");
    if (*f) {
        CHECK(f[0] != ',' && f[o->fuse_opts->len - 1] != ',', "fuse_opts \"%s\"", f);
        g_auto(GStrv) words = g_strsplit(f, ",", -1);
        for (char **w = words; *w; w++)
            CHECK(is_generic_word(*w), "fuse_opts word \"%s\" from \"%s\"", *w, in);
    }
}

static bool
same_options(const CapshmOptions *a, const CapshmOptions *b)
{
    return a->datapath == b->datapath && a->linger_s == b->linger_s &&
           a->mint_ttl_s == b->mint_ttl_s && a->size_bytes == b->size_bytes &&
           a->quota_bytes == b->quota_bytes && a->max_regions == b->max_regions &&
           a->names == b->names && a->allow_other == b->allow_other &&
           a->size_set == b->size_set && a->quota_set == b->quota_set &&
           strcmp(a->fuse_opts->str, b->fuse_opts->str) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    CapshmOptions o, o2, o3;
    options_init(&o);
    options_init(&o2);
    options_init(&o3);
    GError *err = NULL, *err2 = NULL;
    int r = options_parse(&o, s, &err);
    int r2 = options_parse(&o2, s, &err2);
    CHECK(r == r2, "not deterministic for \"%s\"", s);
    if (r == 0) {
        CHECK(err == NULL, "success with an error set for \"%s\"", s);
        check_fields(&o, s);
        CHECK(same_options(&o, &o2), "not deterministic for \"%s\"", s);

        /* Part by part gives the same result. */
        g_auto(GStrv) parts = g_strsplit(s, ",", -1);
        for (char **p = parts; *p; p++) {
            GError *e = NULL;
            int rp = options_parse(&o3, *p, &e);
            CHECK(rp == 0 && !e, "part \"%s\" of accepted \"%s\" refused", *p, s);
        }
        CHECK(same_options(&o, &o3), "part-wise parse differs for \"%s\"", s);

        uint64_t ram = size >= 8 ? ((uint64_t)data[0] << 32 | (uint64_t)data[1] << 24 |
                                    (uint64_t)data[2] << 16 | (uint64_t)data[3] << 8 | data[4])
                                 : 0;
        options_finish(&o, ram, size & 1, NULL);
        check_fields(&o, s);
        CHECK(o.size_bytes > 0, "size 0 after finish for \"%s\"", s);
        /* A quota above size is kept (size answers ENOSPC first); an
         * unset quota is the size. */
        CHECK(o.quota_bytes > 0 && (o.quota_set || o.quota_bytes == o.size_bytes),
              "quota %llu, size %llu after finish for \"%s\"",
              (unsigned long long)o.quota_bytes, (unsigned long long)o.size_bytes, s);
        CHECK(o.size_set || o.size_bytes == (ram / 2 ? ram / 2 : (uint64_t)1 << 30),
              "default size %llu for ram %llu", (unsigned long long)o.size_bytes,
              (unsigned long long)ram);
        CHECK(o.allow_other == 0 || o.allow_other == 1, "allow_other after finish");
    } else {
        CHECK(r == -EINVAL, "options_parse(\"%s\") = %d", s, r);
        CHECK(err && err2, "failure without a message for \"%s\"", s);
        CHECK(err->message[0] != '\0', "empty message for \"%s\"", s);
        CHECK(strchr(err->message, '\n') == NULL, "multi-line message for \"%s\"", s);
        CHECK(strstr(err->message, "option") != NULL, "message \"%s\" names no option",
              err->message);
        CHECK(strcmp(err->message, err2->message) == 0, "message not deterministic");
    }
    if (err)
        g_error_free(err);
    if (err2)
        g_error_free(err2);
    options_clear(&o);
    options_clear(&o2);
    options_clear(&o3);
    free(s);
    return 0;
}
