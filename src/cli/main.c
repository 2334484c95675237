/* SPDX-License-Identifier: MIT */
/* capshm — the command-line tool for capshm mounts.
 *
 *   capshm [-d DIR] VERB [ARG...]
 *
 * The tool talks to the daemon only through the mount: it reads DIR/.new and
 * DIR/.stats, creates, stats and unlinks regions, and reads and writes their
 * user.capshm.* extended attributes.  Nothing else (no socket, no /proc), so
 * it works wherever the mount is visible, e.g. inside a container that
 * bind-mounts it.
 *
 * Conventions:
 *   - exit 0 on success, 1 on a runtime error, 2 on a usage error;
 *   - a runtime error is exactly one line on stderr, "capshm: WHAT: REASON";
 *   - a usage error is one line too, ending with a hint to --help;
 *   - --json output is one JSON document on stdout.
 * Option parsing uses one GOptionContext for the global options and one per
 * verb.  Every helper is static; failures end the process through die(),
 * which is fine for a short-lived tool that holds nothing worth cleaning up
 * (a half-created region is unlinked before dying).
 */

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "core/options.h"

#define DEFAULT_DIR "/run/capshm"
#define XATTR_PREFIX "user.capshm."
#define EXIT_USAGE 2

/* -d DIR, from the global options or a verb's options. */
static char *opt_dir;

/* --- errors -------------------------------------------------------------------- */

static void die(const char *what, const char *fmt, ...) G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN;

/* "capshm: WHAT: REASON" on stderr, exit 1. */
static void
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

static void G_GNUC_NORETURN
die_errno(const char *what, int err)
{
    die(what, "%s", g_strerror(err));
}

static void usage_fail(const char *verb, const char *fmt, ...) G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN;

/* One line on stderr with a hint to --help, exit 2. */
static void
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
static char *
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
static char *
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
static void
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
static char *
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
static int
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

static int
xattr_set(const char *path, const char *key, const char *value)
{
    g_autofree char *name = g_strconcat(XATTR_PREFIX, key, NULL);
    return setxattr(path, name, value, strlen(value), 0) < 0 ? errno : 0;
}

static gboolean
not_ours(int err)
{
    return err == ENODATA || err == ENOTSUP || err == EOPNOTSUPP;
}

/* Fail unless @path is a capshm region (not a control file, not some other
 * file): `capshm rm /etc/passwd` must not unlink anything. */
static void
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
static gboolean
parse_size(const char *s, guint64 *out)
{
    uint64_t v;
    if (options_parse_size(s, &v) < 0)
        return FALSE;
    *out = v;
    return TRUE;
}

/* Modes: 1 to 4 octal digits, at most 0777. */
static gboolean
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

/* --- human output ---------------------------------------------------------------- */

/* 4096 -> "4K", 1572864 -> "1.5M", 100 -> "100" (powers of 1024; truncated
 * to one decimal; no locale). */
static char *
human_size(guint64 v)
{
    static const char units[] = "KMGTPE";
    if (v < 1024)
        return g_strdup_printf("%" G_GUINT64_FORMAT, v);
    int u = 0;
    guint64 unit = 1024;
    while (u < 5 && v / unit >= 1024) {
        unit *= 1024;
        u++;
    }
    guint64 whole = v / unit, tenth = (v % unit) * 10 / unit;
    if (tenth == 0 || whole >= 100)
        return g_strdup_printf("%" G_GUINT64_FORMAT "%c", whole, units[u]);
    return g_strdup_printf("%" G_GUINT64_FORMAT ".%" G_GUINT64_FORMAT "%c", whole, tenth, units[u]);
}

static char *
human_age(gint64 s)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        return g_strdup_printf("%" G_GINT64_FORMAT "s", s);
    if (s < 3600)
        return g_strdup_printf("%" G_GINT64_FORMAT "m%02" G_GINT64_FORMAT "s", s / 60, s % 60);
    if (s < 86400)
        return g_strdup_printf("%" G_GINT64_FORMAT "h%02" G_GINT64_FORMAT "m", s / 3600, s / 60 % 60);
    return g_strdup_printf("%" G_GINT64_FORMAT "d%02" G_GINT64_FORMAT "h", s / 86400, s / 3600 % 24);
}

