"""``python -m web`` for the power-loss rig, with test-only changes taken from the environment.

    POWERLOSS_COMPACT_MIN_BYTES=N  the file backend compacts once its journal passes N bytes (or
                                   the snapshot's size) instead of 4 MiB, so that a short run
                                   rewrites its snapshot often enough to be cut in the middle;
    POWERLOSS_COMPACT_EVERY_S=T    a thread of the server compacts the file store (its public
                                   ``compact()``: snapshot rewrite, then journal reset) every T
                                   seconds, for the rounds that cut the power in the middle of
                                   one: past the first few, a growing snapshot makes the journal
                                   reach the threshold only every many rounds;
    POWERLOSS_NO_DIR_FSYNC=1       ``os.fsync`` of a directory does nothing: the file backend
                                   without its directory fsync, the build that must lose data
                                   under the rig (LMDB and SQLite sync from C and are untouched).

Everything else is the real server: ``web``'s own ``__main__`` runs with the arguments given.
"""

from __future__ import annotations

import inspect
import os
import runpy
import stat
import sys
import threading
import time


def _disable_directory_fsync() -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return
        real_fsync(fd)

    os.fsync = fsync


def _compact_earlier(min_bytes: int) -> None:
    from engine.registry import load_backend

    store_class = load_backend("file")
    original = store_class.__init__
    if "compact_min_bytes" not in inspect.signature(original).parameters:
        raise SystemExit("powerloss_server: the file backend takes no compact_min_bytes any more")

    def init(self: object, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("compact_min_bytes", min_bytes)
        original(self, *args, **kwargs)

    store_class.__init__ = init  # type: ignore[method-assign]


def _compact_periodically(every_s: float) -> None:
    from engine import errors
    from engine.registry import load_backend

    store_class = load_backend("file")
    original = store_class.__init__

    def compact_forever(store: object) -> None:
        while True:
            time.sleep(every_s)
            try:
                store.compact()  # type: ignore[attr-defined]
            except errors.StoreClosedError:
                return

    def init(self: object, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        if not getattr(self, "readonly", False):
            threading.Thread(target=compact_forever, args=(self,), daemon=True,
                             name="powerloss-compact").start()

    store_class.__init__ = init  # type: ignore[method-assign]


def main() -> None:
    if os.environ.get("POWERLOSS_NO_DIR_FSYNC") == "1":
        _disable_directory_fsync()
    if os.environ.get("POWERLOSS_COMPACT_MIN_BYTES"):
        _compact_earlier(int(os.environ["POWERLOSS_COMPACT_MIN_BYTES"]))
    if os.environ.get("POWERLOSS_COMPACT_EVERY_S"):
        _compact_periodically(float(os.environ["POWERLOSS_COMPACT_EVERY_S"]))
    sys.argv = ["web", *sys.argv[1:]]
    runpy.run_module("web", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
