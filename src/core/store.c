/* SPDX-License-Identifier: MIT */
/* store — see store.h.
 *
 * Ownership model: `alive` holds one reference to every region that is not
 * destroyed; `by_name`/`by_ro_name` borrow from it.  The linger and mapped
 * queues use links embedded in the regions (no allocation, O(1) removal).
 * Mints live in `mints` (owned) and are linked into `mint_queue` in expiry
 * order: mint_ttl is the same for all, so insertion order is expiry order;
 * the same holds for the linger queue.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_MAX_SIZE ((uint64_t)1 << 62)
#define MAPPED_POLL_US (1000 * 1000)
#define FIRST_REGION_INO 16

typedef struct {
    char name[NAMES_BUF];
    uid_t uid;
    int64_t deadline_us;
    GList link;
} Mint;

struct CapshmStore {
    CapshmOptions opts;
    CapshmStorage *storage;   /* owned */
    bool mappings_outlive_handles;
    Quota *quota;
    GHashTable *alive;        /* CapshmRegion* set (owns one ref each) */
    GHashTable *by_name;      /* name -> region (borrowed) */
    GHashTable *by_ro_name;   /* ro name -> region (borrowed) */
    GHashTable *mints;        /* name -> Mint* (owned) */
    GQueue mint_queue;
    GQueue linger_queue;
    GQueue mapped_queue;
    int64_t next_mapped_poll_us;
    uint64_t next_ino;
    StoreCounters counters;
    StoreProcOps proc;
    StoreDestroyHook destroy_hook;
    void *destroy_data;
    int64_t (*now_us)(void *);
    void *clock_data;
};

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
    s->by_name = g_hash_table_new(names_hash, name_equal);
    s->by_ro_name = g_hash_table_new(names_hash, name_equal);
    s->mints = g_hash_table_new_full(names_hash, name_equal, NULL, g_free);
    g_queue_init(&s->mint_queue);
    g_queue_init(&s->linger_queue);
    g_queue_init(&s->mapped_queue);
    s->next_ino = FIRST_REGION_INO;
    s->now_us = default_now;
    return s;
}

static void region_destroy(CapshmStore *s, CapshmRegion *r);

void
store_free(CapshmStore *s)
{
    if (!s)
        return;
    GList *all = g_hash_table_get_keys(s->alive);
    for (GList *l = all; l; l = l->next)
        region_destroy(s, l->data);
    g_list_free(all);
    g_hash_table_destroy(s->alive);
    g_hash_table_destroy(s->by_name);
    g_hash_table_destroy(s->by_ro_name);
    g_hash_table_destroy(s->mints);
    quota_free(s->quota);
    storage_free(s->storage);
    g_free(s);
}

void store_set_proc_ops(CapshmStore *s, const StoreProcOps *ops) { s->proc = *ops; }
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

static int64_t now(CapshmStore *s) { return s->now_us(s->clock_data); }

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
    return g_hash_table_contains(s->by_name, name) ||
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

static void
mint_remove(CapshmStore *s, Mint *m)
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
    m->deadline_us = now(s) + (int64_t)s->opts.mint_ttl_s * G_USEC_PER_SEC;
    m->link.data = m;
    g_queue_push_tail_link(&s->mint_queue, &m->link);
    g_hash_table_insert(s->mints, m->name, m);
    memcpy(out, m->name, NAMES_BUF);
    return 0;
}

CapshmRegion *
store_lookup(CapshmStore *s, const char *name, bool *is_ro)
{
    CapshmRegion *r = g_hash_table_lookup(s->by_name, name);
    bool ro = false;
    if (!r) {
        r = g_hash_table_lookup(s->by_ro_name, name);
        ro = r != NULL;
    }
    if (is_ro)
        *is_ro = ro;
    return r;
}

static void reevaluate(CapshmStore *s, CapshmRegion *r);

