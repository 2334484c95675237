/* SPDX-License-Identifier: MIT */
/* session — how FUSE requests reach capshm, and the life of the kernel
 * connection: creating and mounting the FUSE session, the transport
 * (/dev/fuse read on the GLib main loop, or FUSE over io_uring on libfuse's
 * per-CPU ring threads), the INIT handshake, and stopping.
 *
 * Owns: the fuse_session, its receive buffer, the main-loop source of the
 * device transport, and the thread that runs libfuse's loop for io_uring
 * (which owns the ring threads).  Borrows the CapshmFs, which must outlive
 * the session's serving (session_stop).  Handing the connection to a new
 * daemon process (planned) is a change to this module alone.
 *
 * Failures: session_new() returns NULL and session_start() false, each with
 * a one-line reason in @err; a failed session_start() leaves the mount in
 * place for session_stop() to remove.  Call from the main thread.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "cfs.h"

typedef enum {
    SESSION_URING_AUTO = 0, /* io_uring where the kernel and libfuse allow it */
    SESSION_URING_ON,       /* io_uring or fail */
    SESSION_URING_OFF,      /* /dev/fuse */
} SessionUring;

typedef struct {
    const char *mountpoint;
    const char *extra_opts; /* generic mount words for libfuse's -o ("" for none) */
    bool allow_other;
    bool debug;             /* libfuse logs every request */
    SessionUring uring;
    int64_t spin_us;        /* device transport: poll this long for the next request */
} SessionConfig;

typedef struct CfsSession CfsSession;

/* Create the FUSE session for @fs and mount it at cfg->mountpoint.  @cfg is
 * copied. */
CfsSession *session_new(CapshmFs *fs, const SessionConfig *cfg, GError **err);

/* Answer INIT, settle the data path (cfs_settle_datapath) and start
 * serving.  @ready runs under the core lock once all is settled and before
 * any other request is answered (the daemon says "mounted" there); @ended
 * runs on the main loop when the connection ends from outside (unmount).
 * Both get @data. */
bool session_start(CfsSession *s, void (*ready)(void *data), void (*ended)(void *data),
                   void *data, GError **err);

/* "io_uring" or "device": how requests arrive once started. */
const char *session_transport(const CfsSession *s);
/* Why requests do not come over io_uring (a static string), or NULL.
 * *worth_a_warning: io_uring was wanted and started, but libfuse fell back. */
const char *session_why_not_uring(const CfsSession *s, bool *worth_a_warning);

/* Stop serving and unmount: no callback of @fs runs after it returns, and
 * every request still in flight fails.  Safe to call twice. */
void session_stop(CfsSession *s);
/* Stop (if needed) and free.  NULL is fine. */
void session_free(CfsSession *s);
