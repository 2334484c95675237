/* SPDX-License-Identifier: MIT */
/* verbs.c — the verbs: each parses its own options (parse_verb), checks its
 * arguments, does its one thing through the mount and prints through
 * output.c or json.c.  Each returns the exit status; failures die (util.c).
 *
 * Ownership: every verb frees what it allocates before it returns (the
 * g_auto* cleanups); a half-created region is unlinked before dying.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cli/json.h"
#include "cli/output.h"
#include "cli/region.h"
#include "lib/capshm.h"

int
cmd_new(int argc, char **argv)
{
    g_autofree char *size_s = NULL, *mode_s = NULL;
    gboolean pin = FALSE;
    const GOptionEntry entries[] = {
        { "size", 's', 0, G_OPTION_ARG_STRING, &size_s,
          "size in bytes; suffixes k, M, G, T are powers of 1024 (default 0)", "N" },
        { "mode", 'm', 0, G_OPTION_ARG_STRING, &mode_s,
          "permission bits in octal, exactly as given (default 0600, less the umask)", "M" },
        { "pin", 'p', 0, G_OPTION_ARG_NONE, &pin,
          "pin the region: it stays without holders until unpinned or removed", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_strfreev(parse_verb(argc, argv, "", "Create a region and print its absolute path.",
        "The region lives while a process holds it (has it open or mapped).  Once\n"
        "this command exits nobody does, so the region is destroyed after the\n"
        "mount's linger time (default 5 seconds) unless another process opens it\n"
        "first, or it was created with --pin.",
        entries, 0, 0)); /* no arguments */

    guint64 size = 0;
    if (size_s && !parse_size(size_s, &size))
        usage_fail("new", "bad size '%s' (bytes, or a number with k, M, G or T)", size_s);
    mode_t mode = 0600;
    if (mode_s) {
        if (!parse_mode(mode_s, &mode))
            usage_fail("new", "bad mode '%s' (octal permission bits, e.g. 600 or 0644)", mode_s);
        umask(0); /* an explicit mode is taken as given, like mkdir -m */
    }

    if ((guint64)(size_t)size != size) /* only where size_t is narrower than off_t */
        usage_fail("new", "bad size '%s' (bytes, or a number with k, M, G or T)", size_s);

    g_autofree char *dir = mount_dir();
    require_mount(dir);
    /* libcapshm mints the name (DIR/.new), creates and sizes the region, and
     * leaves nothing behind on failure; @name says how far it got. */
    char name[CAPSHM_NAME_BUF] = "";
    int fd = capshm_create(dir, (size_t)size, mode, name);
    if (fd < 0) {
        int e = errno;
        g_autofree char *failed = g_build_filename(dir, name[0] ? name : ".new", NULL);
        if (!name[0] && e == EPROTO)
            die(failed, "unexpected contents");
        die_errno(failed, e);
    }
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (pin && fsetxattr(fd, XATTR_PREFIX "pin", "1", 1, 0) < 0) {
        int e = errno;
        unlink(path);
        close(fd);
        die_errno(path, e);
    }
    close(fd);
    printf("%s\n", path);
    return 0;
}

int
cmd_ro(int argc, char **argv)
{
    g_auto(GStrv) rest = parse_verb(argc, argv, "PATH", "Print the read-only path of a region.",
        "Anyone who may read the region can be given the read-only path: it opens\n"
        "the same bytes, but only for reading.  Needs the passthrough data path.",
        NULL, 1, 1);
    g_autofree char *path = region_path(rest[0]);
    require_region(path);
    g_autofree char *ro = NULL;
    int e = xattr_get(path, "ro", &ro);
    if (e == ENOTSUP || e == EOPNOTSUPP)
        die(path, "no read-only names on this mount (they need the passthrough data path; "
                  "this mount uses cache)");
    if (e)
        die_errno(path, e);
    if (!*ro || strchr(ro, '/'))
        die(path, "unexpected value of " XATTR_PREFIX "ro");
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *ro_path = g_build_filename(dir, ro, NULL);
    printf("%s\n", ro_path);
    return 0;
}

