/* SPDX-License-Identifier: MIT */
/* storage — where the bytes of regions live.
 *
 * Two backends behind one small interface:
 *
 *  STORAGE_TMPFS  a private tmpfs instance that is mounted nowhere (fsopen +
 *                 fsmount, or mount + immediate detach where fsopen is
 *                 missing: only this daemon holds it, and it goes when the
 *                 daemon goes).  Each region is a file in it named by its key.
 *                 A file is only *open* while the region is in use, so the
 *                 number of regions is not bounded by RLIMIT_NOFILE.  Seals
 *                 are the daemon's (tmpfs files cannot carry memfd seals);
 *                 storage_seal() asks the kernel, through a read lease,
 *                 whether any open file or mapping could still write.
 *  STORAGE_MEMFD  one memfd per region, open for the region's whole life;
 *                 sealing uses the memfd's own seals.  The fallback when the
 *                 daemon may not mount a tmpfs (no CAP_SYS_ADMIN, old kernel,
 *                 leases disabled).
 *
 * Keys are the caller's (the region's node id); a key is created once.
 * Functions return a file descriptor or 0 on success, a negative errno on
 * failure.  Every fd returned is the caller's to close.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

typedef enum {
    STORAGE_AUTO = 0,   /* tmpfs if it works here, else memfd */
    STORAGE_TMPFS,
    STORAGE_MEMFD,
} StorageKind;

typedef struct CapshmStorage CapshmStorage;

/* Parse "auto", "tmpfs" or "memfd".  false if none of them. */
bool storage_kind_parse(const char *s, StorageKind *out);
const char *storage_kind_name(StorageKind k);

/* A storage of kind @want.  With STORAGE_AUTO, falls back to memfd and sets
 * *why_not_tmpfs (static string) when a tmpfs cannot be used.  Returns NULL
 * and sets @err only when an explicitly wanted kind cannot be had. */
CapshmStorage *storage_new(StorageKind want, const char **why_not_tmpfs, GError **err);
void storage_free(CapshmStorage *st);
StorageKind storage_kind(const CapshmStorage *st);

/* True if a region's fd must stay open for the region to exist (memfd). */
bool storage_needs_open_fd(const CapshmStorage *st);

/* Create the file for @key, empty; returns a read-write fd. */
int storage_create(CapshmStorage *st, uint64_t key);
/* Open @key again (tmpfs only; -ENOTSUP for memfd).  @flags: O_RDONLY or
 * O_RDWR; O_CLOEXEC is added. */
int storage_open(CapshmStorage *st, uint64_t key, int flags);
/* Remove @key's file; the memory goes when the last open file and mapping
 * of it go.  No-op for memfd (closing its fd is the removal). */
void storage_remove(CapshmStorage *st, uint64_t key);
/* stat() of @key without an open fd (tmpfs only; -ENOTSUP for memfd). */
int storage_stat(CapshmStorage *st, uint64_t key, struct stat *out);

/* Does any open file or mapping of @key exist besides @own_fd (the
 * daemon's one file of it, registered as a passthrough backing file; -1 if
 * none, tmpfs only; the memfd, for memfd storage)?  Asks the kernel with a
 * write lease on @own_fd (memfd: on a read-only reopen of it), which it
 * grants exactly when nobody else has the inode open or mapped (a mapping
 * keeps its file open after close()), and drops it at once.  O(1).
 * Returns 0 (free), 1 (held), or -errno (could not ask: e.g. -EMFILE). */
int storage_probe_unheld(CapshmStorage *st, uint64_t key, int own_fd);

/* Tests: mount the private tmpfs the way used where fsopen() is missing
 * (mount on a fresh directory, then detach it at once). */
void storage_use_mount_and_detach(bool yes);

/* Make @key immutable as far as the storage can enforce it.  memfd: adds
 * F_SEAL_WRITE|GROW|SHRINK|SEAL through @fd.  tmpfs: checks that no file of
 * @key is open for writing anywhere (a writable mapping keeps its file
 * open); the caller must have closed its own writable fds and refuses
 * writes from then on.  -EBUSY while a writer remains. */
int storage_seal(CapshmStorage *st, uint64_t key, int fd);
