/* SPDX-License-Identifier: MIT */
/* json.h — the CLI's JSON, written and read by json-glib: the objects of
 * `info --json` and `ls --json` (keys and types in capshm(1)), and the
 * parsed .stats of the mount.
 *
 * Ownership: a JsonNode * returned here is new and the caller releases it
 * (json_node_unref, or g_autoptr(JsonNode)).  print_* write to stdout and
 * keep nothing.
 */
#ifndef CAPSHM_CLI_JSON_H
#define CAPSHM_CLI_JSON_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "cli/region.h"

/* The JSON object of @ri: name, path, size, mode ("0600"), uid, gid,
 * holders, state, created, age, pinned, sealed, ro (string or null), pids
 * (array or null). */
JsonNode *region_info_to_json(const RegionInfo *ri);

/* `info --json`: one object and a newline. */
void print_region_json(const RegionInfo *ri);

/* `ls --json`: an array, one object per line. */
void print_regions_json(const GPtrArray *regions);

/* Parse @text (@len bytes, or -1: NUL-terminated) as one JSON document
 * whose root is an object.  NULL if it is not valid JSON or not an
 * object. */
JsonNode *json_parse_object(const char *text, gssize len);

#endif
