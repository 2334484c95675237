// SPDX-License-Identifier: MIT
/*
 * capshm Node.js addon: the system calls behind index.js, on plain Node-API
 * (node_api.h, NAPI_VERSION 8), so one build loads on every Node >= 18.
 *
 *   create(dir, size, mode, map)      -> { handle, name, path, size, buffer }
 *   open(dir, name, readOnly, map)    -> the same
 *   close(handle, buffer)             detach buffer (if ours), unmap, close fd
 *   fd(handle)                        the region's descriptor (for sab.cc)
 *   getxattr(handle, key)             -> string
 *   setxattr(handle, key, value)
 *   wait(int32array, index, expected, timeoutMs)  -> 0 ok, 1 not-equal, 2 timed-out
 *   notify(int32array, index, count)  -> woken count
 *   waitAsync(int32array, index, expected, timeoutMs) -> Promise<0|1|2>
 *
 * index.js checks and normalizes arguments; this file checks them again, so
 * that a wrong call throws instead of crashing.  Errors are Error objects
 * with code = the errno name, errno = -errno (as Node's fs errors), syscall
 * and path.
 *
 * Memory: with map=true the region is mapped here and handed to JS as an
 * external ArrayBuffer (with map=false index.js maps it through sab.cc as a
 * SharedArrayBuffer, and this file keeps only the descriptor).  The
 * descriptor belongs to the handle (a napi_external), the mapping to the
 * ArrayBuffer: each is released by close(), or else when its JS object is
 * garbage-collected, so a forgotten region is let go, not leaked, and a
 * buffer kept after its Region is dropped stays valid.  close() detaches
 * the ArrayBuffer before unmapping, so that later accesses see a
 * zero-length buffer instead of unmapped memory.
 *
 * Read-only regions are mapped MAP_PRIVATE with PROT_READ|PROT_WRITE over
 * the O_RDONLY descriptor: pages are the region's own (coherent with the
 * writers) until this process writes one, which the kernel then copies for
 * this process only.  A JavaScript write can therefore never crash the
 * process (a PROT_READ mapping would SIGSEGV) and never reaches the region.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_LEN 255
#define DIR_MAX (PATH_MAX - NAME_MAX_LEN - 2) /* DIR/NAME fits in PATH_MAX */

/* The descriptor belongs to the handle (closed by close() or when the
 * handle is collected); the mapping belongs to the ArrayBuffer (unmapped by
 * close() or when the buffer is collected: a user may keep the buffer and
 * drop the Region).  The struct is freed when both are gone. */
typedef struct {
    atomic_int refs;       /* the handle, and the ArrayBuffer if mapped here */
    atomic_int fd;         /* -1 once closed */
    _Atomic(void *) addr;  /* NULL when not mapped here, or unmapped */
    size_t len;
} region_t;

static const napi_type_tag REGION_TAG = { 0x63617073686d0001ULL, 0x9b1f3e2a5c7d4e61ULL };

/* --- errors ------------------------------------------------------------- */

/* Throws, unless an exception is already pending. */
static void
throw_errno(napi_env env, int err, const char *syscall, const char *path)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending)
        return;
    const char *name = strerrorname_np(err);
    char codebuf[16];
    if (!name) {
        snprintf(codebuf, sizeof codebuf, "E%d", err);
        name = codebuf;
    }
    char msg[PATH_MAX + 128];
    if (path)
        snprintf(msg, sizeof msg, "%s: %s, %s '%s'", name, strerror(err), syscall, path);
    else
        snprintf(msg, sizeof msg, "%s: %s, %s", name, strerror(err), syscall);
    napi_value code, text, error, v;
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
    napi_create_error(env, code, text, &error);
    napi_create_int32(env, -err, &v);
    napi_set_named_property(env, error, "errno", v);
    napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, error, "syscall", v);
    if (path) {
        napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v);
        napi_set_named_property(env, error, "path", v);
    }
    napi_throw(env, error);
}

static void
throw_type(napi_env env, const char *msg)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending)
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
}

