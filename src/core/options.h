/* SPDX-License-Identifier: MIT */
/* options — the daemon's -o mount options (capshmfs(8) OPTIONS).
 *
 * options_parse() consumes the capshm options of a comma-separated -o string
 * and collects the generic mount options it knows (rw, nosuid, noatime…)
 * so the daemon can hand them to libfuse; allow_other is kept in the struct
 * and added by the daemon.  It owns no global state.
 * On failure it returns -EINVAL and sets *error to a one-line message that
 * names the offending option; the caller frees the GError.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    DATAPATH_AUTO = 0,
    DATAPATH_PASSTHROUGH,
    DATAPATH_CACHE,
} CapshmDatapath;

typedef enum {
    NAMES_MODE_CAPABILITY = 0,
    NAMES_MODE_ANY,
} CapshmNamesMode;

/* When a region goes (capshmfs(8) LIFETIME). */
typedef enum {
    LIFETIME_DEFAULT = 0,     /* unset: options_finish() picks by names mode */
    LIFETIME_HOLDERS,         /* linger after the last holder, then destroyed */
    LIFETIME_UNLINK,          /* until unlinked (and unheld), as on tmpfs */
    LIFETIME_CGROUP,          /* until unlinked, or until its creator's cgroup
                               * is gone and nobody holds it */
} CapshmLifetime;

typedef struct {
    CapshmDatapath datapath;
    unsigned linger_s;        /* seconds */
    unsigned mint_ttl_s;      /* seconds */
    uint64_t size_bytes;      /* total; 0 until options_finish() fills the default */
    uint64_t quota_bytes;     /* per uid; 0 until options_finish() */
    unsigned max_regions;     /* per uid */
    CapshmNamesMode names;
    CapshmLifetime lifetime;  /* holders for names=capability, unlink for any */
    int allow_other;          /* -1 unset, 0 no, 1 yes */
    bool size_set, quota_set;
    /* Generic mount options for libfuse, comma-separated, owned here. */
    GString *fuse_opts;
} CapshmOptions;

/* Set the documented defaults.  Free with options_clear(). */
void options_init(CapshmOptions *o);
void options_clear(CapshmOptions *o);

/* Parse one -o argument (may be called repeatedly; later values win).
 * Returns 0, or -EINVAL with *error set. */
int options_parse(CapshmOptions *o, const char *optstr, GError **error);

/* Fill defaults that depend on the machine: size = half of @ram_bytes,
 * lifetime = holders (names=capability) or unlink (names=any),
 * quota = size unless set (a larger quota is kept: size then answers
 * ENOSPC first); allow_other
 * defaults to @is_root.  Always returns 0. */
int options_finish(CapshmOptions *o, uint64_t ram_bytes, bool is_root, GError **error);

/* Parse a byte count with an optional k/M/G/T suffix (powers of 1024).
 * Returns 0 and *out, or -EINVAL (not a number, junk, negative) or
 * -ERANGE (does not fit in 63 bits). */
int options_parse_size(const char *s, uint64_t *out);

/* Parse a non-negative decimal integer no larger than @max.
 * Returns 0, -EINVAL or -ERANGE. */
int options_parse_uint(const char *s, uint64_t max, uint64_t *out);

const char *options_datapath_name(CapshmDatapath d);
const char *options_lifetime_name(CapshmLifetime l);
