"""The alerts topic's record in stream.records: the bytes the inference worker always wrote, and a decoder that
refuses anything else with a RecordError saying why, never another exception (the notifier and the console read
every record of the topic). Schema details (severity, summary, version 1) are tested in test_notify.py."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.errors import DecodeError
from stream.records import Alert, Cause, RecordError, SeverityPolicy, Verdict, alert_record, decode_alert_record

POLICY = SeverityPolicy()
T0 = 1_733_443_200_000
ALERT = Alert.opened("bgl", ("kernel panic <*>",), "w1", 0.95, T0)
VERDICT = Verdict(
    "w1", "bgl", "translog", "bgl/v0001", None, True, 0.95, 0.5, "anomalous", T0, T0 + 1000, 20,
    (Cause("kernel panic <*>", 0.6, (0,)),),
)  # fmt: skip
# Written by the inference worker before the record moved to stream.records (alert_record(ALERT, VERDICT, ..., T0 + 5))
WRITTEN = (
    b'{"alert_id":"171bedc4b76897eeb721e2c1cf0b5d9e","system":"bgl","templates":["kernel panic <*>"],"status":"open",'
    b'"count":1,"first_seen_ms":1733443200000,"last_seen_ms":1733443200000,"window_ids":["w1"],"max_score":0.95,'
    b'"last_score":0.95,"schema_version":2,"severity":"warning","summary":"bgl: 1 anomalous window; top templates: '
    b'kernel panic <*>","first_seen":"2024-12-06T00:00:00.000Z","last_seen":"2024-12-06T00:00:00.000Z",'
    b'"published_ms":1733443200005,"published_at":"2024-12-06T00:00:00.005Z","verdict":{"window_id":"w1",'
    b'"system":"bgl","family":"translog","model":"bgl/v0001","adapter_version":null,"zero_shot":true,"score":0.95,'
    b'"threshold":0.5,"label":"anomalous","first_event_ms":1733443200000,"last_event_ms":1733443201000,"lines":20,'
    b'"explanation":[{"template":"kernel panic <*>","weight":0.6,"offsets":[0]}],"truth":null,"threshold_rule":null,'
    b'"supervision":null}}'
)


def test_the_record_is_byte_for_byte_what_the_worker_wrote_and_decodes_back() -> None:
    assert alert_record(ALERT, VERDICT, POLICY, T0 + 5) == WRITTEN
    decoded = decode_alert_record(WRITTEN, POLICY)
    assert decoded.alert == ALERT and decoded.verdict == VERDICT.to_dict() and decoded.published_ms == T0 + 5
    assert Alert.from_dict(orjson.loads(WRITTEN)) == ALERT  # how a restarted worker reads its incidents back


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "an empty record is not an alert"),
        (b"not json", "not JSON: "),
        (b"[1, 2]", "an alert record is a JSON object, got list"),
        (b'{"alert_id": "x"}', "alert is missing"),
        (WRITTEN.replace(b'"count":1', b'"count":"1"'), "count must be an integer"),
        (WRITTEN.replace(b'"status":"open"', b'"status":"firing"'), "status must be one of"),
        (WRITTEN.replace(b'"system":"bgl","templates"', b'"system":"hdfs","templates"'), "alert_id does not match"),
        (WRITTEN.replace(b'"verdict":{', b'"verdict":[{').replace(b"}}", b"}]}"), "verdict must be an object"),
        (WRITTEN.replace(b'"severity":"warning"', b'"severity":"page"'), "severity must be one of"),
        (WRITTEN.replace(b'"schema_version":2', b'"schema_version":true'), "schema_version must be an integer"),
    ],
)
def test_a_malformed_alert_record_is_a_record_error_saying_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError, match=reason) as caught:
        decode_alert_record(value, POLICY)
    assert isinstance(caught.value, DecodeError | ValueError)  # dead-lettered or passed over, as before
    # the notifier's dead letter says "not an alert record: <reason>", with the reasons it always gave
    assert reason in caught.value.reason and not caught.value.reason.startswith("record")


def test_a_version_1_record_whose_verdict_explains_nothing_readable_still_decodes() -> None:
    # the summary of a version-1 record is built from its verdict: an explanation that is no list names no template
    legacy = orjson.dumps({**ALERT.to_dict(), "verdict": {"explanation": 5}})
    assert decode_alert_record(legacy, POLICY).summary == "bgl: 1 anomalous window; top templates: kernel panic <*>"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
FIELDS = [*orjson.loads(WRITTEN), "explanation"]


@given(st.sampled_from(FIELDS), json_values, st.booleans())
def test_decoding_raises_nothing_but_a_record_error(name: str, value: object, legacy: bool) -> None:
    document = orjson.loads(WRITTEN)
    if legacy:  # version 1: no schema fields, and the summary comes from the verdict
        document = {**ALERT.to_dict(), "verdict": document["verdict"]}
    if name == "explanation":
        document["verdict"]["explanation"] = value
    else:
        document[name] = value
    with contextlib.suppress(RecordError):
        decode_alert_record(orjson.dumps(document), POLICY)


@given(st.binary(max_size=60))
def test_decoding_any_bytes_raises_nothing_but_a_record_error(value: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode_alert_record(value, POLICY)