static bool
name_acceptable(CapshmStore *s, const char *name)
{
    if (s->opts.names == NAMES_MODE_ANY)
        return names_is_valid_any(name);
    return names_is_capability(name);
}

int
store_create(CapshmStore *s, const CapshmCaller *caller, const char *name,
             mode_t mode, bool excl, CapshmRegion **out, bool *created)
{
    *created = false;
    *out = NULL;
    bool is_ro = false;
    CapshmRegion *existing = store_lookup(s, name, &is_ro);
    if (existing) {
        if (excl)
            return -EEXIST;
        *out = existing;
        return 0;
    }
    if (!name_acceptable(s, name))
        return -EACCES;

    Mint *m = NULL;
    if (s->opts.names == NAMES_MODE_CAPABILITY) {
        m = g_hash_table_lookup(s->mints, name);
        if (!m || m->uid != caller->uid || m->deadline_us <= now(s))
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
        mint_remove(s, m);

    CapshmRegion *reg = g_new0(CapshmRegion, 1);
    reg->refcount = 1; /* owned by `alive` */
    reg->name = g_strdup(name);
    reg->ino = ino;
    reg->fd = fd;
    reg->uid = caller->uid;
    reg->gid = caller->gid;
    reg->mode = mode & 07777;
    clock_gettime(CLOCK_REALTIME, &reg->mtime);
    reg->atime = reg->ctime = reg->mtime;
    reg->created = reg->mtime.tv_sec;
    reg->state = REGION_LIVE;
    g_hash_table_add(s->alive, reg);
    g_hash_table_insert(s->by_name, reg->name, reg);
    s->counters.created++;
    *created = true;
    *out = reg;
    /* Unheld until opened (the FUSE layer opens it in the same request):
     * start its linger now so a region that is never opened still goes. */
    reevaluate(s, reg);
    return 0;
}

static void
drop_names(CapshmStore *s, CapshmRegion *r)
{
    if (!r->unlinked) {
        g_hash_table_remove(s->by_name, r->name);
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
    drop_names(s, r);
    reevaluate(s, r);
    return 0;
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
    gpointer val;
    g_hash_table_iter_init(&it, s->by_name);
    while (g_hash_table_iter_next(&it, NULL, &val)) {
        CapshmRegion *r = val;
        if (all || r->uid == uid)
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

/* --- data --------------------------------------------------------------- */

int
store_data_fd(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->fd >= 0)
        return r->fd;
    /* Read-only once sealed: the tmpfs seal check counts our own writers. */
    int fd = storage_open(s->storage, r->ino, r->sealed ? O_RDONLY : O_RDWR);
    if (fd < 0)
        return fd;
    r->fd = fd;
    return fd;
}

/* Close the data fd of a region nobody has open, when the storage keeps
 * the bytes without it: idle regions cost no file descriptor. */
static void
close_idle_fd(CapshmStore *s, CapshmRegion *r)
{
    if (r->fd >= 0 && r->open_count == 0 && !storage_needs_open_fd(s->storage)) {
        close(r->fd);
        r->fd = -1;
    }
}

int
store_open_backing(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (storage_needs_open_fd(s->storage)) {
        int fd = dup(r->fd);
        return fd < 0 ? -errno : fd;
    }
    /* Read-only: the kernel opens a backing file of its own, with the
     * client's access mode, for every passthrough open; the registered file
     * only names the inode and must not count as a writer. */
    return storage_open(s->storage, r->ino, O_RDONLY);
}

int
store_region_blocks(CapshmStore *s, CapshmRegion *r, blkcnt_t *blocks)
{
    struct stat st;
    int rc;
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->fd >= 0)
        rc = fstat(r->fd, &st) < 0 ? -errno : 0;
    else
        rc = storage_stat(s->storage, r->ino, &st);
    if (rc == 0)
        *blocks = st.st_blocks;
    return rc;
}

static int
charge_growth(CapshmStore *s, CapshmRegion *r, uint64_t from, uint64_t to)
{
    return to > from ? quota_charge_bytes(s->quota, r->uid, to - from) : 0;
}

int
store_resize(CapshmStore *s, CapshmRegion *r, uint64_t size)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->sealed)
        return -EPERM;
    if (size > STORE_MAX_SIZE)
        return -EFBIG;
    if (size == r->size)
        return 0;
    int rc = charge_growth(s, r, r->size, size);
    if (rc < 0)
        return rc;
    int fd = store_data_fd(s, r);
    rc = fd < 0 ? fd : ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
    close_idle_fd(s, r);
    if (rc < 0) {
        if (size > r->size)
            quota_release_bytes(s->quota, r->uid, size - r->size);
        return rc;
    }
    if (size < r->size)
        quota_release_bytes(s->quota, r->uid, r->size - size);
    r->size = size;
    clock_gettime(CLOCK_REALTIME, &r->mtime);
    r->ctime = r->mtime;
    return 0;
}

