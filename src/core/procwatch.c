/* SPDX-License-Identifier: MIT */
/* procwatch — see procwatch.h. */
#include "procwatch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

typedef struct {
    pid_t tgid;
    int pidfd;
    guint source;
    unsigned refs;
    ProcWatch *pw;
} Watch;

struct ProcWatch {
    dev_t dev;
    GHashTable *watches; /* tgid -> Watch* (owned) */
    void (*on_exit)(pid_t, void *);
    void *data;
    pthread_mutex_t *lock; /* see procwatch_set_lock; NULL: single-threaded */
};

/* What a watch's GSource carries: not the Watch itself, which another
 * thread may free (op_unwatch) while the callback waits for the lock. */
typedef struct {
    ProcWatch *pw;
    pid_t tgid;
} Ticket;

static gpointer
ticket_new(ProcWatch *pw, pid_t tgid)
{
    Ticket *t = g_new(Ticket, 1);
    t->pw = pw;
    t->tgid = tgid;
    return t;
}

static void
watch_free(gpointer p)
{
    Watch *w = p;
    if (w->source)
        g_source_remove(w->source);
    if (w->pidfd >= 0)
        close(w->pidfd);
    g_free(w);
}

ProcWatch *
procwatch_new(dev_t dev, void (*on_exit)(pid_t, void *), void *data)
{
    ProcWatch *pw = g_new0(ProcWatch, 1);
    pw->dev = dev;
    pw->watches = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, watch_free);
    pw->on_exit = on_exit;
    pw->data = data;
    return pw;
}

void
procwatch_set_lock(ProcWatch *pw, pthread_mutex_t *lock)
{
    pw->lock = lock;
}

void
procwatch_free(ProcWatch *pw)
{
    if (!pw)
        return;
    g_hash_table_destroy(pw->watches);
    g_free(pw);
}

void procwatch_set_dev(ProcWatch *pw, dev_t dev) { pw->dev = dev; }
unsigned procwatch_count(const ProcWatch *pw) { return g_hash_table_size(pw->watches); }

pid_t
procwatch_tgid_of(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[256];
    pid_t tgid = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Tgid:", 5) == 0) {
            tgid = (pid_t)strtol(line + 5, NULL, 10);
            break;
        }
    }
    fclose(f);
    return tgid;
}

/* Parse one /proc/PID/maps line's device and inode fields. */
static bool
parse_maps_line(const char *line, unsigned *maj, unsigned *min, uint64_t *ino)
{
    /* addr perms offset dev inode [path] */
    const char *p = line;
    for (int field = 0; field < 3; field++) {
        p = strchr(p, ' ');
        if (!p)
            return false;
        p++;
    }
    char *end;
    unsigned long a = strtoul(p, &end, 16);
    if (*end != ':')
        return false;
    unsigned long b = strtoul(end + 1, &end, 16);
    if (*end != ' ')
        return false;
    unsigned long long i = strtoull(end + 1, &end, 10);
    *maj = (unsigned)a;
    *min = (unsigned)b;
    *ino = i;
    return true;
}

/* PROCMAP_QUERY (Linux 6.11): the VMAs of a process one ioctl at a time,
 * with device and inode and without formatting any path: less than half the
 * cost of reading /proc/PID/maps as text.  Debian 12's headers predate it. */
