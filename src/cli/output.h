/* SPDX-License-Identifier: MIT */
/* output.h — what the CLI prints for people: sizes and ages, names made
 * safe for a terminal, `info`, the `ls` table and the `stats` tree.
 *
 * Ownership: functions returning char * return a new string the caller
 * frees (g_free); print_* write to stdout and keep nothing.
 */
#ifndef CAPSHM_CLI_OUTPUT_H
#define CAPSHM_CLI_OUTPUT_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "cli/region.h"

/* 4096 -> "4K", 1572864 -> "1.5M", 100 -> "100" (powers of 1024; truncated
 * to one decimal; no locale). */
char *human_size(guint64 v);

/* 42 -> "42s", 3725 -> "1h02m" (two units at most). */
char *human_age(gint64 s);

/* @s made safe for a terminal: control characters, backslashes and bytes
 * that are not UTF-8 become C escapes. */
char *printable(const char *s);

/* `info`: one "key value" line per field. */
void print_info_human(const RegionInfo *ri);

/* `ls`: a header and one row per region; nothing when there is none. */
void print_ls_table(const GPtrArray *regions);

/* `stats`: the .stats object as indented "key  value" lines; arrays of
 * objects as tables. */
void print_stats_human(JsonObject *stats);

#endif
