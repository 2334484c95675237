/* SPDX-License-Identifier: MIT */
/* quota — byte and region accounting per uid and for the whole mount.
 *
 * Owns a table of per-uid usage.  Charges are checked and applied in one
 * call so nothing is ever over-committed: a call that fails changes nothing.
 * Returns 0, -EDQUOT (the uid's quota or max_regions) or -ENOSPC (the
 * mount's size).  Releases never fail.
 */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    uid_t uid;
    unsigned regions;    /* live regions owned (lingering and pinned included) */
    uint64_t bytes;      /* bytes reserved by those regions */
    unsigned mints;      /* minted names not yet used or expired */
} QuotaUsage;

typedef struct Quota Quota;

Quota *quota_new(uint64_t size_bytes, uint64_t quota_bytes, unsigned max_regions);
void quota_free(Quota *q);

/* Reserve @delta more bytes for @uid. */
int quota_charge_bytes(Quota *q, uid_t uid, uint64_t delta);
void quota_release_bytes(Quota *q, uid_t uid, uint64_t delta);

/* Count one more region for @uid (checked against max_regions). */
int quota_charge_region(Quota *q, uid_t uid);
void quota_release_region(Quota *q, uid_t uid);

/* Pending mints are capped at max_regions per uid so minting cannot
 * exhaust the daemon's memory. */
int quota_charge_mint(Quota *q, uid_t uid);
void quota_release_mint(Quota *q, uid_t uid);

/* Borrowed view of @uid's usage; a zeroed usage if the uid has none. */
QuotaUsage quota_usage(const Quota *q, uid_t uid);
uint64_t quota_total_bytes(const Quota *q);
uint64_t quota_size_limit(const Quota *q);
uint64_t quota_bytes_limit(const Quota *q);
unsigned quota_regions_limit(const Quota *q);

/* Call @fn for each uid with any usage, in ascending uid order. */
void quota_foreach(const Quota *q, void (*fn)(const QuotaUsage *u, void *data), void *data);
