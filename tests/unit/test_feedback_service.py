"""The feedback service without a broker: its intake (``_store_records``) and retrain loop (``_maybe_start_retrain``,
``next_due``) on a real SQLite store and a real registry holding a small TransLog base; records come in as the
ConsumerRecords the consumer hands over, and announcements go to an in-memory producer (the Kafka edge)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from stream.model.families import family_class
from stream.model.registry import Registry
from stream.records import LabeledSequence, Window, WindowLabel, WindowLine, window_id_for
from stream.runtime.policy import RETRAIN
from stream.settings import Settings
from trainer.feedback.service import FeedbackService
from trainer.feedback.store import LabelStore
from trainer.service_cli import status

BASE = "base"


@pytest.fixture(scope="module")
def base_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding an untrained small TransLog base: retrains on it take seconds."""
    root = tmp_path_factory.mktemp("base-registry")
    detector = family_class("translog").create({"layers": 1, "max_len": 20, "adapter_dim": 32}, seed=0)
    Registry(root).save_base(detector, BASE, source="test", threshold=0.5, training={}, metrics={})
    return root


@pytest.fixture
def settings(base_registry: Path, tmp_path: Path) -> Settings:
    shutil.copytree(base_registry, tmp_path / "registry")
    return Settings(trainer={"registry": tmp_path / "registry", "base": BASE, "min_new_labels": 10})


@pytest.fixture
def store(settings: Settings) -> Iterator[LabelStore]:
    with LabelStore(settings.trainer.registry / "labels.sqlite") as opened:
        yield opened


def consumer_record(topic: str, offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, len(value or b""), 0, [])


