/* SPDX-License-Identifier: MIT */
/* store — see store.h; what the store's files share (struct CapshmStore,
 * its ownership model) is in store_private.h.
 */
#include "store_private.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
    s->by_ro_name = g_hash_table_new(names_hash, name_equal);
    s->mints = g_hash_table_new_full(names_hash, name_equal, NULL, g_free);
    g_queue_init(&s->mint_queue);
    g_queue_init(&s->linger_queue);
    g_queue_init(&s->probe_fast);
    g_queue_init(&s->probe_slow);
    pthread_mutex_init(&s->lock, NULL);
    s->next_ino = FIRST_REGION_INO;
    s->now_us = default_now;
    s->root = store_dir_new(s, ROOT_INO, 0, 0, 01777);
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
    g_hash_table_destroy(s->alive);
    g_hash_table_destroy(s->dirs);
    g_hash_table_destroy(s->by_ro_name);
    g_hash_table_destroy(s->mints);
    quota_free(s->quota);
    storage_free(s->storage);
    pthread_mutex_destroy(&s->lock);
    g_free(s);
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
        return s->linger_queue.length;
    unsigned n = 0;
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, s->alive);
    while (g_hash_table_iter_next(&it, &key, NULL))
        if (((CapshmRegion *)key)->state == st)
            n++;
    return n;
}

/* --- names -------------------------------------------------------------- */

static bool
name_in_use(CapshmStore *s, const char *name)
{
    return g_hash_table_contains(s->root->entries, name) ||
           g_hash_table_contains(s->by_ro_name, name) ||
           g_hash_table_contains(s->mints, name);
}

static int
mint_unique(CapshmStore *s, char out[NAMES_BUF])
{
    /* 130 random bits make a collision practically impossible; checking
     * costs nothing and makes it impossible. */
    for (int tries = 0; tries < 8; tries++) {
        int r = names_mint(out);
        if (r < 0)
            return r;
        if (!name_in_use(s, out))
            return 0;
    }
    return -EAGAIN;
}

void
store_mint_remove(CapshmStore *s, Mint *m)
{
    g_queue_unlink(&s->mint_queue, &m->link);
    quota_release_mint(s->quota, m->uid);
    g_hash_table_remove(s->mints, m->name); /* frees m */
}

int
store_mint(CapshmStore *s, uid_t uid, char out[NAMES_BUF])
{
    int r = quota_charge_mint(s->quota, uid);
    if (r < 0)
        return r;
    Mint *m = g_new0(Mint, 1);
    r = mint_unique(s, m->name);
    if (r < 0) {
        quota_release_mint(s->quota, uid);
        g_free(m);
        return r;
    }
    m->uid = uid;
    m->deadline_us = store_now(s) + (int64_t)s->opts.mint_ttl_s * G_USEC_PER_SEC;
    m->link.data = m;
    g_queue_push_tail_link(&s->mint_queue, &m->link);
    g_hash_table_insert(s->mints, m->name, m);
    memcpy(out, m->name, NAMES_BUF);
    return 0;
}

CapshmRegion *
store_lookup(CapshmStore *s, const char *name, bool *is_ro)
{
    CapshmLink *l = g_hash_table_lookup(s->root->entries, name);
    CapshmRegion *r = l ? l->target : NULL;
    bool ro = false;
    if (!r) {
        r = g_hash_table_lookup(s->by_ro_name, name);
        ro = r != NULL;
    }
    if (is_ro)
        *is_ro = ro;
    return r;
}

/* May a new entry called @name be made in @dir?  Capability names only in
 * the root; with names=any, names starting with '.' are the control files'
 * in the root and allowed in subdirectories (not "." and ".."). */
static bool
name_acceptable(CapshmStore *s, CapshmRegion *dir, const char *name)
{
    if (s->opts.names != NAMES_MODE_ANY)
        return dir == s->root && names_is_capability(name);
    if (names_is_valid_any(name))
        return true;
    if (dir == s->root || !name || name[0] != '.' || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > NAMES_MAX)
        return false;
    return strchr(name, '/') == NULL;
}

