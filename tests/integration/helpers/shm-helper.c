/* SPDX-License-Identifier: MIT */
/* shm-helper — small, strict actions on a shared-memory file, for the
 * capshm real-mount integration tests (tests/integration/test_*.py files).
 *
 * Every subcommand opens PATH itself, so each invocation is a separate
 * process with its own mapping: what one helper stores, another must see.
 *
 *   atomic-add PATH OFF N [--barrier BOFF NPROCS]
 *       __atomic_fetch_add(+1) N times on the 64-bit word at OFF.  With
 *       --barrier, first announce itself at the 64-bit word BOFF and spin
 *       until NPROCS processes have, so the adders really run concurrently.
 *       Prints the word's value after its last add.
 *   mutex-init PATH OFF
 *       Initialise a PTHREAD_PROCESS_SHARED mutex at OFF and zero the 64-bit
 *       counter at OFF+64 (the layout of `struct locked_counter`).
 *   mutex-add PATH OFF N [--barrier BOFF NPROCS]
 *       N times: lock the mutex at OFF, increment the counter at OFF+64 with
 *       a plain (non-atomic, deliberately slow) load and store, unlock.
 *       --nolock skips the mutex (to show the test has teeth).
 *   futex-wait PATH OFF TIMEOUT_MS
 *       Print "ready", then FUTEX_WAIT (shared, not private) on the 32-bit
 *       word at OFF while it is 0.  Exit 0 ("woken") only if another process
 *       woke it; 1 on timeout or if the word was not 0.
 *   futex-wake PATH OFF TIMEOUT_MS
 *       FUTEX_WAKE the 32-bit word at OFF until at least one waiter was
 *       woken (retrying every millisecond), print "woke N".  1 on timeout.
 *   map-hold PATH [--ro] [--keep-fd] [--private]
 *       open, mmap the whole file (MAP_SHARED unless --private), close the
 *       fd (unless --keep-fd), print "ready", then serve commands read from
 *       stdin, one per line, each answered with one line:
 *           r OFF LEN     -> hex of LEN bytes of the mapping at OFF
 *           w OFF HEX     -> store the bytes; "ok"
 *           a OFF N       -> atomic add N to the 64-bit word; new value
 *           g OFF         -> atomic load of the 64-bit word
 *           t             -> store one byte on every page ("ok"; SIGBUS kills)
 *           u             -> munmap; "ok"
 *           q             -> exit 0
 *       At end of input, sleep until killed.
 *   open-hold PATH [--ro]
 *       open (no mapping), print "ready", sleep until killed.
 *   touch PATH
 *       mmap the whole file and store to every page, then read it back
 *       (a SIGBUS kills the process: the test sees -SIGBUS).
 *   layout
 *       Print sizeof(pthread_mutex_t) and the counter offset.
 *
 * Exit status: 0 ok, 1 failure (one line on stderr naming what failed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define COUNTER_OFFSET 64

struct locked_counter {
    pthread_mutex_t mutex;
    char pad[COUNTER_OFFSET - sizeof(pthread_mutex_t)];
    uint64_t counter;
};

_Static_assert(sizeof(pthread_mutex_t) <= COUNTER_OFFSET, "pthread_mutex_t too large");
_Static_assert(offsetof(struct locked_counter, counter) == COUNTER_OFFSET, "layout");

static const char *prog = "shm-helper";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    if (fflush(stdout) != 0)
        die("writing to stdout: %s", strerror(errno));
}

static uint64_t
parse_u64(const char *what, const char *s)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        die("%s: '%s' is not a non-negative number", what, s ? s : "");
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        die("%s: '%s' is not a non-negative number", what, s);
    return (uint64_t)v;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        die("clock_gettime: %s", strerror(errno));
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0)
        if (errno != EINTR)
            die("nanosleep: %s", strerror(errno));
}

/* A mapping of a whole file. */
typedef struct {
    int fd;
    unsigned char *base;
    size_t len;
} Map;