/* --- JSON output ------------------------------------------------------------------- */

/* Append @s as a JSON string literal (invalid UTF-8 is replaced). */
static void
json_string(GString *out, const char *s)
{
    g_autofree char *valid = g_utf8_make_valid(s, -1);
    g_string_append_c(out, '"');
    for (const unsigned char *p = (const unsigned char *)valid; *p; p++) {
        switch (*p) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                g_string_append_printf(out, "\\u%04x", *p);
            else
                g_string_append_c(out, (char)*p);
        }
    }
    g_string_append_c(out, '"');
}

/* --- JSON input (for `stats`): a small parser, enough for .stats ----------------- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;

typedef struct JVal {
    JType type;
    char *text;          /* J_BOOL/J_NUM: the literal; J_STR: the decoded string */
    GPtrArray *keys;     /* J_OBJ: char * */
    GPtrArray *items;    /* J_ARR/J_OBJ: JVal * */
} JVal;

static void
jval_free(gpointer p)
{
    JVal *v = p;
    if (!v)
        return;
    g_free(v->text);
    if (v->keys)
        g_ptr_array_unref(v->keys);
    if (v->items)
        g_ptr_array_unref(v->items);
    g_free(v);
}

typedef struct {
    const char *p;
    int depth;
} JParser;

static void
j_ws(JParser *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
        j->p++;
}

static JVal *j_value(JParser *j);

static int
j_hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static char *
j_string(JParser *j)
{
    if (*j->p != '"')
        return NULL;
    j->p++;
    GString *s = g_string_new(NULL);
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c == '\0' || c < 0x20)
            goto fail;
        if (c != '\\') {
            g_string_append_c(s, (char)c);
            j->p++;
            continue;
        }
        j->p++;
        switch (*j->p) {
        case '"': g_string_append_c(s, '"'); break;
        case '\\': g_string_append_c(s, '\\'); break;
        case '/': g_string_append_c(s, '/'); break;
        case 'b': g_string_append_c(s, '\b'); break;
        case 'f': g_string_append_c(s, '\f'); break;
        case 'n': g_string_append_c(s, '\n'); break;
        case 'r': g_string_append_c(s, '\r'); break;
        case 't': g_string_append_c(s, '\t'); break;
        case 'u': {
            int u = j_hex4(j->p + 1);
            if (u < 0)
                goto fail;
            j->p += 4;
            gunichar ch = (gunichar)u;
            if (u >= 0xd800 && u < 0xdc00 && j->p[1] == '\\' && j->p[2] == 'u') {
                int lo = j_hex4(j->p + 3);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    ch = 0x10000 + (((gunichar)u - 0xd800) << 10) + ((gunichar)lo - 0xdc00);
                    j->p += 6;
                }
            }
            if (ch >= 0xd800 && ch < 0xe000)
                ch = 0xfffd;
            g_string_append_unichar(s, ch);
            break;
        }
        default:
            goto fail;
        }
        j->p++;
    }
    j->p++;
    return g_string_free(s, FALSE);
fail:
    g_string_free(s, TRUE);
    return NULL;
}

static JVal *
j_new(JType t)
{
    JVal *v = g_new0(JVal, 1);
    v->type = t;
    return v;
}

