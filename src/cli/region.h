/* SPDX-License-Identifier: MIT */
/* region.h — what the CLI knows about one region, gathered from the mount:
 * stat(2) and the user.capshm.* xattrs (state, holders, created, pin, seal,
 * ro, pids).  Nothing here prints.
 *
 * Ownership: a RegionInfo owns all its fields; region_info_free() (or
 * g_autoptr(RegionInfo)) frees it.  region_list_mine() returns a GPtrArray
 * that owns its RegionInfos (free with g_ptr_array_unref).
 */
#ifndef CAPSHM_CLI_REGION_H
#define CAPSHM_CLI_REGION_H

#include <glib.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct {
    char *path;
    char *name;
    struct stat st;
    guint64 holders;
    char *state;
    gint64 created;
    gboolean pinned, sealed;
    char *ro;          /* read-only name, or NULL (cache data path) */
    GArray *pids;      /* pid_t, or NULL when not readable (not the owner) */
} RegionInfo;

void region_info_free(gpointer p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(RegionInfo, region_info_free)

/* Load the details of the region at @path into a new *@out.  Returns 0, or
 * an errno value (ENODATA: not a capshm region); dies on a malformed xattr. */
int region_info_load(const char *path, RegionInfo **out);

/* region_info_load(), dying on any failure ("not a capshm region", or the
 * errno). */
RegionInfo *region_info_get(const char *path);

/* Seconds since the region was created (0 if its clock is ahead). */
gint64 age_of(const RegionInfo *ri);

/* The caller's regions in the mount @dir, from its .mine control file,
 * oldest first (then by name).  Names that vanish meanwhile are skipped;
 * other failures die. */
GPtrArray *region_list_mine(const char *dir);

#endif
