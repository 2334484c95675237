/* SPDX-License-Identifier: MIT */
/* store — see store.h for the store as a whole.  This file owns the store
 * itself: creating it (with its root directory) and freeing it, the core
 * lock, the hooks and the injectable clock and hold probe, the accessors
 * and counters, and the .stats JSON.  Names are in store_names.c, region
 * data in store_data.c, lifetime in store_lifetime.c; what they share
 * (struct CapshmStore and its ownership model) is in store_private.h.
 */
#include "store_private.h"

#include <json-glib/json-glib.h>
#include <pthread.h>
#include <unistd.h>

#define FIRST_REGION_INO 16
#define ROOT_INO 1 /* FUSE_ROOT_ID */

static int64_t
default_now(void *data)
{
    (void)data;
    return g_get_monotonic_time();
}

static gboolean
name_equal(gconstpointer a, gconstpointer b)
{
    return names_equal_ct(a, b);
}

static void
link_free(gpointer p)
{
    CapshmLink *l = p;
    g_free(l->name);
    g_free(l);
}

CapshmRegion *
store_dir_new(CapshmStore *s, uint64_t ino, uid_t uid, gid_t gid, mode_t mode)
{
    CapshmRegion *d = g_new0(CapshmRegion, 1);
    d->refcount = 1; /* owned by `dirs` */
    d->is_dir = true;
    d->ino = ino;
    d->fd = d->anchor_fd = -1;
    d->uid = uid;
    d->gid = gid;
    d->mode = mode & 07777;
    d->entries = g_hash_table_new_full(names_hash, name_equal, NULL, link_free);
    clock_gettime(CLOCK_REALTIME, &d->mtime);
    d->atime = d->ctime = d->mtime;
    d->created = d->mtime.tv_sec;
    d->state = REGION_LIVE;
    g_hash_table_add(s->dirs, d);
    return d;
}

/* The reaper's work: drop a destroyed region's last reference (fd + 1). */
static void
reap_fd(gpointer fd_plus_one, gpointer unused)
{
    (void)unused;
    close(GPOINTER_TO_INT(fd_plus_one) - 1);
}

CapshmStore *
store_new(const CapshmOptions *opts, bool mappings_outlive_handles, CapshmStorage *storage)
{
    CapshmStore *s = g_new0(CapshmStore, 1);
    s->storage = storage;
    s->opts = *opts;
    s->opts.fuse_opts = NULL; /* not ours */
    s->mappings_outlive_handles = mappings_outlive_handles;
    s->quota = quota_new(opts->size_bytes, opts->quota_bytes, opts->max_regions);
    s->alive = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->dirs = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->until_unlinked = opts->lifetime == LIFETIME_UNLINK ||
                        (opts->lifetime == LIFETIME_DEFAULT && opts->names == NAMES_MODE_ANY);
    s->cgroup_lifetime = opts->lifetime == LIFETIME_CGROUP;
    s->by_ro_name = g_hash_table_new(names_hash, name_equal);
    s->mints = g_hash_table_new_full(names_hash, name_equal, NULL, g_free);
    g_queue_init(&s->mint_queue);
    g_queue_init(&s->linger_queue);
    g_queue_init(&s->cgroup_queue);
    g_queue_init(&s->probe_fast);
    g_queue_init(&s->probe_slow);
    pthread_mutex_init(&s->lock, NULL);
    s->next_ino = FIRST_REGION_INO;
    s->now_us = default_now;
    s->root = store_dir_new(s, ROOT_INO, 0, 0, 01777);
    s->reaper = g_thread_pool_new(reap_fd, NULL, 1, FALSE, NULL);
    return s;
}

void
store_free(CapshmStore *s)
{
    if (!s)
        return;
    GList *all = g_hash_table_get_keys(s->alive);
    for (GList *l = all; l; l = l->next)
        store_region_destroy(s, l->data);
    g_list_free(all);
    /* Only directories are left in the directories now. */
    all = g_hash_table_get_keys(s->dirs);
    for (GList *l = all; l; l = l->next) {
        CapshmRegion *d = l->data;
        g_hash_table_remove_all(d->entries);
        g_clear_pointer(&d->links, g_list_free);
        d->nlink = d->nsubdirs = 0;
        d->state = REGION_DESTROYED;
        region_unref(d);
    }
    g_list_free(all);
    g_thread_pool_free(s->reaper, FALSE, TRUE); /* closes what is queued */
    g_hash_table_destroy(s->alive);
    g_hash_table_destroy(s->dirs);
    g_hash_table_destroy(s->by_ro_name);
    g_hash_table_destroy(s->mints);
    quota_free(s->quota);
    storage_free(s->storage);
    pthread_mutex_destroy(&s->lock);
    g_free(s->cgroup2);
    g_free(s);
}

