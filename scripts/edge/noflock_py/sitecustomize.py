"""Put this directory on PYTHONPATH: fcntl.flock then fails with ENOLCK in every Python process
started with it, as on a filesystem without flock support (the Python-level twin of noflock.c,
usable where no C compiler is at hand, e.g. inside the emulated roots)."""

import errno
import fcntl
import os


def _no_flock(fd, operation):  # noqa: ANN001, ANN202 (a stand-in with fcntl.flock's signature)
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


fcntl.flock = _no_flock
