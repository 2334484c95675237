/* SPDX-License-Identifier: MIT */
/* system — see system.h. */
#include "system.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

uint64_t
system_ram_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

#ifdef HAVE_FUSE_PASSTHROUGH
static bool
has_cap_sys_admin(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return false;
    char line[256];
    unsigned long long eff = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    fclose(f);
    return eff & (1ULL << 21);
}
#endif

const char *
system_passthrough_precheck(void)
{
#ifndef HAVE_FUSE_PASSTHROUGH
    return "datapath=passthrough: capshmfs was built against libfuse < 3.17, which has no passthrough";
#else
    if (!has_cap_sys_admin())
        return "datapath=passthrough: needs CAP_SYS_ADMIN (run as root)";
    return NULL;
#endif
}

/* In cache mode the kernel throttles writers of mapped FUSE pages hard
 * (strict_limit, max_ratio=1 on the mount's bdi). */
void
system_relax_bdi(dev_t dev)
{
    if (geteuid() != 0)
        return;
    char path[128];
    int ok = 0;
    const char *files[] = { "strict_limit", "max_ratio" };
    const char *values[] = { "0", "100" };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/%s", major(dev), minor(dev), files[i]);
        /* sysfs: write in place (g_file_set_contents would rename). */
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0 && write(fd, values[i], strlen(values[i])) == (ssize_t)strlen(values[i]))
            ok++;
        if (fd >= 0)
            close(fd);
    }
    if (ok == 2)
        g_message("cache data path: relaxed writeback throttling of bdi %u:%u (strict_limit 0, max_ratio 100)",
                  major(dev), minor(dev));
    else
        g_message("cache data path: could not relax writeback throttling of bdi %u:%u",
                  major(dev), minor(dev));
}

void
system_raise_fd_limit(void)
{
    /* An fd per region in use (and per region at all with memfd storage):
     * allow as many as the kernel's fs.nr_open when we may raise the hard
     * limit (CAP_SYS_RESOURCE), else the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    g_autofree char *nr_open = NULL;
    if (g_file_get_contents("/proc/sys/fs/nr_open", &nr_open, NULL, NULL)) {
        rlim_t want = (rlim_t)g_ascii_strtoull(nr_open, NULL, 10);
        if (want > rl.rlim_max) {
            struct rlimit up = { want, want };
            if (setrlimit(RLIMIT_NOFILE, &up) == 0)
                return;
        }
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

void
system_clear_stale_mount(const char *mp)
{
    /* statfs, not stat: the kernel may answer stat() of a dead FUSE root
     * from its attribute cache, but always asks the daemon for statfs.
     * ECONNABORTED, ECANCELED: a request caught in the teardown of a dead
     * daemon's io_uring queues. */
    struct statfs sfs;
    if (statfs(mp, &sfs) == 0 ||
        (errno != ENOTCONN && errno != ECONNABORTED && errno != ECANCELED))
        return;
    if (umount2(mp, MNT_DETACH) == 0)
        g_message("%s: cleared a stale mount left by a daemon that died", mp);
    else
        g_warning("%s: stale mount could not be cleared: %s", mp, g_strerror(errno));
}

void
system_report(int fd, const char *msg)
{
    if (fd < 0) {
        if (strcmp(msg, "ok") != 0)
            fprintf(stderr, "capshmfs: %s\n", msg);
        return;
    }
    size_t len = strlen(msg);
    ssize_t w = write(fd, msg, len);
    (void)w;
    close(fd);
}

int
system_daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "capshmfs: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "capshmfs: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        close(p[1]);
        char msg[1024];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof msg - 1 && (n = read(p[0], msg + got, sizeof msg - 1 - got)) != 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            got += (size_t)n;
        }
        msg[got] = '\0';
        if (strcmp(msg, "ok") == 0)
            _exit(0);
        if (got == 0) {
            int status = 0;
            waitpid(pid, &status, 0);
            fprintf(stderr, "capshmfs: the daemon died while mounting\n");
        } else {
            fprintf(stderr, "capshmfs: %s\n", msg);
        }
        _exit(1);
    }
    close(p[0]);
    setsid();
    return p[1];
}

void
system_detach_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
    if (chdir("/") < 0)
        g_debug("chdir /: %s", g_strerror(errno));
}
