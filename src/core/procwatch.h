/* SPDX-License-Identifier: MIT */
/* procwatch — what the store needs to know about client processes, read
 * from procfs and pidfds: thread → process, "does process P map node N of
 * our mount" (/proc/P/maps shows the FUSE inode even for passthrough
 * mappings), and exit notifications through pidfds on the GLib main loop.
 *
 * Owns its pidfds and GSources.  procwatch_ops() fills a StoreProcOps whose
 * data pointer is the ProcWatch; it must outlive the store's use of it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <pthread.h>

#include "store.h"

typedef struct ProcWatch ProcWatch;

/* @dev is the mount's device number (st_dev of its inodes).  @on_exit is
 * called from the main loop when a watched process exits. */
ProcWatch *procwatch_new(dev_t dev, void (*on_exit)(pid_t tgid, void *data), void *data);
void procwatch_free(ProcWatch *pw);
/* The store calls procwatch under @lock when requests are served on several
 * threads; then its main-loop callbacks (process exits) take @lock too, and
 * @on_exit runs under it.  Without it, all is one thread. */
void procwatch_set_lock(ProcWatch *pw, pthread_mutex_t *lock);
void procwatch_set_dev(ProcWatch *pw, dev_t dev);
StoreProcOps procwatch_ops(ProcWatch *pw);

/* Exposed for tests.  Thread-group id of @tid, or 0. */
pid_t procwatch_tgid_of(pid_t tid);
/* True if /proc/@pid/maps has a mapping of (@dev, @ino) or (@dev, @ino2).
 * Uses the PROCMAP_QUERY ioctl where the kernel has it, else the text. */
bool procwatch_maps_node(pid_t pid, dev_t dev, uint64_t ino, uint64_t ino2);
/* Read maps as text even where PROCMAP_QUERY works (to test that path). */
void procwatch_use_text_maps(bool yes);
/* Number of processes currently watched. */
unsigned procwatch_count(const ProcWatch *pw);

/* Device number of the filesystem mounted at @mountpoint, read from
 * /proc/self/mountinfo (never stat(), which would ask our own daemon).
 * Returns 0 and *dev, or -ENOENT. */
int procwatch_mount_dev(const char *mountpoint, dev_t *dev);
