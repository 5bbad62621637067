"""Power-loss torture: the real server on a filesystem that forgets what was not synced.

    python -m scripts.powerloss --provider all --cuts 100          # the long form
    python -m scripts.powerloss --provider file --cuts 10 --seed 7

SIGKILL (scripts/torture.py) keeps the kernel's page cache, so it cannot see a missing fsync, a
rename whose directory was never synced, or a torn write. Here the store lives on
``scripts.powerfs``, a FUSE filesystem that keeps in memory what a disk would hold after a power
cut (a file's data once it is fsynced, a directory's entries once the directory is fsynced) and
drops the rest at a cut, tearing the last unsynced write at a 512-byte boundary in half the cuts.

Each round: mount the durable image, start the server (``scripts.powerloss_server``, which is
``python -m web``), verify every acknowledged write of torture.py's ledger and run the index check
(``engine.indexes.check``) on what it opened; let three clients write to every domain; cut the
power; SIGKILL the server while the filesystem holds every operation (so nothing done after the
cut reaches a client); unmount. The moment of the cut is one of:

- ``random``: a random time into the workload;
- ``startup``: a random time after the server process starts (opening, recovery);
- a trigger in the filesystem: ``snapshot`` (file: a random step of a snapshot rewrite and journal
  reset; the server compacts every 0.3 s in those rounds), ``lmdb-grow`` (lmdb: the commit that
  records a grown map, before or after its meta page), ``checkpoint`` (sqlite: a random step of a
  checkpoint; the round ends with SIGTERM, whose close checkpoints the WAL), ``fsync`` (every
  backend: just before the first fsync after a random time, so that the writes it was to make
  durable are lost or torn). A trigger round whose operation did not come is cut at its end.

The store is created first (server started and stopped) and the power cut right after, with no
``sync``: a new store must survive on the fsyncs of its own creation (the engine fsyncs the
parent of every directory it creates; ``--sync-after-create`` syncs everything first, as a
clean shutdown of the machine would).
At the end: the outbox is drained, the server stopped with SIGTERM, the power cut after that
clean stop, and ``python -m tools check`` must exit 0 on what survived.

``--no-dir-fsync`` runs the file backend with its directory fsync disabled: the rig must then
report lost acknowledged writes (the proof that it can fail).
"""

from __future__ import annotations

import argparse
import functools
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from scripts.serverproc import GatewayStub, ServerProcess, run_tool, server_env
from scripts.torture import Ledger, Stats, Violation, Worker, check_store, verify, wait_delivered

PROVIDERS = ("lmdb", "file", "sqlite")
#: the moment of a cut, per provider, with its weight: ``random`` and ``startup`` are the driver's,
#: the others are scripts.powerfs triggers
MOMENTS = {
    "file": {"random": 4, "startup": 1, "snapshot": 3, "fsync": 2},
    "lmdb": {"random": 4, "startup": 1, "lmdb-grow": 3, "fsync": 2},
    "sqlite": {"random": 4, "startup": 1, "checkpoint": 3, "fsync": 2},
}
#: the countdown of a trigger is drawn from 1..this (mutating operations from the matching one)
COUNTDOWN_MAX = {"snapshot": 14, "lmdb-grow": 2, "checkpoint": 8, "fsync": 1}
SERVER_COMMAND = [sys.executable, "-m", "scripts.powerloss_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torn(cause: str) -> bool:
    """Whether a cut left a part of a write (not none of it)."""
    return "torn:" in cause and "torn: 0 of" not in cause


@dataclass
class PowerStats(Stats):
    cuts: Counter[str] = field(default_factory=Counter)  # by moment
    torn: int = 0

    def line(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.cuts.items()))
        return (f"{self.provider}: {sum(self.cuts.values())} power cuts ({kinds}; {self.torn} "
                f"with a torn write), {self.requests} requests, {self.writes_acknowledged} writes "
                f"acknowledged, {self.unanswered} unanswered, {self.verified} acknowledged writes "
                f"verified, {self.checks} index checks, {self.replies_delivered} replies "
                f"delivered, {self.seconds:.0f} s")


