"""Alerts to a generic JSON webhook, one POST per record, in order.

Body: ``text`` (one line, Slack incoming-webhook compatible: Slack shows it, other receivers ignore what they do
not know), and the alert record itself in the current schema under ``alert``, plus ``alert_id``, ``status``,
``severity`` and ``idempotency_key`` at the top for receivers that route on them. Headers carry
``Idempotency-Key`` and ``X-Adaptlog-Alert-Id``: at least once means a receiver may see a record twice (a retry
after a lost answer, a replay after a crash), always with the same key.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any

from stream.notify.http import REFUSED, Endpoint, Outcome, RetryPolicy, deliver, post_in_thread
from stream.notify.notice import Notice

STATUS_WORDS = {"open": "FIRING", "ongoing": "FIRING", "resolved": "RESOLVED"}


def webhook_body(notice: Notice) -> dict[str, Any]:
    record, alert = notice.record, notice.record.alert
    text = f"[{STATUS_WORDS[alert.status]}] [{record.severity}] {record.summary} (alert {alert.alert_id})"
    document = record.to_dict()
    if document["published_ms"] is None:  # a schema-1 record: its Kafka timestamp stands in
        document["published_ms"] = notice.published_ms
    return {
        "text": text,
        "alert_id": alert.alert_id,
        "status": alert.status,
        "severity": record.severity,
        "idempotency_key": notice.idempotency_key,
        "alert": document,
    }


class WebhookSink:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry: RetryPolicy,
        stop: asyncio.Event,
        on_retry: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.endpoint = Endpoint(url, timeout_s)
        self.retry, self.stop, self.on_retry = retry, stop, on_retry

    async def deliver(self, notices: Sequence[Notice]) -> dict[int, str]:
        refused: dict[int, str] = {}
        for index, notice in enumerate(notices):
            body = webhook_body(notice)
            headers = {"Idempotency-Key": notice.idempotency_key, "X-Adaptlog-Alert-Id": notice.alert_id}
            outcome = await deliver(
                functools.partial(post_in_thread, self.endpoint, body, headers),
                f"{self.name} alert {notice.alert_id} ({notice.source})",
                self.retry,
                self.stop,
                self.on_retry,
            )
            if outcome.kind == REFUSED:
                refused[index] = outcome.detail
        return refused
