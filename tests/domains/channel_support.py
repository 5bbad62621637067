"""Shared helpers of the external-channel tests: clocks, envelopes and a gateway stub."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from domains.channel import signing
from domains.channel.commands import (
    OUTBOX_STATUS,
    AckMessages,
    BindTurn,
    InboundMessage,
    InboxTarget,
    PublishReply,
    PutBinding,
    RouteFields,
)
from domains.channel.models import Route
from domains.channel.service import ChannelService, route_of
from domains.shapes import camel, parse

ROUTE = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "accountId": "acc-1",
         "peerId": "peer-1"}
ROUTE_ARGS = {"provider": "WHATSAPP", "transport": "BUSINESS_API", "account_id": "acc-1",
              "peer_id": "peer-1"}
ENVELOPE = {**ROUTE, "peerType": "USER", "externalMessageId": "m-1", "content": "hello",
            "receivedAt": "2026-02-22T10:15:30.123Z"}


class ManualClock:
    """A datetime clock for services that moves only when told (thread-safe)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 2, 22, 10, 0, 0, tzinfo=dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += dt.timedelta(seconds=seconds)

    def seconds(self) -> float:
        return self().timestamp()


class FloatClock:
    """Epoch seconds for the outbox worker, moved by hand; starts at the real time so that
    signatures stay within any skew check."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def _body(fields: dict[str, Any]) -> dict[str, Any]:
    return {camel(name): value for name, value in fields.items()}


class KeywordCommands:
    """A ChannelService whose command methods take keyword arguments (snake_case) in place of
    the typed command: they become the JSON body of the method's shape, parsed as the web layer
    parses it, so the domain tests prove the shapes' checks and the service's rules together.
    Every other attribute is the service's own."""

    def __init__(self, service: ChannelService) -> None:
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def upsert_binding(self, *, expected_etag: str | None = None, **fields: Any) -> Any:
        return self.service.upsert_binding(parse(PutBinding, _body(fields)),
                                           expected_etag=expected_etag)

    def ingest(self, **fields: Any) -> Any:
        return self.service.ingest(parse(InboundMessage, _body(fields)))

    def bind_turn(self, **fields: Any) -> Any:
        return self.service.bind_turn(parse(BindTurn, _body(fields)))

    def publish_reply(self, **fields: Any) -> Any:
        return self.service.publish_reply(parse(PublishReply, _body(fields)))

    def inbox(self, target_type: Any, target_id: Any, **page: Any) -> Any:
        return self.service.inbox(_target(target_type, target_id), **page)

    def ack(self, target_type: Any, target_id: Any, message_ids: Any) -> Any:
        return self.service.ack(_target(target_type, target_id),
                                parse(AckMessages, {"messageIds": message_ids}))

    def list_outbox(self, *, status: Any = None, **page: Any) -> Any:
        checked = None if status in (None, "") else OUTBOX_STATUS.check(status, "status")
        return self.service.list_outbox(status=checked, **page)


def normalize_route(provider: str, transport: str, account_id: str, peer_id: str,
                    thread_id: str | None = None) -> Route:
    """The route of five values, checked as a body's route fields are (the shape, then the
    service's rules between them)."""
    return route_of(parse(RouteFields, {
        "provider": provider, "transport": transport, "accountId": account_id,
        "peerId": peer_id, "threadId": thread_id}))


def _target(target_type: Any, target_id: Any) -> InboxTarget:
    return parse(InboxTarget, {"targetType": target_type, "targetId": target_id})


def keyword_service(store: Any, **options: Any) -> Any:
    """A ChannelService over ``store`` driven with keyword arguments (:class:`KeywordCommands`)."""
    return KeywordCommands(ChannelService(store, **options))


def ingest(service: Any, **overrides: Any) -> Any:
    """An inbound message, as the gateway's JSON (ENVELOPE with ``overrides``)."""
    target = service.service if isinstance(service, KeywordCommands) else service
    return target.ingest(parse(InboundMessage, {**ENVELOPE, **overrides}))


def bind_agent(service: Any, agent_id: str = "agent-1", **route: Any) -> Any:
    return _keywords(service).upsert_binding(**{**ROUTE_ARGS, **route}, target_type="AGENT",
                                             agent_id=agent_id)[0]


def _keywords(service: Any) -> KeywordCommands:
    return service if isinstance(service, KeywordCommands) else KeywordCommands(service)


def routed_turn(service: Any, message_id: str, turn_id: str,
                agent_id: str = "agent-1") -> None:
    """Message ``message_id`` was routed to the agent, and turn ``turn_id`` answers it."""
    ingest(service, externalMessageId=message_id)
    _keywords(service).bind_turn(**ROUTE_ARGS, external_message_id=message_id, turn_id=turn_id,
                      agent_id=agent_id)


class GatewayStub:
    """A gateway's callback endpoint on 127.0.0.1: checks signatures, deduplicates by
    ``callbackIdempotencyKey`` and answers according to ``plan`` (one action per request, then
    202): an int is a status to answer (with a body ``{"code":"HTTP_<status>"}``), ``(status,
    body_bytes)`` that status with that body, ``("sleep", s)`` answers 202 only after ``s``
    seconds. Its bodies are the real gateway's: 202 ``{"accepted":true,"duplicate":...}``, 401
    ``{"code":"INVALID_SIGNATURE",...}``."""

    def __init__(self, secret: str | None = None, plan: list[Any] | None = None,
                 port: int = 0) -> None:
        self.secret = secret
        self.plan = list(plan or [])
        self.requests: list[dict[str, Any]] = []
        self.delivered: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = stub.handle(self.path, dict(self.headers.items()), raw)
                if answer is None:
                    return
                status, body = answer
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def handle(self, path: str, headers: dict[str, str], raw: bytes
               ) -> tuple[int, bytes] | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        with self.lock:
            action = self.plan.pop(0) if self.plan else 202
            self.requests.append({"path": path, "headers": lowered, "body": raw})
        if path != "/api/server-callback/v1/messages":
            return 404, b'{"code":"NOT_FOUND"}'
        if self.secret is not None:
            ts = lowered.get("x-autobyteus-server-timestamp")
            failure = signing.verify(self.secret, ts, lowered.get("x-autobyteus-server-signature"),
                                     raw, now=float(ts) if ts and ts.isdigit() else 0.0)
            if failure is not None:
                with self.lock:
                    self.bad_signatures += 1
                return 401, json.dumps({"code": failure,
                                        "message": "Invalid server callback signature."},
                                       separators=(",", ":")).encode()
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])
            action = 202
        if isinstance(action, tuple):
            return action
        if action != 202:
            return int(action), b'{"code":"HTTP_%d"}' % action
        envelope = json.loads(raw)
        with self.lock:
            # A reply already held is acknowledged again and not kept twice.
            duplicate = envelope["callbackIdempotencyKey"] in self.delivered
            self.delivered.setdefault(envelope["callbackIdempotencyKey"], envelope)
        return 202, b'{"accepted":true,"duplicate":%s}' % (b"true" if duplicate else b"false")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
