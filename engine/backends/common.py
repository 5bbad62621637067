"""What the backends share besides group commit: the store's metadata record, telling a full or
read-only disk from other write failures, and the destination of a backup."""

from __future__ import annotations

import os
import time
from typing import Any

from engine import errors

FORMAT_NAME = "autobyteus-kv"
FORMAT_VERSION = 1


def out_of_space(directory: str, files: tuple[str, ...] = (), needed: int = 1 << 16) -> str | None:
    """Why a write that failed in ``directory`` most likely met a full disk; None if it does not
    look so.

    Some writers report a full disk as a plain I/O error: LMDB counts a short write as EIO, and
    SQLite reports EFBIG (the file-size limit) as SQLITE_IOERR_WRITE. The store asks here before
    calling such a failure a durability error: fewer than ``needed`` bytes free on the
    filesystem, or one of ``files`` within ``needed`` bytes of the process's file-size limit.
    """
    try:
        st = os.statvfs(directory)
    except OSError:
        pass
    else:
        blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use the reserve
        free = blocks * st.f_frsize
        if free < needed:
            return f"{free} bytes free on the filesystem of {directory}"
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        for name in files:
            try:
                size = os.path.getsize(name)
            except OSError:
                continue
            if size + needed > soft:
                return f"{name} is {size} bytes, at the file-size limit of {soft} bytes"
    return None


def unwritable(directory: str) -> str | None:
    """Why this process cannot write in ``directory`` (a read-only filesystem or missing
    permission); None if it can, or if that cannot be told."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only filesystem"
    except OSError:
        return None
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is not writable by this user"
    return None

def metadata_record(provider: str, version: int = FORMAT_VERSION) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": version,
        "backend": provider,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def check_metadata(
    meta: dict[str, Any], provider: str, where: str, newest: int = FORMAT_VERSION
) -> None:
    """Refuse a store written by another backend, another format, or a format version newer than
    ``newest`` (the backend's own: a backend may have moved on from the common one)."""
    if meta.get("format") != FORMAT_NAME:
        raise errors.IncompatibleStoreError(f"{where} is not an {FORMAT_NAME} store: {meta!r}")
    if meta.get("backend") != provider:
        raise errors.IncompatibleStoreError(
            f"{where} was created by the {meta.get('backend')!r} backend, not {provider!r}"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= newest:
        raise errors.IncompatibleStoreError(
            f"{where} has format version {version!r}; this code reads versions 1..{newest}"
        )


def backup_directory(directory: str) -> str:
    """Create the destination of a backup (absent, or an empty directory) and return its path."""
    os.makedirs(directory, exist_ok=True)
    if os.listdir(directory):
        raise errors.ConfigurationError(f"backup: {directory} is not empty")
    return directory


def create_directories(path: str) -> None:
    """``os.makedirs(path)``, durably: the parent of each directory it creates is fsynced, so a
    power cut right after a store is created cannot take the whole new store away."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    os.makedirs(path, exist_ok=True)
    for created in reversed(missing):
        fsync_directory(os.path.dirname(created))


def fsync_directory(path: str) -> None:
    """Make the entries of ``path`` durable (a no-op where the filesystem cannot sync one)."""
    import errno

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