static void
touch_dir(CapshmRegion *dir)
{
    clock_gettime(CLOCK_REALTIME, &dir->mtime);
    dir->ctime = dir->mtime;
}

/* Keep r->name one of @r's names (the first), for listings and logs. */
static void
refresh_name(CapshmRegion *r)
{
    if (r->links) {
        const char *first = ((CapshmLink *)r->links->data)->name;
        if (!r->name || strcmp(r->name, first) != 0) {
            g_free(r->name);
            r->name = g_strdup(first);
        }
    }
}

static void
link_add(CapshmRegion *dir, const char *name, CapshmRegion *target)
{
    CapshmLink *l = g_new0(CapshmLink, 1);
    l->name = g_strdup(name);
    l->dir = dir;
    l->target = target;
    g_hash_table_insert(dir->entries, l->name, l);
    target->links = g_list_append(target->links, l);
    target->nlink++;
    target->unlinked = false;
    if (target->is_dir)
        dir->nsubdirs++;
    refresh_name(target);
    touch_dir(dir);
}

/* Remove name @l (freed).  A region left without a name loses its
 * read-only name too: it is unlinked. */
static void
link_remove(CapshmStore *s, CapshmLink *l)
{
    CapshmRegion *t = l->target, *dir = l->dir;
    t->links = g_list_remove(t->links, l);
    t->nlink--;
    if (t->is_dir)
        dir->nsubdirs--;
    if (t->nlink == 0) {
        if (t->ro_name)
            g_hash_table_remove(s->by_ro_name, t->ro_name);
        t->unlinked = true;
    }
    g_hash_table_remove(dir->entries, l->name); /* frees l */
    refresh_name(t);
    touch_dir(dir);
}

/* The directory an entry is made in: @dir, or the root for NULL.  NULL if
 * @dir is not a live directory. */
static CapshmRegion *
dir_or_root(CapshmStore *s, CapshmRegion *dir)
{
    if (!dir)
        return s->root;
    return dir->is_dir && region_is_alive(dir) ? dir : NULL;
}

CapshmRegion *store_root(CapshmStore *s) { return s->root; }

CapshmRegion *
store_lookup_at(CapshmStore *s, CapshmRegion *dir, const char *name, bool *is_ro)
{
    if (!dir || dir == s->root)
        return store_lookup(s, name, is_ro);
    if (is_ro)
        *is_ro = false;
    if (!dir->is_dir || !region_is_alive(dir))
        return NULL;
    CapshmLink *l = g_hash_table_lookup(dir->entries, name);
    return l ? l->target : NULL;
}

int
store_create(CapshmStore *s, const CapshmCaller *caller, const char *name,
             mode_t mode, bool excl, CapshmRegion **out, bool *created)
{
    return store_create_at(s, caller, NULL, name, mode, excl, out, created);
}

int
store_create_at(CapshmStore *s, const CapshmCaller *caller, CapshmRegion *dir,
                const char *name, mode_t mode, bool excl, CapshmRegion **out, bool *created)
{
    *created = false;
    *out = NULL;
    dir = dir_or_root(s, dir);
    if (!dir)
        return -ENOENT;
    bool is_ro = false;
    CapshmRegion *existing = store_lookup_at(s, dir, name, &is_ro);
    if (existing) {
        if (excl)
            return -EEXIST;
        if (existing->is_dir)
            return -EISDIR;
        *out = existing;
        return 0;
    }
    if (!name_acceptable(s, dir, name))
        return -EACCES;

    Mint *m = NULL;
    if (s->opts.names == NAMES_MODE_CAPABILITY) {
        m = g_hash_table_lookup(s->mints, name);
        if (!m || m->uid != caller->uid || m->deadline_us <= store_now(s))
            return -EACCES;
    }
    int r = quota_charge_region(s->quota, caller->uid);
    if (r < 0)
        return r;

    uint64_t ino = s->next_ino;
    int fd = storage_create(s->storage, ino);
    if (fd < 0) {
        quota_release_region(s->quota, caller->uid);
        return fd;
    }
    s->next_ino++;
    if (m)
        store_mint_remove(s, m);

    CapshmRegion *reg = g_new0(CapshmRegion, 1);
    reg->refcount = 1; /* owned by `alive` */
    reg->name = g_strdup(name);
    reg->ino = ino;
    reg->fd = fd;
    reg->anchor_fd = -1;
    reg->uid = caller->uid;
    reg->gid = caller->gid;
    reg->mode = mode & 07777;
    clock_gettime(CLOCK_REALTIME, &reg->mtime);
    reg->atime = reg->ctime = reg->mtime;
    reg->created = reg->mtime.tv_sec;
    reg->state = REGION_LIVE;
    g_hash_table_add(s->alive, reg);
    link_add(dir, name, reg);
    s->counters.created++;
    *created = true;
    *out = reg;
    /* Unheld until opened (the FUSE layer opens it in the same request):
     * start its linger now so a region that is never opened still goes. */
    store_reevaluate(s, reg);
    return 0;
}

