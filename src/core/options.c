/* SPDX-License-Identifier: MIT */
/* options — see options.h. */
#include "options.h"

#include <errno.h>
#include <string.h>

/* Generic mount options we pass through to libfuse/mount(2); mount(8) and
 * fstab add these, and we must accept them.  Options that make no sense for
 * capshm (ro, suid, dev, exec) are still accepted: the kernel applies them. */
static const char *const passthrough_opts[] = {
    "rw", "ro", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
    "atime", "noatime", "relatime", "norelatime", "strictatime",
    "nodiratime", "diratime", "sync", "async", "dirsync",
    "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail",
    "defaults", NULL,
};

void
options_init(CapshmOptions *o)
{
    memset(o, 0, sizeof *o);
    o->datapath = DATAPATH_AUTO;
    o->linger_s = 5;
    o->mint_ttl_s = 60;
    o->max_regions = 4096;
    o->names = NAMES_MODE_CAPABILITY;
    o->allow_other = -1;
    o->fuse_opts = g_string_new(NULL);
}

void
options_clear(CapshmOptions *o)
{
    if (o->fuse_opts)
        g_string_free(o->fuse_opts, TRUE);
    o->fuse_opts = NULL;
}

int
options_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    /* Shape before range: "99999999999999999999x" is not a number at all. */
    if (s[strspn(s, "0123456789")] != '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > max || v > (max - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
options_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    size_t len = strlen(s);
    unsigned shift = 0;
    char last = s[len - 1];
    switch (last) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: break;
    }
    if (shift)
        len--;
    if (len == 0)
        return -EINVAL;
    g_autofree char *digits = g_strndup(s, len);
    uint64_t v;
    const uint64_t max = INT64_MAX;
    int r = options_parse_uint(digits, max, &v);
    if (r < 0)
        return r;
    if (shift && v > (max >> shift))
        return -ERANGE;
    *out = v << shift;
    return 0;
}

