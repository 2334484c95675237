/* SPDX-License-Identifier: MIT */
/* capshm.h — create and open capshm shared-memory regions.
 *
 * A capshm mount (default /run/capshm) serves shared-memory regions as
 * files.  These helpers wrap the three steps every program does: mint a
 * name, create the file, size it.  Everything they do can be done with
 * open(2), ftruncate(2) and getxattr(2) directly; see libcapshm(3).
 *
 * All functions are thread-safe and keep no state.  On failure they return
 * -1 and set errno; they never print.
 */
#ifndef CAPSHM_H
#define CAPSHM_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Room for a region name and its NUL. */
#define CAPSHM_NAME_BUF 32

/* Create a new region of @size bytes with permission bits @mode (the umask
 * applies) in the mount @dir (NULL: $CAPSHM_DIR, else /run/capshm).
 * On success returns an O_RDWR, O_CLOEXEC file descriptor and stores the
 * region's name in @name.  Errors: those of open(2) on DIR/.new and
 * DIR/NAME, and of ftruncate(2): EDQUOT (quota or max_regions), ENOSPC
 * (mount size), EINVAL (size too large for off_t), EPROTO (DIR/.new did not
 * yield a name).  On failure nothing is left behind, and @name holds the
 * name that was minted if the failure came after minting (creating or
 * sizing DIR/NAME failed), else the empty string; so a caller can say
 * which file failed. */
int capshm_create(const char *dir, size_t size, mode_t mode, char name[CAPSHM_NAME_BUF]);

/* Open region @name (a name, not a path) in @dir with open(2) flags
 * @oflags (O_CLOEXEC is added; O_CREAT is refused with EINVAL: use
 * capshm_create).  Returns a file descriptor, or -1 with errno: ENOENT
 * (no such region), EACCES (mode bits, or a write open of a read-only
 * name), EPERM (write open of a sealed region), EINVAL (bad name). */
int capshm_open(const char *dir, const char *name, int oflags);

/* Store in @name the read-only name of the region open on @fd (an fd of a
 * read-write name).  Returns 0, or -1 with errno: ENOTSUP (the mount uses
 * the cache data path, which has no read-only names), ENODATA/ENOTSUP (@fd
 * is not a capshm region), EBADF, ERANGE. */
int capshm_ro_name(int fd, char name[CAPSHM_NAME_BUF]);

#ifdef __cplusplus
}
#endif

#endif /* CAPSHM_H */