static void
throw_range(napi_env env, const char *msg)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending)
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
}

/* A failed napi_* call: throw something rather than return garbage. */
#define NAPI_OK(call)                                                     \
    do {                                                                  \
        if ((call) != napi_ok) {                                          \
            bool pending_ = false;                                        \
            napi_is_exception_pending(env, &pending_);                    \
            if (!pending_)                                                \
                napi_throw_error(env, NULL, "capshm: " #call " failed");  \
            return NULL;                                                  \
        }                                                                 \
    } while (0)

/* --- argument helpers ----------------------------------------------------- */

static bool
get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
    size_t argc = want;
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
        return false;
    if (argc < want) {
        throw_type(env, "capshm: missing arguments");
        return false;
    }
    return true;
}

/* A string argument into buf (NUL-terminated); false (and a throw) if it is
 * not a string or does not fit. */
static bool
get_string(napi_env env, napi_value v, char *buf, size_t cap, const char *what)
{
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
        char msg[128];
        snprintf(msg, sizeof msg, "capshm: %s must be a string", what);
        throw_type(env, msg);
        return false;
    }
    size_t len = 0;
    napi_get_value_string_utf8(env, v, NULL, 0, &len);
    if (len >= cap) {
        char msg[128];
        snprintf(msg, sizeof msg, "capshm: %s is too long", what);
        throw_range(env, msg);
        return false;
    }
    napi_get_value_string_utf8(env, v, buf, cap, &len);
    if (strlen(buf) != len) {
        char msg[128];
        snprintf(msg, sizeof msg, "capshm: %s contains a NUL character", what);
        throw_type(env, msg);
        return false;
    }
    return true;
}

static bool
get_number(napi_env env, napi_value v, double *out, const char *what)
{
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
        char msg[128];
        snprintf(msg, sizeof msg, "capshm: %s must be a number", what);
        throw_type(env, msg);
        return false;
    }
    napi_get_value_double(env, v, out);
    return true;
}

static bool
get_bool(napi_env env, napi_value v)
{
    bool b = false;
    if (napi_get_value_bool(env, v, &b) != napi_ok)
        return false;
    return b;
}

/* An integer in [lo, hi]. */
static bool
get_integer(napi_env env, napi_value v, double lo, double hi, double *out, const char *what)
{
    if (!get_number(env, v, out, what))
        return false;
    if (!isfinite(*out) || *out != floor(*out) || *out < lo || *out > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "capshm: %s must be an integer from %.0f to %.0f", what, lo, hi);
        throw_range(env, msg);
        return false;
    }
    return true;
}

static region_t *
get_region(napi_env env, napi_value v)
{
    bool ok = false;
    void *data = NULL;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_check_object_type_tag(env, v, &REGION_TAG, &ok) != napi_ok || !ok ||
        napi_get_value_external(env, v, &data) != napi_ok || !data) {
        throw_type(env, "capshm: not a region handle");
        return NULL;
    }
    return data;
}

/* --- regions -------------------------------------------------------------- */

static void
region_unref(region_t *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        free(r);
}

static void
region_close_fd(region_t *r)
{
    int fd = atomic_exchange(&r->fd, -1);
    if (fd >= 0)
        close(fd);
}

static void
region_unmap(region_t *r)
{
    void *addr = atomic_exchange(&r->addr, NULL);
    if (addr)
        munmap(addr, r->len);
}

/* The handle was collected: the descriptor goes, the mapping stays as long
 * as its ArrayBuffer. */
static void
handle_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    region_close_fd(data);
    region_unref(data);
}

/* The ArrayBuffer was collected (or its environment is going away). */
static void
buffer_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)data;
    region_unmap(hint);
    region_unref(hint);
}

static int
read_name(const char *dir, char name[NAME_MAX_LEN + 1])
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/.new", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, name, NAME_MAX_LEN);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return -1;
    }
    while (n > 0 && (name[n - 1] == '\n' || name[n - 1] == '\r'))
        n--;
    if (n <= 0) {
        errno = EPROTO;
        return -1;
    }
    name[n] = '\0';
    return 0;
}

