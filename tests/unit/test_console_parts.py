"""The console's pure parts without a broker or a browser: the bounded view fed real alert records, the label outbox
and its undo window, and access (tokens, trusted proxy headers, roles, CSRF) on real Starlette requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.requests import Request

from stream.console.access import Access, Forbidden, Principal, load_tokens
from stream.console.outbox import FALSE_ALARM, REAL_PROBLEM, Outbox, UndoError
from stream.console.view import ConsoleView, IncidentFilter
from stream.errors import ConfigError
from stream.records import Alert, ModelUpdate, RetrainSchedule, SeverityPolicy, alert_record, decode_alert_record
from stream.settings import ConsoleSettings

POLICY = SeverityPolicy()
TOKEN = "0123456789abcdef-operator"


def record(alert: Alert, at_ms: int = 1_000):
    return decode_alert_record(alert_record(alert, None, POLICY, at_ms), POLICY)


def test_the_view_keeps_the_newest_incidents_and_forgets_the_windows_of_dropped_ones() -> None:
    view = ConsoleView(max_incidents=3)
    alerts = [Alert.opened("bgl", (f"template {n}",), f"w{n}", 0.9, 1_000 * n) for n in range(5)]
    for alert in alerts:
        view.apply_alert(record(alert))
    assert list(view.incidents) == [a.alert_id for a in alerts[2:]]
    assert set(view.window_incident) == {"w2", "w3", "w4"}
    rows, total = view.select(IncidentFilter(system="bgl"), limit=2)
    assert total == 3 and [r.last_seen_ms for r in rows] == [4_000, 3_000]  # most recently seen first


def test_an_older_record_read_late_does_not_roll_an_incident_back() -> None:
    view = ConsoleView()
    opened = Alert.opened("bgl", ("t",), "w1", 0.7, 1_000)
    grown = opened.advanced("w2", 0.95, 2_000)
    view.apply_alert(record(grown))
    view.apply_alert(record(opened))
    incident = view.incidents[opened.alert_id]
    assert (incident.count, incident.status, list(incident.window_ids)) == (2, "ongoing", ["w1", "w2"])


def test_the_trainers_schedule_is_the_next_retrain_and_not_a_model_update() -> None:
    view = ConsoleView()
    published = ModelUpdate("bgl", "v0001", "challenger F1 0.9", 1_000)
    view.apply_update(published)
    for at_ms, text in [(2_000, "after 10 more labels"), (3_000, "after 4 more labels or at 1970-01-01T01:00:02.000Z")]:
        counts = {"total": 20, "anomalous": 5, "normal": 15, "unused": 0}
        view.apply_update(RetrainSchedule("bgl", at_ms, text, counts))
    state = view.systems["bgl"]
    assert state.schedule is not None and state.schedule.next_retrain.startswith("after 4 more labels")
    assert state.updates == [published]  # the version history holds serving changes and retrains only


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [({"status": "closed"}, "status"), ({"severity": "high"}, "severity"), ({"since_ms": 2, "until_ms": 1}, "since")],
)
def test_a_bad_filter_says_what_is_wrong(fields: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        IncidentFilter(**fields)


def test_a_label_waits_out_its_undo_window_and_only_its_author_can_undo_it() -> None:
    outbox = Outbox(undo_s=30)
    kept = outbox.add("alice", FALSE_ALARM, ["w1", "w1", "w2"], "incident a", now_ms=0)
    undone = outbox.add("alice", REAL_PROBLEM, ["w3"], "window w3", now_ms=0)
    assert kept.window_ids == ("w1", "w2")  # one record per window
    with pytest.raises(UndoError, match="alice's"):
        outbox.undo(undone.label_id, "bob")
    outbox.undo(undone.label_id, "alice")
    assert outbox.due(29_999) == []
    (sent,) = outbox.due(30_000)
    assert [(r["window_id"], r["verdict"], r["by"], r["at_ms"]) for r in sent.records()] == [
        ("w1", FALSE_ALARM, "alice", 0),
        ("w2", FALSE_ALARM, "alice", 0),
    ]
    with pytest.raises(UndoError, match="no longer pending"):
        outbox.undo(sent.label_id, "alice")
    with pytest.raises(ValueError, match="holds no window"):
        outbox.add("alice", FALSE_ALARM, [], "template x", now_ms=0)


def tokens_file(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize(
    ("entries", "complaint"),
    [
        ([{"user": "a", "role": "admin", "token": TOKEN}], "role must be one of"),
        ([{"user": "a", "role": "viewer", "token": "short"}], "16 or more"),
        ([{"user": "a", "role": "viewer"}], "exactly user, role and token"),
        ({"token": TOKEN}, "JSON list"),
    ],
)
def test_a_bad_tokens_file_is_refused_with_the_reason(tmp_path: Path, entries, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_tokens(tokens_file(tmp_path, entries))


def request(peer: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/label", "headers": raw, "client": (peer, 5000)})


def test_proxy_headers_are_believed_only_from_the_trusted_proxy(tmp_path: Path) -> None:
    access = Access(ConsoleSettings(trusted_proxies=("10.1.0.0/16",), operator_groups=("sre",)))
    headers = {"X-Forwarded-User": "carol", "X-Forwarded-Groups": "dev, sre"}
    assert access.principal(request("10.1.2.3", headers)) == Principal("carol", "operator")
    assert access.principal(request("10.1.2.3", {"X-Forwarded-User": "dan"})) == Principal("dan", "viewer")
    assert access.principal(request("192.168.1.5", headers)) is None  # anyone can send a header


def test_a_change_needs_the_operator_role_this_sites_origin_and_the_csrf_token(tmp_path: Path) -> None:
    access = Access(
        ConsoleSettings(tokens_file=tokens_file(tmp_path, [{"user": "a", "role": "operator", "token": TOKEN}]))
    )
    alice, viewer = Principal("alice", "operator"), Principal("victor", "viewer")
    here = {"Host": "console.example", "Origin": "http://console.example"}
    access.check_change(request("10.0.0.1", here), alice, {"csrf": access.csrf_token(alice)})  # allowed
    with pytest.raises(Forbidden, match="viewer role"):
        access.check_change(request("10.0.0.1", here), viewer, {"csrf": access.csrf_token(viewer)})
    with pytest.raises(Forbidden, match="CSRF"):
        access.check_change(request("10.0.0.1", here), alice, {"csrf": access.csrf_token(viewer)})
    with pytest.raises(Forbidden, match="another site"):
        evil = {"Host": "console.example", "Origin": "https://evil.example"}
        access.check_change(request("10.0.0.1", evil), alice, {"csrf": access.csrf_token(alice)})
    assert access.principal(request("10.0.0.1", {"Authorization": f"Bearer {TOKEN}"})) == Principal("a", "operator")
    assert access.principal(request("10.0.0.1", {"Authorization": "Bearer wrong-token-xxxxxxxx"})) is None


def test_no_way_in_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no way in"):
        Access(ConsoleSettings())
