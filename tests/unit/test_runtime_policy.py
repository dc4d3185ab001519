"""The runtime's error policies (stream.runtime.policy): each loop's table sends each error class to dead-letter,
retry or stop; one record's error is dead-lettered alone (each_record); dead letters are built one way."""

from __future__ import annotations

import base64

import orjson
import pytest
import torch
from aiokafka.errors import CommitFailedError, IllegalOperation, IllegalStateError, KafkaError

from stream.errors import BrokerError, ConfigError, DecodeError, IncompatibleArtifactError, ModelError, StateError
from stream.notify.http import DeliveryStopped
from stream.pipeline.stage import InputRecord
from stream.records import FeedbackError, Outgoing, RecordError, parse_feedback
from stream.runtime.dead_letters import DeadLetters, Unread
from stream.runtime.loop import StopLoop
from stream.runtime.policy import (
    COMMIT,
    DELIVERY,
    FEEDBACK_INTAKE,
    OUT_OF_DEVICE_MEMORY,
    RETRAIN,
    SCORING,
    STAGE_RECORD,
    WINDOW_INTAKE,
    Action,
    Backoff,
    ErrorPolicy,
    qualified_name,
)
from stream.runtime.processing import each_record

DEAD_LETTER, RETRY, SKIP, STOP = Action.DEAD_LETTER, Action.RETRY, Action.SKIP, Action.STOP


def json_error() -> orjson.JSONDecodeError:
    try:
        orjson.loads(b"{not json")
    except orjson.JSONDecodeError as exc:
        return exc
    raise AssertionError("orjson read bad JSON")


def feedback_error() -> FeedbackError:
    try:
        parse_feedback(b'{"kind": "label"}')
    except FeedbackError as exc:
        return exc
    raise AssertionError("parse_feedback took a label without a window_id")


OOM = torch.OutOfMemoryError("CUDA out of memory")

# (policy, an error of each class it names or must not name, what it decides)
TABLE = [
    (STAGE_RECORD, ValueError("bad"), DEAD_LETTER),
    (STAGE_RECORD, KeyError("field"), DEAD_LETTER),
    (STAGE_RECORD, DecodeError("parse", "bad"), DEAD_LETTER),
    (WINDOW_INTAKE, RecordError("missing field 'lines'"), DEAD_LETTER),
    (WINDOW_INTAKE, json_error(), DEAD_LETTER),
    (WINDOW_INTAKE, KeyError("lines"), DEAD_LETTER),
    (WINDOW_INTAKE, TypeError("NoneType"), DEAD_LETTER),
    (WINDOW_INTAKE, RuntimeError("a bug"), STOP),
    (WINDOW_INTAKE, BrokerError("gone"), STOP),
    (FEEDBACK_INTAKE, feedback_error(), DEAD_LETTER),
    (FEEDBACK_INTAKE, RecordError("field 'system' must be a string, not null"), DEAD_LETTER),
    (FEEDBACK_INTAKE, json_error(), DEAD_LETTER),
    (FEEDBACK_INTAKE, TypeError("a tombstone"), DEAD_LETTER),
    (FEEDBACK_INTAKE, ValueError("a bug"), STOP),
    (FEEDBACK_INTAKE, StateError("a bug"), STOP),
    (SCORING, OOM, RETRY),
    (SCORING, RuntimeError("shape mismatch"), DEAD_LETTER),
    (SCORING, ModelError("broken adapter"), DEAD_LETTER),
    (RETRAIN, ModelError("cannot publish"), RETRY),
    (RETRAIN, IncompatibleArtifactError("adapter", ["wrong base"]), RETRY),
    (RETRAIN, ConfigError("trainer.base", "unknown"), RETRY),
    (RETRAIN, OSError("volume gone"), RETRY),
    (RETRAIN, PermissionError("read-only volume"), RETRY),
    (RETRAIN, OOM, RETRY),
    (RETRAIN, ValueError("a bug"), STOP),  # used to back off like a data failure
    (RETRAIN, RuntimeError("torch: a bug"), STOP),
    (RETRAIN, TypeError("a bug"), STOP),
    (RETRAIN, StopLoop(), STOP),  # asked to stop: Stopped is ours, but not a failure to back off from
    (RETRAIN, DeliveryStopped(), STOP),
    (COMMIT, CommitFailedError("rebalanced"), SKIP),
    (COMMIT, IllegalStateError("not assigned"), SKIP),
    (COMMIT, TimeoutError(), SKIP),
    (COMMIT, IllegalOperation("no group"), STOP),
    (COMMIT, KafkaError("other"), STOP),
    (DELIVERY, KafkaError("refused"), STOP),
    (DELIVERY, TimeoutError(), STOP),
]