#ifndef PROCMAP_QUERY
struct procmap_query {
    uint64_t size, query_flags, query_addr;
    uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
    uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
    uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#define PROCMAP_QUERY_FILE_BACKED_VMA 0x20
#endif

static bool procmap_query_unsupported;

/* 1 if @fn returned true for a file mapping of @fd's process on @dev, 0 if
 * none did, -1 if this kernel has no PROCMAP_QUERY. */
static int
query_mappings(int fd, unsigned maj, unsigned min, bool (*fn)(uint64_t ino, void *data), void *data)
{
    uint64_t addr = 0;
    for (;;) {
        struct procmap_query q = {
            .size = sizeof q,
            .query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_FILE_BACKED_VMA,
            .query_addr = addr,
        };
        if (ioctl(fd, PROCMAP_QUERY, &q) < 0) {
            if (errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP)
                return addr == 0 ? -1 : 0;
            return 0; /* ENOENT: no more mappings; ESRCH: the process went */
        }
        if (q.dev_major == maj && q.dev_minor == min && q.inode != 0 && fn(q.inode, data))
            return 1;
        if (q.vma_end <= addr)
            return 0;
        addr = q.vma_end;
    }
}

void procwatch_use_text_maps(bool yes) { procmap_query_unsupported = yes; }

/* Calls @fn for each mapping of a file on @dev in process @pid; stops when
 * @fn returns true.  Returns true if @fn did. */
static bool
for_each_mapping(pid_t pid, dev_t dev, bool (*fn)(uint64_t ino, void *data), void *data)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    unsigned want_maj = major(dev), want_min = minor(dev);
    if (!procmap_query_unsupported) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return false;
        int hit = query_mappings(fd, want_maj, want_min, fn, data);
        close(fd);
        if (hit >= 0)
            return hit == 1;
        procmap_query_unsupported = true;
    }
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool hit = false;
    while (!hit && getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        uint64_t ino;
        if (parse_maps_line(line, &maj, &min, &ino) && ino != 0 &&
            maj == want_maj && min == want_min)
            hit = fn(ino, data);
    }
    free(line);
    fclose(f);
    return hit;
}

typedef struct { uint64_t a, b; } InoPair;

static bool
match_pair(uint64_t ino, void *data)
{
    InoPair *p = data;
    return ino == p->a || (p->b && ino == p->b);
}

bool
procwatch_maps_node(pid_t pid, dev_t dev, uint64_t ino, uint64_t ino2)
{
    InoPair p = { ino, ino2 };
    return for_each_mapping(pid, dev, match_pair, &p);
}

static pid_t
op_tgid_of(void *data, pid_t tid)
{
    (void)data;
    return procwatch_tgid_of(tid);
}

static bool
op_maps_node(void *data, pid_t tgid, uint64_t ino, uint64_t ro_ino)
{
    ProcWatch *pw = data;
    return procwatch_maps_node(tgid, pw->dev, ino, ro_ino);
}

/* Report the exit of the watched process, from the main loop; the caller
 * returns G_SOURCE_REMOVE. */
static void
fire_exit(Watch *w)
{
    ProcWatch *pw = w->pw;
    pid_t tgid = w->tgid;
    w->source = 0; /* the caller's G_SOURCE_REMOVE removes it */
    g_hash_table_remove(pw->watches, GINT_TO_POINTER(tgid));
    if (pw->on_exit)
        pw->on_exit(tgid, pw->data);
}

static bool process_alive(pid_t pid);

/* Every watch source lands here: under the lock, and only if its watch was
 * not dropped meanwhile (dropping it destroyed this source). */
static gboolean
on_watch_event(Ticket *t, bool poll_alive)
{
    ProcWatch *pw = t->pw;
    if (pw->lock)
        pthread_mutex_lock(pw->lock);
    gboolean again = G_SOURCE_REMOVE;
    Watch *w = g_hash_table_lookup(pw->watches, GINT_TO_POINTER(t->tgid));
    if (!g_source_is_destroyed(g_main_current_source()) && w) {
        if (poll_alive && process_alive(w->tgid))
            again = G_SOURCE_CONTINUE;
        else
            fire_exit(w);
    }
    if (pw->lock)
        pthread_mutex_unlock(pw->lock);
    return again;
}

static gboolean
on_pidfd(gint fd, GIOCondition cond, gpointer data)
{
    (void)fd;
    (void)cond;
    return on_watch_event(data, false);
}

static gboolean
on_gone(gpointer data)
{
    return on_watch_event(data, false);
}

/* True while process @pid exists and is not a zombie. */
static bool
process_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* "pid (comm) STATE ..." */
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' && p[2] != '\0';
}

/* Without a pidfd: look once a second whether the process is still there. */
static gboolean
on_poll_alive(gpointer data)
{
    return on_watch_event(data, true);
}

