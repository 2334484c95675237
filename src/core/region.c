/* SPDX-License-Identifier: MIT */
/* region — see region.h. */
#include "region.h"

#include <unistd.h>

CapshmRegion *
region_ref(CapshmRegion *r)
{
    g_return_val_if_fail(r && r->refcount > 0, r);
    r->refcount++;
    return r;
}

void
region_unref(CapshmRegion *r)
{
    if (!r)
        return;
    g_return_if_fail(r->refcount > 0);
    if (--r->refcount > 0)
        return;
    /* The store closes the data fd when it destroys the region; a region is
     * only freed after that (the store holds a reference while alive). */
    g_warn_if_fail(r->fd < 0);
    if (r->fd >= 0)
        close(r->fd);
    g_warn_if_fail(r->anchor_fd < 0);
    if (r->anchor_fd >= 0)
        close(r->anchor_fd);
    g_free(r->name);
    g_free(r->creator_cgroup_path);
    g_free(r->ro_name);
    g_list_free(r->links);
    if (r->entries)
        g_hash_table_destroy(r->entries);
    g_free(r);
}

const char *
region_state_name(const CapshmRegion *r)
{
    if (r->sealed && r->state != REGION_DESTROYED)
        return "sealed";
    switch (r->state) {
    case REGION_LIVE: return "live";
    case REGION_LINGERING: return "lingering";
    case REGION_PINNED: return "pinned";
    default: return "destroyed";
    }
}
