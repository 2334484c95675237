/* SPDX-License-Identifier: MIT */
/* share.c — two processes share memory through a capshm region (libcapshm).
 *
 *   terminal 1:  ./share create          prints the region's name, waits for a reply
 *   terminal 2:  ./share attach          reads NAME from stdin (or $CAPSHM_NAME),
 *                                        reads the message, writes a reply
 *
 * The name is the key to the region, so it travels on stdin or in the
 * environment, never on the command line (/proc/PID/cmdline is public).
 *
 * The mount is $CAPSHM_DIR, else /run/capshm.  The region layout is the
 * same in every example (C, Python, shell, Node), so they can talk to each
 * other:
 *     offset    0  the creator's message, NUL-terminated
 *     offset 2048  the attacher's reply, NUL-terminated
 *     offset 4095  set to 1 once the reply is complete (written last)
 *
 * Build:  make     (uses pkg-config capshm)
 */
#include <capshm.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE 4096
#define MSG 0
#define REPLY 2048
#define DONE 4095

static char *
map(int fd)
{
    char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("share: mmap");
        exit(1);
    }
    return p;
}

static int
create(void)
{
    char name[CAPSHM_NAME_BUF];
    /* Mint a name, create the region, size it: one call.  The fd (and the
     * mapping) keep the region alive; it is destroyed a few seconds after
     * this process exits. */
    int fd = capshm_create(NULL, SIZE, 0600, name);
    if (fd < 0) {
        fprintf(stderr, "share: capshm_create: %s\n", strerror(errno));
        return 1;
    }
    char *p = map(fd);
    close(fd); /* the mapping alone keeps the region alive */

    snprintf(p + MSG, REPLY - MSG, "hello from C, pid %d", (int)getpid());
    printf("%s\n", name); /* the name is the capability: pass it on */
    fflush(stdout);

    /* Wait (up to a minute) for the other process to reply. */
    for (int i = 0; i < 6000; i++) {
        if (__atomic_load_n(p + DONE, __ATOMIC_ACQUIRE) == 1) {
            printf("reply: %s\n", p + REPLY);
            return 0;
        }
        usleep(10000);
    }
    fprintf(stderr, "share: no reply within 60 s\n");
    return 1;
}

static int
attach(const char *name)
{
    int fd = capshm_open(NULL, name, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "share: %s: %s\n", name, strerror(errno));
        return 1;
    }
    char *p = map(fd);
    close(fd);

    printf("message: %s\n", p + MSG);
    snprintf(p + REPLY, DONE - REPLY, "thanks from C, pid %d", (int)getpid());
    __atomic_store_n(p + DONE, 1, __ATOMIC_RELEASE); /* last: the reply is complete */
    munmap(p, SIZE);
    return 0;
}

/* The region's name: $CAPSHM_NAME, else the first line of stdin. */
static int
name_to_attach(char name[CAPSHM_NAME_BUF])
{
    const char *env = getenv("CAPSHM_NAME");
    if (env && *env) {
        snprintf(name, CAPSHM_NAME_BUF, "%s", env);
        return 0;
    }
    if (!fgets(name, CAPSHM_NAME_BUF, stdin))
        return -1;
    name[strcspn(name, "\n")] = '\0';
    return *name ? 0 : -1;
}

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "create") == 0)
        return create();
    if (argc == 2 && strcmp(argv[1], "attach") == 0) {
        char name[CAPSHM_NAME_BUF];
        if (name_to_attach(name) < 0) {
            fprintf(stderr, "share: no NAME on stdin or in CAPSHM_NAME\n");
            return 2;
        }
        return attach(name);
    }
    fprintf(stderr, "usage: share create | share attach  (NAME on stdin or in CAPSHM_NAME)\n");
    return 2;
}