/* { handle, name, path, size, buffer? } for an open descriptor; takes fd.
 * map: map the region here (an external ArrayBuffer); otherwise buffer is
 * left out (index.js maps it as a SharedArrayBuffer through sab.cc). */
static napi_value
make_region(napi_env env, int fd, const char *name, const char *path, size_t size,
            bool read_only, bool map)
{
    void *addr = NULL;
    if (map && size > 0) {
        addr = read_only
            ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
            : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (addr == MAP_FAILED) {
            int err = errno;
            close(fd);
            throw_errno(env, err, "mmap", path);
            return NULL;
        }
    }
    region_t *r = calloc(1, sizeof *r);
    if (!r) {
        if (addr)
            munmap(addr, size);
        close(fd);
        throw_errno(env, ENOMEM, "malloc", NULL);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    atomic_init(&r->fd, fd);
    atomic_init(&r->addr, addr);
    r->len = size;

    napi_value obj, handle, v;
    if (napi_create_external(env, r, handle_finalize, NULL, &handle) != napi_ok) {
        region_unmap(r);
        region_close_fd(r);
        free(r);
        NAPI_OK(napi_generic_failure);
    }
    NAPI_OK(napi_type_tag_object(env, handle, &REGION_TAG));
    NAPI_OK(napi_create_object(env, &obj));
    NAPI_OK(napi_set_named_property(env, obj, "handle", handle));
    NAPI_OK(napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v));
    NAPI_OK(napi_set_named_property(env, obj, "name", v));
    NAPI_OK(napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v));
    NAPI_OK(napi_set_named_property(env, obj, "path", v));
    NAPI_OK(napi_create_double(env, (double)size, &v));
    NAPI_OK(napi_set_named_property(env, obj, "size", v));
    if (map) {
        if (addr) {
            atomic_fetch_add(&r->refs, 1);
            napi_status st = napi_create_external_arraybuffer(env, addr, size, buffer_finalize,
                                                              r, &v);
            if (st != napi_ok) {
                /* Electron and V8-sandbox builds refuse external buffers.
                 * The handle keeps one reference and the descriptor. */
                region_unmap(r);
                region_close_fd(r);
                region_unref(r);
                bool pending = false;
                napi_is_exception_pending(env, &pending);
                if (!pending)
                    napi_throw_error(env, "ERR_CAPSHM_NO_EXTERNAL_BUFFERS",
                                     "capshm: this JavaScript runtime does not allow "
                                     "ArrayBuffers over external memory");
                return NULL;
            }
        } else {
            void *unused;
            NAPI_OK(napi_create_arraybuffer(env, 0, &unused, &v));
        }
        NAPI_OK(napi_set_named_property(env, obj, "buffer", v));
    }
    return obj;
}

static napi_value
js_create(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    char dir[DIR_MAX], name[NAME_MAX_LEN + 1], path[PATH_MAX];
    double size, mode;
    if (!get_args(env, info, 4, argv) || !get_string(env, argv[0], dir, sizeof dir, "dir") ||
        !get_integer(env, argv[1], 1, 9007199254740991.0, &size, "size") ||
        !get_integer(env, argv[2], 0, 07777, &mode, "mode"))
        return NULL;
    if (read_name(dir, name) < 0) {
        int err = errno;
        snprintf(path, sizeof path, "%s/.new", dir);
        throw_errno(env, err, "open", path);
        return NULL;
    }
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        throw_errno(env, ENAMETOOLONG, "open", dir);
        return NULL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        throw_errno(env, errno, "open", path);
        return NULL;
    }
    if (ftruncate(fd, (off_t)size) < 0) {
        int err = errno;
        unlink(path);
        close(fd);
        throw_errno(env, err, "ftruncate", path);
        return NULL;
    }
    return make_region(env, fd, name, path, (size_t)size, false, get_bool(env, argv[3]));
}