static Map
map_file(const char *path, int oflags, int prot, int mflags)
{
    Map m = { .fd = -1 };
    m.fd = open(path, oflags | O_CLOEXEC);
    if (m.fd < 0)
        die("open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(m.fd, &st) < 0)
        die("fstat %s: %s", path, strerror(errno));
    if (st.st_size <= 0)
        die("%s: empty file, nothing to map", path);
    m.len = (size_t)st.st_size;
    void *p = mmap(NULL, m.len, prot, mflags, m.fd, 0);
    if (p == MAP_FAILED)
        die("mmap %s (%zu bytes): %s", path, m.len, strerror(errno));
    m.base = p;
    return m;
}

static Map
map_rw(const char *path)
{
    return map_file(path, O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED);
}

static void
check_range(const Map *m, uint64_t off, uint64_t len, uint64_t align)
{
    if (off > m->len || len > m->len - off)
        die("offset %llu + %llu is past the mapping (%zu bytes)",
            (unsigned long long)off, (unsigned long long)len, m->len);
    if (align && off % align)
        die("offset %llu is not %llu-aligned", (unsigned long long)off,
            (unsigned long long)align);
}

static uint64_t *
word64(const Map *m, uint64_t off)
{
    check_range(m, off, 8, 8);
    return (uint64_t *)(void *)(m->base + off);
}

static uint32_t *
word32(const Map *m, uint64_t off)
{
    check_range(m, off, 4, 4);
    return (uint32_t *)(void *)(m->base + off);
}

/* Parse "[--barrier BOFF NPROCS] [--nolock]" at argv[i..]. */
typedef struct {
    bool barrier;
    uint64_t boff, nprocs;
    bool nolock;
} Extra;

static Extra
parse_extra(int argc, char **argv, int i, bool allow_nolock)
{
    Extra e = { 0 };
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--barrier") == 0 && i + 2 < argc) {
            e.barrier = true;
            e.boff = parse_u64("barrier offset", argv[i + 1]);
            e.nprocs = parse_u64("barrier count", argv[i + 2]);
            i += 2;
        } else if (allow_nolock && strcmp(argv[i], "--nolock") == 0) {
            e.nolock = true;
        } else {
            die("unexpected argument '%s'", argv[i]);
        }
    }
    return e;
}

/* Wait (spinning, at most 20 s) until NPROCS processes reached the barrier:
 * this also proves atomics are visible across processes at once. */
static void
barrier(const Map *m, const Extra *e)
{
    if (!e->barrier)
        return;
    uint64_t *b = word64(m, e->boff);
    __atomic_fetch_add(b, 1, __ATOMIC_SEQ_CST);
    int64_t deadline = now_ms() + 20000;
    unsigned spins = 0;
    while (__atomic_load_n(b, __ATOMIC_SEQ_CST) < e->nprocs) {
        if (++spins % 1024 == 0) {
            if (now_ms() > deadline)
                die("barrier: only %llu of %llu processes arrived within 20 s",
                    (unsigned long long)__atomic_load_n(b, __ATOMIC_SEQ_CST),
                    (unsigned long long)e->nprocs);
            sched_yield();
        }
    }
}

static int
cmd_atomic_add(int argc, char **argv)
{
    if (argc < 5)
        die("usage: atomic-add PATH OFF N [--barrier BOFF NPROCS]");
    Map m = map_rw(argv[2]);
    uint64_t off = parse_u64("offset", argv[3]);
    uint64_t n = parse_u64("count", argv[4]);
    Extra e = parse_extra(argc, argv, 5, false);
    uint64_t *w = word64(&m, off);
    barrier(&m, &e);
    uint64_t last = 0;
    for (uint64_t i = 0; i < n; i++)
        last = __atomic_add_fetch(w, 1, __ATOMIC_SEQ_CST);
    say("%llu", (unsigned long long)last);
    return 0;
}

static struct locked_counter *
locked_counter_at(const Map *m, uint64_t off)
{
    check_range(m, off, sizeof(struct locked_counter), 8);
    return (struct locked_counter *)(void *)(m->base + off);
}

static void
check_pthread(const char *what, int rc)
{
    if (rc != 0)
        die("%s: %s", what, strerror(rc));
}

static int
cmd_mutex_init(int argc, char **argv)
{
    if (argc != 4)
        die("usage: mutex-init PATH OFF");
    Map m = map_rw(argv[2]);
    struct locked_counter *lc = locked_counter_at(&m, parse_u64("offset", argv[3]));
    pthread_mutexattr_t a;
    check_pthread("pthread_mutexattr_init", pthread_mutexattr_init(&a));
    check_pthread("pthread_mutexattr_setpshared",
                  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED));
    check_pthread("pthread_mutex_init", pthread_mutex_init(&lc->mutex, &a));
    check_pthread("pthread_mutexattr_destroy", pthread_mutexattr_destroy(&a));
    lc->counter = 0;
    return 0;
}

