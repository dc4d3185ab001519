"""Alert records (schema 2, and schema 1 still decoding), the Alertmanager and webhook mappings, and the HTTP edge's
outcomes and retries against a real local HTTP server. The notifier on a broker: tests/broker/test_notify_broker.py."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest

from harness.alertmanager.receiver import http_receiver
from stream.errors import ConfigError
from stream.inference.alerts import AlertBook
from stream.notify.alertmanager import alerts_for, latest_per_incident
from stream.notify.http import (
    ACKED,
    REFUSED,
    TRANSIENT,
    DeliveryError,
    DeliveryStopped,
    Endpoint,
    RetryPolicy,
    deliver,
    post_in_thread,
)
from stream.notify.notice import Notice
from stream.notify.webhook import webhook_body
from stream.records import Alert, Cause, Verdict
from stream.records.alerts import (
    ALERT_SCHEMA_VERSION,
    CRITICAL,
    INFO,
    WARNING,
    SeverityPolicy,
    alert_record,
    decode_alert_record,
    rfc3339,
)
from stream.settings import load_settings

POLICY = SeverityPolicy(warning_score=0.9, warning_count=4, critical_score=0.99, critical_count=32)
T0 = 1_733_443_200_000  # 2024-12-06T00:00:00Z


def verdict(window_id: str, score: float, causes: tuple[tuple[str, float], ...]) -> Verdict:
    return Verdict(
        window_id=window_id,
        system="bgl",
        family="translog",
        model="bgl/v0001",
        adapter_version=None,
        zero_shot=True,
        score=score,
        threshold=0.5,
        label="anomalous",
        first_event_ms=T0,
        last_event_ms=T0 + 1000,
        lines=20,
        explanation=tuple(Cause(template, weight, (0,)) for template, weight in causes),
    )


def opened(score: float = 0.8) -> tuple[Alert, Verdict]:
    causes = (("kernel panic <*>", 0.6), ("machine check <*>", 0.3))
    v = verdict("w1", score, causes)
    book = AlertBook(ttl_ms=60_000)
    alert = book.observe("bgl", [c for c, _ in causes], window_id="w1", score=score, last_event_ms=T0, now_ms=T0)
    assert alert is not None
    return alert, v


# ----------------------------------------------------------------------------------------------- the record


def test_record_carries_schema_severity_summary_and_rfc3339_times() -> None:
    alert, v = opened(score=0.95)
    document = orjson.loads(alert_record(alert, v, POLICY, T0 + 5))
    assert document["schema_version"] == ALERT_SCHEMA_VERSION == 2
    assert document["severity"] == WARNING  # 0.95 >= warning_score, < critical_score; count 1
    # the explanation's order (heaviest first), not the identity's sorted order
    assert document["summary"] == "bgl: 1 anomalous window; top templates: kernel panic <*> | machine check <*>"
    assert document["first_seen"] == "2024-12-06T00:00:00.000Z" and document["first_seen_ms"] == T0
    assert document["published_at"] == "2024-12-06T00:00:00.005Z" and document["published_ms"] == T0 + 5
    decoded = decode_alert_record(alert_record(alert, v, POLICY, T0 + 5), POLICY)
    assert decoded.alert == alert and decoded.severity == WARNING and decoded.published_ms == T0 + 5
    assert decoded.to_dict() == document  # the current schema round-trips


def test_schema_1_records_still_decode() -> None:
    """Records written before schema 2 (exactly what the inference worker published: the alert and its verdict)."""
    alert, v = opened(score=0.995)
    for legacy_verdict in (v.to_dict(), None):
        legacy = orjson.dumps({**alert.to_dict(), "verdict": legacy_verdict})
        decoded = decode_alert_record(legacy, POLICY)
        assert decoded.schema_version == 1 and decoded.alert == alert
        assert decoded.severity == CRITICAL  # from the reader's policy: 0.995 >= critical_score
        assert decoded.published_ms is None  # the reader falls back to the Kafka timestamp
        assert "kernel panic <*>" in decoded.summary and decoded.summary.startswith("bgl: 1 anomalous window")
        assert decoded.to_dict()["schema_version"] == ALERT_SCHEMA_VERSION  # comes out upgraded


@pytest.mark.parametrize(
    ("score", "count", "expected"),
    [
        (0.0, 1, INFO),
        (0.8999, 3, INFO),
        (0.9, 1, WARNING),  # exactly the warning score
        (0.5, 4, WARNING),  # exactly the warning count
        (0.99, 1, CRITICAL),
        (0.5, 32, CRITICAL),
        (0.5, 31, WARNING),
    ],
)
def test_severity_thresholds_are_inclusive(score: float, count: int, expected: str) -> None:
    assert POLICY.severity(score, count) == expected


def test_severity_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="warning thresholds"):
        load_settings(inference={"severity": {"warning_score": 0.99, "critical_score": 0.9}})
    with pytest.raises(ConfigError, match=r"notify\.webhook_url"):
        load_settings(notify={"webhook_url": "ftp://example.org/hook"})
    with pytest.raises(ConfigError, match="firing_hold_s"):
        load_settings(notify={"firing_hold_s": 300}, inference={"alert_ttl_s": 600})
    policy = SeverityPolicy(
        **load_settings(inference={"severity": {"critical_count": 8}}).inference.severity.model_dump()
    )
    assert policy.severity(0.1, 8) == CRITICAL


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"alert_id": "x"}',
    ],
)
def test_what_is_not_an_alert_record_is_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        decode_alert_record(value, POLICY)


def test_a_schema_2_record_with_a_bad_severity_is_refused() -> None:
    alert, v = opened()
    document = orjson.loads(alert_record(alert, v, POLICY, T0))
    with pytest.raises(ValueError, match="severity"):
        decode_alert_record(orjson.dumps(document | {"severity": "page-everyone"}), POLICY)
    with pytest.raises(ValueError, match="schema_version"):
        decode_alert_record(orjson.dumps(document | {"schema_version": "2"}), POLICY)


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(T0 + 123) == "2024-12-06T00:00:00.123Z"


# ------------------------------------------------------------------------------------------ the sink mappings


def notice(alert: Alert, v: Verdict | None, published_ms: int) -> Notice:
    record = decode_alert_record(alert_record(alert, v, POLICY, published_ms), POLICY)
    return Notice(record, published_ms, "alerts[0]@0")


def test_alertmanager_mapping_keeps_firing_then_ends_at_resolution() -> None:
    alert, v = opened(score=0.95)
    hold_ms = 1_260_000
    now_ms = T0 + 10
    firing = alerts_for(notice(alert, v, T0), alertname="AdaptlogAnomaly", hold_ms=hold_ms, now_ms=now_ms)
    by_severity = {entry["labels"]["severity"]: entry for entry in firing}
    current = by_severity[WARNING]
    assert current["labels"] == {
        "alertname": "AdaptlogAnomaly",
        "system": "bgl",
        "severity": WARNING,
        "alert_id": alert.alert_id,
    }
    assert current["annotations"]["summary"].startswith("bgl: 1 anomalous window; top templates: kernel panic")
    assert current["annotations"]["explanation"] == "kernel panic <*> (0.600)\nmachine check <*> (0.300)"
    assert current["annotations"]["window_ids"] == "w1"
    assert current["startsAt"] == rfc3339(T0) and current["endsAt"] == rfc3339(T0 + hold_ms)
    # the other severities of the incident are ended (an escalation does not leave the lower one firing)
    assert by_severity[INFO]["endsAt"] == by_severity[CRITICAL]["endsAt"] == rfc3339(T0)

    resolved = alerts_for(
        notice(alert.resolved(), None, T0 + 5000), alertname="AdaptlogAnomaly", hold_ms=hold_ms, now_ms=T0 + 6000
    )
    assert {entry["endsAt"] for entry in resolved} == {rfc3339(T0 + 5000)}  # every severity ends, in the past
    assert resolved[0]["annotations"]["explanation"] == "kernel panic <*>\nmachine check <*>"


def test_alertmanager_times_stay_ordered_with_skewed_clocks() -> None:
    """Event times after the publication (a writer's clock behind the logs'), a publication after this notifier's
    clock: startsAt never after endsAt, and a resolution is in the past here."""
    alert, _ = opened()
    future = Alert.opened("bgl", alert.templates, "w9", 0.8, T0 + 3_600_000).resolved()
    entries = alerts_for(notice(future, None, T0 + 1000), alertname="A", hold_ms=60_000, now_ms=T0)
    for entry in entries:
        assert entry["startsAt"] <= entry["endsAt"] == rfc3339(T0)


def test_one_post_carries_each_incidents_latest_record() -> None:
    a, v = opened()
    other = Alert.opened("hdfs", ("x <*>",), "h1", 0.7, T0)
    notices = [notice(a, v, T0), notice(other, None, T0), notice(a.resolved(), None, T0 + 1)]
    assert latest_per_incident(notices) == [1, 2]


def test_webhook_body_has_slack_text_and_the_record() -> None:
    alert, v = opened(score=0.995)
    body = webhook_body(notice(alert, v, T0))
    assert body["text"].startswith("[FIRING] [critical] bgl: 1 anomalous window; top templates: kernel panic <*>")
    assert alert.alert_id in body["text"]
    assert body["alert_id"] == alert.alert_id and body["idempotency_key"] == f"{alert.alert_id}:open:1"
    assert body["alert"]["window_ids"] == ["w1"] and body["alert"]["schema_version"] == 2
    legacy = decode_alert_record(orjson.dumps({**alert.resolved().to_dict(), "verdict": None}), POLICY)
    body = webhook_body(Notice(legacy, T0 + 9, "alerts[0]@1"))
    assert body["text"].startswith("[RESOLVED] [critical]") and body["alert"]["published_ms"] == T0 + 9


# ------------------------------------------------------------------------------------------------ the HTTP edge


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        *((status, ACKED) for status in (200, 204)),
        *((status, TRANSIENT) for status in (503, 500, 429, 408)),
        *((status, REFUSED) for status in (400, 404, 422)),
    ],
)
def test_answers_sort_into_acked_transient_refused(status: int, kind: str) -> None:
    with http_receiver(default=status) as receiver:
        outcome = Endpoint(receiver.url, timeout_s=5).post_json({"a": 1}, {"Idempotency-Key": "k"})
    assert outcome.kind == kind and outcome.detail.startswith(f"HTTP {status}")
    assert receiver.requests[0].body == {"a": 1} and receiver.requests[0].headers["Idempotency-Key"] == "k"


def test_no_answer_is_transient() -> None:
    outcome = Endpoint(f"http://127.0.0.1:{closed_port()}/x", timeout_s=2).post_json({})
    assert outcome.kind == TRANSIENT and "ConnectionRefusedError" in outcome.detail


def test_deliver_retries_transient_failures_until_acknowledged() -> None:
    policy = RetryPolicy(initial_s=0.05, max_s=0.2)
    with http_receiver(answers=[503, 429, 500]) as receiver:
        endpoint = Endpoint(receiver.url, timeout_s=5)
        retried: list[str] = []
        started = time.monotonic()
        outcome = asyncio.run(
            deliver(
                lambda: post_in_thread(endpoint, {"n": 1}),
                "test",
                policy,
                asyncio.Event(),
                lambda o: retried.append(o.detail),
            )
        )
        elapsed = time.monotonic() - started
    assert outcome.kind == ACKED
    assert [r.status for r in receiver.requests] == [503, 429, 500, 200]
    assert len(retried) == 3 and retried[0].startswith("HTTP 503")
    # backoff: at least half of 0.05 + 0.1 + 0.2 (jitter takes the upper half of each step)
    assert elapsed >= (0.05 + 0.1 + 0.2) / 2


def test_deliver_gives_up_after_max_attempts_and_never_retries_a_refusal() -> None:
    policy = RetryPolicy(initial_s=0.01, max_s=0.02, max_attempts=3)
    with http_receiver(default=502) as receiver:
        endpoint = Endpoint(receiver.url, timeout_s=5)
        with pytest.raises(DeliveryError, match="not acknowledged after 3 tries; last: HTTP 502"):
            asyncio.run(deliver(lambda: post_in_thread(endpoint, {}), "test", policy, asyncio.Event()))
    assert len(receiver.requests) == 3
    with http_receiver(default=400) as receiver:
        endpoint = Endpoint(receiver.url, timeout_s=5)
        outcome = asyncio.run(deliver(lambda: post_in_thread(endpoint, {}), "test", policy, asyncio.Event()))
    assert outcome.kind == REFUSED and len(receiver.requests) == 1


def test_a_stop_ends_a_backoff_at_once() -> None:
    async def scenario() -> float:
        stop = asyncio.Event()
        endpoint = Endpoint(f"http://127.0.0.1:{closed_port()}/x", timeout_s=2)
        asyncio.get_running_loop().call_later(0.3, stop.set)
        started = time.monotonic()
        with pytest.raises(DeliveryStopped):
            await deliver(lambda: post_in_thread(endpoint, {}), "test", RetryPolicy(initial_s=30, max_s=60), stop)
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_s=0.01, max_s=2.0)
    assert policy.delay_s(1, 1.5) >= 1.5
    assert policy.delay_s(1, 3600) == 2.0
    assert all(0.5 <= policy.delay_s(8, None) <= 2.0 for _ in range(50))  # capped, jittered in the upper half


def test_cli_notify_needs_a_receiver_and_checks_its_urls(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    assert main(["notify"]) == 2
    assert "no receiver: set notify.alertmanager_url and/or notify.webhook_url" in capsys.readouterr().err
    assert main(["notify", "--webhook", "ftp://example.org/hook"]) == 2
    assert "--webhook" in capsys.readouterr().err