static JVal *
j_container(JParser *j, gboolean is_obj)
{
    JVal *v = j_new(is_obj ? J_OBJ : J_ARR);
    v->items = g_ptr_array_new_with_free_func(jval_free);
    if (is_obj)
        v->keys = g_ptr_array_new_with_free_func(g_free);
    char close = is_obj ? '}' : ']';
    j->p++;
    j_ws(j);
    if (*j->p == close) {
        j->p++;
        return v;
    }
    for (;;) {
        j_ws(j);
        if (is_obj) {
            char *key = j_string(j);
            if (!key)
                goto fail;
            g_ptr_array_add(v->keys, key);
            j_ws(j);
            if (*j->p != ':')
                goto fail;
            j->p++;
        }
        JVal *item = j_value(j);
        if (!item)
            goto fail;
        g_ptr_array_add(v->items, item);
        j_ws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == close) {
            j->p++;
            return v;
        }
        goto fail;
    }
fail:
    jval_free(v);
    return NULL;
}

static JVal *
j_value(JParser *j)
{
    j_ws(j);
    if (++j->depth > 64)
        return NULL;
    JVal *v = NULL;
    const char *start = j->p;
    if (*j->p == '{' || *j->p == '[') {
        v = j_container(j, *j->p == '{');
    } else if (*j->p == '"') {
        char *s = j_string(j);
        if (s) {
            v = j_new(J_STR);
            v->text = s;
        }
    } else if (g_str_has_prefix(j->p, "true") || g_str_has_prefix(j->p, "false")) {
        j->p += *j->p == 't' ? 4 : 5;
        v = j_new(J_BOOL);
        v->text = g_strndup(start, (gsize)(j->p - start));
    } else if (g_str_has_prefix(j->p, "null")) {
        j->p += 4;
        v = j_new(J_NULL);
    } else if (*j->p == '-' || g_ascii_isdigit(*j->p)) {
        j->p++;
        while (g_ascii_isdigit(*j->p) || strchr(".eE+-", *j->p))
            j->p++;
        v = j_new(J_NUM);
        v->text = g_strndup(start, (gsize)(j->p - start));
    }
    j->depth--;
    return v;
}

static JVal *
json_parse(const char *text)
{
    JParser j = { text, 0 };
    JVal *v = j_value(&j);
    if (!v)
        return NULL;
    j_ws(&j);
    if (*j.p) {
        jval_free(v);
        return NULL;
    }
    return v;
}

/* --- region details ---------------------------------------------------------------- */

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

static void
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

G_DEFINE_AUTOPTR_CLEANUP_FUNC(RegionInfo, region_info_free)

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
static int
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

static RegionInfo *
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

static gint64
age_of(const RegionInfo *ri)
{
    gint64 age = (gint64)time(NULL) - ri->created;
    return age < 0 ? 0 : age;
}

static void
region_info_json(GString *out, const RegionInfo *ri)
{
    g_string_append(out, "{\"name\":");
    json_string(out, ri->name);
    g_string_append(out, ",\"path\":");
    json_string(out, ri->path);
    g_string_append_printf(out,
        ",\"size\":%" G_GINT64_FORMAT ",\"mode\":\"%04o\",\"uid\":%u,\"gid\":%u"
        ",\"holders\":%" G_GUINT64_FORMAT ",\"state\":",
        (gint64)ri->st.st_size, (unsigned)(ri->st.st_mode & 07777),
        (unsigned)ri->st.st_uid, (unsigned)ri->st.st_gid, ri->holders);
    json_string(out, ri->state);
    g_string_append_printf(out, ",\"created\":%" G_GINT64_FORMAT ",\"age\":%" G_GINT64_FORMAT
                           ",\"pinned\":%s,\"sealed\":%s,\"ro\":",
                           ri->created, age_of(ri), ri->pinned ? "true" : "false",
                           ri->sealed ? "true" : "false");
    if (ri->ro)
        json_string(out, ri->ro);
    else
        g_string_append(out, "null");
    g_string_append(out, ",\"pids\":");
    if (ri->pids) {
        g_string_append_c(out, '[');
        for (guint i = 0; i < ri->pids->len; i++)
            g_string_append_printf(out, "%s%d", i ? "," : "", (int)g_array_index(ri->pids, pid_t, i));
        g_string_append_c(out, ']');
    } else {
        g_string_append(out, "null");
    }
    g_string_append_c(out, '}');
}