int
store_write_begin(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len,
                  uint64_t *reserved_end)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->sealed)
        return -EPERM;
    if (off > STORE_MAX_SIZE || len > STORE_MAX_SIZE - off)
        return -EFBIG;
    uint64_t end = off + len;
    int rc = charge_growth(s, r, r->size, end);
    if (rc < 0)
        return rc;
    *reserved_end = MAX(end, r->size);
    return 0;
}

void
store_write_done(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t written,
                 uint64_t reserved_end)
{
    /* Only bytes that landed move EOF: a failed write past EOF must not. */
    uint64_t new_size = written ? MAX(r->size, off + written) : r->size;
    if (reserved_end > new_size)
        quota_release_bytes(s->quota, r->uid, reserved_end - new_size);
    r->size = new_size;
}

int
store_fallocate(CapshmStore *s, CapshmRegion *r, uint64_t off, uint64_t len)
{
    uint64_t reserved_end;
    if (len == 0)
        return -EINVAL;
    int rc = store_write_begin(s, r, off, len, &reserved_end);
    if (rc < 0)
        return rc;
    int fd = store_data_fd(s, r);
    rc = fd < 0 ? fd : fallocate(fd, 0, (off_t)off, (off_t)len) < 0 ? -errno : 0;
    close_idle_fd(s, r);
    store_write_done(s, r, off, rc < 0 ? 0 : len, reserved_end);
    return rc;
}

int
store_chown(CapshmStore *s, CapshmRegion *r, uid_t uid, gid_t gid)
{
    if (!region_is_alive(r))
        return -ENOENT;
    if (uid != r->uid) {
        int rc = quota_charge_region(s->quota, uid);
        if (rc < 0)
            return rc;
        /* Move the bytes: release first so the global size check does not
         * count them twice. */
        quota_release_bytes(s->quota, r->uid, r->size);
        rc = quota_charge_bytes(s->quota, uid, r->size);
        if (rc < 0) {
            int back = quota_charge_bytes(s->quota, r->uid, r->size);
            g_warn_if_fail(back == 0);
            quota_release_region(s->quota, uid);
            return rc;
        }
        quota_release_region(s->quota, r->uid);
        r->uid = uid;
    }
    r->gid = gid;
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    return 0;
}

int
store_seal(CapshmStore *s, CapshmRegion *r)
{
    (void)s;
    if (!region_is_alive(r))
        return -ENOENT;
    if (r->sealed)
        return 0;
    if (r->writable_opens > 0)
        return -EBUSY;
    if (!storage_needs_open_fd(s->storage) && r->fd >= 0) {
        /* Our own writable fd would count as a writer; it is reopened
         * read-only when next needed. */
        close(r->fd);
        r->fd = -1;
    }
    int rc = storage_seal(s->storage, r->ino, r->fd);
    if (rc < 0)
        return rc;
    r->sealed = true;
    clock_gettime(CLOCK_REALTIME, &r->ctime);
    return 0;
}

