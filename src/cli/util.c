/* SPDX-License-Identifier: MIT */
/* util.c — what every verb needs: the one-line errors, the mount directory
 * and PATH arguments, whole-file reads, user.capshm.* xattrs, and parsing
 * of sizes and modes.  Declared in cli.h.
 *
 * Ownership: every char * these functions return is newly allocated and the
 * caller frees it (g_free).  Nothing here keeps state; mount_dir() reads
 * opt_dir, which main.c owns.  die(), die_errno() and usage_fail() do not
 * return.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/options.h"

/* --- errors -------------------------------------------------------------------- */

/* "capshm: WHAT: REASON" on stderr, exit 1. */
void
die(const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *reason = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "capshm: %s: %s\n", what, reason);
    exit(1);
}

void
die_errno(const char *what, int err)
{
    die(what, "%s", g_strerror(err));
}

/* One line on stderr with a hint to --help, exit 2. */
void
usage_fail(const char *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* GOption messages may span lines; keep ours to one. */
    g_strdelimit(msg, "\n", ' ');
    fflush(stdout);
    if (verb)
        fprintf(stderr, "capshm: %s: %s (see 'capshm %s --help')\n", verb, msg, verb);
    else
        fprintf(stderr, "capshm: %s (see 'capshm --help')\n", msg);
    exit(EXIT_USAGE);
}

/* --- paths ------------------------------------------------------------------- */

/* The mount directory: -d, else $CAPSHM_DIR, else /run/capshm; absolute. */
char *
mount_dir(void)
{
    const char *d = opt_dir;
    if (!d || !*d)
        d = g_getenv("CAPSHM_DIR");
    if (!d || !*d)
        d = DEFAULT_DIR;
    return g_canonicalize_filename(d, NULL);
}

/* A PATH argument: a path if it contains a '/', else a name in the mount. */
char *
region_path(const char *arg)
{
    /* "-": the path (or name) is the first line of stdin, so that it never
     * has to appear on a command line, which every uid can read in
     * /proc/PID/cmdline. */
    g_autofree char *line = NULL;
    if (strcmp(arg, "-") == 0) {
        GString *buf = g_string_new(NULL);
        int c;
        while ((c = getchar()) != EOF && c != '\n')
            g_string_append_c(buf, (char)c);
        line = g_string_free(buf, FALSE);
        if (!*line)
            die("stdin", "no path on standard input");
        arg = line;
    }
    if (strchr(arg, '/'))
        return g_canonicalize_filename(arg, NULL);
    g_autofree char *dir = mount_dir();
    return g_build_filename(dir, arg, NULL);
}

/* Fail unless @dir is a capshm mount (it has a .stats control file). */
void
require_mount(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) < 0)
        die_errno(dir, errno);
    if (!S_ISDIR(st.st_mode))
        die(dir, "%s", g_strerror(ENOTDIR));
    g_autofree char *stats = g_build_filename(dir, ".stats", NULL);
    if (stat(stats, &st) < 0) {
        if (errno == ENOENT)
            die(dir, "not a capshm mount (is capshmfs running?)");
        die_errno(dir, errno);
    }
}

/* Read a whole file to EOF.  Control files report size 0, so st_size is no
 * guide (g_file_get_contents would trust it). */
char *
read_file(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die_errno(path, errno);
    GString *s = g_string_new(NULL);
    char buf[8192];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            die_errno(path, e);
        }
        if (n == 0)
            break;
        g_string_append_len(s, buf, n);
    }
    close(fd);
    if (len_out)
        *len_out = s->len;
    return g_string_free(s, FALSE);
}

/* --- xattrs ------------------------------------------------------------------ */

/* Get user.capshm.@key of @path into *@out (NUL-terminated).  Returns 0 or
 * an errno value. */
int
xattr_get(const char *path, const char *key, char **out)
{
    g_autofree char *name = g_strconcat(XATTR_PREFIX, key, NULL);
    size_t cap = 64;
    for (int tries = 0; tries < 8; tries++) {
        char *buf = g_malloc(cap + 1);
        ssize_t n = getxattr(path, name, buf, cap);
        if (n >= 0) {
            buf[n] = '\0';
            *out = buf;
            return 0;
        }
        int e = errno;
        g_free(buf);
        if (e != ERANGE)
            return e;
        ssize_t want = getxattr(path, name, NULL, 0);
        if (want < 0)
            return errno;
        cap = (size_t)want + 16;
    }
    return ERANGE;
}

int
xattr_set(const char *path, const char *key, const char *value)
{
    g_autofree char *name = g_strconcat(XATTR_PREFIX, key, NULL);
    return setxattr(path, name, value, strlen(value), 0) < 0 ? errno : 0;
}

gboolean
not_ours(int err)
{
    return err == ENODATA || err == ENOTSUP || err == EOPNOTSUPP;
}

/* Fail unless @path is a capshm region (not a control file, not some other
 * file): `capshm rm /etc/passwd` must not unlink anything. */
void
require_region(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        die_errno(path, errno);
    g_autofree char *state = NULL;
    int e = S_ISREG(st.st_mode) ? xattr_get(path, "state", &state) : ENODATA;
    if (not_ours(e))
        die(path, "not a capshm region");
    if (e)
        die_errno(path, e);
}

/* --- number parsing ------------------------------------------------------------ */

/* Sizes: decimal bytes with an optional k/K, m/M, g/G or t/T suffix (powers
 * of 1024), the daemon's size= syntax.  Returns FALSE on junk, a sign, or
 * more than fits an off_t. */
gboolean
parse_size(const char *s, guint64 *out)
{
    uint64_t v;
    if (options_parse_size(s, &v) < 0)
        return FALSE;
    *out = v;
    return TRUE;
}

/* Modes: 1 to 4 octal digits, at most 0777. */
gboolean
parse_mode(const char *s, mode_t *out)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 0 || len > 4)
        return FALSE;
    unsigned v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '7')
            return FALSE;
        v = v * 8 + (unsigned)(*p - '0');
    }
    if (v > 0777)
        return FALSE;
    *out = (mode_t)v;
    return TRUE;
}
