"""The outbox worker (domains.md 7.6): delivers queued replies to the gateway, durably and retried.

An entry moves PENDING -> DISPATCHING (leased) -> SENT | FAILED_RETRY | DEAD_LETTER. The lease (its
owner and expiry) is stored in the entry, so a worker that died mid-send leaves an entry that any
worker takes over once the lease expired; nothing enqueued is lost across a crash, because the
entry was committed before the reply was acknowledged and only a recorded outcome ends it.

Each envelope is POSTed as JSON to ``<base URL>/api/server-callback/v1/messages`` with the stdlib
(urllib), signed when a secret is set (``x-autobyteus-server-timestamp`` and
``x-autobyteus-server-signature``). Network errors, timeouts, 401, 403, 408, 429 and 5xx are
retried after min(max_delay, base_delay * 2^(attempt-1)) plus jitter, at most ``max_attempts``
attempts (401 and 403 mean a wrong or missing callback secret: an operator fixes the setting and
the next attempt goes through); any other answer that is not 2xx, or the last attempt,
dead-letters the entry, fails its delivery event and writes one WARNING line. Gateways deduplicate
by ``callbackIdempotencyKey``, so sending again after a lost answer is safe.

The recorded error is the answer's status and the start of its body, e.g. ``401
{"code":"INVALID_SIGNATURE",...}``, at most 500 bytes, with the secret and anything shaped like a
signature redacted (see :mod:`domains.channel.logbook`).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from domains.channel import signing
from domains.channel.logbook import RateLimitedLog, safe_text
from domains.channel.models import OutboxEntry
from domains.channel.service import ChannelService

log = logging.getLogger(__name__)

CALLBACK_PATH = "/api/server-callback/v1/messages"
RETRYABLE_STATUSES = frozenset({401, 403, 408, 429})
#: How much of an answer's body is read: the recorded error keeps only its start.
ANSWER_READ_BYTES = 4096


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an instruction: a POST must not turn into a GET elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: bytes, headers: dict[str, str], timeout_s: float
              ) -> tuple[int, bytes]:
    """POST ``body``; the answer's status and the start of its body. Network failures and
    timeouts raise OSError."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            return int(resp.status), resp.read(ANSWER_READ_BYTES)
    except urllib.error.HTTPError as exc:  # a non-2xx answer (HTTPError is also an OSError)
        try:
            answer = exc.read(ANSWER_READ_BYTES)
        except Exception:
            answer = b""
        return int(exc.code), answer
    except (TimeoutError, http.client.HTTPException) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc


class OutboxWorker:
    def __init__(
        self,
        service: ChannelService,
        *,
        base_url: str,
        shared_secret: str | None = None,
        timeout_ms: int = 5000,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] | None = None,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_attempts: int = 12,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
        lease_s: float | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 16,
        post: Callable[[str, bytes, dict[str, str], float], tuple[int, bytes]] = post_json,
        owner: str | None = None,
    ) -> None:
        self.service = service
        self.url = base_url.rstrip("/") + CALLBACK_PATH
        self.secret = shared_secret
        self.timeout_s = timeout_ms / 1000
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.jitter = jitter
        self.rng = rng
        # A lease outlives the request it covers by a wide margin: taking over an entry whose
        # request is still in flight would only cost a duplicate the gateway drops, but is noise.
        self.lease_s = lease_s if lease_s is not None else 2 * self.timeout_s + 10
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.post = post
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sleep = sleep if sleep is not None else self._wake.wait
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dead_lettered = 0
        self.dead_letter_log = RateLimitedLog(log)

    # -- one pass ------------------------------------------------------------------------------
    def delay_for(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), with jitter."""
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay + delay * self.jitter * self.rng()

    def run_once(self) -> int:
        """Lease the entries due now and dispatch each once; how many were dispatched."""
        leased = self.service.lease_due(
            self.owner, now=self.clock(), lease_s=self.lease_s, limit=self.batch_size
        )
        done = 0
        for i, entry in enumerate(leased):
            if self._stop.is_set():
                # Hand the rest back at once rather than leave them to wait for lease expiry.
                for rest in leased[i:]:
                    self.service.release_lease(rest.id, self.owner, now=self.clock())
                break
            self._dispatch(entry)
            done += 1
        return done

    def _body_and_headers(self, entry: OutboxEntry) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(entry.envelope, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            ts = str(int(self.clock()))
            headers["x-autobyteus-server-timestamp"] = ts
            headers["x-autobyteus-server-signature"] = signing.sign(self.secret, ts, body)
        return body, headers

    def _dispatch(self, entry: OutboxEntry) -> None:
        body, headers = self._body_and_headers(entry)
        # Nothing recorded may carry the secret or the signature just sent.
        secrets = (self.secret, headers.get("x-autobyteus-server-signature"))
        try:
            status, answer = self.post(self.url, body, headers, self.timeout_s)
        except OSError as exc:
            self._failed(entry, safe_text(f"network error: {exc}", secrets), retryable=True)
            return
        except Exception as exc:  # an unexpected failure is treated like a network one
            log.exception("outbox entry %s: dispatch failed", entry.id)
            self._failed(entry, safe_text(f"dispatch error: {exc!r}", secrets), retryable=True)
            return
        if 200 <= status < 300:
            if self.service.mark_sent(entry.id, self.owner, now=self.clock()):
                self.delivered += 1
            return
        retryable = status in RETRYABLE_STATUSES or 500 <= status < 600
        error = safe_text(f"{status} {answer.decode('utf-8', 'replace')}", secrets)
        self._failed(entry, error, retryable=retryable)

    def _failed(self, entry: OutboxEntry, error: str, *, retryable: bool) -> None:
        now = self.clock()
        if retryable and entry.attempts < self.max_attempts:
            retry_at = now + self.delay_for(entry.attempts)
            log.info("outbox entry %s: attempt %d failed (%s); retrying in %.1f s",
                     entry.id, entry.attempts, error, retry_at - now)
            self.service.mark_retry(entry.id, self.owner, now=now, error=error, retry_at=retry_at)
            return
        if self.service.mark_dead(entry.id, self.owner, now=now, error=error):
            self.dead_lettered += 1
            env = entry.envelope
            route = ":".join(str(env.get(name) or "direct") for name in
                             ("provider", "transport", "accountId", "peerId", "threadId"))
            self.dead_letter_log.warning(
                "channel reply dead-lettered: outbox entry %s (%s), route %s, after %d "
                "attempts: %s", entry.id, safe_text(entry.callback_idempotency_key, limit=300),
                safe_text(route, limit=300), entry.attempts, error)

    # -- the background thread -----------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued: look at once instead of at the next poll."""
        self._wake.set()

    def _idle_wait(self) -> float:
        timeout = self.poll_interval
        try:
            due = self.service.next_due()
        except Exception:
            return timeout
        if due is not None:
            timeout = min(timeout, max(0.005, due - self.clock()))
        return timeout

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.run_once():
                    continue
                wait = self._idle_wait()
            except Exception:  # a transient store failure must not end the worker
                log.exception("outbox pass failed; retrying in %.1f s", self.poll_interval)
                wait = self.poll_interval
            if not self._stop.is_set():
                self._sleep(wait)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the outbox worker is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="channel-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 10 if timeout is None else timeout)
            self._thread = None