/* --- lifetime ------------------------------------------------------------- */

static RegionOpener *
opener_find(CapshmRegion *r, pid_t tid)
{
    if (!r->openers)
        return NULL;
    for (guint i = 0; i < r->openers->len; i++) {
        RegionOpener *o = &g_array_index(r->openers, RegionOpener, i);
        if (o->tgid == tid)
            return o;
    }
    return NULL;
}

static void
opener_remove_at(CapshmStore *s, CapshmRegion *r, guint i)
{
    RegionOpener *o = &g_array_index(r->openers, RegionOpener, i);
    if (o->maps && s->proc.unwatch)
        s->proc.unwatch(s->proc.data, o->tgid);
    g_array_remove_index_fast(r->openers, i);
    if (r->openers->len == 0) {
        g_array_free(r->openers, TRUE);
        r->openers = NULL;
    }
}

static bool
has_mapper(const CapshmRegion *r)
{
    if (!r->openers)
        return false;
    for (guint i = 0; i < r->openers->len; i++)
        if (g_array_index(r->openers, RegionOpener, i).maps)
            return true;
    return false;
}

static void
queue_remove(GQueue *q, GList *link)
{
    if (link->data) {
        g_queue_unlink(q, link);
        link->data = NULL;
    }
}

static void
queue_add(GQueue *q, GList *link, CapshmRegion *r)
{
    if (!link->data) {
        link->data = r;
        g_queue_push_tail_link(q, link);
    }
}

static void
reevaluate(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return;
    bool mapped = has_mapper(r);
    if (r->open_count > 0 || mapped) {
        r->state = REGION_LIVE;
        queue_remove(&s->linger_queue, &r->linger_link);
        if (r->open_count == 0) {
            if (!r->mapped_link.data && s->mapped_queue.length == 0)
                s->next_mapped_poll_us = now(s) + MAPPED_POLL_US;
            queue_add(&s->mapped_queue, &r->mapped_link, r);
        } else {
            queue_remove(&s->mapped_queue, &r->mapped_link);
        }
        return;
    }
    queue_remove(&s->mapped_queue, &r->mapped_link);
    if (r->unlinked) {
        region_destroy(s, r);
    } else if (r->pinned) {
        r->state = REGION_PINNED;
        queue_remove(&s->linger_queue, &r->linger_link);
    } else if (r->state != REGION_LINGERING) {
        r->state = REGION_LINGERING;
        r->linger_deadline_us = now(s) + (int64_t)s->opts.linger_s * G_USEC_PER_SEC;
        queue_add(&s->linger_queue, &r->linger_link, r);
    }
}

void
store_opened(CapshmStore *s, CapshmRegion *r, pid_t tid, bool writable)
{
    if (!region_is_alive(r))
        return;
    r->open_count++;
    if (writable)
        r->writable_opens++;
    RegionOpener *o = opener_find(r, tid);
    if (!o) {
        if (!r->openers)
            r->openers = g_array_sized_new(FALSE, FALSE, sizeof(RegionOpener), 1);
        RegionOpener fresh = { .tgid = tid };
        g_array_append_val(r->openers, fresh);
        o = &g_array_index(r->openers, RegionOpener, r->openers->len - 1);
    }
    o->opens++;
    reevaluate(s, r);
}

/* Passthrough: openers whose handles are all closed still hold the region
 * while they map it.  Rebuilds the opener list: entries with open handles
 * stay as they are; closed ones become per-process mapper entries (watched)
 * if the process still maps the region, and are dropped otherwise. */