class SentRecords:
    """The one producer call the retrain loop makes (announcing a published adapter), kept in memory."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((topic, value, key))


def window(system: str, i: int) -> Window:
    lines = tuple(
        WindowLine("logs", 0, 10 * i + j, 1000 * i + j, j, f"{system} step {j} <*>", f"{system} step {j} {i}")
        for j in range(3)
    )
    return Window(window_id_for(system, "session", f"k{i}", lines), system, "session", f"k{i}", 0, 1, "gap", lines)


def add_labeled_windows(store: LabelStore, system: str, count: int, now_ms: int) -> None:
    for i in range(count):
        store.add_window(window(system, i), now_ms)
        store.add_label(WindowLabel(window(system, i).window_id, i % 2), now_ms)


def test_a_sequence_naming_a_system_the_registry_cannot_name_is_dead_lettered(
    settings: Settings, store: LabelStore
) -> None:
    service = FeedbackService(settings, store)
    records = [
        consumer_record(
            settings.topics.feedback,
            offset,
            orjson.dumps({"kind": "sequence", "system": system, "label": "anomalous", "templates": ["a <*>"]}),
        )
        for offset, system in enumerate(["my system", "../etc", "bgl"])
    ]
    letters = service._store_records(records)
    assert len(letters) == 2
    reasons = [orjson.loads(letter.value)["reason"] for letter in letters]
    assert all("cannot have an adapter" in reason for reason in reasons), reasons
    assert "'my system'" in reasons[0] and "'../etc'" in reasons[1]
    assert store.systems() == ["bgl"]  # the good one is kept
    assert service.counts["dead_letters"] == 2


def test_a_failing_retrain_is_recorded_and_backed_off_and_the_other_targets_still_retrain(
    settings: Settings, store: LabelStore
) -> None:
    # The stream may serve a system the registry cannot name: its windows and labels are stored, but its retrain
    # raises ModelError when it publishes. Sorted first, it used to be picked (and crash the service) every time.
    add_labeled_windows(store, "my system", 12, now_ms=1_000)
    add_labeled_windows(store, "zz-ok", 12, now_ms=1_000)
    service = FeedbackService(settings, store)
    producer = SentRecords()

    async def two_checks() -> None:
        service._maybe_start_retrain(producer)  # type: ignore[arg-type]
        assert service._training is not None
        await service._training
        service._maybe_start_retrain(producer)  # type: ignore[arg-type]  # used to re-raise the first one's error
        await service._training

    asyncio.run(two_checks())
    [failed] = store.history("my system")
    assert failed["failed"] and not failed["published"] and failed["failures"] == 1
    assert "ModelError" in failed["error"] and "'my system'" in failed["error"]
    assert failed["retry_at_ms"] == failed["at_ms"] + int(RETRAIN.backoff.first_s * 1000)
    assert store.counts("my system")["unused"] == 12  # nothing judged its labels
    [judged] = store.history("zz-ok")  # the other target got its turn
    assert "failed" not in judged and store.counts("zz-ok")["unused"] == 0
    assert service.counts["failed"] == 1
    assert service.metrics.registry.get_sample_value("adaptlog_trainer_retrains_total", {"result": "failed"}) == 1

    assert service.next_due(now=failed["retry_at_ms"] - 1) is None  # backing off, not a tight loop
    assert service.next_due(now=failed["retry_at_ms"]) == ("my system", "12 new labels")
    asyncio.run(service._retrain("my system", "12 new labels", producer))  # type: ignore[arg-type]
    again = store.last_retrain("my system")
    assert again["failures"] == 2  # the wait doubles per failure in a row
    assert again["retry_at_ms"] == again["at_ms"] + int(2 * RETRAIN.backoff.first_s * 1000)

    shown = status(settings)["targets"]["my system"]
    assert shown["last_retrain"]["failed"] and shown["serving"] is None
    assert "backing off after 2 failed retrains" in shown["next_retrain"]


def test_malformed_window_records_are_dead_lettered_and_the_good_ones_kept(
    settings: Settings, store: LabelStore
) -> None:
    good = window("hdfs", 1).to_dict()
    line = good["lines"][0]
    bad = {
        "system null": {**good, "system": None},  # was dropped without a word by INSERT OR IGNORE
        "system object": {**good, "system": {"a": 1}},  # was sqlite3.ProgrammingError: the service crashed
        "system list": {**good, "system": ["hdfs"]},
        "window_id null": {**good, "window_id": None},  # was stored with a NULL id
        "window_id number": {**good, "window_id": 7},  # was stored as '7'
        "template number": {**good, "lines": [{**line, "template": 5}]},  # was stored as [5]
        "end_ms 2**63": {**good, "end_ms": 2**63},  # was OverflowError: the service crashed
        "not an object": [good],
    }
    values = [orjson.dumps(record) for record in bad.values()]
    values.append(orjson.dumps({**good, "end_ms": 0}).replace(b'"end_ms":0', b'"end_ms":18446744073709551616'))
    values.append(None)  # a tombstone
    values.append(orjson.dumps(good))
    service = FeedbackService(settings, store)
    records = [consumer_record(settings.topics.windows, offset, value) for offset, value in enumerate(values)]
    letters = service._store_records(records)
    assert len(letters) == len(values) - 1
    reasons = [orjson.loads(letter.value)["reason"] for letter in letters]
    assert all(reason.startswith("not a window record: ") for reason in reasons), reasons
    assert "field 'system' must be a string, not null" in reasons[0]
    assert "lines[0]: field 'template' must be a string, not a number" in reasons[5]
    assert [row[0] for row in store._read("SELECT window_id FROM windows")] == [good["window_id"]]
    assert service.counts["windows"] == 1


def test_the_target_whose_labels_waited_longest_retrains_first(settings: Settings, store: LabelStore) -> None:
    service = FeedbackService(settings, store)  # min_new_labels 10, max_interval_s 1 h
    hour = 3_600_000
    add_labeled_windows(store, "zzz", 10, now_ms=0)  # a quiet target, due since it has 10 labels
    busy = 0
    picked = []
    for round_ in range(3):
        # the busy target, sorted first, gathers min_new_labels while each retrain runs
        for _ in range(12):
            store.add_sequence(LabeledSequence("aaa", (f"t{busy}",), (f"t{busy}",), busy % 2, f"id{busy}"), hour)
            busy += 1
        system, why = service.next_due(now=2 * hour + round_)
        picked.append((system, why))
        store.mark_used(system, [e.window_id for e in store.labeled(system)], f"v{round_}")
    assert picked == [
        ("zzz", "10 new labels"),
        ("aaa", "24 new labels"),
        ("aaa", "12 new labels"),
    ]
    # a trickle on both: each due by max_interval_s, and zzz's oldest unused label is older
    add_labeled_windows(store, "zzz", 12, now_ms=hour)
    store.add_sequence(LabeledSequence("aaa", ("late",), ("late",), 1, "late"), 2 * hour)
    assert service.next_due(now=4 * hour) == ("zzz", "2 new labels, the oldest waiting 3600s")


def test_relabels_written_while_a_retrain_runs_stay_unused_whatever_their_timestamp(
    settings: Settings, store: LabelStore
) -> None:
    stamp = int(time.time() * 1000) - 1_000  # a batch stamps its records when it starts, before the retrain reads
    add_labeled_windows(store, "hdfs", 12, now_ms=stamp)
    service = FeedbackService(settings, store)
    relabeled = [window("hdfs", i).window_id for i in range(6)]

    async def relabel_while_training() -> None:
        training = asyncio.create_task(service._retrain("hdfs", "12 new labels", SentRecords()))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the task reads its labels, then trains on a worker thread
        assert not training.done()
        for i, window_id in enumerate(relabeled):  # the rest of the batch lands now, stamped before the read
            assert store.add_label(WindowLabel(window_id, 1 - i % 2), now_ms=stamp) == "relabeled"
        await training

    asyncio.run(relabel_while_training())
    examples = {e.window_id: e for e in store.labeled("hdfs")}
    assert [window_id for window_id, e in examples.items() if not e.used] == relabeled  # not trained on: still new
    assert all(examples[window("hdfs", i).window_id].used for i in range(6, 12))
    assert store.counts("hdfs")["unused"] == 6


def test_a_base_that_is_not_served_fails_the_retrain_and_leaves_its_labels_unused(
    settings: Settings, store: LabelStore
) -> None:
    (settings.trainer.registry / "bases" / BASE / "SERVING").unlink()  # e.g. removed by hand, mid-change
    add_labeled_windows(store, "hdfs", 12, now_ms=1_000)
    service = FeedbackService(settings, store)
    asyncio.run(service._retrain("hdfs", "12 new labels", SentRecords()))  # type: ignore[arg-type]
    [failed] = store.history("hdfs")
    assert failed["failed"] and f"no serving base '{BASE}'" in failed["error"]
    assert store.counts("hdfs")["unused"] == 12  # used to be marked used by a "rejected" retrain that judged nothing


def test_a_registry_volume_error_while_publishing_backs_off_and_keeps_the_labels(
    settings: Settings, store: LabelStore
) -> None:
    # labels the challenger can learn (and the held-out part agrees): it beats the zero-shot base and publishes
    for i in range(40):
        text = ("kernel panic <*> fatal error",) if i % 2 else ("user login <*> succeeded",)
        store.add_sequence(LabeledSequence("quiet", text, text, i % 2, f"s{i}"), 1_000)
    shutil.rmtree(settings.trainer.registry / ".staging")
    (settings.trainer.registry / ".staging").write_text("not a directory")  # where publishing stages its copy
    service = FeedbackService(settings, store)
    producer = SentRecords()
    asyncio.run(service._retrain("quiet", "40 new labels", producer))  # type: ignore[arg-type]
    [failed] = store.history("quiet")
    assert failed["failed"] and "Error" in failed["error"], failed
    assert store.counts("quiet")["unused"] == 40
    [reported] = [orjson.loads(value) for _, value, _ in producer.sent]  # a failure is reported, nothing announced
    assert reported["kind"] == "retrain" and reported["failed"] and reported["error"] == failed["error"]
    assert reported["retry_at_ms"] == failed["retry_at_ms"] and reported["labels"] == 40

    (settings.trainer.registry / ".staging").unlink()  # the volume is back
    assert service.next_due(now=failed["retry_at_ms"]) == ("quiet", "40 new labels")
    asyncio.run(service._retrain("quiet", "40 new labels", producer))  # type: ignore[arg-type]
    published = store.last_retrain("quiet")
    assert published["published"] and published["version"] == "v0001", published
    sent = [orjson.loads(value) for _, value, _ in producer.sent[1:]]
    assert [(r["kind"], r.get("version")) for r in sent] == [("retrain", None), ("adapter", "v0001")]
    assert sent[0]["outcome"] == "published v0001" and sent[0]["used_labels"] == published["used_labels"]


@pytest.mark.parametrize("rule", ["false-alarm-budget", "score-mixture"])
def test_a_system_with_unlabeled_traffic_and_no_adapter_gets_a_zero_label_one_once(
    settings: Settings, store: LabelStore, rule: str
) -> None:
    trainer = {"min_unlabeled": 20, "false_alarms_per_1000": 100.0, "zero_label_rule": rule}
    settings = settings.model_copy(update={"trainer": settings.trainer.model_copy(update=trainer)})
    for i in range(19):
        store.add_window(window("quiet", i), 1_000)  # one short of the minimum
    for i in range(30):
        store.add_window(window("busy", i), 1_000)
    add_labeled_windows(store, "labeled", 25, now_ms=1_000)  # labeled windows are no unlabeled traffic
    service = FeedbackService(settings, store)
    assert service.zero_label_due() == ("busy", 20)  # counted up to the minimum only
    assert store.unlabeled_count("busy", 1000) == 30 and store.unlabeled_count("labeled", 1000) == 0
    producer = SentRecords()

    async def check() -> None:
        service._training = None
        service._maybe_start_retrain(producer)  # type: ignore[arg-type]
        assert service._training is not None
        await service._training

    # "labeled" has 25 labels and is due a labeled retrain first; then "busy" gets its zero-label adapter
    asyncio.run(check())
    asyncio.run(check())
    pointer = service.registry.pointer("adapter", "busy")
    assert pointer is not None and service.registry.pointer("adapter", "quiet") is None
    manifest = service.registry.serving("adapter", "busy")
    assert manifest.supervision == "zero-label" and manifest.threshold_rule == rule
    if rule == "score-mixture":  # 30 windows show no mode of a few percent: the budget, and the manifest says why
        assert "too few" in manifest.metrics["validation"]["threshold_detail"]["fallback"]
    assert manifest.training["unlabeled"]["windows"] == 30
    [entry] = store.history("busy")
    assert entry["zero_label"] and entry["published"] and entry["version"] == pointer.version
    updates = [orjson.loads(value) for topic, value, _ in producer.sent if topic == settings.topics.model_updates]
    assert ("busy", pointer.version) in {(u["target"], u.get("version")) for u in updates}
    assert service.zero_label_due() is None  # it serves an adapter now: never again
    assert service.metrics.registry.get_sample_value("adaptlog_trainer_retrains_total", {"result": "zero_label"}) == 1
    [labeled] = store.history("labeled")  # its turn came first, as a labeled retrain
    assert "zero_label" not in labeled and labeled["labels"]["train"] > 0


def test_the_next_retrain_goes_to_model_updates_when_it_changes_and_after_each_retrain(
    settings: Settings, store: LabelStore
) -> None:
    add_labeled_windows(store, "hdfs", 6, now_ms=1_000)  # min_new_labels 10, min_per_class 5 (the default)
    service = FeedbackService(settings, store)
    producer = SentRecords()

    def schedules() -> list[dict]:
        sent = [orjson.loads(value) for topic, value, _ in producer.sent if topic == settings.topics.model_updates]
        producer.sent.clear()
        return [record for record in sent if record["kind"] == "schedule"]

    asyncio.run(service._announce_schedules(producer))  # type: ignore[arg-type]
    [first] = schedules()
    assert first["target"] == "hdfs" and first["labels"] == {"total": 6, "anomalous": 3, "normal": 3, "unused": 6}
    assert first["next_retrain"] == "after 2 more anomalous and 2 more normal labels (a retrain needs 5 of each class)"
    asyncio.run(service._announce_schedules(producer))  # type: ignore[arg-type]
    assert schedules() == []  # nothing changed: nothing sent

    add_labeled_windows(store, "hdfs", 12, now_ms=2_000)  # 12 labeled windows in all (6 of them relabeled)

    async def retrain_and_announce() -> None:
        service._maybe_start_retrain(producer)  # type: ignore[arg-type]
        assert service._training is not None
        await service._training  # the retrain, then the schedules it changed

    asyncio.run(retrain_and_announce())
    [after] = schedules()
    assert after["labels"]["unused"] == 0 and after["next_retrain"] == "after 10 more labels"
    assert status(settings)["targets"]["hdfs"]["next_retrain"] == "after 10 more labels"
