/* SPDX-License-Identifier: MIT */
/* log — the daemon's one logging path: GLib's structured log (our
 * messages, and libfuse's, bridged in) written as "capshmfs: LEVEL: TEXT"
 * on stderr, or to syslog once the daemon has detached.  Debug messages
 * only with -d.  Owns two flags; call log_init() first thing in main(). */
#pragma once

#include <stdbool.h>

void log_init(void);
/* -d: let debug messages through (libfuse's request log too). */
void log_set_debug(bool on);
/* From now on write to syslog (after detaching from the terminal). */
void log_use_syslog(void);
