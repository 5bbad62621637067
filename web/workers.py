"""Several server processes on one port (``--workers N``, ``AUTOBYTEUS_WORKERS``).

One server process runs Python on one core at a time. With N workers, the parent binds the
listening socket(s) and forks N children that serve them with waitress, each with its own
threads; the kernel hands every new connection to one of the workers waiting in ``accept()``.

- The store is opened in each worker, after the fork, by the same composition root as a single
  process (``Runtime.start``, web/app.py); the parent never opens it. An LMDB environment (its
  lock file and reader slots), an SQLite connection or a PostgreSQL pool must not cross a fork.
  Each backend already serves several processes on one store: LMDB and SQLite through their own
  file locks, PostgreSQL as it serves several hosts. ``file`` refuses N > 1 (web/settings.py).
- Background work runs in every worker and is safe to: the outbox leases each entry in a write
  transaction before it sends it (the lease, stored in the entry, also outlives a worker that
  dies, and holds across hosts on PostgreSQL), and the TTL sweeper deletes a key only if it is
  still expired inside its own write transaction (engine/indexes/ttl.py).
- The parent is single-threaded and holds nothing but the sockets and its children. It reports
  "listening on ..." once every worker answered ready. A worker that dies is started again: at
  once if it had served for a while, else after a delay that doubles from 0.5 s up to 30 s, so a
  worker that cannot start (the database is gone) restarts at a bounded rate. During the first
  start, a worker that fails before it is ready (the store cannot be opened) stops everything
  with its exit code, as a single process would.
- SIGTERM or SIGINT to the parent: SIGTERM to every worker, which lets its requests in flight
  finish, stops its background workers and closes its store (group commit flushed); the parent
  waits for them (``STOP_GRACE_S``, then SIGKILL) and exits 0. A worker whose parent dies gets
  SIGTERM itself (Linux ``PR_SET_PDEATHSIG``, else noticed within a second), so no worker keeps
  serving a port nobody supervises.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from web.settings import Settings

log = logging.getLogger("web.workers")

#: A worker that served at least this long is restarted at once when it dies.
HEALTHY_AFTER_S = 10.0
#: Restart delays of a worker that died sooner: doubling from the first to the last.
RESTART_DELAY_FIRST_S = 0.5
RESTART_DELAY_MAX_S = 30.0
#: How long workers get to finish their requests and close their stores after SIGTERM.
STOP_GRACE_S = 60.0
#: How long the first start of all workers may take (opening a store can wait on PostgreSQL).
START_TIMEOUT_S = 120.0

#: serve(settings, sockets, on_ready) -> exit code: one worker's whole life (web/server.py).
ServeFn = Callable[[Settings, list[socket.socket], Callable[[], None]], int]


@dataclass
class Slot:
    """One of the N places a worker runs in; the process in it changes when one dies."""

    index: int
    pid: int | None = None
    started_at: float = 0.0
    ready: bool = False
    restart_at: float | None = None
    delay_s: float = 0.0
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


def forget_metrics_of(pid: int) -> None:
    """A dead worker's live gauges (in-flight requests) leave the shared metrics; its counters
    stay, so totals do not fall when a worker is replaced."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Supervisor:
    """The parent of ``settings.workers`` worker processes sharing ``sockets``."""

    def __init__(self, settings: Settings, sockets: list[socket.socket], serve: ServeFn,
                 *, announce: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.sockets = sockets
        self.serve = serve
        self.announce = announce
        self.slots = [Slot(i) for i in range(settings.workers)]
        self._stopping: int | None = None  # the signal that asked us to stop
        self._pid = os.getpid()

    # -- the parent ------------------------------------------------------------------------------
    def run(self) -> int:
        """Start the workers, keep them running until SIGTERM / SIGINT, stop them; exit code."""
        self._ready_r, self._ready_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._ready_r, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
        previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            for slot in self.slots:
                self._spawn(slot)
            code = self._wait_all_ready()
            if code is not None:
                return code
            self.announce()
            log.info("%d workers serving (pids %s)", len(self.slots),
                     ", ".join(str(s.pid) for s in self.slots))
            while self._stopping is None:
                self._wait(self._next_timeout())
                self._reap(starting=False)
                self._restart_due()
            log.info("stopping %d workers (signal %d)", len(self.slots), self._stopping)
            return 0
        finally:
            self._stop_all()
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
                os.close(fd)

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD and self._stopping is None:
            self._stopping = signum

    def _wait(self, timeout: float | None) -> None:
        """Sleep until a signal, a worker's ready line, or ``timeout``; read what arrived."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r, self._ready_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._ready_r, 4096):
                data += chunk
        for line in data.decode().split():
            pid = int(line)
            for slot in self.slots:
                if slot.pid == pid:
                    slot.ready = True
                    if slot.restarts:
                        log.info("worker %d (pid %d) ready", slot.index, pid)

    def _wait_all_ready(self) -> int | None:
        """None once every worker is ready; else the exit code to stop with."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(slot.ready for slot in self.slots):
            if self._stopping is not None:
                return 0
            failed = self._reap(starting=True)
            if failed is not None:
                return failed
            self._restart_due()  # one that was ready and died meanwhile
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"autobyteus-server: the workers did not start within {START_TIMEOUT_S:.0f}"
                      " s", file=sys.stderr)
                return 2
            restart_in = self._next_timeout()
            self._wait(min(left, 1.0, 1.0 if restart_in is None else restart_in))
        return None

    def _reap(self, *, starting: bool) -> int | None:
        """Collect dead workers and schedule their restarts. During the first start, the exit
        code of a worker that died before it was ready (the others are then stopped)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            slot.exits.append(code)
            forget_metrics_of(pid)
            was_ready, slot.pid, slot.ready = slot.ready, None, False
            if starting and not was_ready:
                return code if code > 0 else 2
            if self._stopping is not None:
                continue
            served_s = time.monotonic() - slot.started_at
            if was_ready and served_s >= HEALTHY_AFTER_S:
                slot.delay_s = 0.0
            else:
                slot.delay_s = min(RESTART_DELAY_MAX_S,
                                   max(RESTART_DELAY_FIRST_S, slot.delay_s * 2))
            slot.restart_at = time.monotonic() + slot.delay_s
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            log.warning("worker %d (pid %d) ended (%s) after %.1f s; starting another in %.1f s",
                        slot.index, pid, how, served_s, slot.delay_s)

    def _next_timeout(self) -> float | None:
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.restart_at is not None and slot.restart_at <= now and slot.pid is None:
                slot.restart_at = None
                slot.restarts += 1
                self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._child(slot)  # never returns
        slot.pid, slot.started_at, slot.ready = pid, time.monotonic(), False

    def _stop_all(self) -> None:
        running = [s.pid for s in self.slots if s.pid is not None]
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for pid in running:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    log.warning("worker pid %d did not stop within %.0f s: SIGKILL", pid,
                                STOP_GRACE_S)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)
        for slot in self.slots:
            slot.pid = None

    # -- a worker --------------------------------------------------------------------------------
    def _child(self, slot: Slot) -> None:
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            for fd in (self._ready_r, self._wake_r, self._wake_w):
                os.close(fd)
            _die_with_parent(self._pid)
            ready_w = self._ready_w

            def on_ready() -> None:
                os.write(ready_w, f"{os.getpid()}\n".encode())

            code = self.serve(self.settings, self.sockets, on_ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 70
        finally:
            # The parent may SIGTERM every worker while this one ends (it stops them all when one
            # fails to start): the handler's SystemExit must not escape into the parent's code,
            # which this forked process also holds.
            with contextlib.suppress(BaseException):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            with contextlib.suppress(BaseException):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when its parent ends (a SIGKILLed parent cannot forward it)."""
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    if os.getppid() != parent:  # the parent ended before the death signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()