/* --- option parsing ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *args;     /* shown after the verb in usage lines */
    const char *summary;  /* one line, for `capshm --help` */
    int (*run)(int argc, char **argv);
} Verb;

/* Parse a verb's options (argv[0] is the verb).  @entries end with a NULL
 * entry; -d/--dir is added.  Positional arguments land in *@rest, and
 * there must be between @min and @max of them. */
static char **
parse_verb(int argc, char **argv, const char *args, const char *summary, const char *description,
           const GOptionEntry *entries, guint min, guint max)
{
    const char *verb = argv[0];
    char **rest = NULL;
    GArray *all = g_array_new(TRUE, TRUE, sizeof(GOptionEntry));
    for (const GOptionEntry *e = entries; e && e->long_name; e++)
        g_array_append_val(all, *e);
    GOptionEntry dir = { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
                         "the capshm mount (default: $CAPSHM_DIR, else " DEFAULT_DIR ")", "DIR" };
    GOptionEntry remaining = { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &rest, NULL, NULL };
    g_array_append_val(all, dir);
    g_array_append_val(all, remaining);

    g_autofree char *prg = g_strdup_printf("capshm %s", verb);
    g_set_prgname(prg);
    GOptionContext *ctx = g_option_context_new(args);
    g_option_context_set_summary(ctx, summary);
    if (description)
        g_option_context_set_description(ctx, description);
    g_option_context_add_main_entries(ctx, (GOptionEntry *)(void *)all->data, NULL);
    GError *err = NULL;
    gboolean ok = g_option_context_parse(ctx, &argc, &argv, &err);
    g_option_context_free(ctx);
    g_array_free(all, TRUE);
    if (!ok) {
        g_autofree char *msg = g_strdup(err->message);
        g_error_free(err);
        usage_fail(verb, "%s", msg);
    }
    guint n = rest ? g_strv_length(rest) : 0;
    if (n < min)
        usage_fail(verb, "missing argument %s", args);
    if (n > max)
        usage_fail(verb, "unexpected argument '%s'", rest[max]);
    if (!rest)
        rest = g_new0(char *, 1);
    return rest;
}

/* --- verbs ----------------------------------------------------------------------------- */

static int
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

    g_autofree char *dir = mount_dir();
    require_mount(dir);
    g_autofree char *newpath = g_build_filename(dir, ".new", NULL);
    size_t len = 0;
    g_autofree char *name = read_file(newpath, &len);
    if (strlen(name) != len)
        die(newpath, "unexpected contents");
    g_strchomp(name);
    if (!*name || strchr(name, '/') || name[0] == '.')
        die(newpath, "unexpected contents");

    g_autofree char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        die_errno(path, errno);
    int e = 0;
    if (size > 0 && ftruncate(fd, (off_t)size) < 0)
        e = errno;
    if (!e && pin && fsetxattr(fd, XATTR_PREFIX "pin", "1", 1, 0) < 0)
        e = errno;
    if (e) {
        unlink(path);
        close(fd);
        die_errno(path, e);
    }
    close(fd);
    printf("%s\n", path);
    return 0;
}

static int
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

/* @s made safe for a terminal: control characters, backslashes and bytes
 * that are not UTF-8 become C escapes, so that a name chosen by another uid
 * (names=any) cannot forge lines or send escape sequences.  Caller frees. */
static char *
printable(const char *s)
{
    GString *out = g_string_new(NULL);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        gunichar c = g_utf8_get_char_validated((const char *)p, -1);
        if (c == (gunichar)-1 || c == (gunichar)-2) {
            g_string_append_printf(out, "\\x%02x", *p++);
            continue;
        }
        const char *next = g_utf8_next_char(p);
        if (c == '\\')
            g_string_append(out, "\\\\");
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || !g_unichar_isprint(c))
            for (const unsigned char *q = p; q < (const unsigned char *)next; q++)
                g_string_append_printf(out, "\\x%02x", *q);
        else
            g_string_append_len(out, (const char *)p, next - (const char *)p);
        p = (const unsigned char *)next;
    }
    return g_string_free(out, FALSE);
}