static napi_value
js_open(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    char dir[DIR_MAX], name[NAME_MAX_LEN + 1], path[PATH_MAX];
    if (!get_args(env, info, 4, argv) || !get_string(env, argv[0], dir, sizeof dir, "dir") ||
        !get_string(env, argv[1], name, sizeof name, "name"))
        return NULL;
    if (!name[0] || name[0] == '.' || strchr(name, '/')) {
        throw_type(env, "capshm: name must be a region name (no '/', not starting with '.')");
        return NULL;
    }
    bool read_only = get_bool(env, argv[2]);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        throw_errno(env, ENAMETOOLONG, "open", dir);
        return NULL;
    }
    int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        throw_errno(env, errno, "open", path);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        throw_errno(env, err, "fstat", path);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        throw_errno(env, EINVAL, "open", path);
        return NULL;
    }
    return make_region(env, fd, name, path, (size_t)st.st_size, read_only,
                       get_bool(env, argv[3]));
}

static napi_value
js_close(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    if (!get_args(env, info, 2, argv))
        return NULL;
    region_t *r = get_region(env, argv[0]);
    if (!r)
        return NULL;
    bool is_ab = false;
    napi_is_arraybuffer(env, argv[1], &is_ab);
    if (is_ab && atomic_load(&r->addr)) {
        /* Detach before unmapping: views then have length 0 and reads give
         * undefined instead of touching unmapped memory.  Only the
         * ArrayBuffer over this mapping may be detached. */
        void *data = NULL;
        size_t len = 0;
        bool detached = false;
        NAPI_OK(napi_is_detached_arraybuffer(env, argv[1], &detached));
        if (!detached) {
            NAPI_OK(napi_get_arraybuffer_info(env, argv[1], &data, &len));
            if (data != atomic_load(&r->addr)) {
                throw_type(env, "capshm: close(): not this region's buffer");
                return NULL;
            }
            NAPI_OK(napi_detach_arraybuffer(env, argv[1]));
        }
    }
    region_unmap(r);
    region_close_fd(r);
    return NULL;
}

static napi_value
js_fd(napi_env env, napi_callback_info info)
{
    napi_value argv[1], v;
    if (!get_args(env, info, 1, argv))
        return NULL;
    region_t *r = get_region(env, argv[0]);
    if (!r)
        return NULL;
    NAPI_OK(napi_create_int32(env, atomic_load(&r->fd), &v));
    return v;
}

/* The region's descriptor, or a throw (EBADF) after close(). */
static int
open_fd(napi_env env, region_t *r, const char *syscall)
{
    int fd = atomic_load(&r->fd);
    if (fd < 0)
        throw_errno(env, EBADF, syscall, NULL);
    return fd;
}

static napi_value
js_getxattr(napi_env env, napi_callback_info info)
{
    napi_value argv[2], v;
    char key[256], buf[4096];
    if (!get_args(env, info, 2, argv))
        return NULL;
    region_t *r = get_region(env, argv[0]);
    if (!r || !get_string(env, argv[1], key, sizeof key, "key"))
        return NULL;
    int fd = open_fd(env, r, "fgetxattr");
    if (fd < 0)
        return NULL;
    ssize_t n = fgetxattr(fd, key, buf, sizeof buf - 1);
    if (n < 0) {
        throw_errno(env, errno, "fgetxattr", key);
        return NULL;
    }
    buf[n] = '\0';
    NAPI_OK(napi_create_string_utf8(env, buf, (size_t)n, &v));
    return v;
}

static napi_value
js_setxattr(napi_env env, napi_callback_info info)
{
    napi_value argv[3];
    char key[256], val[4096];
    if (!get_args(env, info, 3, argv))
        return NULL;
    region_t *r = get_region(env, argv[0]);
    if (!r || !get_string(env, argv[1], key, sizeof key, "key") ||
        !get_string(env, argv[2], val, sizeof val, "value"))
        return NULL;
    int fd = open_fd(env, r, "fsetxattr");
    if (fd < 0)
        return NULL;
    if (fsetxattr(fd, key, val, strlen(val), 0) < 0) {
        throw_errno(env, errno, "fsetxattr", key);
        return NULL;
    }
    return NULL;
}