static void
settle_closed_openers(CapshmStore *s, CapshmRegion *r)
{
    if (!r->openers)
        return;
    GArray *old = r->openers;
    GArray *kept = g_array_sized_new(FALSE, FALSE, sizeof(RegionOpener), old->len);
    for (guint i = 0; i < old->len; i++) {
        RegionOpener o = g_array_index(old, RegionOpener, i);
        if (o.opens > 0) {
            g_array_append_val(kept, o);
            continue;
        }
        pid_t tgid = o.tgid;
        if (!o.maps) {
            /* Ask the thread's maps first (they are its process's): most
             * closers no longer map, and then the tgid is never needed. */
            if (o.tgid <= 0 || !s->proc.maps_node ||
                !s->proc.maps_node(s->proc.data, o.tgid, r->ino, r->ro_ino))
                continue;
            tgid = s->proc.tgid_of ? s->proc.tgid_of(s->proc.data, o.tgid) : o.tgid;
            if (tgid <= 0)
                continue;
        }
        gboolean dup = FALSE;
        for (guint j = 0; j < kept->len; j++) {
            const RegionOpener *k = &g_array_index(kept, RegionOpener, j);
            dup |= k->maps && k->tgid == tgid;
        }
        if (dup) {
            if (o.maps && s->proc.unwatch)
                s->proc.unwatch(s->proc.data, tgid);
            continue;
        }
        if (!o.maps && s->proc.watch)
            s->proc.watch(s->proc.data, tgid);
        RegionOpener k = { .tgid = tgid, .maps = true };
        g_array_append_val(kept, k);
    }
    g_array_free(old, TRUE);
    r->openers = kept->len ? kept : (g_array_free(kept, TRUE), NULL);
}

void
store_released(CapshmStore *s, CapshmRegion *r, pid_t tid, bool writable)
{
    if (r->open_count > 0)
        r->open_count--;
    if (writable && r->writable_opens > 0)
        r->writable_opens--;
    if (!region_is_alive(r))
        return;
    close_idle_fd(s, r);
    RegionOpener *o = opener_find(r, tid);
    if (o && o->opens > 0)
        o->opens--;
    if (s->mappings_outlive_handles) {
        if (o && o->opens == 0)
            settle_closed_openers(s, r);
    } else if (r->open_count == 0) {
        if (r->openers) {
            g_array_free(r->openers, TRUE);
            r->openers = NULL;
        }
    } else if (o && o->opens == 0) {
        opener_remove_at(s, r, (guint)(o - &g_array_index(r->openers, RegionOpener, 0)));
    }
    reevaluate(s, r);
}

static void
drop_mapper(CapshmStore *s, CapshmRegion *r, pid_t tgid)
{
    if (!r->openers)
        return;
    for (guint i = r->openers->len; i-- > 0;) {
        RegionOpener *o = &g_array_index(r->openers, RegionOpener, i);
        if (o->maps && o->tgid == tgid) {
            opener_remove_at(s, r, i);
            if (!r->openers)
                break;
        }
    }
}

void
store_process_exited(CapshmStore *s, pid_t tgid)
{
    GList *l = s->mapped_queue.head;
    while (l) {
        GList *next = l->next;
        CapshmRegion *r = l->data;
        drop_mapper(s, r, tgid);
        reevaluate(s, r);
        l = next;
    }
    /* Open regions may also have this process as a past mapper. */
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, s->alive);
    GPtrArray *touched = NULL;
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        CapshmRegion *r = key;
        if (r->open_count > 0 && r->openers && has_mapper(r)) {
            if (!touched)
                touched = g_ptr_array_new();
            g_ptr_array_add(touched, r);
        }
    }
    if (touched) {
        for (guint i = 0; i < touched->len; i++) {
            drop_mapper(s, touched->pdata[i], tgid);
            reevaluate(s, touched->pdata[i]);
        }
        g_ptr_array_free(touched, TRUE);
    }
}

void
store_set_pinned(CapshmStore *s, CapshmRegion *r, bool pinned)
{
    if (!region_is_alive(r))
        return;
    r->pinned = pinned;
    if (!pinned && r->state == REGION_PINNED)
        r->state = REGION_LIVE; /* so reevaluate starts a fresh linger */
    reevaluate(s, r);
}

