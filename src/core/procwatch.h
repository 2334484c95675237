/* SPDX-License-Identifier: MIT */
/* procwatch — what capshm reads from /proc and cgroupfs about processes:
 * who holds a region, for display only (user.capshm.holders,
 * user.capshm.pids, `capshm info`), and the cgroup of the process that
 * creates a region (lifetime=cgroup), read from that very process while it
 * waits in its create call.  Whether a region is held is never decided
 * here: the kernel's own counts decide that (store.h).  Reads other processes'
 * /proc/PID/maps (PROCMAP_QUERY where the kernel has it) and /proc/PID/fd;
 * callers run it outside the core lock, on a worker thread, with a time
 * budget: best effort, never blocking a request.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Pids of the processes (as this daemon's pid namespace sees them) that map
 * or have open node @ino or @ino2 (0: none) of the filesystem with device
 * number @dev.  Stops after @budget_us microseconds; *complete says whether
 * every process was looked at.  Returns a new array of pid_t. */
GArray *procwatch_holders(dev_t dev, uint64_t ino, uint64_t ino2, int64_t budget_us, bool *complete);

/* True if /proc/@pid/maps has a mapping of (@dev, @ino) or (@dev, @ino2).
 * Uses the PROCMAP_QUERY ioctl where the kernel has it, else the text. */
bool procwatch_maps_node(pid_t pid, dev_t dev, uint64_t ino, uint64_t ino2);
/* Read maps as text even where PROCMAP_QUERY works (to test that path). */
void procwatch_use_text_maps(bool yes);

/* The cgroup v2 hierarchy's mountpoint, from /proc/self/mountinfo: new
 * string, or NULL if there is none. */
char *procwatch_cgroup2_mount(void);
/* The cgroup v2 id (the inode number of its directory) of thread @tid, and
 * its path below @cgroup2 (new string, if @path), or 0. */
uint64_t procwatch_cgroup_of(pid_t tid, const char *cgroup2, char **path);
/* Does cgroup @id still exist at @path below @cgroup2?  A path that now
 * names another cgroup (another inode) is "gone".  One stat() of
 * cgroupfs, which never waits on a process. */
bool procwatch_cgroup_alive(const char *cgroup2, const char *path, uint64_t id);

/* Device number of the filesystem mounted at @mountpoint, read from
 * /proc/self/mountinfo (never stat(), which would ask our own daemon).
 * Returns 0 and *dev, or -ENOENT. */
int procwatch_mount_dev(const char *mountpoint, dev_t *dev);