/* --- futex wait / notify -------------------------------------------------- */

enum { WAIT_OK = 0, WAIT_NOT_EQUAL = 1, WAIT_TIMED_OUT = 2 };

/* The address of int32array[index]; throws on anything else. */
static int32_t *
futex_word(napi_env env, napi_value array, napi_value index)
{
    bool is_ta = false;
    napi_is_typedarray(env, array, &is_ta);
    if (!is_ta) {
        throw_type(env, "capshm: the first argument must be an Int32Array");
        return NULL;
    }
    napi_typedarray_type type;
    size_t length = 0;
    void *data = NULL;
    if (napi_get_typedarray_info(env, array, &type, &length, &data, NULL, NULL) != napi_ok)
        return NULL;
    if (type != napi_int32_array) {
        throw_type(env, "capshm: the first argument must be an Int32Array");
        return NULL;
    }
    double i;
    if (!get_number(env, index, &i, "index"))
        return NULL;
    if (!(i >= 0 && i < (double)length && i == floor(i)) || !data) {
        throw_range(env, "capshm: index out of range (or the buffer was closed)");
        return NULL;
    }
    return (int32_t *)data + (size_t)i;
}

static long
sys_futex(int32_t *addr, int op, int32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* Non-private FUTEX_WAIT: the kernel keys it on the page (inode + offset for
 * a shared file mapping), so a FUTEX_WAKE from any process mapping the same
 * region wakes it.  timeout_ms < 0: forever. */
static int
futex_wait(int32_t *addr, int32_t expected, double timeout_ms)
{
    struct timespec deadline = { 0, 0 }, now, rel;
    bool forever = timeout_ms < 0 || !isfinite(timeout_ms);
    if (!forever) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        double secs = floor(timeout_ms / 1000.0);
        if (secs > 1e12)
            forever = true;
        deadline.tv_sec += (time_t)secs;
        deadline.tv_nsec += (long)((timeout_ms - secs * 1000.0) * 1e6);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    for (;;) {
        const struct timespec *ts = NULL;
        if (!forever) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            rel.tv_sec = deadline.tv_sec - now.tv_sec;
            rel.tv_nsec = deadline.tv_nsec - now.tv_nsec;
            if (rel.tv_nsec < 0) {
                rel.tv_sec--;
                rel.tv_nsec += 1000000000L;
            }
            if (rel.tv_sec < 0)
                rel.tv_sec = rel.tv_nsec = 0;
            ts = &rel;
        }
        if (sys_futex(addr, FUTEX_WAIT, expected, ts) == 0)
            return WAIT_OK;
        switch (errno) {
        case EAGAIN:
            return WAIT_NOT_EQUAL;
        case ETIMEDOUT:
            return WAIT_TIMED_OUT;
        case EINTR:
            continue;
        default:
            return -errno;
        }
    }
}

static bool
wait_args(napi_env env, napi_callback_info info, int32_t **addr, int32_t *expected,
          double *timeout, napi_value *array)
{
    napi_value argv[4];
    double e;
    if (!get_args(env, info, 4, argv))
        return false;
    *addr = futex_word(env, argv[0], argv[1]);
    if (!*addr || !get_number(env, argv[2], &e, "expected") ||
        !get_number(env, argv[3], timeout, "timeout"))
        return false;
    if (!isfinite(e) || e != floor(e) || e < INT32_MIN || e > UINT32_MAX) {
        throw_range(env, "capshm: expected must be a 32-bit integer");
        return false;
    }
    *expected = (int32_t)(e < 0 ? (int64_t)e : (int64_t)(uint32_t)e);
    if (isnan(*timeout))
        *timeout = -1;
    if (array)
        *array = argv[0];
    return true;
}

