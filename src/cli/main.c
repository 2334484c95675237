/* SPDX-License-Identifier: MIT */
/* capshm — the command-line tool for capshm mounts.
 *
 *   capshm [-d DIR] VERB [ARG...]
 *
 * The tool talks to the daemon only through the mount: it reads DIR/.new
 * (through libcapshm's capshm_create), DIR/.mine and DIR/.stats, creates,
 * stats and unlinks regions, and reads and writes their user.capshm.*
 * extended attributes.  Nothing else (no socket, no /proc), so
 * it works wherever the mount is visible, e.g. inside a container that
 * bind-mounts it.
 *
 * Conventions:
 *   - exit 0 on success, 1 on a runtime error, 2 on a usage error;
 *   - a runtime error is exactly one line on stderr, "capshm: WHAT: REASON";
 *   - a usage error is one line too, ending with a hint to --help;
 *   - --json output is one JSON document on stdout.
 * Option parsing uses one GOptionContext for the global options and one per
 * verb.  Failures end the process through die(), which is fine for a
 * short-lived tool that holds nothing worth cleaning up (a half-created
 * region is unlinked before dying).
 *
 * The files of the tool:
 *   main.c    global options, the verb table, parse_verb() (this file);
 *   util.c    errors, the mount directory and PATHs, xattrs, sizes, modes;
 *   region.c  gathering a region's details from stat(2) and its xattrs;
 *   output.c  what people read: info, the ls table, the stats tree;
 *   json.c    JSON through json-glib: --json, and parsing the mount's .stats;
 *   verbs.c   the verbs themselves.
 * cli.h declares what they share.
 *
 * Ownership: main.c owns opt_dir (set by GOption, freed at exit).
 */

#include "cli/cli.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

char *opt_dir;

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
char **
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
