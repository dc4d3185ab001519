"""Window records: the stream's fast window encoding is byte for byte the record's own, and ids never change."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.errors import DecodeError
from stream.records import (
    ANOMALOUS,
    NORMAL,
    Cause,
    ModelUpdate,
    RecordError,
    Verdict,
    Window,
    WindowLine,
    encode,
    encode_window,
    window_id_for,
)


def lines(labels: list[str | None]) -> tuple[WindowLine, ...]:
    return tuple(
        WindowLine(
            topic="logs-ü",
            partition=i % 3,
            offset=1_000 + i,
            event_ms=1_600_000_000_000 + i,
            template_id=i % 2,
            template=f'Receiving block <*> src: <*> "quoted" {i % 2}',
            masked=f"Receiving block blk_<*> src: /<*> ünïcode {i}",
            label=label,
        )
        for i, label in enumerate(labels)
    )


def historic_window_id(system: str, policy: str, key: str, window_lines: tuple[WindowLine, ...]) -> str:
    """The id as adaptlog first computed it (one digest update per line): feedback and alerts key on it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{system}\x1f{policy}\x1f{key}".encode())
    for line in window_lines:
        digest.update(f"\x1e{line.topic}\x1f{line.partition}\x1f{line.offset}".encode())
    return digest.hexdigest()


@pytest.mark.parametrize(
    "labels",
    [[None] * 5, [NORMAL] * 4, [NORMAL, ANOMALOUS, NORMAL], [NORMAL, None, NORMAL], [ANOMALOUS, None], []],
)
def test_encode_window_writes_the_bytes_of_the_window_record(labels: list[str | None]) -> None:
    window_lines = lines(labels)
    record = Window(
        window_id_for("hdfs", "session", "blk_7", window_lines),
        "hdfs",
        "session",
        "blk_7",
        5,
        9,
        "gap",
        window_lines,
    )
    fast = encode_window("hdfs", "session", "blk_7", 5, 9, "gap", [line.to_dict() for line in window_lines])
    assert fast == encode(record)
    assert Window.from_dict(orjson.loads(fast)) == record
    assert orjson.loads(fast)["label"] == record.label


def test_window_ids_are_the_ids_adaptlog_always_gave() -> None:
    window_lines = lines([NORMAL] * 30)
    assert window_id_for("bgl", "count_tumbling", "", window_lines) == historic_window_id(
        "bgl", "count_tumbling", "", window_lines
    )
    assert window_id_for("bgl", "count_tumbling", "", ()) == historic_window_id("bgl", "count_tumbling", "", ())


def test_encode_window_refuses_a_line_missing_a_field() -> None:
    broken = lines([NORMAL])[0].to_dict()
    del broken["masked"]
    with pytest.raises(KeyError, match="masked"):
        encode_window("hdfs", "session", "blk_7", 5, 9, "gap", [broken])


def window_record_dict() -> dict:
    window_lines = lines([NORMAL, None])
    window = Window(
        window_id_for("hdfs", "session", "blk_7", window_lines), "hdfs", "session", "blk_7", 5, 9, "gap", window_lines
    )
    return orjson.loads(encode(window))