void
store_drop_names(CapshmStore *s, CapshmRegion *r)
{
    while (r->links)
        link_remove(s, r->links->data);
    if (!r->unlinked) {
        if (r->ro_name)
            g_hash_table_remove(s->by_ro_name, r->ro_name);
        r->unlinked = true;
    }
}

int
store_unlink(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r) || r->unlinked)
        return -ENOENT;
    store_drop_names(s, r);
    store_reevaluate(s, r);
    return 0;
}

/* --- directories and links (names=any) ----------------------------------- */

/* The directory directory @d is in (the root is its own). */
static CapshmRegion *
dir_parent(CapshmStore *s, CapshmRegion *d)
{
    return d->links ? ((CapshmLink *)d->links->data)->dir : s->root;
}

/* Is @d @anc or inside it? */
static bool
dir_within(CapshmStore *s, CapshmRegion *d, CapshmRegion *anc)
{
    for (;;) {
        if (d == anc)
            return true;
        if (d == s->root || !d->links)
            return false;
        d = dir_parent(s, d);
    }
}

/* An empty directory that lost its name goes at once: it holds no bytes,
 * and the kernel forgets its node by itself. */
static void
dir_destroy(CapshmStore *s, CapshmRegion *d)
{
    g_warn_if_fail(g_hash_table_size(d->entries) == 0 && d->nlink == 0);
    quota_release_region(s->quota, d->uid);
    d->state = REGION_DESTROYED;
    g_hash_table_remove(s->dirs, d);
    region_unref(d);
}

/* The link called @name in @dir; at the root a read-only name gives
 * *ro_name (nothing can be done to a read-only name). */
static CapshmLink *
link_find(CapshmStore *s, CapshmRegion *dir, const char *name, bool *ro_name)
{
    CapshmLink *l = g_hash_table_lookup(dir->entries, name);
    if (ro_name)
        *ro_name = !l && dir == s->root && g_hash_table_contains(s->by_ro_name, name);
    return l;
}

static bool
any_names(const CapshmStore *s)
{
    return s->opts.names == NAMES_MODE_ANY;
}

int
store_mkdir(CapshmStore *s, const CapshmCaller *caller, CapshmRegion *dir, const char *name,
            mode_t mode, CapshmRegion **out)
{
    *out = NULL;
    if (!any_names(s))
        return -EPERM;
    dir = dir_or_root(s, dir);
    if (!dir)
        return -ENOENT;
    bool ro = false;
    if (link_find(s, dir, name, &ro) || ro)
        return -EEXIST;
    if (!name_acceptable(s, dir, name))
        return -EACCES;
    /* A directory costs no bytes but counts as a region of its owner, so
     * that nobody makes them without bound. */
    int rc = quota_charge_region(s->quota, caller->uid);
    if (rc < 0)
        return rc;
    CapshmRegion *d = store_dir_new(s, s->next_ino++, caller->uid, caller->gid, mode);
    link_add(dir, name, d);
    *out = d;
    return 0;
}