static int
cmd_mutex_add(int argc, char **argv)
{
    if (argc < 5)
        die("usage: mutex-add PATH OFF N [--barrier BOFF NPROCS] [--nolock]");
    Map m = map_rw(argv[2]);
    struct locked_counter *lc = locked_counter_at(&m, parse_u64("offset", argv[3]));
    uint64_t n = parse_u64("count", argv[4]);
    Extra e = parse_extra(argc, argv, 5, true);
    volatile uint64_t *c = &lc->counter;
    barrier(&m, &e);
    for (uint64_t i = 0; i < n; i++) {
        if (!e.nolock)
            check_pthread("pthread_mutex_lock", pthread_mutex_lock(&lc->mutex));
        /* A plain read-modify-write with a window in the middle: without
         * the mutex, concurrent adders lose updates. */
        uint64_t v = *c;
        if (i % 128 == 0)
            sched_yield();
        *c = v + 1;
        if (!e.nolock)
            check_pthread("pthread_mutex_unlock", pthread_mutex_unlock(&lc->mutex));
    }
    return 0;
}

static long
futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *timeout)
{
    /* Not FUTEX_PRIVATE_FLAG: the futex is keyed on the shared page. */
    return syscall(SYS_futex, uaddr, op, val, timeout, NULL, 0);
}

static int
cmd_futex_wait(int argc, char **argv)
{
    if (argc != 5)
        die("usage: futex-wait PATH OFF TIMEOUT_MS");
    Map m = map_rw(argv[2]);
    uint32_t *w = word32(&m, parse_u64("offset", argv[3]));
    uint64_t timeout = parse_u64("timeout", argv[4]);
    if (__atomic_load_n(w, __ATOMIC_SEQ_CST) != 0)
        die("futex-wait: the word is %u, not 0", __atomic_load_n(w, __ATOMIC_SEQ_CST));
    int64_t deadline = now_ms() + (int64_t)timeout;
    say("ready");
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            die("futex-wait: nobody woke us within %llu ms", (unsigned long long)timeout);
        struct timespec ts = { left / 1000, (left % 1000) * 1000000L };
        long rc = futex(w, FUTEX_WAIT, 0, &ts);
        if (rc == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == ETIMEDOUT)
            die("futex-wait: nobody woke us within %llu ms", (unsigned long long)timeout);
        if (errno == EAGAIN)
            die("futex-wait: the word changed to %u before we slept",
                __atomic_load_n(w, __ATOMIC_SEQ_CST));
        die("futex(FUTEX_WAIT): %s", strerror(errno));
    }
    say("woken");
    return 0;
}

static int
cmd_futex_wake(int argc, char **argv)
{
    if (argc != 5)
        die("usage: futex-wake PATH OFF TIMEOUT_MS");
    Map m = map_rw(argv[2]);
    uint32_t *w = word32(&m, parse_u64("offset", argv[3]));
    uint64_t timeout = parse_u64("timeout", argv[4]);
    int64_t deadline = now_ms() + (int64_t)timeout;
    for (;;) {
        long n = futex(w, FUTEX_WAKE, INT_MAX, NULL);
        if (n < 0)
            die("futex(FUTEX_WAKE): %s", strerror(errno));
        if (n > 0) {
            say("woke %ld", n);
            return 0;
        }
        if (now_ms() > deadline)
            die("futex-wake: no waiter on this futex within %llu ms", (unsigned long long)timeout);
        sleep_ms(1);
    }
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void sleep_forever(void) __attribute__((noreturn));

static void
sleep_forever(void)
{
    for (;;)
        pause();
}

/* Serve one command line; returns false on "q". Errors in a command are
 * fatal (exit 1), so a test never reads a stale answer. */
static bool
serve_line(Map *m, char *line, long page)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\n", &save);
    char *a1 = strtok_r(NULL, " \t\n", &save);
    char *a2 = strtok_r(NULL, " \t\n", &save);
    if (!cmd)
        die("empty command");
    if (strcmp(cmd, "q") == 0)
        return false;
    if (strcmp(cmd, "u") == 0) {
        if (m->base && munmap(m->base, m->len) < 0)
            die("munmap: %s", strerror(errno));
        m->base = NULL;
        say("ok");
        return true;
    }
    if (!m->base)
        die("%s: not mapped any more", cmd);
    if (strcmp(cmd, "r") == 0 && a1 && a2) {
        uint64_t off = parse_u64("offset", a1), len = parse_u64("length", a2);
        check_range(m, off, len, 0);
        char *out = malloc(len * 2 + 1);
        if (!out)
            die("out of memory");
        for (uint64_t i = 0; i < len; i++)
            snprintf(out + 2 * i, 3, "%02x", m->base[off + i]);
        out[len * 2] = '\0';
        say("%s", out);
        free(out);
    } else if (strcmp(cmd, "w") == 0 && a1 && a2) {
        uint64_t off = parse_u64("offset", a1);
        size_t n = strlen(a2);
        if (n % 2)
            die("w: odd number of hex digits");
        check_range(m, off, n / 2, 0);
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexval(a2[2 * i]), lo = hexval(a2[2 * i + 1]);
            if (hi < 0 || lo < 0)
                die("w: '%s' is not hex", a2);
            m->base[off + i] = (unsigned char)(hi << 4 | lo);
        }
        say("ok");
    } else if (strcmp(cmd, "a") == 0 && a1 && a2) {
        uint64_t *w = word64(m, parse_u64("offset", a1));
        say("%llu", (unsigned long long)__atomic_add_fetch(w, parse_u64("addend", a2),
                                                             __ATOMIC_SEQ_CST));
    } else if (strcmp(cmd, "g") == 0 && a1) {
        uint64_t *w = word64(m, parse_u64("offset", a1));
        say("%llu", (unsigned long long)__atomic_load_n(w, __ATOMIC_SEQ_CST));
    } else if (strcmp(cmd, "t") == 0) {
        for (size_t off = 0; off < m->len; off += (size_t)page)
            m->base[off] = (unsigned char)(m->base[off] + 1);
        say("ok");
    } else {
        die("unknown command '%s'", cmd);
    }
    return true;
}

