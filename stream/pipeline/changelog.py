"""One stage partition's checkpoint as records on the compacted state topic: keys, values, and how they read back.

Pure (no Kafka): ``checkpoint.py`` sends the records a :class:`PartitionChangelog` plans, in its order, and feeds
what it reads back to a :class:`ChangelogReader`. Why the records look like this is told there.

A stage partition named ``stage/topic/p`` writes, per checkpoint (epoch ``E`` = 1, 2, ...):

* before the head: a tombstone for each record of an interrupted checkpoint (see below), then one *entry* record
  per changed entry, keyed ``stage/topic/p#E#<entry id>``: its value (zlib'd JSON), or ``b""`` (a *closed marker*)
  for an entry that is gone;
* the *head*, keyed ``stage/topic/p`` (format 2): the next input offset, ``E``, the number of live entries, and
  the partition's small state, written whole;
* after the head: tombstones for the versions the new ones superseded, and for closed entries their older versions
  and then the marker itself (in that order, so no reader sees the old version without the marker above it).

Reading back: the committed version of an entry is its highest epoch at or below the head's; a marker there means
the entry is gone. Records of higher epochs belong to a checkpoint that never wrote its head (interrupted): they are
ignored, tombstoned before the next head, and the next checkpoint takes an epoch above every one seen, so they can
never be mistaken for committed ones. Versions below the committed one are left over from an interrupted clean-up
and are tombstoned after the next head. A format-1 head (the whole state in one record, ``WHOLE_STATE_VERSION``)
counts as epoch 0: every entry is then left over, and the state is the head's.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.errors import StateError

WHOLE_STATE_VERSION = 1  # until 2026-12: one record per partition holding the offset and the whole state
HEAD_VERSION = 2
CLOSED = b""  # an entry record with this value says the entry is gone (a Kafka tombstone is None)
_SEPARATOR = "#"  # never in a stage name or a topic name (Kafka allows [a-zA-Z0-9._-])

Record = tuple[bytes, bytes | None]  # key, value (None: a tombstone)


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What a stage partition hands to a checkpoint: its small state whole, and its entries changed since the last."""

    head: dict[str, Any]
    entries: dict[str, Any] = field(default_factory=dict)  # entry id -> its value now; None: the entry is gone


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A restored checkpoint: the next input offset, and the state as of it."""

    offset: int
    state: dict[str, Any]  # the head's state (format 2), or the whole state (format 1)
    entries: dict[str, Any] | None  # every committed entry (format 2); None: ``state`` is whole (format 1)


def changelog_name(stage: str, topic: str, partition: int) -> str:
    return f"{stage}/{topic}/{partition}"


def name_of_key(key: bytes) -> str:
    """The changelog a state-topic record belongs to (its head's key, or its entries' prefix)."""
    return key.decode(errors="replace").split(_SEPARATOR, 1)[0]


def entry_key(name: str, epoch: int, entry_id: str) -> bytes:
    return f"{name}{_SEPARATOR}{epoch}{_SEPARATOR}{entry_id}".encode()


def encode_value(value: Any) -> bytes:
    return zlib.compress(orjson.dumps(value), 1)  # fast level: window state is repetitive text


def decode_value(data: bytes, where: str) -> Any:
    try:
        return orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise StateError(f"{where}: checkpoint record is malformed: {exc}") from exc


def encode_head(offset: int, epoch: int, entries: int, state: dict[str, Any]) -> bytes:
    document = {"version": HEAD_VERSION, "offset": offset, "epoch": epoch, "entries": entries, "state": state}
    return encode_value(document)


def encode_whole_state(offset: int, state: dict[str, Any]) -> bytes:
    """A format-1 record (the whole state with its offset), as builds before the changelog wrote them.

    Kept to compare against (bench/checkpoint_bench.py) and to test their migration."""
    return encode_value({"version": WHOLE_STATE_VERSION, "offset": offset, "state": state})


@dataclass(frozen=True, slots=True)
class CheckpointPlan:
    """The records of one checkpoint, in three groups that are each acknowledged before the next is sent."""

    before_head: list[Record]
    head: Record
    after_head: list[Record]
    epoch: int
    live: dict[str, int]  # entry id -> epoch of its committed version, once the head is written

    @property
    def records(self) -> list[Record]:
        return [*self.before_head, self.head, *self.after_head]

    @property
    def size(self) -> int:
        """Bytes of keys and values written."""
        return sum(len(key) + len(value or b"") for key, value in self.records)


@dataclass
class PartitionChangelog:
    """What the writer of one stage partition's changelog knows of it: the committed epoch and entries, and what
    the next checkpoint must clean up. Built by :class:`ChangelogReader` on restore."""

    name: str
    epoch: int = 0  # the committed head's epoch; 0: none, or a format-1 head
    next_epoch: int = 1  # above every epoch seen in the log, committed or not
    live: dict[str, int] = field(default_factory=dict)
    garbage: list[bytes] = field(default_factory=list)  # keys of interrupted checkpoints: gone before the next head
    retired: list[bytes] = field(default_factory=list)  # superseded keys, in order: gone after the next head

    def plan(self, offset: int, changes: StateChanges) -> CheckpointPlan:
        epoch = self.next_epoch
        before: list[Record] = [(key, None) for key in self.garbage]
        after: list[Record] = [(key, None) for key in self.retired]
        live = dict(self.live)
        for entry_id, value in changes.entries.items():
            previous = live.get(entry_id)
            key = entry_key(self.name, epoch, entry_id)
            if value is not None:
                before.append((key, encode_value(value)))
                live[entry_id] = epoch
                if previous is not None:
                    after.append((entry_key(self.name, previous, entry_id), None))
            elif previous is not None:  # gone; an entry the changelog never held needs no record
                before.append((key, CLOSED))
                del live[entry_id]
                after += [(entry_key(self.name, previous, entry_id), None), (key, None)]
        head = (self.name.encode(), encode_head(offset, epoch, len(live), changes.head))
        return CheckpointPlan(before, head, after, epoch, live)

    def commit(self, plan: CheckpointPlan) -> None:
        """Every record of ``plan`` is acknowledged."""
        self.epoch, self.next_epoch = plan.epoch, plan.epoch + 1
        self.live = plan.live
        self.garbage, self.retired = [], []


class ChangelogReader:
    """Collects the records of one changelog, in log order, and resolves them to the committed checkpoint."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._head_key = name.encode()
        self._entry_prefix = self._head_key + _SEPARATOR.encode()
        self._head: bytes | None = None
        self._versions: dict[str, dict[int, bytes]] = {}

    def add(self, key: bytes, value: bytes | None) -> None:
        if key == self._head_key:
            self._head = value  # a tombstone deletes the checkpoint
            return
        if not key.startswith(self._entry_prefix):
            return
        try:
            epoch_text, _, entry_id = key[len(self._entry_prefix) :].decode().partition(_SEPARATOR)
        except UnicodeDecodeError:
            epoch_text = ""
        if not epoch_text.isdigit():
            raise StateError(f"{self.name}: checkpoint record with a malformed key {key!r}")
        versions = self._versions.setdefault(entry_id, {})
        if value is None:
            versions.pop(int(epoch_text), None)
        else:
            versions[int(epoch_text)] = value

    def result(self) -> tuple[Checkpoint | None, PartitionChangelog]:
        """The committed checkpoint (None: none was ever written), and the writer's knowledge to go on from it.

        StateError when the head is malformed or of an unknown format, or when the entries do not add up to the
        number the head counted (a record lost: restoring would silently drop state)."""
        checkpoint, epoch, counted = self._read_head()
        changelog = PartitionChangelog(self.name, epoch=epoch)
        entries: dict[str, Any] = {}
        highest = epoch
        for entry_id, versions in self._versions.items():
            if not versions:
                continue  # every version tombstoned
            highest = max(highest, *versions)
            changelog.garbage += [entry_key(self.name, v, entry_id) for v in sorted(versions) if v > epoch]
            committed = sorted(v for v in versions if v <= epoch)
            if not committed:
                continue
            *older, top = committed
            changelog.retired += [entry_key(self.name, v, entry_id) for v in older]
            if versions[top] == CLOSED:
                changelog.retired.append(entry_key(self.name, top, entry_id))  # after the older ones: see plan()
            else:
                entries[entry_id] = decode_value(versions[top], f"{self.name} entry {entry_id}")
                changelog.live[entry_id] = top
        changelog.next_epoch = highest + 1
        if checkpoint is None or checkpoint.entries is None:
            return checkpoint, changelog
        if len(entries) != counted:
            held = len(entries)
            raise StateError(f"{self.name}: checkpoint {epoch} counts {counted} entries, the state topic holds {held}")
        return Checkpoint(checkpoint.offset, checkpoint.state, entries), changelog

    def _read_head(self) -> tuple[Checkpoint | None, int, int]:
        """(checkpoint without its entries, its epoch, the entries it counts)."""
        if self._head is None:
            return None, 0, 0
        document = decode_value(self._head, self.name)
        if not isinstance(document, dict):
            raise StateError(f"{self.name}: checkpoint record is malformed: not a mapping")
        version = document.get("version")
        try:
            offset, state = int(document["offset"]), document["state"]
            if not isinstance(state, dict):
                raise TypeError("state is not a mapping")
            if version == WHOLE_STATE_VERSION:
                return Checkpoint(offset, state, None), 0, 0
            if version == HEAD_VERSION:
                return Checkpoint(offset, state, {}), int(document["epoch"]), int(document["entries"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{self.name}: checkpoint record is malformed: {exc}") from exc
        raise StateError(
            f"{self.name}: checkpoint format {version!r}, this build reads {WHOLE_STATE_VERSION} and {HEAD_VERSION}"
        )


def read_changelogs(names: Iterable[str], records: Iterable[Record]) -> dict[str, ChangelogReader]:
    """Readers of the given changelogs fed from ``records`` (a state partition in log order; others' are skipped)."""
    readers = {name: ChangelogReader(name) for name in names}
    for key, value in records:
        reader = readers.get(name_of_key(key))
        if reader is not None:
            reader.add(key, value)
    return readers
