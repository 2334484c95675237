/* SPDX-License-Identifier: MIT */
/* ct-atomics — the program the container runtime tests run inside runc and
 * bubblewrap sandboxes and on the host.  tests/integration/test_runtimes.py
 * compiles it with -static, so that it runs in a root filesystem that holds
 * nothing but busybox and itself.
 *
 *   ct-atomics create DIR MODE N   mint a name (DIR/.new), create a 4096-byte
 *                                  region with exactly MODE (octal), print
 *                                  its name, then count (below)
 *   ct-atomics open PATH N         open the region PATH read-write, count
 *   ct-atomics probe PATH          print "uid U gid G mode M rdwr E rdonly E"
 *                                  (E: OK or the errno name of open(2))
 *
 * Counting: the region's first three 64-bit words are a counter, an arrival
 * count and a departure count.  Two processes (one in the sandbox, one on
 * the host) each add 1 to the arrivals and wait until both have arrived,
 * then each adds 1 to the counter N times with an atomic fetch-add, then
 * both wait until both have left.  Each prints "total T" and exits 0 when
 * T is 2N: every atomic of each side reached the other.
 *
 * Exit status: 0 ok, 1 a system call failed (one line on stderr), 2 usage,
 * 3 wrong total, 4 the other side did not show up within 30 seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REGION 4096

static int usage(void)
{
    fprintf(stderr, "usage: ct-atomics create DIR MODE N | open PATH N | probe PATH\n");
    return 2;
}

static int fail(const char *what)
{
    fprintf(stderr, "ct-atomics: %s: %s\n", what, strerror(errno));
    return 1;
}

static const char *errname(int e)
{
    switch (e) {
    case 0: return "OK";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EROFS: return "EROFS";
    default: return "OTHER";
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until *word reaches 2; 0 on success, -1 after 30 s. */
static int meet(uint64_t *word)
{
    double deadline = now() + 30;
    __atomic_fetch_add(word, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(word, __ATOMIC_SEQ_CST) < 2) {
        if (now() > deadline)
            return -1;
        usleep(100);
    }
    return 0;
}

static int count(int fd, unsigned long n)
{
    uint64_t *w = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (w == MAP_FAILED)
        return fail("mmap");
    if (meet(&w[1]) < 0) {
        fprintf(stderr, "ct-atomics: the other side did not arrive\n");
        return 4;
    }
    for (unsigned long i = 0; i < n; i++)
        __atomic_fetch_add(&w[0], 1, __ATOMIC_SEQ_CST);
    if (meet(&w[2]) < 0) {
        fprintf(stderr, "ct-atomics: the other side did not finish\n");
        return 4;
    }
    uint64_t total = __atomic_load_n(&w[0], __ATOMIC_SEQ_CST);
    printf("total %llu\n", (unsigned long long)total);
    fflush(stdout);
    return total == 2 * (uint64_t)n ? 0 : 3;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "create") == 0) {
        char path[4096], name[64];
        unsigned long mode = strtoul(argv[3], NULL, 8);
        snprintf(path, sizeof path, "%s/.new", argv[2]);
        int nfd = open(path, O_RDONLY);
        if (nfd < 0)
            return fail(path);
        ssize_t len = read(nfd, name, sizeof name - 1);
        if (len <= 0)
            return fail("read .new");
        close(nfd);
        name[len] = '\0';
        name[strcspn(name, "\n")] = '\0';
        snprintf(path, sizeof path, "%s/%s", argv[2], name);
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL, (mode_t)mode);
        if (fd < 0)
            return fail(path);
        if (fchmod(fd, (mode_t)mode) < 0)
            return fail("fchmod");
        if (ftruncate(fd, REGION) < 0)
            return fail("ftruncate");
        printf("%s\n", name);
        return count(fd, strtoul(argv[4], NULL, 10));
    }
    if (argc == 4 && strcmp(argv[1], "open") == 0) {
        int fd = open(argv[2], O_RDWR);
        if (fd < 0)
            return fail(argv[2]);
        return count(fd, strtoul(argv[3], NULL, 10));
    }
    if (argc == 3 && strcmp(argv[1], "probe") == 0) {
        struct stat st;
        if (stat(argv[2], &st) < 0)
            return fail(argv[2]);
        int rw = open(argv[2], O_RDWR);
        int rw_errno = rw < 0 ? errno : 0;
        int ro = open(argv[2], O_RDONLY);
        int ro_errno = ro < 0 ? errno : 0;
        printf("uid %u gid %u mode %04o rdwr %s rdonly %s\n", (unsigned)st.st_uid,
               (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777), errname(rw_errno),
               errname(ro_errno));
        return 0;
    }
    return usage();
}
