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

void
print_stats_human(const JVal *stats)
{
    print_json_object(stats, "");
}
