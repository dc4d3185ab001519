"""The model-updates topic: every kind round-trips through decode_model_update, the bytes stay those the trainer
and the console always wrote, and a malformed record is a RecordError naming its problem, never a crash."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.records import (
    ModelUpdate,
    RecordError,
    RetrainReport,
    RetrainSchedule,
    decode_model_update,
    encode,
)

ADAPTER = ModelUpdate("bgl", "v0003", "challenger F1 0.91 >= champion 0.88 + 0.01", 1_733_443_200_000)
ROLLBACK = ModelUpdate("bgl", "v0002", "rollback", 1_733_443_260_000, by="alice", previous="v0003")
PUBLISHED = RetrainReport("bgl", 1_733_443_200_000, "published v0003", False, 40, used_labels=36, f1=0.91)
FAILED = RetrainReport("bgl", 5, "failed", True, 12, error="RuntimeError: out of memory", retry_at_ms=65_005)
SCHEDULED = RetrainSchedule("bgl", 7, "after 10 more labels", {"total": 40, "anomalous": 8, "normal": 32, "unused": 0})
RECORDS = [ADAPTER, ROLLBACK, PUBLISHED, FAILED, SCHEDULED]


@pytest.mark.parametrize("record", RECORDS, ids=lambda record: f"{record.kind}:{record.target}")
def test_every_kind_round_trips(record: ModelUpdate | RetrainReport | RetrainSchedule) -> None:
    assert decode_model_update(encode(record)) == record


def test_the_bytes_are_those_adaptlog_always_wrote() -> None:
    # as the trainer's announce, the console's rollback, the retrain report and the schedule wrote them by hand
    assert orjson.loads(encode(ROLLBACK)) == {
        "kind": "adapter",
        "target": "bgl",
        "version": "v0002",
        "reason": "rollback",
        "at_ms": 1_733_443_260_000,
        "by": "alice",
        "from": "v0003",
    }
    written = b'{"kind":"retrain","target":"bgl","at_ms":5,"outcome":"failed","failed":true,'
    written += b'"error":"RuntimeError: out of memory","retry_at_ms":65005,"labels":12,"used_labels":null,"f1":null}'
    assert encode(FAILED) == written and decode_model_update(written) == FAILED
    assert [record.kind for record in RECORDS] == ["adapter", "adapter", "retrain", "retrain", "schedule"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "an empty record is not a model-updates record"),
        (b"", "an empty record"),
        (b"{not json", "must be JSON"),
        (b'["bgl"]', "must be a JSON object, not an array"),
        (b'{"target":"bgl"}', "missing field 'kind'"),
        (b'{"kind":"promote","target":"bgl"}', "field 'kind' must be one of adapter, retrain, schedule, not 'promote'"),
        (orjson.dumps({**ADAPTER.to_dict(), "version": 3}), "field 'version' must be a string, not a number"),
        (orjson.dumps({**ADAPTER.to_dict(), "target": ""}), "field 'target' is empty"),
        (orjson.dumps({**ROLLBACK.to_dict(), "from": ["v1"]}), "field 'from' must be a string or null"),
        (orjson.dumps({**PUBLISHED.to_dict(), "failed": "no"}), "field 'failed' must be a boolean, not a string"),
        (orjson.dumps({**PUBLISHED.to_dict(), "labels": 2.5}), "field 'labels' must be an integer, not 2.5"),
        (orjson.dumps({**PUBLISHED.to_dict(), "f1": "0.9"}), "field 'f1' must be a number or null"),
        (encode(FAILED).replace(b"65005", b"18446744073709551616"), "field 'retry_at_ms' must be an integer"),
        (orjson.dumps({**SCHEDULED.to_dict(), "labels": [1]}), "field 'labels' must be an object, not an array"),
        (orjson.dumps({**SCHEDULED.to_dict(), "labels": {"unused": None}}), "labels: field 'unused' must be an int"),
        (orjson.dumps({k: v for k, v in SCHEDULED.to_dict().items() if k != "at_ms"}), "missing field 'at_ms'"),
    ],
)
def test_a_malformed_record_names_its_problem(value: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        decode_model_update(value)


def test_a_record_decoded_as_another_kind_is_refused() -> None:
    with pytest.raises(RecordError, match="field 'kind' must be 'retrain' in this record, not 'schedule'"):
        RetrainReport.from_dict(SCHEDULED.to_dict())
    with pytest.raises(RecordError, match="must be 'adapter'"):
        ModelUpdate.from_dict(PUBLISHED.to_dict())


# what orjson can write: integers up to 64 bits (unsigned included), so past int64 still reaches the decoder
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@given(st.sampled_from(RECORDS), st.text(max_size=12), json_values)
def test_decoding_raises_nothing_but_a_record_error(record: object, name: str, value: object) -> None:
    document = record.to_dict()  # type: ignore[attr-defined]
    name = name if name else "kind"
    with contextlib.suppress(RecordError):
        decode_model_update(orjson.dumps({**document, name: value}))


@given(st.binary(max_size=40))
def test_decoding_any_bytes_raises_nothing_but_a_record_error(value: bytes) -> None:
    with contextlib.suppress(RecordError):
        decode_model_update(value)