static void
op_watch(void *data, pid_t tgid)
{
    ProcWatch *pw = data;
    Watch *w = g_hash_table_lookup(pw->watches, GINT_TO_POINTER(tgid));
    if (w) {
        w->refs++;
        return;
    }
    w = g_new0(Watch, 1);
    w->tgid = tgid;
    w->refs = 1;
    w->pw = pw;
    w->pidfd = (int)syscall(SYS_pidfd_open, tgid, 0);
    if (w->pidfd >= 0) {
        w->source = g_unix_fd_add_full(G_PRIORITY_DEFAULT, w->pidfd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                       on_pidfd, ticket_new(pw, tgid), g_free);
    } else if (errno == ESRCH) {
        /* Already gone: report it from the main loop rather than re-entering
         * the store from inside its own call. */
        w->source = g_idle_add_full(G_PRIORITY_DEFAULT_IDLE, on_gone, ticket_new(pw, tgid), g_free);
    } else {
        /* No pidfd for a live process (EMFILE, or ENOSYS on old kernels and
         * under valgrind): calling it gone would drop a live mapper.  Poll
         * for its exit instead. */
        g_debug("pidfd_open(%d): %s; polling for its exit", (int)tgid, g_strerror(errno));
        w->source = g_timeout_add_seconds_full(G_PRIORITY_DEFAULT, 1, on_poll_alive,
                                               ticket_new(pw, tgid), g_free);
    }
    g_hash_table_insert(pw->watches, GINT_TO_POINTER(tgid), w);
}

static void
op_unwatch(void *data, pid_t tgid)
{
    ProcWatch *pw = data;
    Watch *w = g_hash_table_lookup(pw->watches, GINT_TO_POINTER(tgid));
    if (w && --w->refs == 0)
        g_hash_table_remove(pw->watches, GINT_TO_POINTER(tgid));
}

typedef struct {
    GHashTable *wanted, *owners;
    pid_t pid;
} ScanCtx;

static bool
scan_one(uint64_t ino, void *data)
{
    ScanCtx *c = data;
    if (g_hash_table_contains(c->wanted, &ino) && !g_hash_table_contains(c->owners, &ino)) {
        uint64_t *key = g_new(uint64_t, 1);
        *key = ino;
        g_hash_table_insert(c->owners, key, GINT_TO_POINTER(c->pid));
    }
    return false;
}

static void
op_scan_all(void *data, GHashTable *wanted, GHashTable *owners)
{
    ProcWatch *pw = data;
    DIR *d = opendir("/proc");
    if (!d)
        return;
    pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self)
            continue;
        ScanCtx c = { wanted, owners, (pid_t)pid };
        for_each_mapping((pid_t)pid, pw->dev, scan_one, &c);
    }
    closedir(d);
}

StoreProcOps
procwatch_ops(ProcWatch *pw)
{
    return (StoreProcOps){
        .tgid_of = op_tgid_of,
        .maps_node = op_maps_node,
        .watch = op_watch,
        .unwatch = op_unwatch,
        .scan_all = op_scan_all,
        .data = pw,
    };
}

int
procwatch_mount_dev(const char *mountpoint, dev_t *dev)
{
    /* mountinfo: id parent maj:min root mountpoint ... ; the mountpoint has
     * spaces etc. escaped as \ooo.  The last matching line is the top mount. */
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int rc = -ENOENT;
    while (getline(&line, &cap, f) > 0) {
        unsigned maj, min;
        char mp[4096];
        if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) != 3)
            continue;
        /* Unescape \ooo. */
        char un[4096];
        size_t j = 0;
        for (size_t i = 0; mp[i] && j < sizeof un - 1; i++) {
            if (mp[i] == '\\' && mp[i + 1] >= '0' && mp[i + 1] <= '7' && mp[i + 2] && mp[i + 3]) {
                un[j++] = (char)(((mp[i + 1] - '0') << 6) | ((mp[i + 2] - '0') << 3) | (mp[i + 3] - '0'));
                i += 3;
            } else {
                un[j++] = mp[i];
            }
        }
        un[j] = '\0';
        if (strcmp(un, mountpoint) == 0) {
            *dev = makedev(maj, min);
            rc = 0;
        }
    }
    free(line);
    fclose(f);
    return rc;
}
