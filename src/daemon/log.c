/* SPDX-License-Identifier: MIT */
/* log — see log.h. */
#include "log.h"

#include <fuse_lowlevel.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

static bool debug_on, to_syslog;

static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
    (void)data;
    if (g_log_writer_default_would_drop(level, G_LOG_DOMAIN) && !debug_on)
        return G_LOG_WRITER_HANDLED;
    const char *msg = NULL;
    for (gsize i = 0; i < n_fields; i++)
        if (strcmp(fields[i].key, "MESSAGE") == 0)
            msg = fields[i].value;
    if (!msg)
        return G_LOG_WRITER_UNHANDLED;
    const char *tag = (level & G_LOG_LEVEL_ERROR) ? "error"
                    : (level & G_LOG_LEVEL_CRITICAL) ? "critical"
                    : (level & G_LOG_LEVEL_WARNING) ? "warning"
                    : (level & G_LOG_LEVEL_DEBUG) ? "debug" : "info";
    if (to_syslog) {
        int prio = (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) ? LOG_ERR
                 : (level & G_LOG_LEVEL_WARNING) ? LOG_WARNING
                 : (level & G_LOG_LEVEL_DEBUG) ? LOG_DEBUG : LOG_INFO;
        syslog(prio, "%s", msg);
    } else {
        fprintf(stderr, "capshmfs: %s: %s\n", tag, msg);
    }
    return G_LOG_WRITER_HANDLED;
}

static void
fuse_log_bridge(enum fuse_log_level level, const char *fmt, va_list ap)
{
    GLogLevelFlags gl = level <= FUSE_LOG_ERR ? G_LOG_LEVEL_CRITICAL
                      : level == FUSE_LOG_WARNING ? G_LOG_LEVEL_WARNING
                      : level <= FUSE_LOG_INFO ? G_LOG_LEVEL_MESSAGE
                      : G_LOG_LEVEL_DEBUG;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_strchomp(msg);
    g_log("fuse", gl, "%s", msg);
}

void
log_init(void)
{
    g_log_set_writer_func(log_writer, NULL, NULL);
    fuse_set_log_func(fuse_log_bridge);
}

void
log_set_debug(bool on)
{
    debug_on = on;
    if (on)
        g_log_set_debug_enabled(TRUE);
}

void log_use_syslog(void) { to_syslog = true; }
