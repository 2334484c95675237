/* SPDX-License-Identifier: MIT */
/* posix-shm — an unmodified POSIX shared-memory client, for testing capshm
 * mounted over /dev/shm with names=any.  Uses only shm_open/shm_unlink.
 *
 *   posix-shm create NAME SIZE TEXT   create exclusively, size, write TEXT at 0
 *   posix-shm read NAME LEN           print the first LEN bytes
 *   posix-shm hold NAME               map, print "ready", sleep until killed
 *   posix-shm unlink NAME
 * Exit 0 on success; 1 with "posix-shm: WHAT: strerror" on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int
fail(const char *what)
{
    fprintf(stderr, "posix-shm: %s: %s\n", what, strerror(errno));
    return 1;
}

int
main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "create") == 0) {
        size_t size = strtoul(argv[3], NULL, 0);
        int fd = shm_open(argv[2], O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            return fail("shm_open");
        if (ftruncate(fd, (off_t)size) < 0)
            return fail("ftruncate");
        char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return fail("mmap");
        memcpy(p, argv[4], strnlen(argv[4], size));
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "read") == 0) {
        size_t len = strtoul(argv[3], NULL, 0);
        int fd = shm_open(argv[2], O_RDONLY, 0);
        if (fd < 0)
            return fail("shm_open");
        char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return fail("mmap");
        fwrite(p, 1, len, stdout);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "hold") == 0) {
        int fd = shm_open(argv[2], O_RDWR, 0);
        if (fd < 0)
            return fail("shm_open");
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return fail("mmap");
        close(fd);
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    if (argc >= 3 && strcmp(argv[1], "unlink") == 0)
        return shm_unlink(argv[2]) < 0 ? fail("shm_unlink") : 0;
    fprintf(stderr, "usage: posix-shm create NAME SIZE TEXT | read NAME LEN | hold NAME | unlink NAME\n");
    return 2;
}
