/* SPDX-License-Identifier: MIT */
/* notify — kernel cache invalidations sent from a dedicated thread.
 *
 * fuse_lowlevel_notify_* may block until the kernel finishes a request the
 * daemon itself has yet to answer (a LOOKUP holding the directory lock, a
 * page fault waiting for READ), and callbacks hold the core lock, which
 * every other request needs: so they queue notifications here and a helper
 * thread sends them.
 * The thread touches nothing but the session and its own queue.
 */
#pragma once

#include <fuse_lowlevel.h>

typedef struct Notifier Notifier;

Notifier *notifier_new(struct fuse_session *se);
/* Drain what is queued (best effort), stop the thread, free.  NULL ok. */
void notifier_free(Notifier *n);

/* Forget the dentry @name in directory @parent (copied). */
void notifier_inval_entry(Notifier *n, fuse_ino_t parent, const char *name);
/* Drop cached attributes of @ino and, if @len != 0, its cached data in
 * [off, off+len) (len < 0: to the end); off < 0: attributes only. */
void notifier_inval_inode(Notifier *n, fuse_ino_t ino, off_t off, off_t len);
