/* SPDX-License-Identifier: MIT */
/* store_names — every name and where it points: mints (minted capability
 * names, reserved for mint_ttl), lookup, create and unlink, the directories,
 * hard links and renames of names=any, listings (readdir, .mine), and
 * read-only names.  A name is a CapshmLink in its directory's `entries`
 * table; `by_ro_name` finds read-only names.  What a name change means for
 * a region's life is store_reevaluate's (store_lifetime.c).
 */
#include "store_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    if (s->cgroup_lifetime && caller->cgroup_id && caller->cgroup_path) {
        reg->creator_cgroup = caller->cgroup_id;
        reg->creator_cgroup_path = g_strdup(caller->cgroup_path);
    }
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
    store_name_dropped(s, r);
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
    store_name_dropped(s, r);
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
            store_name_dropped(s, victim);
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