def with_line(**changes: object) -> dict:
    record = window_record_dict()
    record["lines"][1] = {**record["lines"][1], **changes}
    return record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([1, 2], "a window record must be a JSON object, not an array"),
        ({**window_record_dict(), "window_id": None}, "field 'window_id' must be a string, not null"),
        ({**window_record_dict(), "window_id": 7}, "field 'window_id' must be a string, not a number"),
        ({**window_record_dict(), "window_id": ""}, "field 'window_id' is empty"),
        ({**window_record_dict(), "system": None}, "field 'system' must be a string, not null"),
        ({**window_record_dict(), "system": {"a": 1}}, "field 'system' must be a string, not an object"),
        ({**window_record_dict(), "system": ["hdfs"]}, "field 'system' must be a string, not an array"),
        ({**window_record_dict(), "policy": 3}, "field 'policy' must be a string"),
        ({k: v for k, v in window_record_dict().items() if k != "reason"}, "missing field 'reason'"),
        ({**window_record_dict(), "start_ms": "5"}, "field 'start_ms' must be an integer, not a string"),
        ({**window_record_dict(), "start_ms": True}, "field 'start_ms' must be an integer, not a boolean"),
        ({**window_record_dict(), "end_ms": 5.5}, "field 'end_ms' must be an integer, not 5.5"),
        ({**window_record_dict(), "end_ms": 2**63}, "field 'end_ms' is out of the 64-bit integer range"),
        ({**window_record_dict(), "end_ms": -(2**63) - 1}, "field 'end_ms' is out of the 64-bit integer range"),
        ({**window_record_dict(), "lines": "a"}, "field 'lines' must be an array, not a string"),
        ({**window_record_dict(), "lines": [None]}, "lines[0]: a window line must be a JSON object, not null"),
        (with_line(template=5), "lines[1]: field 'template' must be a string, not a number"),
        (with_line(masked=["a"]), "lines[1]: field 'masked' must be a string, not an array"),
        (with_line(offset=2**64), "lines[1]: field 'offset' is out of the 64-bit integer range"),
        (with_line(label=1), "lines[1]: field 'label' must be a string or null, not a number"),
        ({**window_record_dict(), "lines": [{"topic": "t"}]}, "lines[0]: missing field 'partition'"),
    ],
)
def test_a_window_record_with_a_bad_field_raises_a_record_error_naming_it(record: object, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        Window.from_dict(record)
    assert reason in caught.value.reason
    # dead-lettered by every consumer: the trainer catches DecodeError, the inference worker ValueError
    assert isinstance(caught.value, DecodeError) and isinstance(caught.value, ValueError)


def test_a_window_record_keeps_its_64_bit_extremes_and_ignores_unknown_fields() -> None:
    record = {**window_record_dict(), "start_ms": -(2**63), "end_ms": 2**63 - 1, "future_field": {"x": 1}}
    record["lines"][0]["future_field"] = 1
    window = Window.from_dict(orjson.loads(orjson.dumps(record)))
    assert (window.start_ms, window.end_ms) == (-(2**63), 2**63 - 1)
    assert window.lines == lines([NORMAL, None])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


WINDOW_FIELDS = ["window_id", "system", "policy", "key", "start_ms", "end_ms", "reason", "lines"]
LINE_FIELDS = ["topic", "partition", "offset", "event_ms", "template_id", "template", "masked", "label"]


@given(st.sampled_from(WINDOW_FIELDS + LINE_FIELDS), json_values)
def test_decoding_a_window_record_raises_nothing_but_a_record_error(name: str, value: object) -> None:
    for record in ({**window_record_dict(), name: value}, with_line(**{name: value})):
        try:
            window = Window.from_dict(record)
        except RecordError:
            continue
        assert isinstance(window.window_id, str) and isinstance(window.system, str)
        assert all(isinstance(line.template, str) and isinstance(line.masked, str) for line in window.lines)


def verdict(**changes: object) -> Verdict:
    fields = dict(
        window_id="w1",
        system="thunderbird",
        family="translog",
        model="bgl/v0001",
        adapter_version="v0002",
        zero_shot=False,
        score=0.91,
        threshold=0.42,
        label=ANOMALOUS,
        first_event_ms=1_600_000_000_000,
        last_event_ms=1_600_000_000_500,
        lines=20,
        explanation=(Cause("kernel panic <*>", 0.5, (3, 4)),),
        truth=ANOMALOUS,
        threshold_rule="false-alarm-budget",
    )
    return Verdict(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("rule", ["false-alarm-budget", "best-f1", None])
def test_a_verdict_says_which_rule_set_its_threshold_and_round_trips(rule: str | None) -> None:
    sent = verdict(threshold_rule=rule)
    decoded = Verdict.from_dict(orjson.loads(encode(sent)))
    assert decoded == sent and decoded.to_dict()["threshold_rule"] == rule


def test_a_verdict_written_before_threshold_rules_still_decodes() -> None:
    old = verdict().to_dict()
    del old["threshold_rule"]  # the record as adaptlog wrote it before the field existed
    decoded = Verdict.from_dict(orjson.loads(orjson.dumps(old)))
    assert decoded.threshold_rule is None and decoded == verdict(threshold_rule=None)


def test_a_model_update_round_trips_and_a_bad_one_names_its_field() -> None:
    update = ModelUpdate("thunderbird", "v0003", "retrained from feedback", 1_733_443_200_000)
    assert ModelUpdate.from_dict(orjson.loads(orjson.dumps(update.to_dict()))) == update
    with pytest.raises(RecordError, match="'version'"):
        ModelUpdate.from_dict({**update.to_dict(), "version": 3})
    with pytest.raises(RecordError, match="JSON object"):
        ModelUpdate.from_dict(["thunderbird"])


def test_a_rollback_update_names_who_and_what_it_left() -> None:
    update = ModelUpdate("tb", "v0001", "rollback", 5, by="alice", previous="v0002")
    record = update.to_dict()
    assert (record["by"], record["from"]) == ("alice", "v0002")
    assert ModelUpdate.from_dict(record) == update
    with pytest.raises(RecordError, match="'by'"):
        ModelUpdate.from_dict({**record, "by": 7})