static napi_value
js_wait(napi_env env, napi_callback_info info)
{
    int32_t *addr, expected;
    double timeout;
    napi_value v;
    if (!wait_args(env, info, &addr, &expected, &timeout, NULL))
        return NULL;
    int rc = futex_wait(addr, expected, timeout);
    if (rc < 0) {
        throw_errno(env, -rc, "futex", NULL);
        return NULL;
    }
    NAPI_OK(napi_create_int32(env, rc, &v));
    return v;
}

static napi_value
js_notify(napi_env env, napi_callback_info info)
{
    napi_value argv[3], v;
    double count;
    if (!get_args(env, info, 3, argv))
        return NULL;
    int32_t *addr = futex_word(env, argv[0], argv[1]);
    if (!addr || !get_number(env, argv[2], &count, "count"))
        return NULL;
    if (isnan(count) || count < 0) {
        throw_range(env, "capshm: count must be a number >= 0");
        return NULL;
    }
    int n = count >= INT_MAX ? INT_MAX : (int)count;
    /* The kernel wakes one waiter for a count of 0: Atomics.notify wakes none. */
    long woken = n > 0 ? sys_futex(addr, FUTEX_WAKE, n, NULL) : 0;
    if (woken < 0) {
        throw_errno(env, errno, "futex", NULL);
        return NULL;
    }
    NAPI_OK(napi_create_int32(env, (int32_t)woken, &v));
    return v;
}

/* waitAsync: one detached thread per pending wait (not the libuv pool, whose
 * four threads a few long waits would take from fs and dns), reporting back
 * through one threadsafe function per environment.  The threadsafe function
 * holds the event loop open only while some wait is pending.
 *
 * A waiter may still be blocked when its environment goes away (a worker is
 * terminated, the process exits): the environment's cleanup hook sets
 * `closing`, after which waiters touch neither the threadsafe function nor
 * JavaScript; the state is freed by whichever of the hook and the last
 * waiter comes last. */
typedef struct {
    pthread_mutex_t lock;
    bool closing;     /* the environment is going away */
    int threads;      /* waiter threads still running */
    int pending;      /* waits not yet reported (main thread only) */
    napi_threadsafe_function tsfn;
} env_state_t;

typedef struct {
    env_state_t *state;
    napi_deferred deferred;
    napi_ref array; /* keeps the memory (and so the mapping) alive */
    int32_t *addr;
    int32_t expected;
    double timeout;
    int result;
} waiter_t;

static void
waiter_done(napi_env env, napi_value js_cb, void *context, void *data)
{
    (void)js_cb;
    (void)context;
    waiter_t *w = data;
    if (env) {
        napi_value v;
        if (w->result >= 0) {
            napi_create_int32(env, w->result, &v);
            napi_resolve_deferred(env, w->deferred, v);
        } else {
            napi_value code, msg;
            const char *name = strerrorname_np(-w->result);
            napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
            napi_create_string_utf8(env, strerror(-w->result), NAPI_AUTO_LENGTH, &msg);
            napi_create_error(env, code, msg, &v);
            napi_reject_deferred(env, w->deferred, v);
        }
        napi_delete_reference(env, w->array);
        if (--w->state->pending == 0)
            napi_unref_threadsafe_function(env, w->state->tsfn);
    }
    free(w);
}

static void
state_free(env_state_t *state)
{
    pthread_mutex_destroy(&state->lock);
    free(state);
}

static void *
waiter_thread(void *arg)
{
    waiter_t *w = arg;
    env_state_t *state = w->state;
    w->result = futex_wait(w->addr, w->expected, w->timeout);
    pthread_mutex_lock(&state->lock);
    /* Nonblocking: the queue is unbounded, so this never waits. */
    if (state->closing ||
        napi_call_threadsafe_function(state->tsfn, w, napi_tsfn_nonblocking) != napi_ok)
        free(w);
    bool last = --state->threads == 0 && state->closing;
    pthread_mutex_unlock(&state->lock);
    if (last)
        state_free(state);
    return NULL;
}