@pytest.mark.parametrize(("policy", "error", "action"), TABLE, ids=lambda v: getattr(v, "name", type(v).__name__))
def test_each_error_class_gets_its_action(policy: ErrorPolicy, error: BaseException, action: Action) -> None:
    assert policy.decide(error) is action


def test_the_most_specific_rule_wins_whatever_the_table_order() -> None:
    policy = ErrorPolicy("p", {Exception: DEAD_LETTER, LookupError: STOP, KeyError: SKIP})
    assert policy.decide(KeyError("k")) is SKIP
    assert policy.decide(IndexError(0)) is STOP  # a LookupError that no rule names itself
    assert policy.decide(ValueError("v")) is DEAD_LETTER
    assert ErrorPolicy("empty", {}).decide(ValueError("v")) is STOP  # what no rule names is a bug
    assert policy.decide(KeyboardInterrupt()) is STOP  # not an Exception: never dead-lettered


def test_a_class_named_by_its_qualified_name_is_the_real_class() -> None:
    # the runtime names torch's error without importing torch (the stream stages never load it)
    assert qualified_name(torch.OutOfMemoryError) == OUT_OF_DEVICE_MEMORY
    assert qualified_name(torch.cuda.OutOfMemoryError) == OUT_OF_DEVICE_MEMORY


def test_a_retry_needs_a_backoff_and_the_backoff_doubles_up_to_its_cap() -> None:
    with pytest.raises(ValueError, match="needs a backoff"):
        ErrorPolicy("p", {OSError: RETRY})
    with pytest.raises(ValueError):
        Backoff(first_s=10, max_s=1)
    assert RETRAIN.backoff is not None
    assert [RETRAIN.backoff.delay_s(n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]
    assert RETRAIN.backoff.delay_s(30) == 6 * 3600.0


def record(offset: int, value: bytes | None) -> InputRecord:
    return InputRecord("logs", 2, offset, None, value, 1_000 + offset)


def test_each_record_dead_letters_the_record_that_raises_and_goes_on() -> None:
    def process(r: InputRecord) -> list[Outgoing]:
        if r.value == b"bad":
            raise ValueError("cannot use it")
        return [Outgoing("out", r.value or b"")]

    letters = DeadLetters("parse", "deadletter")
    out = each_record([record(7, b"good"), record(8, b"bad"), record(9, b"more")], process, letters)
    assert [(o.topic, o.value) for o in out if o.topic == "out"] == [("out", b"good"), ("out", b"more")]
    [dead] = [o for o in out if o.topic == "deadletter"]
    letter = orjson.loads(dead.value)
    assert letter == {
        "stage": "parse",
        "reason": "ValueError: cannot use it",
        "topic": "logs",
        "partition": 2,
        "offset": 8,
        "index": None,
        "system": None,
        "original_b64": base64.b64encode(b"bad").decode(),
    }
    assert dead.key is None and dead.dead == ("parse", "error")


def test_each_record_raises_what_its_policy_does_not_dead_letter() -> None:
    def process(r: InputRecord) -> list[Outgoing]:
        raise BrokerError("not the record's fault")

    with pytest.raises(BrokerError):
        each_record([record(1, b"x")], process, DeadLetters("parse", "deadletter"), WINDOW_INTAKE)


def test_dead_letters_keep_the_original_bytes_key_and_count() -> None:
    seen = []
    letters = DeadLetters("infer", "deadletter", key=b"", on_letter=seen.append)
    out = letters.of("a window with no lines: nothing to score", record(3, None), system="hdfs")
    assert out.key == b"" and out.dead == ("infer", "empty")
    assert orjson.loads(out.value)["original_b64"] == ""  # a tombstone has no bytes
    [letter] = seen
    assert (letter.stage, letter.system, letter.offset) == ("infer", "hdfs", 3)
    # a position with no offset (the trainer's expired label) and bytes given in its place
    expired = orjson.loads(letters.of("unknown window_id", Unread("feedback"), b'{"kind":"label"}').value)
    assert (expired["topic"], expired["partition"], expired["offset"]) == ("feedback", -1, -1)
    assert base64.b64decode(expired["original_b64"]) == b'{"kind":"label"}'
