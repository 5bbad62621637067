#!/usr/bin/env python3
"""One measured run of the server (standard library only; runs inside the emulated roots too).

Starts ``python -m web --port 0`` on a provider, and measures:
- startup: process start -> first 200 on /health;
- private memory (Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup) after startup and
  after the smoke test and the load, plus the peak RSS (VmHWM);
- the HTTP smoke test of every domain (smoke.py);
- requests per second of a small keep-alive load loop on /health and on a record read, and, with
  ``--bare``, the same loop against a bare Falcon app (bare_app.py) under the same interpreter;
- with ``--grow-mb N`` (lmdb): the LMDB map size before and after writing N MB through the API,
  then a restart that reads the data back.

``--prefix`` wraps the server command (``prlimit --as=...``, a cgroup), ``--cgroup DIR`` reads
a cgroup v1 memory controller's peak and failure count. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import smoke  # noqa: E402  (a sibling script, not a package)


def private_memory(pid: int) -> dict[str, int]:
    """kB figures from smaps_rollup and status (the host's view under qemu-user: the emulator's
    own memory, translation cache included, is part of them)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].rstrip(":") in (
                        "Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
                    out[parts[0].rstrip(":")] = int(parts[1])
        out["private_kb"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmPeak:", "VmSize:", "Threads:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError as exc:
        out["error"] = str(exc)  # type: ignore[assignment]
    return out


class Proc:
    """A server process started on port 0; its stderr is drained in a thread."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: str,
                 timeout: float = 300.0) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()
            found.set()

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        if not found.wait(timeout) or not self.url:
            self.proc.kill()
            self.reader.join(5)
            raise RuntimeError("the process did not start:\n" + "".join(self.lines[-30:]))
        self.listening_s = time.monotonic() - self.t0
        host, port = self.url[len("http://"):].rsplit(":", 1)
        self.host, self.port = host, int(port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = get(self.host, self.port, "/health")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no 200 on /health")
            time.sleep(0.01)
        self.startup_s = time.monotonic() - self.t0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(10)
        return rc

    @property
    def log(self) -> str:
        return "".join(self.lines)


def get(host: str, port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (under qemu-user: the emulator's, translation
    included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(host: str, port: int, path: str, seconds: float, connections: int,
         pid: int | None = None) -> dict[str, Any]:
    """Keep-alive GETs from ``connections`` threads for ``seconds``: requests per second and,
    given the server's pid, its CPU time per request (steady on a busy machine, where requests
    per second are not)."""
    counts = [0] * connections
    failures = [0] * connections
    stop_at = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while time.monotonic() < stop_at:
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    counts[i] += 1
                else:
                    failures[i] += 1
            except (OSError, http.client.HTTPException):
                failures[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
        conn.close()

    # a short warm-up, not counted
    warm_stop = time.monotonic() + min(1.0, seconds / 5)
    while time.monotonic() < warm_stop:
        get(host, port, path)
    cpu0 = cpu_seconds(pid) if pid else None
    started = time.monotonic()
    stop_at = started + seconds
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    out = {"path": path, "requests": sum(counts), "failures": sum(failures),
           "seconds": round(elapsed, 2), "rps": round(sum(counts) / elapsed, 1)}
    if pid and sum(counts):
        cpu = cpu_seconds(pid) - (cpu0 or 0.0)
        out["cpu_ms_per_request"] = round(1000 * cpu / sum(counts), 3)
    return out


LMDB_PEEK = """
import json, os, sys, lmdb
path = os.path.join(sys.argv[1], "lmdb")
env = lmdb.open(path, readonly=True, map_size=1 << 20, max_dbs=2, subdir=True)
env.set_mapsize(0)  # adopt the map size the writer recorded in the meta page
info, stat = env.info(), env.stat()
print(json.dumps({"map_size": info["map_size"],
                  "map_used_bytes": (info["last_pgno"] + 1) * stat["psize"],
                  "file_bytes": os.path.getsize(os.path.join(path, "data.mdb"))}))
env.close()
"""


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"path": runs[0]["path"], "rounds": len(runs),
           "rps": round(median([r["rps"] for r in runs]), 1),
           "rps_each": [r["rps"] for r in runs],
           "failures": sum(r["failures"] for r in runs)}
    cpu = [r["cpu_ms_per_request"] for r in runs if "cpu_ms_per_request" in r]
    if cpu:
        out["cpu_ms_per_request"] = round(median(cpu), 3)
    return out


def store_stats(python: str, env: dict[str, str], cwd: str) -> dict[str, Any]:
    """The LMDB map size the server works with (from the meta page: a read-only peek, allowed
    while the server writes), the bytes used and the file size."""
    out = subprocess.run([python, "-c", LMDB_PEEK, env["AUTOBYTEUS_DATA_DIR"]], env=env,
                         cwd=cwd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-500:]}
    return json.loads(out.stdout)


def grow(host: str, port: int, megabytes: int) -> dict[str, Any]:
    """Writes ``megabytes`` MB of prompts (512 KiB of incompressible text each) via the API."""
    client = smoke.Client(f"http://{host}:{port}")
    chunk = 384 * 1024  # base64 -> 512 KiB
    count = max(1, megabytes * 2)
    t0 = time.monotonic()
    last: Any = None
    for i in range(count):
        content = base64.b64encode(os.urandom(chunk)).decode()
        status, body, _ = client.call("POST", "/rest/api/prompts", {
            "name": f"blob-{i}", "category": "growth", "promptContent": content})
        if status != 201:
            raise RuntimeError(f"write {i} of the growth run answered {status}: {body}")
        last = (body["id"], content[:64])
    return {"written_mb": round(count * 512 / 1024, 1), "requests": count,
            "seconds": round(time.monotonic() - t0, 1), "last": last}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return measure(args)
    except Exception as exc:  # still one JSON line: the run and what stopped it
        print(json.dumps({"label": args.label, "provider": args.provider, "preset": args.preset,
                          "prefix": args.prefix or None, "ok": False,
                          "error": f"{type(exc).__name__}: {exc}"[-3000:]}), flush=True)
        return 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="")
    parser.add_argument("--provider", default="lmdb", choices=["lmdb", "file"])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--data-dir", help="default: a fresh temporary directory")
    parser.add_argument("--cwd", help="where the server runs (default: the data directory)")
    parser.add_argument("--prefix", default="", help="command prefix for the server (shell words)")
    parser.add_argument("--cgroup", help="a cgroup v1 memory directory to read the peak from")
    parser.add_argument("--callback", choices=["none", "stub"], default="none")
    parser.add_argument("--load-seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--bare", action="store_true", help="compare with bare_app.py")
    parser.add_argument("--grow-mb", type=int, default=0)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> int:

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="edge-data-")
    cwd = args.cwd or data_dir
    secret = "edge-gateway-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOBYTEUS_", "CHANNEL_",
                                                                       "PERSISTENCE_"))}
    env.update(PERSISTENCE_PROVIDER=args.provider, AUTOBYTEUS_DATA_DIR=data_dir,
               AUTOBYTEUS_PRESET=args.preset, CHANNEL_GATEWAY_SHARED_SECRET=secret)
    prefix = shlex.split(args.prefix)
    result: dict[str, Any] = {
        "label": args.label, "provider": args.provider, "preset": args.preset,
        "machine": os.uname().machine, "python": sys.version.split()[0],
        "pointer_bits": 64 if sys.maxsize > 2**32 else 32, "prefix": args.prefix or None,
    }
    try:
        settings = subprocess.run(
            [args.python, "-c", "import json; from web.settings import Settings; "
             "s = Settings.from_env(); print(json.dumps([s.threads, s.lmdb_map_size]))"],
            env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        threads, map_size = json.loads(settings.stdout)
    except Exception:
        threads, map_size = 8, None
    result["threads"], result["lmdb_map_size_setting"] = threads, map_size

    stub = smoke.GatewayStub() if args.callback == "stub" else None
    if stub is not None:
        stub.__enter__()
        env["CHANNEL_CALLBACK_BASE_URL"] = stub.url
    try:
        server = Proc([*prefix, args.python, "-m", "web", "--port", "0"], env, cwd)
        ok = True
        try:
            result["startup_s"] = round(server.startup_s, 3)
            result["mem_after_startup"] = private_memory(server.proc.pid)
            if args.grow_mb and args.provider == "lmdb":
                result["map_before"] = store_stats(args.python, env, cwd)
            t0 = time.monotonic()
            passed = smoke.run(server.url, gateway_secret=secret, callback=args.callback,
                               stub=stub)
            result["smoke"] = {"ok": True, "checks": sum(map(len, passed.values())),
                               "domains": sorted(passed), "seconds":
                               round(time.monotonic() - t0, 2)}
            status, body = get(server.host, server.port, "/rest/api/prompts?limit=1")
            first_id = json.loads(body)["items"][0]["id"]
            if args.load_seconds > 0:
                bare = None
                if args.bare:
                    # The baseline runs beside the server (idle while the server is loaded and
                    # the other way round); rounds alternate so that a neighbour's load or the
                    # machine's drift falls on both alike. Medians are reported.
                    bare = Proc([*prefix, args.python, str(HERE / "bare_app.py"), "--threads",
                                 str(threads)], env, cwd)
                    result["bare"] = {"startup_s": round(bare.startup_s, 3),
                                      "mem": private_memory(bare.proc.pid)}
                try:
                    rounds: dict[str, list[dict[str, Any]]] = {"health": [], "read": [],
                                                               "bare": []}
                    for _ in range(args.rounds):
                        rounds["health"].append(load(server.host, server.port, "/health",
                                                     args.load_seconds, args.connections,
                                                     server.proc.pid))
                        if bare is not None:
                            rounds["bare"].append(load(bare.host, bare.port, "/health",
                                                       args.load_seconds, args.connections,
                                                       bare.proc.pid))
                        rounds["read"].append(load(server.host, server.port,
                                                   f"/rest/api/prompts/{first_id}",
                                                   args.load_seconds, args.connections,
                                                   server.proc.pid))
                finally:
                    if bare is not None:
                        bare.stop()
                result["load_health"] = summarise(rounds["health"])
                result["load_read"] = summarise(rounds["read"])
                if bare is not None:
                    result["bare"]["load"] = summarise(rounds["bare"])
                    per_round = [
                        (h["rps"] / b["rps"], r["rps"] / b["rps"])
                        for h, r, b in zip(rounds["health"], rounds["read"], rounds["bare"],
                                           strict=True) if b["rps"]
                    ]
                    result["relative_rps"] = {
                        "health_vs_bare": round(median([x[0] for x in per_round]), 3),
                        "read_vs_bare": round(median([x[1] for x in per_round]), 3),
                        "rounds": [[round(h, 3), round(r, 3)] for h, r in per_round],
                    }
                    # Requests per CPU-second relative to the bare app: the throughput ratio a
                    # CPU-bound device would see, unaffected by neighbours taking the CPU.
                    cpu = {k: result[k].get("cpu_ms_per_request") for k in ("load_health",
                                                                          "load_read")}
                    base_cpu = result["bare"]["load"].get("cpu_ms_per_request")
                    if base_cpu and all(cpu.values()):
                        result["relative_cpu"] = {
                            "health_vs_bare": round(base_cpu / cpu["load_health"], 3),
                            "read_vs_bare": round(base_cpu / cpu["load_read"], 3),
                        }
            if args.grow_mb and args.provider == "lmdb":
                result["growth"] = grow(server.host, server.port, args.grow_mb)
                result["map_after"] = store_stats(args.python, env, cwd)
            result["mem_after_load"] = private_memory(server.proc.pid)
        except Exception as exc:
            ok = False
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            rc = server.stop()
            result["server_exit"] = rc
            result["server_traceback"] = "Traceback" in server.log
            if not ok or rc != 0:
                result["server_log_tail"] = server.log[-3000:]
        if ok and args.grow_mb and args.provider == "lmdb":
            again = Proc([*prefix, args.python, "-m", "web", "--port", "0"], env, cwd)
            try:
                pid, head = result["growth"]["last"]
                status, body = get(again.host, again.port, f"/rest/api/prompts/{pid}")
                result["growth"]["reopened_startup_s"] = round(again.startup_s, 3)
                result["growth"]["read_back_after_restart"] = (
                    status == 200 and json.loads(body)["promptContent"].startswith(head))
                del result["growth"]["last"]
            finally:
                again.stop()
    finally:
        if stub is not None:
            stub.__exit__(None, None, None)

    if args.cgroup:
        cg = Path(args.cgroup)
        result["cgroup"] = {
            name: int((cg / name).read_text())
            for name in ("memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt")
            if (cg / name).exists()
        }
    result["ok"] = bool(result.get("smoke", {}).get("ok")) and result.get("server_exit") == 0 \
        and not result.get("server_traceback") and "error" not in result
    if args.grow_mb and args.provider == "lmdb" and result["ok"]:
        before = (result.get("map_before") or {}).get("map_size") or 0
        after = (result.get("map_after") or {}).get("map_size") or 0
        result["ok"] = after > before > 0 and result["growth"].get("read_back_after_restart")
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