int
store_unlink_at(CapshmStore *s, CapshmRegion *dir, const char *name)
{
    dir = dir_or_root(s, dir);
    if (!dir)
        return -ENOENT;
    bool ro = false;
    CapshmLink *l = link_find(s, dir, name, &ro);
    if (!l)
        return ro ? -EPERM : -ENOENT;
    CapshmRegion *r = l->target;
    if (r->is_dir)
        return -EISDIR;
    link_remove(s, l);
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    store_reevaluate(s, r);
    return 0;
}

int
store_rmdir(CapshmStore *s, CapshmRegion *dir, const char *name)
{
    dir = dir_or_root(s, dir);
    if (!dir)
        return -ENOENT;
    bool ro = false;
    CapshmLink *l = link_find(s, dir, name, &ro);
    if (!l)
        return ro ? -ENOTDIR : -ENOENT;
    CapshmRegion *d = l->target;
    if (!d->is_dir)
        return -ENOTDIR;
    if (g_hash_table_size(d->entries) > 0)
        return -ENOTEMPTY;
    link_remove(s, l);
    dir_destroy(s, d);
    return 0;
}

int
store_link(CapshmStore *s, CapshmRegion *r, CapshmRegion *dir, const char *name)
{
    if (!any_names(s))
        return -EPERM;
    if (r->is_dir)
        return -EPERM;
    if (!region_is_alive(r) || r->unlinked)
        return -ENOENT;
    dir = dir_or_root(s, dir);
    if (!dir)
        return -ENOENT;
    bool ro = false;
    if (link_find(s, dir, name, &ro) || ro)
        return -EEXIST;
    if (!name_acceptable(s, dir, name))
        return -EACCES;
    link_add(dir, name, r);
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    return 0;
}

/* @l now names @target instead (RENAME_EXCHANGE). */
static void
link_retarget(CapshmLink *l, CapshmRegion *from, CapshmRegion *to)
{
    GList *e = g_list_find(from->links, l);
    from->links = g_list_delete_link(from->links, e);
    to->links = g_list_append(to->links, l);
    l->target = to;
    if (from->is_dir)
        l->dir->nsubdirs--;
    if (to->is_dir)
        l->dir->nsubdirs++;
}

int
store_rename(CapshmStore *s, CapshmRegion *odir, const char *oname, CapshmRegion *ndir,
             const char *nname, unsigned flags)
{
    if (!any_names(s))
        return -EPERM;
    if (flags & ~(STORE_RENAME_NOREPLACE | STORE_RENAME_EXCHANGE))
        return -EINVAL;
    if ((flags & STORE_RENAME_NOREPLACE) && (flags & STORE_RENAME_EXCHANGE))
        return -EINVAL;
    odir = dir_or_root(s, odir);
    ndir = dir_or_root(s, ndir);
    if (!odir || !ndir)
        return -ENOENT;
    bool ro = false;
    CapshmLink *ol = link_find(s, odir, oname, &ro);
    if (!ol)
        return ro ? -EPERM : -ENOENT;
    CapshmLink *nl = link_find(s, ndir, nname, &ro);
    if (ro)
        return -EPERM;
    CapshmRegion *src = ol->target;
    struct timespec now_ts;
    clock_gettime(CLOCK_REALTIME, &now_ts);

    if (flags & STORE_RENAME_EXCHANGE) {
        if (!nl)
            return -ENOENT;
        if (nl == ol)
            return 0;
        CapshmRegion *dst = nl->target;
        if ((src->is_dir && src != dst && dir_within(s, ndir, src)) ||
            (dst->is_dir && src != dst && dir_within(s, odir, dst)))
            return -EINVAL;
        if (src == dst)
            return 0;
        link_retarget(ol, src, dst);
        link_retarget(nl, dst, src);
        refresh_name(src);
        refresh_name(dst);
        src->ctime = dst->ctime = now_ts;
        touch_dir(odir);
        touch_dir(ndir);
        return 0;
    }
    if (nl && (flags & STORE_RENAME_NOREPLACE))
        return -EEXIST;
    if (!nl && !name_acceptable(s, ndir, nname))
        return -EACCES;
    if (nl && nl->target == src)
        return 0; /* two names of one file: POSIX says do nothing */
    if (src->is_dir && dir_within(s, ndir, src))
        return -EINVAL;
    if (nl) {
        CapshmRegion *victim = nl->target;
        if (src->is_dir && !victim->is_dir)
            return -ENOTDIR;
        if (!src->is_dir && victim->is_dir)
            return -EISDIR;
        if (victim->is_dir && g_hash_table_size(victim->entries) > 0)
            return -ENOTEMPTY;
        link_remove(s, nl);
        if (victim->is_dir) {
            dir_destroy(s, victim);
        } else {
            victim->ctime = now_ts;
            store_reevaluate(s, victim);
        }
    }
    /* Move the link itself: the target never has one name fewer. */
    g_hash_table_steal(odir->entries, ol->name);
    g_free(ol->name);
    ol->name = g_strdup(nname);
    ol->dir = ndir;
    g_hash_table_insert(ndir->entries, ol->name, ol);
    if (src->is_dir) {
        odir->nsubdirs--;
        ndir->nsubdirs++;
    }
    refresh_name(src);
    src->ctime = now_ts;
    touch_dir(odir);
    touch_dir(ndir);
    return 0;
}

