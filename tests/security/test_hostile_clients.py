"""Hostile clients against the real server process (loopback only, bounded in count and time):
huge headers, bodies beyond every limit, garbage on the wire, and slow clients holding
connections. The server answers with the API's JSON error body, never crashes, and keeps
serving everyone else."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.process import RunningServer, wait_until

CHANNEL_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("hostile"),
        AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS=str(CHANNEL_TIMEOUT_S),
        AUTOBYTEUS_MAX_HEADER_BYTES="16384",
        AUTOBYTEUS_MAX_BODY_BYTES="65536",
    )
    yield running
    assert running.stop() == 0, running.log
    assert "Traceback" not in running.log, running.log


def raw_exchange(server: RunningServer, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


def assert_json_error(response: bytes, status: int, code: str) -> None:
    got, headers, body = parse(response)
    assert got == status, response[:500]
    assert headers["content-type"].startswith("application/json")
    assert set(body) == {"code", "detail", "field"} and body["code"] == code, body


def assert_alive(server: RunningServer) -> None:
    assert server.call("GET", "/health")[0] == 200


# -- headers ------------------------------------------------------------------------------------
def test_a_huge_header_is_431_with_the_error_body(server: RunningServer) -> None:
    request = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert_json_error(raw_exchange(server, request), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    assert_json_error(raw_exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many +
                                   b"\r\n"), 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert_alive(server)


def test_an_endless_header_stream_is_cut_off(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        try:
            while sent < 32 << 20:  # the server must stop this long before 32 MiB
                sock.sendall(b"b" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        assert sent < 32 << 20, "the server kept reading an endless header"
    assert_alive(server)


# -- bodies and garbage -------------------------------------------------------------------------
@pytest.mark.parametrize("size", [100_000, 5 << 20])
def test_an_oversized_chunked_body_is_413_and_stores_nothing(server: RunningServer,
                                                             size: int) -> None:
    # No Content-Length: the limit must hold while reading (the app's 64 KiB here, or waitress's
    # own cap well beyond it; both answer 413 with the error body).
    payload = json.dumps({"name": "big", "category": "c", "promptContent": "x" * size}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 65536]), payload[i:i + 65536])
                      for i in range(0, len(payload), 65536))
    request = (b"POST /rest/api/prompts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks +
               b"0\r\n\r\n")
    assert_json_error(raw_exchange(server, request), 413, "PAYLOAD_TOO_LARGE")
    status, page = server.call("GET", "/rest/api/prompts?name=big")
    assert status == 200 and page["items"] == []


def test_a_declared_huge_content_length_is_413(server: RunningServer) -> None:
    request = (b"POST /rest/api/prompts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               b"\r\nContent-Length: 99999999999\r\n\r\n{}")
    assert_json_error(raw_exchange(server, request), 413, "PAYLOAD_TOO_LARGE")
    assert_alive(server)


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /rest/api/prompts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
])
def test_garbage_on_the_wire_gets_a_4xx_error_body_or_a_close(server: RunningServer,
                                                              garbage: bytes) -> None:
    response = raw_exchange(server, garbage, timeout=CHANNEL_TIMEOUT_S + 30)
    if response:
        status, headers, body = parse(response)
        assert 400 <= status < 500, response[:300]
        assert set(body) == {"code", "detail", "field"}
    assert_alive(server)


# -- slow clients -------------------------------------------------------------------------------
class Trickler(threading.Thread):
    """A slowloris: a request's head sent one byte at a time, ``interval`` apart, until the
    server closes the connection (or ``limit`` seconds pass)."""

    def __init__(self, server: RunningServer, interval: float, limit: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((server.host, server.port), timeout=limit)
        self.interval, self.limit = interval, limit
        self.closed_after: float | None = None

    def run(self) -> None:
        began = time.monotonic()
        head = b"POST /rest/api/prompts HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 10_000
        try:
            for byte in head:
                if time.monotonic() - began > self.limit:
                    return
                self.sock.send(bytes([byte]))
                readable, _, _ = select.select([self.sock], [], [], self.interval)
                if readable and not self.sock.recv(1024):
                    break
        except OSError:
            pass
        self.closed_after = time.monotonic() - began
        self.sock.close()


def test_slow_clients_do_not_stop_the_server_answering_others(server: RunningServer) -> None:
    slow = [Trickler(server, interval=0.25, limit=60) for _ in range(6)]
    for t in slow:
        t.start()
    time.sleep(0.5)
    # While they trickle, everyone else is served.
    for i in range(10):
        status, _ = server.call("POST", "/rest/api/prompts", {
            "name": f"fast{i}", "category": "c", "promptContent": "p"})
        assert status == 201
        assert_alive(server)
    # A request must arrive whole within the channel timeout: the trickling ones are closed.
    for t in slow:
        t.join(60)
    closed = [t.closed_after for t in slow]
    assert all(c is not None and c < 50 for c in closed), closed


def test_silent_connections_are_closed_after_the_channel_timeout(server: RunningServer) -> None:
    socks = []
    for _ in range(3):
        sock = socket.create_connection((server.host, server.port), timeout=60)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        socks.append(sock)
    idle = socket.create_connection((server.host, server.port), timeout=60)  # sends nothing
    socks.append(idle)
    began = time.monotonic()
    for sock in socks:
        try:
            assert sock.recv(1024) == b""  # the server closed it
        except ConnectionResetError:
            pass
        sock.close()
    # Generous: the timeout is 3 s; this only fails if they are held for a minute.
    assert time.monotonic() - began < 55


def test_slow_clients_filling_every_connection_slot_are_evicted(tmp_path: Path) -> None:
    limited = RunningServer(tmp_path, AUTOBYTEUS_CHANNEL_TIMEOUT_SECONDS="2",
                            AUTOBYTEUS_CONNECTION_LIMIT="6")
    try:
        slow = [Trickler(limited, interval=0.5, limit=60) for _ in range(6)]
        for t in slow:
            t.start()
        time.sleep(0.5)
        # Every slot is taken by a slowloris; a new client still gets its answer once they are
        # evicted (waitress alone would keep them for as long as they keep trickling).
        assert limited.call("GET", "/health")[0] == 200
        assert wait_until(lambda: all(not t.is_alive() for t in slow), 60)
    finally:
        assert limited.stop() == 0, limited.log