static gint
cmp_region(gconstpointer a, gconstpointer b)
{
    const RegionInfo *x = *(RegionInfo *const *)a, *y = *(RegionInfo *const *)b;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void
print_info_human(const RegionInfo *ri)
{
    g_autofree char *hsize = human_size((guint64)ri->st.st_size);
    g_autofree char *age = human_age(age_of(ri));
    g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(ri->created);
    g_autofree char *when = dt ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S %z") : g_strdup("?");
    g_autofree char *shown_name = printable(ri->name);
    g_autofree char *shown_path = printable(ri->path);
    printf("name     %s\n", shown_name);
    printf("path     %s\n", shown_path);
    printf("size     %" G_GINT64_FORMAT " (%s)\n", (gint64)ri->st.st_size, hsize);
    printf("mode     %04o\n", (unsigned)(ri->st.st_mode & 07777));
    printf("owner    uid %u, gid %u\n", (unsigned)ri->st.st_uid, (unsigned)ri->st.st_gid);
    printf("holders  %" G_GUINT64_FORMAT, ri->holders);
    if (ri->pids && ri->pids->len) {
        printf(" (pids");
        for (guint i = 0; i < ri->pids->len; i++)
            printf(" %d", (int)g_array_index(ri->pids, pid_t, i));
        printf(")");
    }
    printf("\n");
    printf("state    %s\n", ri->state);
    printf("created  %s (%s ago)\n", when, age);
    printf("pinned   %s\n", ri->pinned ? "yes" : "no");
    printf("sealed   %s\n", ri->sealed ? "yes" : "no");
    if (ri->ro) {
        g_autofree char *dir = g_path_get_dirname(ri->path);
        g_autofree char *ro_path = g_build_filename(dir, ri->ro, NULL);
        printf("ro       %s\n", ro_path);
    }
}

static int
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
    /* The root cannot be listed (names are secrets); .mine lists the
     * caller's own regions, one per line, with \\ and \n escaped. */
    g_autofree char *minepath = g_build_filename(dir, ".mine", NULL);
    size_t len = 0;
    g_autofree char *mine = read_file(minepath, &len);
    g_autoptr(GPtrArray) regions = g_ptr_array_new_with_free_func(region_info_free);
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

    if (json) {
        GString *out = g_string_new("[");
        for (guint i = 0; i < regions->len; i++) {
            g_string_append(out, i ? ",\n " : "\n ");
            region_info_json(out, regions->pdata[i]);
        }
        g_string_append(out, regions->len ? "\n]\n" : "]\n");
        fputs(out->str, stdout);
        g_string_free(out, TRUE);
        return 0;
    }
    if (regions->len == 0)
        return 0;
    printf("%-26s %8s %5s %7s %-9s %6s\n", "NAME", "SIZE", "MODE", "HOLDERS", "STATE", "AGE");
    for (guint i = 0; i < regions->len; i++) {
        const RegionInfo *ri = regions->pdata[i];
        g_autofree char *hsize = human_size((guint64)ri->st.st_size);
        g_autofree char *age = human_age(age_of(ri));
        g_autofree char *shown = printable(ri->name);
        printf("%-26s %8s  %04o %7" G_GUINT64_FORMAT " %-9s %6s\n", shown, hsize,
               (unsigned)(ri->st.st_mode & 07777), ri->holders, ri->state, age);
    }
    return 0;
}

static int
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
    if (json) {
        GString *out = g_string_new(NULL);
        region_info_json(out, ri);
        g_string_append_c(out, '\n');
        fputs(out->str, stdout);
        g_string_free(out, TRUE);
    } else {
        print_info_human(ri);
    }
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