int
cmd_ls(int argc, char **argv)
{
    gboolean json = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json,
          "print a JSON array of the objects 'capshm info --json' prints", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_strfreev(parse_verb(argc, argv, "", "List your regions.",
        "Lists the regions owned by your uid (root sees every region), oldest first.",
        entries, 0, 0)); /* no arguments */

    g_autofree char *dir = mount_dir();
    require_mount(dir);
    g_autoptr(GPtrArray) regions = region_list_mine(dir);
    if (json)
        print_regions_json(regions);
    else
        print_ls_table(regions);
    return 0;
}

int
cmd_info(int argc, char **argv)
{
    gboolean json = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "print one JSON object", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_auto(GStrv) rest = parse_verb(argc, argv, "PATH", "Show the details of a region.",
        "JSON keys: name, path, size, mode (an octal string such as \"0600\"), uid,\n"
        "gid, holders, state (live, lingering, pinned or sealed), created (seconds\n"
        "since the epoch), age (seconds), pinned, sealed, ro (the read-only name,\n"
        "or null on the cache data path), pids (holder pids, or null when you are\n"
        "not the owner).",
        entries, 1, 1);
    g_autofree char *path = region_path(rest[0]);
    g_autoptr(RegionInfo) ri = region_info_get(path);
    if (json)
        print_region_json(ri);
    else
        print_info_human(ri);
    return 0;
}

/* pin, unpin, seal: set one xattr. */
static int
set_flag(int argc, char **argv, const char *summary, const char *description,
         const char *key, const char *value)
{
    g_auto(GStrv) rest = parse_verb(argc, argv, "PATH", summary, description, NULL, 1, 1);
    g_autofree char *path = region_path(rest[0]);
    require_region(path);
    int e = xattr_set(path, key, value);
    if (e == EBUSY && strcmp(key, "seal") == 0)
        die(path, "%s (it is still open or mapped for writing)", g_strerror(e));
    if (e)
        die_errno(path, e);
    return 0;
}

int
cmd_pin(int argc, char **argv)
{
    return set_flag(argc, argv, "Pin a region: it stays without holders.",
                    "A pinned region outlives its holders until it is unpinned or removed.",
                    "pin", "1");
}

int
cmd_unpin(int argc, char **argv)
{
    return set_flag(argc, argv, "Unpin a region.",
                    "Once unpinned, the region is destroyed after the mount's linger time\n"
                    "if no process holds it.",
                    "pin", "0");
}

int
cmd_seal(int argc, char **argv)
{
    return set_flag(argc, argv, "Seal a region: its bytes and size can no longer change.",
                    "Sealing fails while any process has the region open or mapped for\n"
                    "writing.  A seal cannot be undone.",
                    "seal", "1");
}

int
cmd_rm(int argc, char **argv)
{
    g_auto(GStrv) rest = parse_verb(argc, argv, "PATH", "Remove a region's name.",
        "The name disappears at once; processes that hold the region keep using\n"
        "its memory until they close and unmap it.",
        NULL, 1, 1);
    g_autofree char *path = region_path(rest[0]);
    require_region(path);
    if (unlink(path) < 0)
        die_errno(path, errno);
    return 0;
}

int
cmd_stats(int argc, char **argv)
{
    gboolean json = FALSE;
    const GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "print the mount's .stats JSON as is", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_strfreev(parse_verb(argc, argv, "", "Show the mount's figures.",
        "Reads DIR/.stats: the data path, live regions and bytes (all uids),\n"
        "counters, and your uid's usage and limits (root also sees every uid's).",
        entries, 0, 0)); /* no arguments */
    g_autofree char *dir = mount_dir();
    require_mount(dir);
    g_autofree char *path = g_build_filename(dir, ".stats", NULL);
    size_t len = 0;
    g_autofree char *text = read_file(path, &len);
    if (strlen(text) != len)
        die(path, "unexpected contents");
    g_autoptr(JsonNode) root = json_parse_object(text, (gssize)len);
    if (!root)
        die(path, "not valid JSON");
    if (json) {
        /* As it is (capshm(1)), once json-glib has found it valid. */
        fputs(text, stdout);
        if (len == 0 || text[len - 1] != '\n')
            fputc('\n', stdout);
        return 0;
    }
    print_stats_human(json_node_get_object(root));
    return 0;
}