class PowerRig:
    """One mount of ``scripts.powerfs`` at a time, over one durable image."""

    def __init__(self, workdir: str, log: Callable[[str], None]) -> None:
        self.mountpoint = os.path.join(workdir, "mnt")
        self.image = os.path.join(workdir, "image.pickle")
        self.fs_log = os.path.join(workdir, "powerfs.log")
        os.makedirs(self.mountpoint, exist_ok=True)
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.cause: str | None = None

    def up(self, trigger: str | None = None, countdown: int = 1, tear: bool = False,
           seed: int = 0) -> None:
        command = [sys.executable, "-m", "scripts.powerfs", self.mountpoint, self.image,
                   "--seed", str(seed)]
        if trigger:
            command += ["--trigger", trigger, "--countdown", str(countdown)]
        if tear:
            command.append("--tear")
        self.cause = None
        self.lines = queue.Queue()
        with open(self.fs_log, "a") as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, cwd=os.getcwd())
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        line = self._next(60)
        if line != "ready":
            raise RuntimeError(f"powerfs did not mount: {line!r}; see {self.fs_log}")

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")  # the process ended

    def _next(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def _send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def _await(self, prefix: str, timeout: float = 60) -> str:
        while True:
            line = self._next(timeout)
            if line is None or line == "":
                raise RuntimeError(f"powerfs: no {prefix!r} ({line!r}); see {self.fs_log}")
            if line.startswith("cut ") and line != "cut already" and self.cause is None:
                self.cause = line[4:]
            if line.startswith(prefix):
                return line

    def wait_trigger(self, timeout: float) -> bool:
        """Whether the filesystem cut the power by itself within ``timeout`` seconds."""
        if self.cause is not None:
            return True
        line = self._next(timeout)
        if line and line.startswith("cut "):
            self.cause = line[4:]
            return True
        return False

    def cut(self) -> str:
        if self.cause is None:
            self._send("cut")
            self._await("cut")
        assert self.cause is not None
        return self.cause

    def arm(self) -> None:
        self._send("arm")
        self._await("armed")

    def sync(self) -> None:
        self._send("sync")
        self._await("synced")

    def down(self, server: ServerProcess | None) -> str:
        """Cut (unless cut already), kill the server, release the filesystem, unmount."""
        cause = self.cut()
        if server is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGKILL)  # before the release: it runs no more code
        self._send("release")
        self._await("released")
        if server is not None:
            server.kill()
        self.unmount()
        return cause

    def unmount(self) -> None:
        if self.proc is None:
            return
        for _attempt in range(50):
            done = subprocess.run(["fusermount", "-u", self.mountpoint], capture_output=True,
                                  text=True)
            if done.returncode == 0 or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["fusermount", "-u", "-z", self.mountpoint], capture_output=True)
        self.proc.wait(60)
        self.proc = None