static int
cmd_pin(int argc, char **argv)
{
    return set_flag(argc, argv, "Pin a region: it stays without holders.",
                    "A pinned region outlives its holders until it is unpinned or removed.",
                    "pin", "1");
}

static int
cmd_unpin(int argc, char **argv)
{
    return set_flag(argc, argv, "Unpin a region.",
                    "Once unpinned, the region is destroyed after the mount's linger time\n"
                    "if no process holds it.",
                    "pin", "0");
}

static int
cmd_seal(int argc, char **argv)
{
    return set_flag(argc, argv, "Seal a region: its bytes and size can no longer change.",
                    "Sealing fails while any process has the region open or mapped for\n"
                    "writing.  A seal cannot be undone.",
                    "seal", "1");
}

static int
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

static void
print_json_scalar(const JVal *v, const char *key)
{
    switch (v->type) {
    case J_NULL: printf("-"); break;
    case J_STR: printf("%s", v->text); break;
    case J_BOOL: printf("%s", v->text[0] == 't' ? "yes" : "no"); break;
    case J_NUM: {
        printf("%s", v->text);
        guint64 n;
        if (key && strstr(key, "bytes") &&
            g_ascii_string_to_unsigned(v->text, 10, 0, G_MAXUINT64, &n, NULL) && n >= 1024) {
            g_autofree char *h = human_size(n);
            printf(" (%s)", h);
        }
        if (key && (strcmp(key, "linger") == 0 || strcmp(key, "mint_ttl") == 0))
            printf(" s");
        break;
    }
    default: printf("..."); break;
    }
}

/* An array of objects as a table whose columns are the first object's keys. */
static void
print_json_table(const JVal *arr, const char *indent)
{
    const JVal *first = arr->items->pdata[0];
    guint ncols = first->keys->len;
    g_autofree int *width = g_new0(int, ncols);
    for (guint c = 0; c < ncols; c++)
        width[c] = (int)strlen(first->keys->pdata[c]);
    for (guint r = 0; r < arr->items->len; r++) {
        const JVal *row = arr->items->pdata[r];
        for (guint c = 0; c < ncols && row->type == J_OBJ && c < row->items->len; c++) {
            const JVal *cell = row->items->pdata[c];
            int w = cell->text ? (int)strlen(cell->text) : 1;
            width[c] = MAX(width[c], w);
        }
    }
    printf("%s", indent);
    for (guint c = 0; c < ncols; c++)
        if (c + 1 < ncols)
            printf("%-*s  ", width[c], (char *)first->keys->pdata[c]);
        else
            printf("%s\n", (char *)first->keys->pdata[c]);
    for (guint r = 0; r < arr->items->len; r++) {
        const JVal *row = arr->items->pdata[r];
        if (row->type != J_OBJ)
            continue;
        printf("%s", indent);
        for (guint c = 0; c < ncols; c++) {
            const JVal *cell = c < row->items->len ? row->items->pdata[c] : NULL;
            const char *t = cell && cell->text ? cell->text : "-";
            if (c + 1 < ncols)
                printf("%-*s  ", width[c], t);
            else
                printf("%s\n", t);
        }
    }
}

static void
print_json_object(const JVal *obj, const char *indent)
{
    int w = 0;
    for (guint i = 0; i < obj->keys->len; i++)
        w = MAX(w, (int)strlen(obj->keys->pdata[i]));
    g_autofree char *deeper = g_strconcat(indent, "  ", NULL);
    for (guint i = 0; i < obj->keys->len; i++) {
        const char *key = obj->keys->pdata[i];
        const JVal *v = obj->items->pdata[i];
        if (v->type == J_OBJ) {
            printf("%s%s:\n", indent, key);
            print_json_object(v, deeper);
        } else if (v->type == J_ARR) {
            gboolean objects = v->items->len > 0;
            for (guint k = 0; k < v->items->len; k++)
                objects = objects && ((JVal *)v->items->pdata[k])->type == J_OBJ;
            if (objects) {
                printf("%s%s:\n", indent, key);
                print_json_table(v, deeper);
            } else {
                printf("%s%-*s  ", indent, w, key);
                if (v->items->len == 0)
                    printf("(none)");
                for (guint k = 0; k < v->items->len; k++) {
                    printf("%s", k ? " " : "");
                    print_json_scalar(v->items->pdata[k], NULL);
                }
                printf("\n");
            }
        } else {
            printf("%s%-*s  ", indent, w, key);
            print_json_scalar(v, key);
            printf("\n");
        }
    }
}