static gint
cmp_link(gconstpointer a, gconstpointer b)
{
    const CapshmLink *la = *(CapshmLink *const *)a, *lb = *(CapshmLink *const *)b;
    if (la->target->ino != lb->target->ino)
        return la->target->ino < lb->target->ino ? -1 : 1;
    return strcmp(la->name, lb->name);
}

void
store_list_dir(CapshmStore *s, CapshmRegion *dir, GPtrArray *names, GPtrArray *targets)
{
    dir = dir_or_root(s, dir);
    if (!dir)
        return;
    g_autoptr(GPtrArray) links = g_ptr_array_new();
    GHashTableIter it;
    gpointer val;
    g_hash_table_iter_init(&it, dir->entries);
    while (g_hash_table_iter_next(&it, NULL, &val))
        g_ptr_array_add(links, val);
    g_ptr_array_sort(links, cmp_link); /* creation order, predictable */
    for (guint i = 0; i < links->len; i++) {
        CapshmLink *l = links->pdata[i];
        g_ptr_array_add(names, g_strdup(l->name));
        g_ptr_array_add(targets, region_ref(l->target));
    }
}

unsigned
store_dir_count(const CapshmStore *s)
{
    return g_hash_table_size(s->dirs) - 1; /* not the root */
}

static gint
cmp_region_ino(gconstpointer a, gconstpointer b)
{
    const CapshmRegion *ra = *(CapshmRegion *const *)a, *rb = *(CapshmRegion *const *)b;
    return ra->ino < rb->ino ? -1 : ra->ino > rb->ino;
}

void
store_list(CapshmStore *s, uid_t uid, bool all, GPtrArray *out)
{
    guint first = out->len;
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, s->alive);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        CapshmRegion *r = key;
        if (!r->unlinked && (all || r->uid == uid))
            g_ptr_array_add(out, region_ref(r));
    }
    /* Stable order (creation order) so listings are predictable. */
    if (out->len > first + 1)
        qsort(out->pdata + first, out->len - first, sizeof(gpointer),
              (int (*)(const void *, const void *))cmp_region_ino);
}

const char *
store_ro_name(CapshmStore *s, CapshmRegion *r)
{
    if (r->is_dir)
        return NULL;
    if (!r->ro_name) {
        char buf[NAMES_BUF];
        if (mint_unique(s, buf) < 0)
            return NULL;
        r->ro_name = g_strdup(buf);
        r->ro_ino = s->next_ino++;
        if (!r->unlinked)
            g_hash_table_insert(s->by_ro_name, r->ro_name, r);
    }
    return r->ro_name;
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
