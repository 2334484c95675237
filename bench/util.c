/* SPDX-License-Identifier: MIT */
/* util.c — errors and progress, timing, medians, sizes, pipes, children and
 * CPU pinning for capshm-bench.  No state of its own. */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("capshm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void
note(const Bench *b, const char *fmt, ...)
{
    if (b->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("capshm-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double
median_of(const double *v, int n)
{
    if (n <= 0)
        return NAN;
    double tmp[4096];
    if (n > 4096)
        n = 4096;
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

uint64_t
parse_size(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        die("bad size: %s", s);
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        die("bad size: %s", s);
    return (uint64_t)v;
}

void
read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("short read from a child: %s", n < 0 ? strerror(errno) : "EOF");
        p += n;
        len -= (size_t)n;
    }
}

void
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(3);
        p += n;
        len -= (size_t)n;
    }
}

void
pin_cpu(int cpu)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (int)ncpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
}

void
unpin_cpu(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, &set);
    sched_setaffinity(0, sizeof set, &set);
}

int
wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void
touch_pages(volatile char *p, size_t size, char v)
{
    for (size_t off = 0; off < size; off += PAGE)
        p[off] = v;
}
