/* SPDX-License-Identifier: MIT */
/* cli.h — what the files of the capshm tool share (see main.c for the
 * conventions: exit codes, the one-line errors).
 *
 * Ownership: a char * returned here is new and the caller frees it
 * (g_free); parse_verb() returns a NULL-terminated vector the caller frees
 * with g_strfreev.  opt_dir belongs to main.c.  die(), die_errno() and
 * usage_fail() end the process.
 */
#ifndef CAPSHM_CLI_H
#define CAPSHM_CLI_H

#include <glib.h>
#include <stddef.h>
#include <sys/types.h>

#define DEFAULT_DIR "/run/capshm"
#define XATTR_PREFIX "user.capshm."
#define EXIT_USAGE 2

/* -d DIR, from the global options or a verb's options; NULL if not given. */
extern char *opt_dir;

/* --- main.c ------------------------------------------------------------------- */

/* Parse a verb's options (argv[0] is the verb).  @entries end with a NULL
 * entry; -d/--dir is added.  Positional arguments are returned, and there
 * must be between @min and @max of them (else a usage error). */
char **parse_verb(int argc, char **argv, const char *args, const char *summary,
                  const char *description, const GOptionEntry *entries, guint min, guint max);

/* --- util.c: errors ------------------------------------------------------------ */

/* "capshm: WHAT: REASON" on stderr, exit 1. */
void die(const char *what, const char *fmt, ...) G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN;
void die_errno(const char *what, int err) G_GNUC_NORETURN;
/* One line on stderr with a hint to --help, exit 2.  @verb may be NULL. */
void usage_fail(const char *verb, const char *fmt, ...) G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN;

/* --- util.c: paths and files ------------------------------------------------------ */

/* The mount directory: -d, else $CAPSHM_DIR, else /run/capshm; absolute. */
char *mount_dir(void);
/* A PATH argument: a path if it contains a '/', else a name in the mount;
 * "-" reads it from the first line of stdin. */
char *region_path(const char *arg);
/* Fail unless @dir is a capshm mount (it has a .stats control file). */
void require_mount(const char *dir);
/* The whole file @path (control files report size 0); dies on failure.
 * Its length goes to *@len_out if not NULL. */
char *read_file(const char *path, size_t *len_out);

/* --- util.c: xattrs ------------------------------------------------------------- */

/* user.capshm.@key of @path into a new *@out.  Returns 0 or an errno value. */
int xattr_get(const char *path, const char *key, char **out);
/* Set user.capshm.@key of @path.  Returns 0 or an errno value. */
int xattr_set(const char *path, const char *key, const char *value);
/* Whether an xattr errno means "not a capshm file". */
gboolean not_ours(int err);
/* Fail unless @path is a capshm region (not a control file, not some other
 * file). */
void require_region(const char *path);

/* --- util.c: numbers ------------------------------------------------------------- */

/* Sizes: bytes with an optional k, M, G or T suffix (powers of 1024). */
gboolean parse_size(const char *s, guint64 *out);
/* Modes: 1 to 4 octal digits, at most 0777. */
gboolean parse_mode(const char *s, mode_t *out);

/* --- verbs.c ------------------------------------------------------------------------ */

/* Each takes the verb's argv (argv[0] is the verb) and returns the exit status. */
int cmd_new(int argc, char **argv);
int cmd_ro(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_pin(int argc, char **argv);
int cmd_unpin(int argc, char **argv);
int cmd_seal(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_stats(int argc, char **argv);

#endif
