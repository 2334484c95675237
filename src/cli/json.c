/* SPDX-License-Identifier: MIT */
/* json.c — the CLI's JSON: regions as JSON objects, and reading .stats;
 * see json.h. */
#include "cli/json.h"

#include <stdio.h>
#include <string.h>

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

void
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

JVal *
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

void
print_region_json(const RegionInfo *ri)
{
    GString *out = g_string_new(NULL);
    region_info_json(out, ri);
    g_string_append_c(out, '\n');
    fputs(out->str, stdout);
    g_string_free(out, TRUE);
}

void
print_regions_json(const GPtrArray *regions)
{
    GString *out = g_string_new("[");
    for (guint i = 0; i < regions->len; i++) {
        g_string_append(out, i ? ",\n " : "\n ");
        region_info_json(out, regions->pdata[i]);
    }
    g_string_append(out, regions->len ? "\n]\n" : "]\n");
    fputs(out->str, stdout);
    g_string_free(out, TRUE);
}