static int
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
    if (json) {
        fputs(text, stdout);
        if (len == 0 || text[len - 1] != '\n')
            fputc('\n', stdout);
        return 0;
    }
    JVal *v = json_parse(text);
    if (!v || v->type != J_OBJ) {
        jval_free(v);
        die(path, "not valid JSON");
    }
    print_json_object(v, "");
    jval_free(v);
    return 0;
}

static const Verb verbs[] = {
    { "new", "[--size N] [--mode M] [--pin]", "create a region; print its path", cmd_new },
    { "ro", "PATH", "print the read-only path of a region", cmd_ro },
    { "ls", "[--json]", "list your regions", cmd_ls },
    { "info", "[--json] PATH", "show a region's details", cmd_info },
    { "pin", "PATH", "keep a region without holders", cmd_pin },
    { "unpin", "PATH", "undo pin", cmd_unpin },
    { "seal", "PATH", "make a region immutable", cmd_seal },
    { "rm", "PATH", "remove a region's name", cmd_rm },
    { "stats", "[--json]", "show the mount's figures", cmd_stats },
};

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    g_set_prgname("capshm");

    gboolean version = FALSE;
    const GOptionEntry entries[] = {
        { "dir", 'd', 0, G_OPTION_ARG_FILENAME, &opt_dir,
          "the capshm mount (default: $CAPSHM_DIR, else " DEFAULT_DIR ")", "DIR" },
        { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "print the version and exit", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    GString *desc = g_string_new("Verbs:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++) {
        g_autofree char *usage = g_strdup_printf("%s %s", verbs[i].name, verbs[i].args);
        g_string_append_printf(desc, "  %-36s %s\n", usage, verbs[i].summary);
    }
    g_string_append(desc,
        "\nPATH is a region's path, or a bare name in DIR.  'capshm VERB --help'\n"
        "describes a verb.  A region made by 'new' is destroyed once nobody has\n"
        "held it for the mount's linger time (default 5 s) -- so open it soon,\n"
        "or use --pin.\n"
        "Exit status: 0 success, 1 error, 2 usage error.  See capshm(1).");

    GOptionContext *ctx = g_option_context_new("VERB [ARG...]");
    g_option_context_set_summary(ctx, "Create, inspect and remove regions on a capshm mount.");
    g_option_context_set_description(ctx, desc->str);
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_strict_posix(ctx, TRUE); /* options before the verb only */
    GError *err = NULL;
    gboolean ok = g_option_context_parse(ctx, &argc, &argv, &err);
    g_option_context_free(ctx);
    g_string_free(desc, TRUE);
    if (!ok) {
        g_autofree char *msg = g_strdup(err->message);
        g_error_free(err);
        usage_fail(NULL, "%s", msg);
    }
    if (version) {
        printf("capshm %s\n", PACKAGE_VERSION);
        return 0;
    }
    /* GOption leaves a "--" that ends the global options in place. */
    int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
    if (argc <= first)
        usage_fail(NULL, "no verb given");
    const char *name = argv[first];
    const Verb *verb = NULL;
    for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++)
        if (strcmp(verbs[i].name, name) == 0)
            verb = &verbs[i];
    if (!verb)
        usage_fail(NULL, "unknown verb '%s'", name);

    int status = verb->run(argc - first, argv + first);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("stdout", "%s", g_strerror(errno ? errno : EIO));
    g_free(opt_dir);
    return status;
}