static int
fail(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int
fail(GError **error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* The message quotes user input and must stay one printable line. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    g_set_error_literal(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, msg);
    return -EINVAL;
}

static int
parse_seconds(const char *key, const char *val, unsigned *out, GError **error)
{
    uint64_t v;
    /* Cap at a day's worth of years: anything larger is a typo. */
    if (options_parse_uint(val, 100u * 365 * 24 * 3600, &v) < 0)
        return fail(error, "option %s: '%s' is not a number of seconds", key, val);
    *out = (unsigned)v;
    return 0;
}

static int
parse_one(CapshmOptions *o, const char *opt, GError **error)
{
    const char *eq = strchr(opt, '=');
    g_autofree char *key = eq ? g_strndup(opt, (gsize)(eq - opt)) : g_strdup(opt);
    const char *val = eq ? eq + 1 : NULL;

    if (strcmp(key, "datapath") == 0) {
        if (!val)
            return fail(error, "option datapath needs a value: auto, passthrough or cache");
        if (strcmp(val, "auto") == 0)
            o->datapath = DATAPATH_AUTO;
        else if (strcmp(val, "passthrough") == 0)
            o->datapath = DATAPATH_PASSTHROUGH;
        else if (strcmp(val, "cache") == 0)
            o->datapath = DATAPATH_CACHE;
        else
            return fail(error, "option datapath: '%s' is not auto, passthrough or cache", val);
        return 0;
    }
    if (strcmp(key, "linger") == 0)
        return val ? parse_seconds(key, val, &o->linger_s, error)
                   : fail(error, "option linger needs a value in seconds");
    if (strcmp(key, "mint_ttl") == 0) {
        if (!val)
            return fail(error, "option mint_ttl needs a value in seconds");
        int r = parse_seconds(key, val, &o->mint_ttl_s, error);
        if (r == 0 && o->mint_ttl_s == 0)
            return fail(error, "option mint_ttl: must be at least 1 second");
        return r;
    }
    if (strcmp(key, "size") == 0 || strcmp(key, "quota") == 0) {
        uint64_t v;
        if (!val)
            return fail(error, "option %s needs a value in bytes (suffixes k, M, G)", key);
        int r = options_parse_size(val, &v);
        if (r == -ERANGE)
            return fail(error, "option %s: '%s' is too large", key, val);
        if (r < 0)
            return fail(error, "option %s: '%s' is not a size (bytes, or a number with k, M, G)", key, val);
        if (v == 0)
            return fail(error, "option %s: must be greater than 0", key);
        if (key[0] == 's') {
            o->size_bytes = v;
            o->size_set = true;
        } else {
            o->quota_bytes = v;
            o->quota_set = true;
        }
        return 0;
    }
    if (strcmp(key, "max_regions") == 0) {
        uint64_t v;
        if (!val || options_parse_uint(val, 100000000u, &v) < 0 || v == 0)
            return fail(error, "option max_regions: '%s' is not a number from 1 to 100000000",
                        val ? val : "");
        o->max_regions = (unsigned)v;
        return 0;
    }
    if (strcmp(key, "names") == 0) {
        if (val && strcmp(val, "capability") == 0)
            o->names = NAMES_MODE_CAPABILITY;
        else if (val && strcmp(val, "any") == 0)
            o->names = NAMES_MODE_ANY;
        else
            return fail(error, "option names: '%s' is not capability or any", val ? val : "");
        return 0;
    }
    if (strcmp(key, "lifetime") == 0) {
        if (val && strcmp(val, "holders") == 0)
            o->lifetime = LIFETIME_HOLDERS;
        else if (val && strcmp(val, "unlink") == 0)
            o->lifetime = LIFETIME_UNLINK;
        else if (val && strcmp(val, "cgroup") == 0)
            o->lifetime = LIFETIME_CGROUP;
        else
            return fail(error, "option lifetime: '%s' is not holders, unlink or cgroup", val ? val : "");
        return 0;
    }
    if (strcmp(key, "allow_other") == 0) {
        if (val)
            return fail(error, "option allow_other takes no value");
        o->allow_other = 1;
        return 0;
    }
    if (strcmp(key, "noallow_other") == 0) {
        o->allow_other = 0;
        return 0;
    }
    if (strcmp(key, "default_permissions") == 0)
        return 0; /* always on */
    if (strcmp(key, "fsname") == 0 || strcmp(key, "subtype") == 0)
        return 0; /* we set our own; mount(8) may pass them */
    if (!val) {
        for (const char *const *p = passthrough_opts; *p; p++) {
            if (strcmp(key, *p) == 0) {
                if (strcmp(key, "defaults") == 0 || strcmp(key, "auto") == 0 ||
                    strcmp(key, "noauto") == 0 || strcmp(key, "user") == 0 ||
                    strcmp(key, "nouser") == 0 || strcmp(key, "users") == 0 ||
                    strcmp(key, "_netdev") == 0 || strcmp(key, "nofail") == 0)
                    return 0; /* fstab-only words: nothing to do */
                if (o->fuse_opts->len)
                    g_string_append_c(o->fuse_opts, ',');
                g_string_append(o->fuse_opts, key);
                return 0;
            }
        }
    }
    return fail(error, "unknown option '%s'", opt);
}

int
options_parse(CapshmOptions *o, const char *optstr, GError **error)
{
    if (!optstr)
        return 0;
    g_auto(GStrv) parts = g_strsplit(optstr, ",", -1);
    for (char **p = parts; *p; p++) {
        if (**p == '\0')
            continue;
        int r = parse_one(o, *p, error);
        if (r < 0)
            return r;
    }
    return 0;
}

int
options_finish(CapshmOptions *o, uint64_t ram_bytes, bool is_root, GError **error)
{
    (void)error;
    if (!o->size_set)
        o->size_bytes = ram_bytes / 2 ? ram_bytes / 2 : (uint64_t)1 << 30;
    /* A quota above size is kept: each uid may use up to quota, and the
     * mount's size (ENOSPC) is what stops it first. */
    if (!o->quota_set)
        o->quota_bytes = o->size_bytes;
    if (o->allow_other < 0)
        o->allow_other = is_root ? 1 : 0;
    /* POSIX names get POSIX lifetime: a name lives until it is unlinked. */
    if (o->lifetime == LIFETIME_DEFAULT)
        o->lifetime = o->names == NAMES_MODE_ANY ? LIFETIME_UNLINK : LIFETIME_HOLDERS;
    return 0;
}

const char *
options_lifetime_name(CapshmLifetime l)
{
    switch (l) {
    case LIFETIME_HOLDERS: return "holders";
    case LIFETIME_UNLINK: return "unlink";
    case LIFETIME_CGROUP: return "cgroup";
    default: return "default";
    }
}

const char *
options_datapath_name(CapshmDatapath d)
{
    switch (d) {
    case DATAPATH_PASSTHROUGH: return "passthrough";
    case DATAPATH_CACHE: return "cache";
    default: return "auto";
    }
}
