/* SPDX-License-Identifier: MIT */
/* quota — see quota.h. */
#include "quota.h"

#include <errno.h>

struct Quota {
    uint64_t size_limit, bytes_limit;
    unsigned regions_limit;
    uint64_t total_bytes;
    GHashTable *by_uid; /* GUINT_TO_POINTER(uid) -> QuotaUsage* (owned) */
};

Quota *
quota_new(uint64_t size_bytes, uint64_t quota_bytes, unsigned max_regions)
{
    Quota *q = g_new0(Quota, 1);
    q->size_limit = size_bytes;
    q->bytes_limit = quota_bytes;
    q->regions_limit = max_regions;
    q->by_uid = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    return q;
}

void
quota_free(Quota *q)
{
    if (!q)
        return;
    g_hash_table_destroy(q->by_uid);
    g_free(q);
}

static QuotaUsage *
usage_get(Quota *q, uid_t uid, gboolean create)
{
    QuotaUsage *u = g_hash_table_lookup(q->by_uid, GUINT_TO_POINTER(uid));
    if (!u && create) {
        u = g_new0(QuotaUsage, 1);
        u->uid = uid;
        g_hash_table_insert(q->by_uid, GUINT_TO_POINTER(uid), u);
    }
    return u;
}

/* Forget uids that hold nothing, so the table stays as small as the set
 * of active users. */
static void
usage_maybe_drop(Quota *q, QuotaUsage *u)
{
    if (u->regions == 0 && u->bytes == 0 && u->mints == 0)
        g_hash_table_remove(q->by_uid, GUINT_TO_POINTER(u->uid));
}

int
quota_charge_bytes(Quota *q, uid_t uid, uint64_t delta)
{
    if (delta == 0)
        return 0;
    QuotaUsage *u = usage_get(q, uid, FALSE);
    uint64_t have = u ? u->bytes : 0;
    if (delta > q->bytes_limit || have > q->bytes_limit - delta)
        return -EDQUOT;
    if (delta > q->size_limit || q->total_bytes > q->size_limit - delta)
        return -ENOSPC;
    u = usage_get(q, uid, TRUE);
    u->bytes += delta;
    q->total_bytes += delta;
    return 0;
}

void
quota_release_bytes(Quota *q, uid_t uid, uint64_t delta)
{
    QuotaUsage *u = usage_get(q, uid, FALSE);
    if (!u || delta == 0)
        return;
    g_warn_if_fail(u->bytes >= delta && q->total_bytes >= delta);
    u->bytes -= MIN(delta, u->bytes);
    q->total_bytes -= MIN(delta, q->total_bytes);
    usage_maybe_drop(q, u);
}

int
quota_charge_region(Quota *q, uid_t uid)
{
    QuotaUsage *u = usage_get(q, uid, FALSE);
    if (u && u->regions >= q->regions_limit)
        return -EDQUOT;
    usage_get(q, uid, TRUE)->regions++;
    return 0;
}

void
quota_release_region(Quota *q, uid_t uid)
{
    QuotaUsage *u = usage_get(q, uid, FALSE);
    if (!u)
        return;
    g_warn_if_fail(u->regions > 0);
    if (u->regions)
        u->regions--;
    usage_maybe_drop(q, u);
}

int
quota_charge_mint(Quota *q, uid_t uid)
{
    QuotaUsage *u = usage_get(q, uid, FALSE);
    if (u && u->mints >= q->regions_limit)
        return -EDQUOT;
    usage_get(q, uid, TRUE)->mints++;
    return 0;
}

void
quota_release_mint(Quota *q, uid_t uid)
{
    QuotaUsage *u = usage_get(q, uid, FALSE);
    if (!u)
        return;
    if (u->mints)
        u->mints--;
    usage_maybe_drop(q, u);
}

QuotaUsage
quota_usage(const Quota *q, uid_t uid)
{
    QuotaUsage *u = g_hash_table_lookup(q->by_uid, GUINT_TO_POINTER(uid));
    if (u)
        return *u;
    return (QuotaUsage){ .uid = uid };
}

uint64_t quota_total_bytes(const Quota *q) { return q->total_bytes; }
uint64_t quota_size_limit(const Quota *q) { return q->size_limit; }
uint64_t quota_bytes_limit(const Quota *q) { return q->bytes_limit; }
unsigned quota_regions_limit(const Quota *q) { return q->regions_limit; }

static gint
cmp_usage(gconstpointer a, gconstpointer b)
{
    const QuotaUsage *ua = a, *ub = b;
    return ua->uid < ub->uid ? -1 : ua->uid > ub->uid;
}

void
quota_foreach(const Quota *q, void (*fn)(const QuotaUsage *u, void *data), void *data)
{
    GList *all = g_list_sort(g_hash_table_get_values(q->by_uid), cmp_usage);
    for (GList *l = all; l; l = l->next)
        fn(l->data, data);
    g_list_free(all);
}
