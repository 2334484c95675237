/* SPDX-License-Identifier: MIT */
/* attack-helper — what a hostile (or just unusual) local process does to a
 * capshm region, for tests/integration/test_attacks.py.
 *
 * The region's PATH is read as the first line of stdin, never taken from
 * argv: /proc/PID/cmdline is readable by every uid, and the tests that look
 * for leaked names must not leak them themselves.
 *
 *   leader-exit
 *       open PATH, mmap it whole (MAP_SHARED, read-write), close the fd,
 *       start a thread, and let the main thread call pthread_exit(): the
 *       process lives on in that thread, which holds the mapping, while
 *       /proc/TGID/maps reads empty.  The thread prints "ready", then serves
 *       one command per stdin line, each answered with one line:
 *           r OFF LEN  -> hex of LEN bytes at OFF
 *           w OFF HEX  -> store the bytes; "ok"
 *           s          -> the leader's State: line of /proc/self/status
 *           q          -> exit 0
 *       End of input exits 0 too.
 *   many-maps N
 *       open PATH and mmap its first page N times (read-only, MAP_SHARED, all
 *       at file offset 0, so no two mappings merge into one), close the fd,
 *       print "ready COUNT" (COUNT = the mappings made; it stops early at
 *       ENOMEM, i.e. vm.max_map_count), then sleep until killed.
 *
 * Exit status: 0 ok, 1 failure (one line on stderr naming what failed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;
    fputs("attack-helper: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

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

/* The region's path: the first line of stdin. */
static char *
read_path(void)
{
    static char path[4096];
    if (!fgets(path, sizeof path, stdin))
        die("expected the region's path on stdin");
    path[strcspn(path, "\n")] = '\0';
    if (!path[0])
        die("empty path on stdin");
    return path;
}

static unsigned char *map_base;
static size_t map_len;

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void
leader_state(char *out, size_t n)
{
    /* /proc/self is the thread group: its status is the leader's. */
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "State:", 6) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, n, "%s", line);
            break;
        }
    fclose(f);
}

static void *
serve(void *arg)
{
    (void)arg;
    say("ready");
    char line[65536];
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL;
        char *cmd = strtok_r(line, " \t\n", &save);
        char *a1 = strtok_r(NULL, " \t\n", &save);
        char *a2 = strtok_r(NULL, " \t\n", &save);
        if (!cmd)
            die("empty command");
        if (strcmp(cmd, "q") == 0)
            exit(0);
        if (strcmp(cmd, "s") == 0) {
            char st[256];
            leader_state(st, sizeof st);
            say("%s", st);
        } else if (strcmp(cmd, "r") == 0 && a1 && a2) {
            size_t off = strtoull(a1, NULL, 0), len = strtoull(a2, NULL, 0);
            if (off > map_len || len > map_len - off || len > 16384)
                die("r: out of range");
            for (size_t i = 0; i < len; i++)
                printf("%02x", map_base[off + i]);
            say("%s", "");
        } else if (strcmp(cmd, "w") == 0 && a1 && a2) {
            size_t off = strtoull(a1, NULL, 0), len = strlen(a2) / 2;
            if (off > map_len || len > map_len - off)
                die("w: out of range");
            for (size_t i = 0; i < len; i++) {
                int hi = hexval(a2[2 * i]), lo = hexval(a2[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    die("w: bad hex");
                map_base[off + i] = (unsigned char)(hi << 4 | lo);
            }
            say("ok");
        } else {
            die("unknown command '%s'", cmd);
        }
    }
    exit(0);
}

static int
cmd_leader_exit(void)
{
    const char *path = read_path();
    int fd = open(path, O_RDWR);
    if (fd < 0)
        die("open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("fstat: %s", strerror(errno));
    if (st.st_size <= 0)
        die("the region is empty");
    map_len = (size_t)st.st_size;
    map_base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map_base == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    if (close(fd) < 0)
        die("close: %s", strerror(errno));
    pthread_t t;
    int rc = pthread_create(&t, NULL, serve, NULL);
    if (rc != 0)
        die("pthread_create: %s", strerror(rc));
    pthread_exit(NULL);
}

static int
cmd_many_maps(int argc, char **argv)
{
    if (argc != 3)
        die("usage: many-maps N (PATH on stdin)");
    long n = strtol(argv[2], NULL, 0);
    const char *path = read_path();
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("open: %s", strerror(errno));
    long page = sysconf(_SC_PAGESIZE);
    long made = 0;
    for (; made < n; made++) {
        void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            if (errno == ENOMEM)
                break;
            die("mmap #%ld: %s", made, strerror(errno));
        }
    }
    if (close(fd) < 0)
        die("close: %s", strerror(errno));
    say("ready %ld", made);
    for (;;)
        pause();
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "leader-exit") == 0 && argc == 2)
        return cmd_leader_exit();
    if (argc >= 2 && strcmp(argv[1], "many-maps") == 0)
        return cmd_many_maps(argc, argv);
    die("usage: attack-helper leader-exit | many-maps N   (the region's path on stdin)");
}
