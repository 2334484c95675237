/* SPDX-License-Identifier: MIT */
/* json.c — the CLI's JSON, all of it through json-glib: regions as the
 * objects of `info --json` and `ls --json`, and parsing the mount's .stats;
 * see json.h. */
#include "cli/json.h"

#include <stdio.h>
#include <sys/stat.h>

/* Add "@key": @s.  JSON strings are UTF-8: a name or path that is not
 * (names=any allows any bytes) has its bad bytes replaced by U+FFFD. */
static void
add_string(JsonBuilder *b, const char *key, const char *s)
{
    g_autofree char *valid = g_utf8_make_valid(s, -1);
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, valid);
}

static void
add_int(JsonBuilder *b, const char *key, gint64 v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, v);
}

static void
add_bool(JsonBuilder *b, const char *key, gboolean v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, v);
}

JsonNode *
region_info_to_json(const RegionInfo *ri)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    add_string(b, "name", ri->name);
    add_string(b, "path", ri->path);
    add_int(b, "size", (gint64)ri->st.st_size);
    g_autofree char *mode = g_strdup_printf("%04o", (unsigned)(ri->st.st_mode & 07777));
    add_string(b, "mode", mode);
    add_int(b, "uid", (gint64)ri->st.st_uid);
    add_int(b, "gid", (gint64)ri->st.st_gid);
    add_int(b, "holders", (gint64)ri->holders); /* at most G_MAXINT64 (region.c) */
    add_string(b, "state", ri->state);
    add_int(b, "created", ri->created);
    add_int(b, "age", age_of(ri));
    add_bool(b, "pinned", ri->pinned);
    add_bool(b, "sealed", ri->sealed);
    if (ri->ro) {
        add_string(b, "ro", ri->ro);
    } else {
        json_builder_set_member_name(b, "ro");
        json_builder_add_null_value(b);
    }
    json_builder_set_member_name(b, "pids");
    if (ri->pids) {
        json_builder_begin_array(b);
        for (guint i = 0; i < ri->pids->len; i++)
            json_builder_add_int_value(b, g_array_index(ri->pids, pid_t, i));
        json_builder_end_array(b);
    } else {
        json_builder_add_null_value(b);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/* @node as compact JSON text (no newline).  Caller frees. */
static char *
to_text(JsonNode *node)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, node);
    return json_generator_to_data(gen, NULL);
}

void
print_region_json(const RegionInfo *ri)
{
    g_autoptr(JsonNode) node = region_info_to_json(ri);
    g_autofree char *text = to_text(node);
    printf("%s\n", text);
}

void
print_regions_json(const GPtrArray *regions)
{
    /* One compact object per line, as `capshm ls --json` always printed
     * it (easy to grep, still one JSON document); json-glib writes each
     * object, only the array's line breaks are ours. */
    fputs("[", stdout);
    for (guint i = 0; i < regions->len; i++) {
        g_autoptr(JsonNode) node = region_info_to_json(regions->pdata[i]);
        g_autofree char *text = to_text(node);
        printf("%s %s", i ? ",\n" : "\n", text);
    }
    fputs(regions->len ? "\n]\n" : "]\n", stdout);
}

JsonNode *
json_parse_object(const char *text, gssize len)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    if (!json_parser_load_from_data(parser, text, len, NULL))
        return NULL;
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root))
        return NULL;
    return json_parser_steal_root(parser);
}
