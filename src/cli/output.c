/* SPDX-License-Identifier: MIT */
/* output.c — what the CLI prints for people; see output.h. */
#include "cli/output.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* --- human output ---------------------------------------------------------------- */

/* 4096 -> "4K", 1572864 -> "1.5M", 100 -> "100" (powers of 1024; truncated
 * to one decimal; no locale). */
char *
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

char *
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

/* @s made safe for a terminal: control characters, backslashes and bytes
 * that are not UTF-8 become C escapes, so that a name chosen by another uid
 * (names=any) cannot forge lines or send escape sequences.  Caller frees. */
char *
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

void
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

void
print_ls_table(const GPtrArray *regions)
{
    if (regions->len == 0)
        return;
    printf("%-26s %8s %5s %7s %-9s %6s\n", "NAME", "SIZE", "MODE", "HOLDERS", "STATE", "AGE");
    for (guint i = 0; i < regions->len; i++) {
        const RegionInfo *ri = regions->pdata[i];
        g_autofree char *hsize = human_size((guint64)ri->st.st_size);
        g_autofree char *age = human_age(age_of(ri));
        g_autofree char *shown = printable(ri->name);
        printf("%-26s %8s  %04o %7" G_GUINT64_FORMAT " %-9s %6s\n", shown, hsize,
               (unsigned)(ri->st.st_mode & 07777), ri->holders, ri->state, age);
    }
}

/* --- stats: the .stats object for people ----------------------------------------- */

/* A number as .stats wrote it (integers exactly).  Caller frees. */
static char *
number_text(JsonNode *v)
{
    if (json_node_get_value_type(v) == G_TYPE_INT64)
        return g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(v));
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    return g_strdup(g_ascii_dtostr(buf, sizeof buf, json_node_get_double(v)));
}

/* The text of a table cell: a string as is, a number, true or false; NULL
 * (shown as "-") for null, objects and arrays.  Caller frees. */
static char *
cell_text(JsonNode *v)
{
    if (!v || !JSON_NODE_HOLDS_VALUE(v))
        return NULL;
    GType t = json_node_get_value_type(v);
    if (t == G_TYPE_STRING)
        return g_strdup(json_node_get_string(v));
    if (t == G_TYPE_BOOLEAN)
        return g_strdup(json_node_get_boolean(v) ? "true" : "false");
    if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE)
        return number_text(v);
    return NULL;
}

/* A value on a "key  value" line: null as "-", booleans as yes/no, byte
 * counts also in human units, the lifetimes in seconds. */
static void
print_json_scalar(JsonNode *v, const char *key)
{
    if (JSON_NODE_HOLDS_NULL(v)) {
        printf("-");
        return;
    }
    if (!JSON_NODE_HOLDS_VALUE(v)) {
        printf("...");
        return;
    }
    GType t = json_node_get_value_type(v);
    if (t == G_TYPE_STRING) {
        printf("%s", json_node_get_string(v));
    } else if (t == G_TYPE_BOOLEAN) {
        printf("%s", json_node_get_boolean(v) ? "yes" : "no");
    } else if (t == G_TYPE_INT64 || t == G_TYPE_DOUBLE) {
        g_autofree char *text = number_text(v);
        printf("%s", text);
        if (key && strstr(key, "bytes") && t == G_TYPE_INT64 && json_node_get_int(v) >= 1024) {
            g_autofree char *h = human_size((guint64)json_node_get_int(v));
            printf(" (%s)", h);
        }
        if (key && (strcmp(key, "linger") == 0 || strcmp(key, "mint_ttl") == 0))
            printf(" s");
    } else {
        printf("...");
    }
}

/* The @c-th member of @row (columns go by position, as in .stats every
 * row has the same keys in the same order), or NULL. */
static JsonNode *
nth_member(JsonObject *row, guint c)
{
    g_autoptr(GList) keys = json_object_get_members(row);
    const char *key = g_list_nth_data(keys, c);
    return key ? json_object_get_member(row, key) : NULL;
}

/* An array of objects as a table whose columns are the first object's keys. */
static void
print_json_table(JsonArray *arr, const char *indent)
{
    guint nrows = json_array_get_length(arr);
    g_autoptr(GList) cols = json_object_get_members(json_array_get_object_element(arr, 0));
    guint ncols = g_list_length(cols);
    g_autofree int *width = g_new0(int, ncols);
    guint c = 0;
    for (GList *l = cols; l; l = l->next, c++)
        width[c] = (int)strlen(l->data);
    for (guint r = 0; r < nrows; r++) {
        JsonObject *row = json_array_get_object_element(arr, r);
        guint have = json_object_get_size(row);
        for (c = 0; c < ncols && c < have; c++) {
            g_autofree char *t = cell_text(nth_member(row, c));
            width[c] = MAX(width[c], t ? (int)strlen(t) : 1);
        }
    }
    printf("%s", indent);
    c = 0;
    for (GList *l = cols; l; l = l->next, c++)
        if (c + 1 < ncols)
            printf("%-*s  ", width[c], (const char *)l->data);
        else
            printf("%s\n", (const char *)l->data);
    for (guint r = 0; r < nrows; r++) {
        JsonObject *row = json_array_get_object_element(arr, r);
        printf("%s", indent);
        for (c = 0; c < ncols; c++) {
            g_autofree char *t = cell_text(nth_member(row, c));
            if (c + 1 < ncols)
                printf("%-*s  ", width[c], t ? t : "-");
            else
                printf("%s\n", t ? t : "-");
        }
    }
}

static void
print_json_object(JsonObject *obj, const char *indent)
{
    g_autoptr(GList) keys = json_object_get_members(obj);
    int w = 0;
    for (GList *l = keys; l; l = l->next)
        w = MAX(w, (int)strlen(l->data));
    g_autofree char *deeper = g_strconcat(indent, "  ", NULL);
    for (GList *l = keys; l; l = l->next) {
        const char *key = l->data;
        JsonNode *v = json_object_get_member(obj, key);
        if (JSON_NODE_HOLDS_OBJECT(v)) {
            printf("%s%s:\n", indent, key);
            print_json_object(json_node_get_object(v), deeper);
        } else if (JSON_NODE_HOLDS_ARRAY(v)) {
            JsonArray *arr = json_node_get_array(v);
            guint n = json_array_get_length(arr);
            gboolean objects = n > 0;
            for (guint k = 0; k < n; k++)
                objects = objects && JSON_NODE_HOLDS_OBJECT(json_array_get_element(arr, k));
            if (objects) {
                printf("%s%s:\n", indent, key);
                print_json_table(arr, deeper);
            } else {
                printf("%s%-*s  ", indent, w, key);
                if (n == 0)
                    printf("(none)");
                for (guint k = 0; k < n; k++) {
                    printf("%s", k ? " " : "");
                    print_json_scalar(json_array_get_element(arr, k), NULL);
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

void
print_stats_human(JsonObject *stats)
{
    print_json_object(stats, "");
}
