"""HTTP workloads: the real server (``python -m web``, lmdb, durable) against a bare Falcon app.

Both servers are waitress with the same number of threads and run at the same time as separate
processes; the load generator alternates between them. Rows ending ``_w2`` serve both sides with 2
worker processes (``--workers 2``; the bare app pre-forked the same way), rows with ``_pg`` run the
server on PostgreSQL (a throwaway cluster, tests/pgcluster.py, or ``AUTOBYTEUS_BENCH_DATABASE_URL``,
whose database is then used as it is), and rows ending ``_2v1`` compare the server with 2 workers to
the same server with 1 (both on lmdb): the scaling of one host. Every request of a workload is sent,
byte for byte, to both: the bare app reads the body and answers a constant JSON document, so the
ratio is the cost of our routing, parsing, domain rules and storage over a minimal Falcon
response.

Load generator: Debian's ``wrk`` (``apt-get install wrk``) with 16 connections over 2 threads.
Requests are generated beforehand in Python and fed to wrk by a Lua script as raw HTTP/1.1
requests; this is how the signed ingress requests (an HMAC over a timestamp and the body, each
with a unique message id) reach wrk, whose Lua cannot compute an HMAC. Without wrk (or with
``--load-generator python``) a small threaded Python generator is used: one thread per
connection, keep-alive ``http.client`` connections, each request timed. It needs CPU of its own
(under the GIL) and so saturates sooner than wrk: its ratios understate the gap.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tools.bench.core import Comparison, Config, Sample, Side, Target, Tmp, p99_ms

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bench-gateway-secret"
ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "bench-acc",
         "peerId": "bench-peer"}
CONVERSATION = {"agentId": "bench-agent", "llmModel": "gpt-bench", "promptTokens": 120,
                "completionTokens": 80, "promptCost": 0.0012, "completionCost": 0.0024}
#: The conversation above with a token count that validation refuses (400, nothing stored).
REFUSED_CONVERSATION = {**CONVERSATION, "promptTokens": -120}

WRK_SCRIPT = r"""
-- Raw HTTP/1.1 requests from a file (separated by NUL bytes); wrk thread k of n sends entries
-- k, k+n, k+2n ... in turn, wrapping around at the end.
local counter = 0
local reqs = {}
local pos = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local i, start = 0, 1
  while start <= #data do
    local stop = string.find(data, "\0", start, true) or (#data + 1)
    if i % nthreads == tid then
      reqs[#reqs + 1] = string.sub(data, start, stop - 1)
    end
    i = i + 1
    start = stop + 1
  end
  if #reqs == 0 then reqs[1] = string.sub(data, 1, (string.find(data, "\0", 1, true) or 0) - 1) end
end

function request()
  pos = pos + 1
  if pos > #reqs then pos = 1 end
  return reqs[pos]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# -- servers ---------------------------------------------------------------------------------
class ServerProcess:
    """A server started as a child process that prints ``listening on http://...``."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.url = ""
        ready = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if len(self.log) < 2000:
                    self.log.append(line)
                if not self.url:
                    m = re.search(r"listening on (http://\S+)", line)
                    if m:
                        self.url = m.group(1)
                        ready.set()
            ready.set()

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"{argv} did not start:\n" + "".join(self.log[-30:]))
        m = re.match(r"http://([^:/]+):(\d+)", self.url)
        assert m
        self.host, self.port = m.group(1), int(m.group(2))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None


#: Settings given to every server the bench starts (``--server-env``), e.g. to measure a
#: switch's cost (AUTOBYTEUS_ACCESS_LOG=0); the caller's own AUTOBYTEUS_* never leak in.
SERVER_SETTINGS: dict[str, str] = {}


def server_env(data_dir: str, provider: str = "lmdb", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOBYTEUS_", "CHANNEL_"))}
    env.update(SERVER_SETTINGS)
    env.update(PERSISTENCE_PROVIDER=provider, AUTOBYTEUS_DATA_DIR=data_dir, **extra)
    return env


def start_ours(tmp: Tmp, threads: int, workers: int = 1, provider: str = "lmdb",
               data_dir: str | None = None) -> ServerProcess:
    extra = dict(CHANNEL_GATEWAY_SHARED_SECRET=SECRET)
    if provider == "postgresql":
        extra.update(AUTOBYTEUS_DATABASE_URL=postgresql_url())
    env = server_env(data_dir or tmp.new("server"), provider, **extra)
    return ServerProcess([sys.executable, "-m", "web", "--port", "0", "--threads", str(threads),
                          "--workers", str(workers)], env)


def start_bare(threads: int, workers: int = 1) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "tools.bench.bare_app", "--port", "0",
                          "--threads", str(threads), "--workers", str(workers)],
                         dict(os.environ))


_pg: dict[str, Any] = {}


def postgresql_url() -> str:
    """A fresh database for one server: on ``AUTOBYTEUS_BENCH_DATABASE_URL`` as given, else on a
    throwaway cluster started once per run (stopped at exit)."""
    given = os.environ.get("AUTOBYTEUS_BENCH_DATABASE_URL")
    if given:
        return given
    if "cluster" not in _pg:
        import atexit

        from tests.pgcluster import PgCluster

        _pg["cluster"] = PgCluster.from_env_or_start()
        _pg["n"] = itertools.count()
        atexit.register(_pg["cluster"].stop)
    return str(_pg["cluster"].create_database(f"bench_http_{os.getpid()}_{next(_pg['n'])}"))


# -- requests --------------------------------------------------------------------------------
Request = tuple[str, str, dict[str, str], bytes]  # method, path, headers, body


def raw_request(req: Request, host: str) -> bytes:
    method, path, headers, body = req
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_post(path: str, payload: Any) -> Request:
    return ("POST", path, {"Content-Type": "application/json"}, json.dumps(payload).encode())


_run_ids = itertools.count()


def ingress_requests(n: int) -> list[Request]:
    """``n`` signed inbound messages with unique ids, stamped now (valid for 300 s)."""
    from domains.channel import signing

    run = f"{os.getpid()}-{next(_run_ids)}-{time.time_ns()}"
    stamp = str(int(time.time()))
    out = []
    for i in range(n):
        body = json.dumps({**ROUTE, "peerType": "USER", "externalMessageId": f"{run}-{i}",
                           "content": "hello from the benchmark",
                           "receivedAt": "2026-02-22T10:15:30.123Z"}).encode()
        out.append(("POST", "/rest/api/channel-ingress/v1/messages", {
            "Content-Type": "application/json",
            "x-autobyteus-gateway-timestamp": stamp,
            "x-autobyteus-gateway-signature": signing.sign(SECRET, stamp, body),
        }, body))
    return out


# -- load generators -------------------------------------------------------------------------
def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(server: ServerProcess, reqs: list[Request], cfg: Config, workdir: str,
            refusals_expected: bool = False) -> Sample:
    threads = 2
    script = os.path.join(workdir, "raw.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
    reqfile = os.path.join(workdir, "requests.bin")
    host = f"{server.host}:{server.port}"
    with open(reqfile, "wb") as f:
        f.write(b"\0".join(raw_request(r, host) for r in reqs))
    seconds = max(1, round(cfg.http_seconds))  # wrk takes whole seconds
    argv = ["wrk", "-t", str(threads), "-c", str(cfg.http_connections), "-d", f"{seconds}s",
            "--timeout", "10s", "-s", script, server.url, "--", reqfile, str(threads)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=cfg.http_seconds + 60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    r = json.loads(lines[-1])
    # wrk counts every answer outside 2xx/3xx as a status error: where refusals are the point
    # (the 400 reference), they are answers, and the setup checked that they are 400s.
    kinds: tuple[str, ...] = ("connect_errors", "read_errors", "write_errors", "timeouts")
    if not refusals_expected:
        kinds = ("status_errors", *kinds)
    errors = sum(r[k] for k in kinds)
    if errors > r["requests"] * 0.01:
        raise RuntimeError(f"wrk saw {errors} errors of {r['requests']} requests: {r}")
    return Sample({"ops_per_s": r["requests"] / (r["duration_us"] / 1e6),
                   "p99_ms": r["p99_us"] / 1000.0},
                  {"requests": r["requests"], "errors": errors, "p50_ms": r["p50_us"] / 1000,
                   "max_ms": r["max_us"] / 1000, "distinct_requests": len(reqs),
                   "generator": "wrk"})


def run_python_load(server: ServerProcess, reqs: list[Request], cfg: Config,
                    refusals_expected: bool = False) -> Sample:
    """One thread per connection, keep-alive, each request timed."""
    conns = cfg.http_connections
    deadline = time.perf_counter() + cfg.http_seconds
    lats: list[list[float]] = [[] for _ in range(conns)]
    errors = [0] * conns
    barrier = threading.Barrier(conns)

    def worker(c: int) -> None:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        mine = lats[c]
        pc = time.perf_counter
        k = c
        barrier.wait()
        while True:
            method, path, headers, body = reqs[k % len(reqs)]
            k += conns
            t0 = pc()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= (500 if refusals_expected else 400):
                    errors[c] += 1
            except (OSError, http.client.HTTPException):
                errors[c] += 1
                conn.close()
                conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
            t1 = pc()
            mine.append(t1 - t0)
            if t1 >= deadline:
                break
        conn.close()

    start = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(conns)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    all_lat = [x for lst in lats for x in lst]
    total_errors = sum(errors)
    if total_errors > len(all_lat) * 0.01:
        raise RuntimeError(f"{total_errors} errors of {len(all_lat)} requests")
    return Sample({"ops_per_s": len(all_lat) / elapsed, "p99_ms": p99_ms(all_lat)},
                  {"requests": len(all_lat), "errors": total_errors,
                   "distinct_requests": len(reqs), "generator": "python"})


def load(server: ServerProcess, reqs: list[Request], cfg: Config, workdir: str,
         refusals_expected: bool = False) -> Sample:
    use_wrk = cfg.load_generator == "wrk" or (cfg.load_generator == "auto" and have_wrk())
    if use_wrk:
        return run_wrk(server, reqs, cfg, workdir, refusals_expected)
    return run_python_load(server, reqs, cfg, refusals_expected)


# -- workloads -------------------------------------------------------------------------------
def prepare(kind: str, ours: ServerProcess) -> list[Request]:
    """Make the state ``kind`` needs on a server of ours; its fixed requests (none: fresh signed
    ingress requests per run)."""
    if kind == "get_prompt":
        status, prompt = ours.call("POST", "/rest/api/prompts", {
            "name": "bench", "category": "bench",
            "promptContent": "You are a helpful assistant. " * 8,
            "suitableForModels": "gpt-bench"})
        assert status == 201, prompt
        return [("GET", f"/rest/api/prompts/{prompt['id']}", {}, b"")]
    if kind == "post_usage":
        return [json_post("/rest/api/token-usage/conversations", CONVERSATION)]
    if kind == "post_refused":
        # The same route and a body of the same size that validation refuses (400): everything
        # a usage POST costs except the write.
        try:
            ours.call("POST", "/rest/api/token-usage/conversations", REFUSED_CONVERSATION)
            raise AssertionError("the refused conversation was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400, exc
        return [json_post("/rest/api/token-usage/conversations", REFUSED_CONVERSATION)]
    status, _ = ours.call("PUT", "/rest/api/channel-bindings",
                          {**ROUTE, "targetType": "AGENT", "agentId": "bench-agent"})
    assert status in (200, 201)
    return []


def http_workload(kind: str, workers: int = 1, provider: str = "lmdb",
                  baseline_workers: int | None = None, baseline_ours: bool = False) -> Any:
    """Our server (``workers`` processes on ``provider``) against the bare app served by as many
    processes, or, with ``baseline_ours``, against our own server on lmdb with
    ``baseline_workers`` processes."""
    @contextmanager
    def setup(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
        with ExitStack() as stack:
            ours = start_ours(tmp, cfg.http_threads, workers, provider)
            stack.callback(ours.stop)
            if baseline_ours:
                other = start_ours(tmp, cfg.http_threads, baseline_workers or 1)
            else:
                other = start_bare(cfg.http_threads, workers)
            stack.callback(other.stop)
            workdir = tmp.new("wrk")
            fixed = prepare(kind, ours)
            other_fixed = prepare(kind, other) if baseline_ours else fixed
            # Unique messages per run: enough that a run at a few thousand per second does not
            # wrap around (a wrapped request is a duplicate, answered without a write).
            per_run = max(2_000, int(cfg.http_seconds * 4_000 * max(workers, 1)))
            refused = kind == "post_refused"
            yield (lambda: load(ours, fixed or ingress_requests(per_run), cfg, workdir,
                                refused)), \
                (lambda: load(other, other_fixed or ingress_requests(per_run), cfg, workdir,
                              refused and baseline_ours))

    return setup


#: Prompts stored before the backend-against-backend write load starts.
PREFILLED_PROMPTS = 10_000
#: Seconds of each round of that load, at least.
BACKEND_SECONDS = 10.0


def prefill_prompts(provider: str, data_dir: str, n: int) -> None:
    """``n`` prompts written in process (not durably: this is set-up, not the measurement)."""
    import engine
    from domains.prompts.commands import CreatePrompt
    from domains.prompts.service import PromptService
    from domains.shapes import parse

    store = engine.open_store(provider, data_dir=data_dir, sync=False)
    try:
        service = PromptService(store)
        for i in range(n):
            service.create(parse(CreatePrompt, {
                "name": f"prefill-{i}", "category": "bench",
                "promptContent": f"You are assistant number {i}. " * 8,
                "suitableForModels": "gpt-bench"}))
    finally:
        store.close()


@contextmanager
def backend_write_load(cfg: Config, tmp: Tmp) -> Iterator[tuple[Side, Side]]:
    """The same signed ingress load on two real servers, file and lmdb, each holding
    PREFILLED_PROMPTS prompts: the subject is the file backend, the baseline LMDB."""
    with ExitStack() as stack:
        servers = {}
        for provider in ("file", "lmdb"):
            data_dir = tmp.new(f"server-{provider}")
            prefill_prompts(provider, data_dir, PREFILLED_PROMPTS)
            server = start_ours(tmp, cfg.http_threads, provider=provider, data_dir=data_dir)
            stack.callback(server.stop)
            status, _ = server.call("PUT", "/rest/api/channel-bindings",
                                    {**ROUTE, "targetType": "AGENT", "agentId": "bench-agent"})
            assert status in (200, 201)
            servers[provider] = server
        workdir = tmp.new("wrk")
        # Rounds long enough to hold a compaction of the file store (one per 4 MiB or more of
        # journal, a few seconds of this load): shorter ones would mostly miss it.
        long_cfg = dataclasses.replace(cfg, http_seconds=max(cfg.http_seconds, BACKEND_SECONDS))
        per_run = max(2_000, int(long_cfg.http_seconds * 4_000))

        def side(provider: str) -> Side:
            def measure() -> Sample:
                sample = load(servers[provider], ingress_requests(per_run), long_cfg, workdir)
                if "max_ms" in sample.info:  # the worst request: what a stalled writer shows
                    sample.metrics["max_ms"] = sample.info["max_ms"]
                return sample
            return measure

        yield side("file"), side("lmdb")


def comparisons(cfg: Config, tmp: Tmp) -> list[Comparison]:
    def bind(fn: Any) -> Any:
        return lambda: fn(cfg, tmp)

    gen = "wrk" if (cfg.load_generator == "wrk" or
                    (cfg.load_generator == "auto" and have_wrk())) else "python generator"
    common = f"{cfg.http_connections} connections ({gen}), waitress {cfg.http_threads} threads"
    p99 = Target("p99_ms", "<=", 2.0)
    rows = [
        Comparison("http_get_prompt", "http", f"GET one prompt, {common}", "server (lmdb)",
                   "bare Falcon", bind(http_workload("get_prompt")),
                   [Target("ops_per_s", ">=", 0.8), p99]),
        Comparison("http_post_usage", "http",
                   f"POST token-usage conversation, durable lmdb, {common}", "server (lmdb)",
                   "bare Falcon", bind(http_workload("post_usage")),
                   [Target("ops_per_s", ">=", 0.6), p99]),
        # No target: the reference for the row above (the same route and body size, refused
        # by validation, so nothing is written): what the write itself costs is the difference.
        Comparison("http_post_refused", "http",
                   f"POST token-usage conversation refused by validation (400, no write; "
                   f"reference), {common}", "server (lmdb)", "bare Falcon",
                   bind(http_workload("post_refused")), []),
        Comparison("http_ingress", "http",
                   f"signed idempotent channel-ingress POST, unique ids, lmdb, {common}",
                   "server (lmdb)", "bare Falcon", bind(http_workload("ingress")),
                   [Target("ops_per_s", ">=", 0.5), p99]),
        Comparison("http_file_p99", "http",
                   f"signed channel-ingress POST, unique ids, file backend against lmdb, each "
                   f"holding {PREFILLED_PROMPTS:,} prompts, {common}", "server (file)",
                   "server (lmdb)", bind(backend_write_load), [p99]),
    ]
    what = {"get_prompt": "GET one prompt", "post_usage": "POST token-usage conversation",
            "ingress": "signed idempotent channel-ingress POST, unique ids"}
    lmdb_targets = {"get_prompt": 0.8, "post_usage": 0.6, "ingress": 0.5}
    each = f"{cfg.http_connections} connections ({gen}), waitress {cfg.http_threads} threads " \
           "per process"
    for kind, text in what.items():
        rows.append(Comparison(
            f"http_{kind}_w2", "http", f"{text}, lmdb, 2 worker processes, {each}",
            "server (lmdb, 2 workers)", "bare Falcon, 2 processes",
            bind(http_workload(kind, 2)), [Target("ops_per_s", ">=", lmdb_targets[kind])]))
    for kind, text in what.items():
        for workers in (1, 2):
            suffix = "" if workers == 1 else "_w2"
            rows.append(Comparison(
                f"http_{kind}_pg{suffix}", "http",
                f"{text}, postgresql, {workers} worker process{'es' * (workers > 1)}, {each}",
                f"server (postgresql, {workers} worker{'s' * (workers > 1)})",
                f"bare Falcon, {workers} process{'es' * (workers > 1)}",
                bind(http_workload(kind, workers, "postgresql")), []))
    for kind, text in what.items():
        rows.append(Comparison(
            f"http_{kind}_2v1", "http", f"{text}, lmdb: 2 worker processes against 1, {each}",
            "server (lmdb, 2 workers)", "server (lmdb, 1 worker)",
            bind(http_workload(kind, 2, baseline_workers=1, baseline_ours=True)),
            [Target("ops_per_s", ">=", 1.5)]))
    return rows
