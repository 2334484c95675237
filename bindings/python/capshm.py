# SPDX-License-Identifier: MIT
"""capshm: shared-memory regions of a capshm mount, by name, in pure Python.

    import capshm
    with capshm.create(1 << 20) as r:        # mint a name, create, size, map
        r.buf[:5] = b"hello"                 # r.buf: a memoryview of the mapping
        print(r.name)                        # give the name to another process

    # in the other process:
    with capshm.open(name) as r:
        print(bytes(r.buf[:5]))

Only os and mmap: a region is a file on the mount ($CAPSHM_DIR, else
/run/capshm).  `buf` is zero-copy (numpy.frombuffer(r.buf, dtype=...) views
the same memory).  Errors are OSError with the errno of the failing call.
A region opened read-only is mapped read-only: writing to `buf` raises
TypeError.
"""
import errno as _errno
import json as _json
import mmap as _mmap
import os as _os

__all__ = ["create", "open", "stats", "Region", "DEFAULT_DIR"]
__version__ = "0.1.0"

DEFAULT_DIR = "/run/capshm"

_builtin_open = open


def _dir(dir):
    return _os.path.abspath(dir or _os.environ.get("CAPSHM_DIR") or DEFAULT_DIR)


def _check_name(name):
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise ValueError("not a region name: %r" % (name,))


class Region:
    """One mapped region.  Attributes: name, path, size, read_only, buf."""

    def __init__(self, fd, name, path, read_only):
        self.name = name
        self.path = path
        self.read_only = read_only
        self._fd = fd
        self.size = _os.fstat(fd).st_size
        if self.size:
            if read_only:
                self._mmap = _mmap.mmap(fd, self.size, access=_mmap.ACCESS_READ)
            else:
                self._mmap = _mmap.mmap(fd, self.size, flags=_mmap.MAP_SHARED,
                                        prot=_mmap.PROT_READ | _mmap.PROT_WRITE)
            self.buf = memoryview(self._mmap)
        else:
            self._mmap = None
            self.buf = memoryview(b"")

    @property
    def closed(self):
        return self._fd < 0

    def fileno(self):
        """The region's descriptor (it holds the region while open)."""
        self._check_open()
        return self._fd

    def _check_open(self):
        if self._fd < 0:
            raise ValueError("region is closed")

    def _getxattr(self, key):
        self._check_open()
        try:
            return _os.getxattr(self._fd, key).decode()
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.path) from None

    def _setxattr(self, key, value):
        self._check_open()
        try:
            _os.setxattr(self._fd, key, value.encode())
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.path) from None

    def ro_name(self):
        """The read-only name of the region (passthrough mounts only;
        OSError EOPNOTSUPP on a cache mount)."""
        return self._getxattr("user.capshm.ro")

    def pin(self):
        """Keep the region after its last holder is gone (owner or root)."""
        self._setxattr("user.capshm.pin", "1")

    def unpin(self):
        self._setxattr("user.capshm.pin", "0")

    def seal(self):
        """Make the region immutable (EBUSY while a writable open or
        mapping exists, this one included: seal from a read-only open)."""
        self._setxattr("user.capshm.seal", "1")

    def state(self):
        """'live', 'lingering', 'pinned' or 'sealed'."""
        return self._getxattr("user.capshm.state")

    def close(self):
        """Unmap and close.  Raises BufferError (and keeps the mapping) while
        other objects (numpy arrays, slices of buf) still use the memory."""
        if self._fd < 0:
            return
        self.buf.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                self.buf = memoryview(self._mmap)
                raise BufferError("capshm: cannot unmap %s: other objects still export "
                                  "its memory (release them first)" % self.name) from None
        _os.close(self._fd)
        self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<capshm.Region %s size=%d%s%s>" % (
            self.name, self.size, " read-only" if self.read_only else "",
            " closed" if self.closed else "")


def _mint(d):
    with _builtin_open(_os.path.join(d, ".new")) as f:
        name = f.read().strip()
    if not name:
        raise OSError(_errno.EPROTO, "empty name from .new", _os.path.join(d, ".new"))
    return name


def create(size, mode=0o600, dir=None, pin=False):
    """Mint a name, create the region (mode & ~umask), size it and map it."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError("size must be an int")
    if size < 1:
        raise ValueError("size must be >= 1")
    d = _dir(dir)
    name = _mint(d)
    path = _os.path.join(d, name)
    fd = _os.open(path, _os.O_RDWR | _os.O_CREAT | _os.O_EXCL | _os.O_CLOEXEC, mode)
    try:
        _os.ftruncate(fd, size)
        r = Region(fd, name, path, False)
    except BaseException:
        _os.close(fd)
        try:
            _os.unlink(path)
        except OSError:
            pass
        raise
    if pin:
        try:
            r.pin()
        except BaseException:
            r.close()
            try:
                _os.unlink(path)
            except OSError:
                pass
            raise
    return r


def open(name, read_only=False, dir=None):
    """Open an existing region by name (or by its read-only name, with
    read_only=True) and map it."""
    _check_name(name)
    path = _os.path.join(_dir(dir), name)
    fd = _os.open(path, (_os.O_RDONLY if read_only else _os.O_RDWR) | _os.O_CLOEXEC)
    try:
        return Region(fd, name, path, bool(read_only))
    except BaseException:
        _os.close(fd)
        raise


def stats(dir=None):
    """The mount's .stats as a dict."""
    with _builtin_open(_os.path.join(_dir(dir), ".stats")) as f:
        return _json.load(f)
