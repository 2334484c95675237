/* SPDX-License-Identifier: MIT */
/* procwatch — who holds a region, for display only (user.capshm.holders,
 * user.capshm.pids, `capshm info`).  Lifetime never depends on it: the
 * kernel's own counts decide that (store.h).  Reads other processes'
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

/* Device number of the filesystem mounted at @mountpoint, read from
 * /proc/self/mountinfo (never stat(), which would ask our own daemon).
 * Returns 0 and *dev, or -ENOENT. */
int procwatch_mount_dev(const char *mountpoint, dev_t *dev);