static void
env_cleanup(void *arg)
{
    env_state_t *state = arg;
    pthread_mutex_lock(&state->lock);
    state->closing = true;
    bool none = state->threads == 0;
    pthread_mutex_unlock(&state->lock);
    if (none)
        state_free(state);
}

static napi_value
js_wait_async(napi_env env, napi_callback_info info)
{
    env_state_t *state = NULL;
    int32_t *addr, expected;
    double timeout;
    napi_value array, promise;
    if (!wait_args(env, info, &addr, &expected, &timeout, &array))
        return NULL;
    NAPI_OK(napi_get_instance_data(env, (void **)&state));
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) {
        throw_errno(env, ENOMEM, "malloc", NULL);
        return NULL;
    }
    w->state = state;
    w->addr = addr;
    w->expected = expected;
    w->timeout = timeout;
    if (napi_create_reference(env, array, 1, &w->array) != napi_ok ||
        napi_create_promise(env, &w->deferred, &promise) != napi_ok) {
        free(w);
        NAPI_OK(napi_generic_failure);
    }
    /* Not equal already: answer without a thread. */
    if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) != expected || timeout == 0) {
        napi_value v;
        int rc = __atomic_load_n(addr, __ATOMIC_SEQ_CST) != expected ? WAIT_NOT_EQUAL
                                                                      : WAIT_TIMED_OUT;
        napi_create_int32(env, rc, &v);
        napi_resolve_deferred(env, w->deferred, v);
        napi_delete_reference(env, w->array);
        free(w);
        return promise;
    }
    pthread_mutex_lock(&state->lock);
    state->threads++;
    pthread_mutex_unlock(&state->lock);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t tid;
    int err = pthread_create(&tid, &attr, waiter_thread, w);
    pthread_attr_destroy(&attr);
    if (err) {
        pthread_mutex_lock(&state->lock);
        state->threads--;
        pthread_mutex_unlock(&state->lock);
        napi_value code, msg, e;
        napi_create_string_utf8(env, strerrorname_np(err), NAPI_AUTO_LENGTH, &code);
        napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
        napi_create_error(env, code, msg, &e);
        napi_reject_deferred(env, w->deferred, e);
        napi_delete_reference(env, w->array);
        free(w);
        return promise;
    }
    if (state->pending++ == 0)
        napi_ref_threadsafe_function(env, state->tsfn);
    return promise;
}

/* --- module ------------------------------------------------------------- */

static napi_value
init(napi_env env, napi_value exports)
{
    env_state_t *state = calloc(1, sizeof *state);
    if (!state) {
        napi_throw_error(env, NULL, "capshm: out of memory");
        return NULL;
    }
    pthread_mutex_init(&state->lock, NULL);
    napi_value name;
    NAPI_OK(napi_create_string_utf8(env, "capshm.waitAsync", NAPI_AUTO_LENGTH, &name));
    NAPI_OK(napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL,
                                            waiter_done, &state->tsfn));
    NAPI_OK(napi_unref_threadsafe_function(env, state->tsfn));
    /* Registered after the threadsafe function, so it runs before that is
     * torn down (cleanup hooks run last-in, first-out). */
    NAPI_OK(napi_add_env_cleanup_hook(env, env_cleanup, state));
    NAPI_OK(napi_set_instance_data(env, state, NULL, NULL));

    napi_property_descriptor props[] = {
        { "create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL },
        { "open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL },
        { "close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL },
        { "fd", NULL, js_fd, NULL, NULL, NULL, napi_enumerable, NULL },
        { "getxattr", NULL, js_getxattr, NULL, NULL, NULL, napi_enumerable, NULL },
        { "setxattr", NULL, js_setxattr, NULL, NULL, NULL, napi_enumerable, NULL },
        { "wait", NULL, js_wait, NULL, NULL, NULL, napi_enumerable, NULL },
        { "notify", NULL, js_notify, NULL, NULL, NULL, napi_enumerable, NULL },
        { "waitAsync", NULL, js_wait_async, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    NAPI_OK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
