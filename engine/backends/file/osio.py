"""The file backend's small OS helpers: whole reads and writes on descriptors (os.write and
os.pread may do less than asked), file identities, and what a failed write means."""

from __future__ import annotations

import errno
import os

from engine import errors

FULL_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name)
)

_READ_CHUNK = 1 << 24


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def read_range(fd: int, start: int, end: int) -> bytes:
    parts = []
    while start < end:
        chunk = os.pread(fd, min(end - start, _READ_CHUNK), start)
        if not chunk:
            break
        parts.append(chunk)
        start += len(chunk)
    return b"".join(parts)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def write_failure(exc: OSError, what: str) -> errors.EngineError:
    if exc.errno in FULL_ERRNOS:
        return errors.StoreFullError(f"{what}: {exc.strerror}; nothing was committed")
    return errors.DurabilityError(f"{what}: {exc}; the write was not committed")