@functools.cache
def fuse_missing() -> str | None:
    """Why this machine cannot run the rig, or None (after mounting scripts.powerfs once)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount") is None:
        return "fusermount is missing (Debian: apt-get install fuse libfuse2)"
    try:
        import fuse  # noqa: F401
    except (ImportError, OSError) as exc:  # fusepy raises OSError without libfuse
        return f"fusepy or libfuse2 is missing: {exc}"
    probe = tempfile.mkdtemp(prefix="autobyteus-powerfs-probe-")
    rig = PowerRig(probe, lambda line: None)
    try:
        rig.up()
        rig.down(None)
    except (RuntimeError, OSError) as exc:
        with open(rig.fs_log, errors="replace") as f:
            return f"mounting a FUSE filesystem failed: {exc}: {f.read()[-500:]}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None


def powerloss(provider: str, cuts: int, *, workdir: str, seed: int | None = None,
              threads: int = 3, max_run_s: float = 1.0, no_dir_fsync: bool = False,
              sync_after_create: bool = False, compact_min_bytes: int = 64 << 10,
              deliver_timeout: float = 60.0,
              log: Callable[[str], None] = print, verbose: bool = False) -> PowerStats:
    """Run ``cuts`` power cuts against one fresh store; raises Violation on any loss."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    stats = PowerStats(provider=provider)
    started = time.monotonic()
    rig = PowerRig(os.path.join(workdir, f"powerloss-{provider}"), log)
    gateway = GatewayStub()
    extra = {"CHANNEL_CALLBACK_BASE_URL": gateway.base_url, "CHANNEL_CALLBACK_TIMEOUT_MS": "1000",
             "AUTOBYTEUS_THREADS": "6"}
    if provider == "lmdb":
        extra["AUTOBYTEUS_LMDB_MAP_SIZE"] = str(1 << 20)  # small, so that it grows often
    if provider == "file":
        extra["POWERLOSS_COMPACT_MIN_BYTES"] = str(compact_min_bytes)  # frequent rewrites
    if no_dir_fsync:
        extra["POWERLOSS_NO_DIR_FSYNC"] = "1"
    env = server_env(provider, os.path.join(rig.mountpoint, "data"), None, **extra)
    ledgers = [Ledger(f"w{i}") for i in range(threads)]
    log(f"[powerloss] {provider}: seed {seed}, {cuts} power cuts, {threads} client threads"
        + (", directory fsync DISABLED" if no_dir_fsync else ""))
    server: ServerProcess | None = None

    def start_server(round_env: dict[str, str] | None = None) -> ServerProcess:
        port = _free_port()
        server = ServerProcess(round_env or env,
                               command=[*SERVER_COMMAND, "--port", str(port)])
        try:
            server.wait_ready()
        except RuntimeError as exc:  # it printed no address: the store did not open
            raise Violation(f"the server did not start after a power cut: {exc}") from exc
        # Not the address it printed: another thread's log line can land between the text of
        # "listening on ..." and its newline (print writes them apart), gluing digits to the port.
        server.url = f"http://127.0.0.1:{port}"
        return server

    try:
        # the store's creation, then a clean shutdown (sync) and a cut
        rig.up(seed=rng.randrange(1 << 30))
        os.makedirs(env["AUTOBYTEUS_DATA_DIR"])  # the operator's directory, synced
        rig.sync()
        server = start_server()
        if server.stop() != 0:
            raise Violation(f"the server did not stop cleanly:\n{server.text()[-3000:]}")
        if sync_after_create:
            rig.sync()
        rig.down(server)
        server = None
        while sum(stats.cuts.values()) < cuts:
            moment = rng.choices(list(MOMENTS[provider]), list(MOMENTS[provider].values()))[0]
            trigger = moment if moment in COUNTDOWN_MAX else None
            tear = rng.random() < 0.5
            rig.up(trigger=trigger, countdown=rng.randint(1, COUNTDOWN_MAX.get(moment, 1)),
                   tear=tear, seed=rng.randrange(1 << 30))
            if moment == "startup":
                server = ServerProcess(env, command=[*SERVER_COMMAND, "--port", "0"])
                time.sleep(rng.uniform(0.0, 1.0))
                cause = rig.down(server)
                server = None
                stats.cuts["startup"] += 1
                stats.torn += _torn(cause)
                if verbose:
                    log(f"[powerloss] cut at startup: {cause}")
                continue
            round_env = env
            if moment == "snapshot":  # compactions often enough to cut one in the middle
                round_env = {**env, "POWERLOSS_COMPACT_EVERY_S": "0.3"}
            server = start_server(round_env)
            client = server.client()
            try:
                verify(client, ledgers, stats, gateway, rng)
            finally:
                client.close()
            check_store(provider, env["AUTOBYTEUS_DATA_DIR"], None)
            stats.checks += 1
            if moment != "fsync":
                rig.arm()  # the trigger counts from here: the verification is not what is cut
            stop = threading.Event()
            lock = threading.Lock()
            workers = [Worker(led, server.client(), random.Random(rng.random()), stats, stop,
                              lock) for led in ledgers]
            runners = [threading.Thread(target=w.run, daemon=True) for w in workers]
            for t in runners:
                t.start()
            run_s = rng.uniform(0.05, max_run_s)
            if moment == "random":
                time.sleep(run_s)
            elif moment == "fsync":  # the next fsync after a random time
                time.sleep(run_s)
                rig.arm()
                rig.wait_trigger(5)
            elif not rig.wait_trigger(run_s if moment != "checkpoint" else run_s / 2):
                if moment == "checkpoint":
                    server.proc.send_signal(signal.SIGTERM)  # its close checkpoints the WAL
                    deadline = time.monotonic() + 30
                    while not rig.wait_trigger(0.05) and server.alive() \
                            and time.monotonic() < deadline:
                        pass
            cause = rig.down(server)
            stop.set()
            for t in runners:
                t.join(60)
            for w in workers:
                w.c.close()
            errors = [e for w in workers for e in w.errors]
            if "Traceback" in server.text():
                errors.append("the server logged a traceback:\n" + server.text()[-3000:])
            server = None
            stats.rounds += 1
            stats.cuts[moment if cause.startswith("trigger") or moment == "random"
                       else f"{moment} (not reached)"] += 1
            stats.torn += _torn(cause)
            if verbose:
                log(f"[powerloss] {moment} round: {cause}")
            if errors:
                stats.problems.extend(errors)
                raise Violation("answers while the server was up:\n" + "\n".join(errors[:20]))
            n = sum(stats.cuts.values())
            if n % 10 == 0:
                stats.seconds = time.monotonic() - started
                log(f"[powerloss] {stats.line()}")
        # the end: verify, drain the outbox, stop cleanly, cut after the clean stop, check
        rig.up(seed=rng.randrange(1 << 30))
        server = start_server()
        client = server.client()
        try:
            verify(client, ledgers, stats, gateway, rng)
            missing = wait_delivered(client, ledgers, gateway, deliver_timeout)
            if missing:
                raise Violation(f"{len(missing)} acknowledged replies never delivered")
        finally:
            client.close()
        if server.stop() != 0:
            raise Violation(f"the server exited badly on SIGTERM:\n{server.text()[-3000:]}")
        rig.down(server)
        server = None
        rig.up(seed=rng.randrange(1 << 30))
        out = run_tool(env, "check")
        if out.returncode != 0:
            raise Violation(f"python -m tools check exited {out.returncode} after the last cut:"
                            f"\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        stats.checks += 1
        server = start_server()
        client = server.client()
        try:
            verify(client, ledgers, stats, gateway, rng)
        finally:
            client.close()
        server.stop()
        rig.down(server)
        server = None
        stats.replies_delivered = len(gateway.keys())
    except Violation:
        log(f"[powerloss] {provider}: FAILED with seed {seed} after {stats.line()}")
        raise
    finally:
        if server is not None and server.alive():
            server.proc.send_signal(signal.SIGKILL)
        if rig.proc is not None:
            try:
                rig.down(server)
            except (RuntimeError, OSError):
                rig.unmount()
        gateway.close()
        stats.seconds = time.monotonic() - started
    log(f"[powerloss] {stats.line()}")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.powerloss", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", action="append", choices=(*PROVIDERS, "all"),
                        help="repeatable; default all")
    parser.add_argument("--cuts", type=int, default=100, help="power cuts per provider")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--threads", type=int, default=3, help="client threads")
    parser.add_argument("--max-run", type=float, default=1.0,
                        help="longest time (s) between a restart's verification and its cut")
    parser.add_argument("--no-dir-fsync", action="store_true",
                        help="disable the file backend's directory fsync (must fail)")
    parser.add_argument("--sync-after-create", action="store_true",
                        help="sync everything after the store's creation, before the first cut")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every cut's cause")
    parser.add_argument("--workdir", help="where images and logs go (default: a temporary one)")
    args = parser.parse_args(argv)
    reason = fuse_missing()
    if reason:
        print(f"[powerloss] cannot run: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    providers = args.provider or ["all"]
    if "all" in providers:
        providers = list(PROVIDERS)
    workdir = args.workdir or tempfile.mkdtemp(prefix="autobyteus-powerloss-")
    failed = False
    results = []
    try:
        for provider in providers:
            try:
                results.append(powerloss(provider, args.cuts, workdir=workdir, seed=args.seed,
                                         threads=args.threads, max_run_s=args.max_run,
                                         no_dir_fsync=args.no_dir_fsync,
                                         sync_after_create=args.sync_after_create,
                                         verbose=args.verbose))
            except Violation as exc:
                failed = True
                print(f"[powerloss] {provider}: VIOLATION\n{exc}", file=sys.stderr)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(s.line() for s in results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
