/* SPDX-License-Identifier: MIT */
/* json.h — the CLI's JSON: the objects of `info --json` and `ls --json`,
 * and the parsed form of the mount's .stats.
 *
 * Ownership: print_* write to stdout and keep nothing.  json_parse()
 * returns a new tree the caller frees with jval_free().
 */
#ifndef CAPSHM_CLI_JSON_H
#define CAPSHM_CLI_JSON_H

#include <glib.h>

#include "cli/region.h"

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } JType;

typedef struct JVal {
    JType type;
    char *text;          /* J_BOOL/J_NUM: the literal; J_STR: the decoded string */
    GPtrArray *keys;     /* J_OBJ: char * */
    GPtrArray *items;    /* J_ARR/J_OBJ: JVal * */
} JVal;

void jval_free(gpointer p);

/* Parse @text (one JSON document); NULL if it is not valid JSON. */
JVal *json_parse(const char *text);

/* `info --json`: one object and a newline. */
void print_region_json(const RegionInfo *ri);

/* `ls --json`: an array, one object per line. */
void print_regions_json(const GPtrArray *regions);

#endif
