"""web/serving.py's waitress connection, in process: trickling requests are found by the server's
maintenance, and the main loop waits for a service thread's buffer lock instead of spinning."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel

from web.serving import GuardedChannel, TimedRequestParser, close_trickling


def _server(timeout: int = 30) -> Any:
    return SimpleNamespace(adj=Adjustments(channel_timeout=timeout), active_channels={})


def _fake_channel(request: Any = None, requests: list[Any] | None = None) -> Any:
    return SimpleNamespace(request=request, requests=requests or [], will_close=False)


def test_a_parser_is_stamped_when_the_request_starts() -> None:
    before = time.monotonic()
    parser = TimedRequestParser(Adjustments())
    assert before <= parser.started <= time.monotonic()


def test_maintenance_closes_only_requests_that_did_not_arrive_in_time() -> None:
    server = _server(timeout=30)
    now = time.monotonic()
    stale = SimpleNamespace(started=now - 31)
    fresh = SimpleNamespace(started=now - 5)
    channels = {
        "trickling": _fake_channel(request=stale),
        "arriving": _fake_channel(request=fresh),
        "idle": _fake_channel(request=None),
        # A complete request being served, with the next one's bytes arriving behind it: the
        # one in service is not the client's fault.
        "in service": _fake_channel(request=stale, requests=[object()]),
    }
    server.active_channels = dict(enumerate(channels.values()))
    assert close_trickling(server, now) == 1
    assert [name for name, c in channels.items() if c.will_close] == ["trickling"]
    assert close_trickling(server, now) == 0  # marked once


def test_the_main_loop_calls_are_waitress_own() -> None:
    # The main loop calls readable() and writable() for every connection at every turn.
    assert GuardedChannel.readable is HTTPChannel.readable
    assert GuardedChannel.writable is HTTPChannel.writable


def test_a_flush_during_service_waits_for_the_lock_and_sends() -> None:
    ours, theirs = socket.socketpair()
    server = SimpleNamespace(adj=Adjustments(), active_channels={})
    channel = GuardedChannel(server, ours, ("peer", 0), server.adj, map={})
    try:
        channel.requests = [object()]  # a request is being served
        with channel.outbuf_lock:
            channel.outbufs[-1].append(b"answer")
            channel.total_outbufs_len += len(b"answer")
        released = threading.Event()

        def service_thread() -> None:
            with channel.outbuf_lock:  # e.g. appending more of its response
                time.sleep(0.2)
                released.set()

        holder = threading.Thread(target=service_thread)
        holder.start()
        time.sleep(0.05)
        # waitress alone returns at once with the data still queued (the loop comes back at
        # once, and again, while the lock is held); here the flush waits and sends.
        channel.handle_write()
        assert released.is_set()
        assert channel.total_outbufs_len == 0
        theirs.settimeout(5)
        assert theirs.recv(100) == b"answer"
        holder.join()
    finally:
        channel.close()
        theirs.close()
