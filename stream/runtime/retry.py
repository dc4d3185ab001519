"""Trying an operation again in process, as its error policy says: ``Action.RETRY`` waits the policy's backoff and
tries again, up to the backoff's attempts; then, and for anything the policy does not retry, the error is raised.

The inference worker's scoring (``policy.SCORING``: the device ran out of memory) retries a batch this way before it
gives up with the batch uncommitted. Nothing is committed while an operation is retried: the caller commits only
after ``retrying`` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stream.runtime.policy import Action, ErrorPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    policy: ErrorPolicy,
    what: str,
    *,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """``attempt()``'s result, trying again while it raises what ``policy`` retries (waiting its backoff), at most
    the backoff's attempts in all. ``what`` names the operation in the log; ``on_retry(error, failures)`` is called
    before each wait (a loop's counters)."""
    failures = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if policy.decide(exc) is not Action.RETRY or policy.backoff is None:
                raise
            failures += 1
            backoff = policy.backoff
            if backoff.gives_up(failures):
                log.error("%s failed %d times in a row (%s: %s): giving up", what, failures, type(exc).__name__, exc)
                raise
            delay_s = backoff.delay_s(failures)
            of = f" of {backoff.attempts - 1}" if backoff.attempts is not None else ""
            log.warning(
                "%s failed (%s: %s): retry %d%s in %.2f s", what, type(exc).__name__, exc, failures, of, delay_s
            )
            if on_retry is not None:
                on_retry(exc, failures)
            await asyncio.sleep(delay_s)
