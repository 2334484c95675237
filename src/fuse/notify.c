/* SPDX-License-Identifier: MIT */
/* notify — see notify.h. */

#include "notify.h"

#include <glib.h>
#include <string.h>

typedef enum { NOTE_ENTRY, NOTE_INODE, NOTE_STOP } NoteKind;

typedef struct {
    NoteKind kind;
    fuse_ino_t ino;
    off_t off, len;
    char name[]; /* NOTE_ENTRY */
} Note;

struct Notifier {
    struct fuse_session *se;
    GAsyncQueue *queue;
    GThread *thread;
};

static gpointer
notifier_main(gpointer data)
{
    Notifier *n = data;
    for (;;) {
        Note *note = g_async_queue_pop(n->queue);
        NoteKind kind = note->kind;
        int rc = 0;
        if (kind == NOTE_ENTRY)
            rc = fuse_lowlevel_notify_inval_entry(n->se, note->ino, note->name, strlen(note->name));
        else if (kind == NOTE_INODE)
            rc = fuse_lowlevel_notify_inval_inode(n->se, note->ino, note->off, note->len);
        /* ENOENT: the kernel had nothing cached, the common case. */
        if (rc < 0 && rc != -ENOENT)
            g_debug("kernel invalidation of node %" G_GUINT64_FORMAT ": %s",
                    (guint64)note->ino, g_strerror(-rc));
        g_free(note);
        if (kind == NOTE_STOP)
            return NULL;
    }
}

Notifier *
notifier_new(struct fuse_session *se)
{
    Notifier *n = g_new0(Notifier, 1);
    n->se = se;
    n->queue = g_async_queue_new();
    n->thread = g_thread_new("capshm-notify", notifier_main, n);
    return n;
}

void
notifier_free(Notifier *n)
{
    if (!n)
        return;
    Note *stop = g_new0(Note, 1);
    stop->kind = NOTE_STOP;
    g_async_queue_push(n->queue, stop);
    g_thread_join(n->thread);
    g_async_queue_unref(n->queue);
    g_free(n);
}

void
notifier_inval_entry(Notifier *n, fuse_ino_t parent, const char *name)
{
    if (!n)
        return;
    size_t len = strlen(name);
    Note *note = g_malloc0(sizeof *note + len + 1);
    note->kind = NOTE_ENTRY;
    note->ino = parent;
    memcpy(note->name, name, len + 1);
    g_async_queue_push(n->queue, note);
}

void
notifier_inval_inode(Notifier *n, fuse_ino_t ino, off_t off, off_t len)
{
    if (!n)
        return;
    Note *note = g_new0(Note, 1);
    note->kind = NOTE_INODE;
    note->ino = ino;
    note->off = off;
    note->len = len;
    g_async_queue_push(n->queue, note);
}