static int
cmd_map_hold(int argc, char **argv)
{
    if (argc < 3)
        die("usage: map-hold PATH [--ro] [--keep-fd] [--private]");
    bool ro = false, keep_fd = false, priv = false;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--ro") == 0)
            ro = true;
        else if (strcmp(argv[i], "--keep-fd") == 0)
            keep_fd = true;
        else if (strcmp(argv[i], "--private") == 0)
            priv = true;
        else
            die("unexpected argument '%s'", argv[i]);
    }
    /* A private mapping may be written even through a read-only open. */
    int prot = PROT_READ | (ro && !priv ? 0 : PROT_WRITE);
    Map m = map_file(argv[2], ro ? O_RDONLY : O_RDWR, prot, priv ? MAP_PRIVATE : MAP_SHARED);
    if (!keep_fd) {
        if (close(m.fd) < 0)
            die("close: %s", strerror(errno));
        m.fd = -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        die("sysconf(_SC_PAGESIZE): %s", strerror(errno));
    say("ready");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        if (!serve_line(&m, line, page)) {
            free(line);
            return 0;
        }
    }
    if (ferror(stdin))
        die("reading commands: %s", strerror(errno));
    free(line);
    sleep_forever();
}

static int
cmd_open_hold(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--ro") != 0))
        die("usage: open-hold PATH [--ro]");
    int fd = open(argv[2], (argc == 4 ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        die("open %s: %s", argv[2], strerror(errno));
    say("ready");
    sleep_forever();
}

static int
cmd_touch(int argc, char **argv)
{
    if (argc != 3)
        die("usage: touch PATH");
    Map m = map_rw(argv[2]);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        die("sysconf(_SC_PAGESIZE): %s", strerror(errno));
    for (size_t off = 0; off < m.len; off += (size_t)page)
        m.base[off] = (unsigned char)(off / (size_t)page);
    for (size_t off = 0; off < m.len; off += (size_t)page)
        if (m.base[off] != (unsigned char)(off / (size_t)page))
            die("touch: page at %zu does not read back what was stored", off);
    say("%zu", m.len);
    return 0;
}

static int
cmd_layout(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    say("mutex_size=%zu counter_offset=%d", sizeof(pthread_mutex_t), COUNTER_OFFSET);
    return 0;
}

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} Command;

static const Command commands[] = {
    { "atomic-add", cmd_atomic_add },
    { "mutex-init", cmd_mutex_init },
    { "mutex-add", cmd_mutex_add },
    { "futex-wait", cmd_futex_wait },
    { "futex-wake", cmd_futex_wake },
    { "map-hold", cmd_map_hold },
    { "open-hold", cmd_open_hold },
    { "touch", cmd_touch },
    { "layout", cmd_layout },
    { NULL, NULL },
};

int
main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: shm-helper COMMAND ARGS... (atomic-add, mutex-init, mutex-add, futex-wait, "
            "futex-wake, map-hold, open-hold, touch, layout)");
    for (const Command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->fn(argc, argv);
    die("unknown command '%s'", argv[1]);
}
