#!/usr/bin/python3
"""A FUSE passthrough filesystem whose flock() answers ENOLCK, like a network filesystem without a
lock manager: a real mount where the kernel's flock() call fails (used by termux.sh).

    /usr/bin/python3 fuse_noflock.py BACKING_DIR MOUNTPOINT     (needs /dev/fuse, python3-fusepy)

fusepy 3.0 does not expose libfuse 2.9's ``flock`` operation; it is added here by extending the
operations structure with the members that follow ``ioctl`` in libfuse 2.9 (poll, write_buf,
read_buf, flock, fallocate). With ``flock`` set, libfuse asks the kernel to send flock requests to
this process (FUSE_CAP_FLOCK_LOCKS) instead of locking locally.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Any

import fusepy

#: libfuse 2.9's struct fuse_operations: fusepy's members, then those after ioctl.
_ALL_FIELDS = list(fusepy.fuse_operations._fields_) + [
    ("poll", ctypes.c_void_p),
    ("write_buf", ctypes.c_void_p),
    ("read_buf", ctypes.c_void_p),
    ("flock", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p,
                               ctypes.POINTER(fusepy.fuse_file_info), ctypes.c_int)),
    ("fallocate", ctypes.c_void_p),
]


class _Fuse(fusepy.FUSE):  # type: ignore[misc]
    def flock(self, path: bytes, fip: Any, op: int) -> int:
        return self.operations("flock", path.decode(self.encoding), fip.contents.fh, op)


class NoFlockPassthrough(fusepy.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def flock(self, path: str, fh: int, op: int) -> int:
        raise fusepy.FuseOSError(errno.ENOLCK)

    def access(self, path: str, mode: int) -> None:
        if not os.access(self._p(path), mode):
            raise fusepy.FuseOSError(errno.EACCES)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._p(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._p(path), uid, gid)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._p(path))
        except OSError as exc:
            raise fusepy.FuseOSError(exc.errno) from None
        return {k: getattr(st, k) for k in (
            "st_atime_ns", "st_ctime_ns", "st_gid", "st_mode", "st_mtime_ns", "st_nlink",
            "st_size", "st_uid")} | {"st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
                                     "st_ctime": st.st_ctime_ns}

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._p(path), mode)

    def open(self, path: str, flags: int) -> int:
        return os.open(self._p(path), flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._p(path))]

    def release(self, path: str, fh: int) -> None:
        os.close(fh)

    def rename(self, old: str, new: str) -> None:
        os.replace(self._p(old), self._p(new))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def statfs(self, path: str) -> dict[str, Any]:
        sv = os.statvfs(self._p(path))
        return {k: getattr(sv, k) for k in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
            "f_flag", "f_frsize", "f_namemax")}

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        with open(self._p(path), "r+b") as f:
            f.truncate(length)

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def utimens(self, path: str, times: Any = None) -> None:
        os.utime(self._p(path), ns=times) if times else os.utime(self._p(path))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        os.fsync(fh)

    def flush(self, path: str, fh: int) -> None:
        pass


def main() -> None:
    backing, mountpoint = sys.argv[1], sys.argv[2]
    # FUSE() builds its operations from the module's fuse_operations: use the full structure.
    fusepy.fuse_operations = type("fuse_operations", (ctypes.Structure,),
                                  {"_fields_": _ALL_FIELDS})
    _Fuse(NoFlockPassthrough(backing), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
