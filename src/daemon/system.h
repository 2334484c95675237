/* SPDX-License-Identifier: MIT */
/* system — the daemon's chores with the operating system, none of them
 * about regions: forking with a "ready" pipe, detaching from the terminal,
 * the fd limit, clearing a dead daemon's mount, the cache path's writeback
 * tuning, and the capability checks made before mounting.
 *
 * Owns nothing past each call.  Failures are logged or returned as said
 * per function; none is fatal except daemonize()'s own pipe and fork.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Physical memory in bytes, 0 if unknown. */
uint64_t system_ram_bytes(void);

/* Fork; the parent waits for the child's one-line verdict on the returned
 * pipe (system_report) and exits 0 on "ok", else 1 with the line on stderr.
 * Returns the write end in the child. */
int system_daemonize(void);
/* Tell the waiting parent @msg ("ok" or a reason) and close @fd; with
 * @fd < 0 (foreground) print a reason on stderr. */
void system_report(int fd, const char *msg);
/* stdin/out/err to /dev/null, cwd to /. */
void system_detach_stdio(void);

/* RLIMIT_NOFILE as high as allowed (fs.nr_open with CAP_SYS_RESOURCE). */
void system_raise_fd_limit(void);
/* If @mountpoint is a dead FUSE mount (its daemon was killed), detach it. */
void system_clear_stale_mount(const char *mountpoint);
/* Cache data path, as root: relax the kernel's writeback throttling of the
 * mount's bdi (@dev); logs what it did. */
void system_relax_bdi(dev_t dev);
/* Why an explicit datapath=passthrough cannot work here (a static line),
 * checked before mounting; NULL if it may. */
const char *system_passthrough_precheck(void);