static void
region_destroy(CapshmStore *s, CapshmRegion *r)
{
    if (!region_is_alive(r))
        return;
    if (s->destroy_hook)
        s->destroy_hook(r, s->destroy_data);
    drop_names(s, r);
    queue_remove(&s->linger_queue, &r->linger_link);
    queue_remove(&s->mapped_queue, &r->mapped_link);
    while (r->openers)
        opener_remove_at(s, r, r->openers->len - 1);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    storage_remove(s->storage, r->ino);
    quota_release_bytes(s->quota, r->uid, r->size);
    quota_release_region(s->quota, r->uid);
    r->state = REGION_DESTROYED;
    s->counters.destroyed++;
    g_hash_table_remove(s->alive, r);
    region_unref(r);
}

static void
expire_lingering(CapshmStore *s, int64_t t)
{
    GPtrArray *due = NULL;
    for (GList *l = s->linger_queue.head; l; l = l->next) {
        CapshmRegion *r = l->data;
        if (r->linger_deadline_us > t)
            break;
        if (!due)
            due = g_ptr_array_new();
        g_ptr_array_add(due, r);
    }
    if (!due)
        return;

    /* Safety net for mappings we could not attribute (a child that
     * inherited a mapping, an opener thread that exited): one scan of every
     * visible process for the whole batch. */
    GHashTable *owners = NULL;
    if (s->mappings_outlive_handles && s->proc.scan_all) {
        GHashTable *wanted = g_hash_table_new(g_int64_hash, g_int64_equal);
        for (guint i = 0; i < due->len; i++) {
            CapshmRegion *r = due->pdata[i];
            g_hash_table_add(wanted, &r->ino);
            if (r->ro_ino)
                g_hash_table_add(wanted, &r->ro_ino);
        }
        owners = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        s->proc.scan_all(s->proc.data, wanted, owners);
        g_hash_table_destroy(wanted);
    }
    for (guint i = 0; i < due->len; i++) {
        CapshmRegion *r = due->pdata[i];
        gpointer tg = NULL;
        if (owners && (g_hash_table_lookup_extended(owners, &r->ino, NULL, &tg) ||
                       (r->ro_ino && g_hash_table_lookup_extended(owners, &r->ro_ino, NULL, &tg)))) {
            if (!r->openers)
                r->openers = g_array_sized_new(FALSE, FALSE, sizeof(RegionOpener), 1);
            RegionOpener o = { .tgid = GPOINTER_TO_INT(tg), .maps = true };
            g_array_append_val(r->openers, o);
            if (s->proc.watch)
                s->proc.watch(s->proc.data, o.tgid);
            reevaluate(s, r);
        } else {
            region_destroy(s, r);
        }
    }
    if (owners)
        g_hash_table_destroy(owners);
    g_ptr_array_free(due, TRUE);
}

static void
poll_mapped(CapshmStore *s)
{
    GList *l = s->mapped_queue.head;
    while (l) {
        GList *next = l->next;
        CapshmRegion *r = l->data;
        for (guint i = r->openers ? r->openers->len : 0; i-- > 0;) {
            RegionOpener *o = &g_array_index(r->openers, RegionOpener, i);
            if (o->maps && !(s->proc.maps_node &&
                             s->proc.maps_node(s->proc.data, o->tgid, r->ino, r->ro_ino))) {
                opener_remove_at(s, r, i);
                if (!r->openers)
                    break;
            }
        }
        reevaluate(s, r);
        l = next;
    }
}

