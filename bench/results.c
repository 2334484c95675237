/* SPDX-License-Identifier: MIT */
/* results.c — the figures a workload records, per target and round, and
 * the one JSON line (json-glib) each run prints on stdout:
 *
 *   {"workload":W,"params":{...},"targets":{NAME:{"kind":"capshm"|"tmpfs",
 *    "dir":DIR,["error":TEXT,]"figures":{FIGURE:{"unit":U,"median":X,
 *    "min":X,"max":X,"samples":[X,...]}}}}}
 *
 * Measured numbers are rounded to 6 significant digits (json-glib then
 * prints the nearest double in full: 1.37379 as 1.3737900000000001, which
 * reads back as 1.37379); NaN and infinities are null. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static Figure *
fig(Bench *b, const char *name, const char *unit)
{
    for (int i = 0; i < b->nfigs; i++)
        if (strcmp(b->figs[i].name, name) == 0)
            return &b->figs[i];
    if (b->nfigs == MAX_FIGS)
        die("too many figures");
    Figure *f = &b->figs[b->nfigs++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->unit = unit;
    return f;
}

void
record(Bench *b, int ti, const char *name, const char *unit, double v)
{
    Figure *f = fig(b, name, unit);
    if (f->n[ti] < MAX_ROUNDS)
        f->v[ti][f->n[ti]++] = v;
}

void
record_daemon_cpu(Bench *b, int ti, const char *name, double cpu0, long ops)
{
    if (cpu0 < 0 || ops <= 0)
        return;
    double cpu1 = daemon_cpu_ns(&b->targets[ti]);
    if (cpu1 >= cpu0)
        record(b, ti, name, "us", (cpu1 - cpu0) / 1e3 / (double)ops);
}

/* A measured number: 6 significant digits (as "%.6g"), or null. */
static void
add_num(JsonBuilder *j, double v)
{
    if (isnan(v) || isinf(v)) {
        json_builder_add_null_value(j);
        return;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", v);
    json_builder_add_double_value(j, strtod(buf, NULL));
}

JsonBuilder *
params_new(void)
{
    JsonBuilder *p = json_builder_new();
    json_builder_begin_object(p);
    return p;
}

void
params_int(JsonBuilder *p, const char *key, int64_t v)
{
    json_builder_set_member_name(p, key);
    json_builder_add_int_value(p, v);
}

void
params_num(JsonBuilder *p, const char *key, double v)
{
    json_builder_set_member_name(p, key);
    add_num(p, v);
}

void
params_int_array(JsonBuilder *p, const char *key, const long *v, int n)
{
    json_builder_set_member_name(p, key);
    json_builder_begin_array(p);
    for (int i = 0; i < n; i++)
        json_builder_add_int_value(p, v[i]);
    json_builder_end_array(p);
}

/* The figures of target @t: {NAME:{unit, median, min, max, samples}}. */
static void
add_figures(JsonBuilder *j, const Bench *b, int t)
{
    json_builder_begin_object(j);
    for (int i = 0; i < b->nfigs; i++) {
        const Figure *f = &b->figs[i];
        int n = f->n[t];
        if (!n)
            continue;
        double mn = f->v[t][0], mx = f->v[t][0];
        for (int k = 1; k < n; k++) {
            mn = dmin(mn, f->v[t][k]);
            mx = dmax(mx, f->v[t][k]);
        }
        json_builder_set_member_name(j, f->name);
        json_builder_begin_object(j);
        json_builder_set_member_name(j, "unit");
        json_builder_add_string_value(j, f->unit);
        json_builder_set_member_name(j, "median");
        add_num(j, median_of(f->v[t], n));
        json_builder_set_member_name(j, "min");
        add_num(j, mn);
        json_builder_set_member_name(j, "max");
        add_num(j, mx);
        json_builder_set_member_name(j, "samples");
        json_builder_begin_array(j);
        for (int k = 0; k < n; k++)
            add_num(j, f->v[t][k]);
        json_builder_end_array(j);
        json_builder_end_object(j);
    }
    json_builder_end_object(j);
}

void
emit_results(const Bench *b, const char *workload, JsonBuilder *params)
{
    json_builder_end_object(params);
    JsonBuilder *j = json_builder_new();
    json_builder_begin_object(j);
    json_builder_set_member_name(j, "workload");
    json_builder_add_string_value(j, workload);
    json_builder_set_member_name(j, "params");
    json_builder_add_value(j, json_builder_get_root(params));
    g_object_unref(params);
    json_builder_set_member_name(j, "targets");
    json_builder_begin_object(j);
    for (int t = 0; t < b->ntargets; t++) {
        const Target *tg = &b->targets[t];
        json_builder_set_member_name(j, tg->name);
        json_builder_begin_object(j);
        json_builder_set_member_name(j, "kind");
        json_builder_add_string_value(j, tg->kind == KIND_CAPSHM ? "capshm" : "tmpfs");
        json_builder_set_member_name(j, "dir");
        json_builder_add_string_value(j, tg->dir);
        if (b->errors[t][0]) {
            json_builder_set_member_name(j, "error");
            json_builder_add_string_value(j, b->errors[t]);
        }
        json_builder_set_member_name(j, "figures");
        add_figures(j, b, t);
        json_builder_end_object(j);
    }
    json_builder_end_object(j);
    json_builder_end_object(j);
    print_json_line(json_builder_get_root(j));
    g_object_unref(j);
}

void
print_json_line(JsonNode *root)
{
    JsonGenerator *g = json_generator_new();
    json_generator_set_root(g, root);
    gchar *text = json_generator_to_data(g, NULL);
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    g_free(text);
    g_object_unref(g);
    json_node_unref(root);
}