void
store_set_cgroup2(CapshmStore *s, const char *mount)
{
    g_free(s->cgroup2);
    s->cgroup2 = g_strdup(mount);
}

void store_lock(CapshmStore *s) { pthread_mutex_lock(&s->lock); }
void store_unlock(CapshmStore *s) { pthread_mutex_unlock(&s->lock); }

void
store_set_unheld_hook(CapshmStore *s, StoreUnheldHook hook, void *data)
{
    s->unheld_hook = hook;
    s->unheld_data = data;
}

void
store_set_hold_probe(CapshmStore *s, StoreHoldProbe probe, void *data)
{
    s->probe = probe;
    s->probe_data = data;
}
void
store_set_destroy_hook(CapshmStore *s, StoreDestroyHook hook, void *data)
{
    s->destroy_hook = hook;
    s->destroy_data = data;
}
void
store_set_clock(CapshmStore *s, int64_t (*now_us)(void *), void *data)
{
    s->now_us = now_us ? now_us : default_now;
    s->clock_data = data;
}
void store_set_mappings_outlive_handles(CapshmStore *s, bool yes) { s->mappings_outlive_handles = yes; }
const CapshmOptions *store_options(const CapshmStore *s) { return &s->opts; }
Quota *store_quota(CapshmStore *s) { return s->quota; }
StoreCounters store_counters(const CapshmStore *s) { return s->counters; }
CapshmStorage *store_storage(CapshmStore *s) { return s->storage; }
unsigned store_region_count(const CapshmStore *s) { return g_hash_table_size(s->alive); }

int64_t store_now(CapshmStore *s) { return s->now_us(s->clock_data); }

unsigned
store_count_in_state(const CapshmStore *s, RegionState st)
{
    if (st == REGION_LINGERING)
        return s->linger_queue.length + s->cgroup_queue.length;
    unsigned n = 0;
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, s->alive);
    while (g_hash_table_iter_next(&it, &key, NULL))
        if (((CapshmRegion *)key)->state == st)
            n++;
    return n;
}

/* --- reporting ------------------------------------------------------------ */

static void
append_usage(const QuotaUsage *u, void *data)
{
    JsonBuilder *b = data;
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "uid");
    json_builder_add_int_value(b, u->uid);
    json_builder_set_member_name(b, "regions");
    json_builder_add_int_value(b, u->regions);
    json_builder_set_member_name(b, "bytes");
    json_builder_add_int_value(b, (gint64)u->bytes);
    json_builder_set_member_name(b, "mints");
    json_builder_add_int_value(b, u->mints);
    json_builder_end_object(b);
}

static void
member_int(JsonBuilder *b, const char *name, gint64 v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, v);
}

static void
member_string(JsonBuilder *b, const char *name, const char *v)
{
    json_builder_set_member_name(b, name);
    json_builder_add_string_value(b, v);
}

char *
store_stats_json(CapshmStore *s, uid_t uid, bool is_root, const char *datapath,
                 const char *transport, uint64_t requests)
{
    /* Counts beyond 2^63 cannot happen (sizes are capped at 2^62). */
    QuotaUsage mine = quota_usage(s->quota, uid);
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    member_string(b, "version", PACKAGE_VERSION);
    member_string(b, "datapath", datapath);
    member_string(b, "transport", transport);
    member_int(b, "regions", store_region_count(s));
    member_int(b, "bytes", (gint64)quota_total_bytes(s->quota));
    member_int(b, "lingering", store_count_in_state(s, REGION_LINGERING));
    member_int(b, "pinned", store_count_in_state(s, REGION_PINNED));
    member_int(b, "created", (gint64)s->counters.created);
    member_int(b, "destroyed", (gint64)s->counters.destroyed);
    member_int(b, "expired_mints", (gint64)s->counters.expired_mints);
    member_int(b, "size_bytes", (gint64)quota_size_limit(s->quota));
    member_int(b, "linger", s->opts.linger_s);
    member_int(b, "mint_ttl", s->opts.mint_ttl_s);
    member_int(b, "requests", (gint64)requests);
    json_builder_set_member_name(b, "uid");
    json_builder_begin_object(b);
    member_int(b, "uid", uid);
    member_int(b, "regions", mine.regions);
    member_int(b, "bytes", (gint64)mine.bytes);
    member_int(b, "quota_bytes", (gint64)quota_bytes_limit(s->quota));
    member_int(b, "max_regions", quota_regions_limit(s->quota));
    json_builder_end_object(b);
    if (is_root) {
        json_builder_set_member_name(b, "per_uid");
        json_builder_begin_array(b);
        quota_foreach(s->quota, append_usage, b);
        json_builder_end_array(b);
    }
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autofree char *text = json_to_string(root, FALSE);
    return g_strconcat(text, "\n", NULL);
}
