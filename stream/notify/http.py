"""The HTTP edge of ``adaptlog notify``: one JSON POST, its answer sorted into three outcomes, and the retry loop.

stdlib ``http.client`` in a worker thread, not an async client: the lock holds no httpx or aiohttp, a notifier sends
a few requests a second at most, and one request at a time per worker keeps the order of an incident's records.

Outcomes (the one place a receiver's answers and the network's errors are mapped to ours):

* ``ACKED``: a 2xx. The receiver has the alert; the caller may commit past it.
* ``TRANSIENT``: no answer (refused, reset, timed out, DNS), a 5xx, 408 or 429. Retried with exponential backoff
  (jittered, capped, ``Retry-After`` honoured up to the cap); never committed past.
* ``REFUSED``: any other status (4xx, an unfollowed 3xx). Sending it again would be refused again: the record is
  dead-lettered with the status and the receiver's words, so a bad record never blocks the ones behind it.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import random
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from stream.errors import AdaptlogError, Stopped

log = logging.getLogger(__name__)

ACKED, TRANSIENT, REFUSED = "acked", "transient", "refused"
RETRYABLE_STATUSES = frozenset({408, 429})
REASON_CHARS = 500  # of a receiver's answer kept in a log line or dead-letter reason


class DeliveryError(AdaptlogError):
    """A receiver did not acknowledge within ``notify.max_attempts`` tries. Nothing was committed past the record,
    so a restarted notifier delivers it again."""


class DeliveryStopped(Stopped):
    """The worker was asked to stop while a delivery waited to retry: the batch is left uncommitted."""


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # ACKED | TRANSIENT | REFUSED
    detail: str  # "HTTP 503: ..." or the network error, for logs and dead letters
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A receiver's URL, split once at start (a malformed URL is a configuration error, not a per-record one)."""

    url: str
    timeout_s: float

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{self.url!r} is not an http(s) URL")

    def post_json(self, body: Any, headers: dict[str, str] | None = None) -> Outcome:
        """POST ``body`` as JSON and sort the answer (blocking: run it in a thread)."""
        parts = urllib.parse.urlsplit(self.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        host = parts.hostname or ""  # never empty: __post_init__ refused a URL without one
        connection = connection_type(host, parts.port, timeout=self.timeout_s)
        payload = orjson.dumps(body)
        sent_headers = {"Content-Type": "application/json", "User-Agent": "adaptlog-notify"} | (headers or {})
        try:
            connection.request("POST", path, body=payload, headers=sent_headers)
            response = connection.getresponse()
            answer = response.read(64 * 1024).decode("utf-8", "replace").strip()
            status, retry_after = response.status, response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, DNS, a garbled answer
            return Outcome(TRANSIENT, f"no answer from {self.url}: {type(exc).__name__}: {exc}")
        finally:
            connection.close()
        detail = f"HTTP {status}" + (f": {answer[:REASON_CHARS]}" if answer else "")
        if 200 <= status < 300:
            return Outcome(ACKED, detail)
        if status >= 500 or status in RETRYABLE_STATUSES:
            return Outcome(TRANSIENT, detail, _seconds(retry_after))
        return Outcome(REFUSED, detail)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds; its HTTP-date form is not worth parsing here (the backoff applies instead)."""
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_s: float = 30.0
    max_attempts: int = 0  # 0: until acknowledged or stopped

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait before try ``attempt + 1``: initial * 2^(attempt-1), capped, with jitter in its upper half (so
        replicas that failed together do not retry together), and at least what Retry-After asked, up to the cap."""
        backoff = min(self.max_s, self.initial_s * 2 ** (attempt - 1))
        wait = random.uniform(backoff / 2, backoff)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_s))
        return wait


async def deliver(
    send: Callable[[], Awaitable[Outcome]],
    what: str,
    policy: RetryPolicy,
    stop: asyncio.Event,
    on_retry: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Send until the answer is ACKED or REFUSED; a TRANSIENT one is retried after a backoff.

    Raises DeliveryError after ``max_attempts`` transient failures, DeliveryStopped when ``stop`` is set while
    waiting to retry. Either way the caller commits nothing past the record.
    """
    attempt = 0
    while True:
        attempt += 1
        outcome = await send()
        if outcome.kind != TRANSIENT:
            return outcome
        if on_retry is not None:
            on_retry(outcome)
        if policy.max_attempts and attempt >= policy.max_attempts:
            raise DeliveryError(f"{what}: not acknowledged after {attempt} tries; last: {outcome.detail}")
        wait = policy.delay_s(attempt, outcome.retry_after_s)
        log.warning("%s: try %d failed (%s); retrying in %.2f s", what, attempt, outcome.detail, wait)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except TimeoutError:
            continue
        raise DeliveryStopped(what)


async def post_in_thread(endpoint: Endpoint, body: Any, headers: dict[str, str] | None = None) -> Outcome:
    return await asyncio.to_thread(endpoint.post_json, body, headers)
