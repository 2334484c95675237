/* SPDX-License-Identifier: MIT */
/* region.c — gathering what the mount tells about regions; see region.h. */
#include "cli/region.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"

void
region_info_free(gpointer p)
{
    RegionInfo *ri = p;
    if (!ri)
        return;
    g_free(ri->path);
    g_free(ri->name);
    g_free(ri->state);
    g_free(ri->ro);
    if (ri->pids)
        g_array_unref(ri->pids);
    g_free(ri);
}

static gint64
parse_xattr_int(const char *path, const char *key, const char *val, gboolean is_signed)
{
    gint64 sv = 0;
    guint64 uv = 0;
    gboolean ok = is_signed
        ? g_ascii_string_to_signed(val, 10, G_MININT64, G_MAXINT64, &sv, NULL)
        : g_ascii_string_to_unsigned(val, 10, 0, G_MAXINT64, &uv, NULL);
    if (!ok)
        die(path, "unexpected value of " XATTR_PREFIX "%s: '%s'", key, val);
    return is_signed ? sv : (gint64)uv;
}

/* Load the details of the region at @path.  Returns 0, or an errno value
 * (ENODATA: not a capshm region). */
int
region_info_load(const char *path, RegionInfo **out)
{
    g_autoptr(RegionInfo) ri = g_new0(RegionInfo, 1);
    ri->path = g_strdup(path);
    ri->name = g_path_get_basename(path);
    if (stat(path, &ri->st) < 0)
        return errno;
    if (!S_ISREG(ri->st.st_mode))
        return ENODATA;

    g_autofree char *holders = NULL, *created = NULL, *pin = NULL, *seal = NULL;
    int e;
    if ((e = xattr_get(path, "state", &ri->state)) != 0)
        return not_ours(e) ? ENODATA : e;
    if ((e = xattr_get(path, "holders", &holders)) != 0 ||
        (e = xattr_get(path, "created", &created)) != 0 ||
        (e = xattr_get(path, "pin", &pin)) != 0 ||
        (e = xattr_get(path, "seal", &seal)) != 0)
        return e;
    ri->holders = (guint64)parse_xattr_int(path, "holders", holders, FALSE);
    ri->created = parse_xattr_int(path, "created", created, TRUE);
    ri->pinned = strcmp(pin, "1") == 0;
    ri->sealed = strcmp(seal, "1") == 0;

    e = xattr_get(path, "ro", &ri->ro);
    if (e == ENOENT)
        return e;
    if (e)
        ri->ro = NULL; /* cache data path: no read-only names */

    g_autofree char *pids = NULL;
    e = xattr_get(path, "pids", &pids);
    if (e == ENOENT)
        return e;
    if (e == 0) {
        ri->pids = g_array_new(FALSE, FALSE, sizeof(pid_t));
        g_auto(GStrv) parts = g_strsplit(pids, " ", -1);
        for (char **p = parts; *p; p++) {
            if (!**p)
                continue;
            pid_t pid = (pid_t)parse_xattr_int(path, "pids", *p, FALSE);
            g_array_append_val(ri->pids, pid);
        }
    }
    *out = g_steal_pointer(&ri);
    return 0;
}

RegionInfo *
region_info_get(const char *path)
{
    RegionInfo *ri = NULL;
    int e = region_info_load(path, &ri);
    if (e == ENODATA)
        die(path, "not a capshm region");
    if (e)
        die_errno(path, e);
    return ri;
}

gint64
age_of(const RegionInfo *ri)
{
    gint64 age = (gint64)time(NULL) - ri->created;
    return age < 0 ? 0 : age;
}

static gint
cmp_region(gconstpointer a, gconstpointer b)
{
    const RegionInfo *x = *(RegionInfo *const *)a, *y = *(RegionInfo *const *)b;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

GPtrArray *
region_list_mine(const char *dir)
{
    /* The root cannot be listed (names are secrets); .mine lists the
     * caller's own regions, one per line, with \\ and \n escaped. */
    g_autofree char *minepath = g_build_filename(dir, ".mine", NULL);
    size_t len = 0;
    g_autofree char *mine = read_file(minepath, &len);
    GPtrArray *regions = g_ptr_array_new_with_free_func(region_info_free);
    g_auto(GStrv) lines = g_strsplit(mine, "\n", -1);
    for (char **l = lines; *l; l++) {
        if (!**l)
            continue;
        g_autofree char *name = g_strcompress(*l);
        if (!*name || strchr(name, '/') || name[0] == '.')
            continue;
        g_autofree char *path = g_build_filename(dir, name, NULL);
        RegionInfo *ri = NULL;
        int e = region_info_load(path, &ri);
        if (e == ENOENT || e == ENODATA)
            continue; /* destroyed since the listing was taken */
        if (e)
            die_errno(path, e);
        g_ptr_array_add(regions, ri);
    }
    g_ptr_array_sort(regions, cmp_region);
    return regions;
}