int64_t
store_tick(CapshmStore *s)
{
    int64_t t = now(s);
    while (s->mint_queue.head) {
        Mint *m = s->mint_queue.head->data;
        if (m->deadline_us > t)
            break;
        s->counters.expired_mints++;
        mint_remove(s, m);
    }
    if (s->mapped_queue.length && s->next_mapped_poll_us <= t) {
        poll_mapped(s);
        s->next_mapped_poll_us = t + MAPPED_POLL_US;
    }
    expire_lingering(s, t);

    int64_t next = -1;
#define CONSIDER(when) do { int64_t w_ = (when); if (next < 0 || w_ < next) next = w_; } while (0)
    if (s->mint_queue.head)
        CONSIDER(((Mint *)s->mint_queue.head->data)->deadline_us);
    if (s->linger_queue.head)
        CONSIDER(((CapshmRegion *)s->linger_queue.head->data)->linger_deadline_us);
    if (s->mapped_queue.length)
        CONSIDER(s->next_mapped_poll_us);
#undef CONSIDER
    return next < 0 ? -1 : MAX(next - t, 0);
}

GArray *
store_holder_pids(CapshmStore *s, CapshmRegion *r)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(pid_t));
    for (guint i = 0; r->openers && i < r->openers->len; i++) {
        RegionOpener *o = &g_array_index(r->openers, RegionOpener, i);
        if (!(o->opens > 0 || o->maps) || o->tgid <= 0)
            continue;
        pid_t p = o->tgid;
        if (!o->maps && s->proc.tgid_of) {
            pid_t tg = s->proc.tgid_of(s->proc.data, o->tgid);
            if (tg > 0)
                p = tg;
        }
        gboolean dup = FALSE;
        for (guint j = 0; j < out->len; j++)
            dup |= g_array_index(out, pid_t, j) == p;
        if (!dup)
            g_array_append_val(out, p);
    }
    return out;
}

/* --- reporting ------------------------------------------------------------ */

static void
append_usage(const QuotaUsage *u, void *data)
{
    GString *js = data;
    if (js->str[js->len - 1] != '[')
        g_string_append_c(js, ',');
    g_string_append_printf(js, "{\"uid\":%u,\"regions\":%u,\"bytes\":%" G_GUINT64_FORMAT
                               ",\"mints\":%u}",
                           (unsigned)u->uid, u->regions, u->bytes, u->mints);
}

char *
store_stats_json(CapshmStore *s, uid_t uid, bool is_root, const char *datapath,
                 const char *transport, uint64_t requests)
{
    GString *js = g_string_new(NULL);
    QuotaUsage mine = quota_usage(s->quota, uid);
    g_string_append_printf(js,
        "{\"version\":\"%s\",\"datapath\":\"%s\",\"transport\":\"%s\",\"regions\":%u,\"bytes\":%" G_GUINT64_FORMAT
        ",\"lingering\":%u,\"pinned\":%u,\"created\":%" G_GUINT64_FORMAT
        ",\"destroyed\":%" G_GUINT64_FORMAT ",\"expired_mints\":%" G_GUINT64_FORMAT
        ",\"size_bytes\":%" G_GUINT64_FORMAT ",\"linger\":%u,\"mint_ttl\":%u"
        ",\"requests\":%" G_GUINT64_FORMAT
        ",\"uid\":{\"uid\":%u,\"regions\":%u,\"bytes\":%" G_GUINT64_FORMAT
        ",\"quota_bytes\":%" G_GUINT64_FORMAT ",\"max_regions\":%u}",
        PACKAGE_VERSION, datapath, transport, store_region_count(s), quota_total_bytes(s->quota),
        store_count_in_state(s, REGION_LINGERING), store_count_in_state(s, REGION_PINNED),
        s->counters.created, s->counters.destroyed, s->counters.expired_mints,
        quota_size_limit(s->quota), s->opts.linger_s, s->opts.mint_ttl_s, requests,
        (unsigned)uid, mine.regions, mine.bytes, quota_bytes_limit(s->quota),
        quota_regions_limit(s->quota));
    if (is_root) {
        g_string_append(js, ",\"per_uid\":[");
        quota_foreach(s->quota, append_usage, js);
        g_string_append_c(js, ']');
    }
    g_string_append(js, "}\n");
    return g_string_free(js, FALSE);
}
