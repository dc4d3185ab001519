"""Snapshot envelope and codec shared by every windower.

A snapshot is ``{"version": 1, "policy": {...policy_to_dict...}, "state": {...}}``. The policy travels with the
state because open windows only make sense under the policy that opened them: resuming a size-100 buffer under a
size-10 policy would silently emit a 100-line window, so a mismatch is refused (StateError) instead.
Items are encoded as ``[event_ms, arrival_ms, payload]`` to keep snapshots of large buffers small.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, overload

from stream.errors import ConfigError, StateError
from stream.windowing.config import WindowPolicy, policy_from_dict, policy_to_dict
from stream.windowing.model import Item

SNAPSHOT_VERSION = 1


def make_snapshot(config: WindowPolicy, state: dict[str, Any]) -> dict[str, Any]:
    return {"version": SNAPSHOT_VERSION, "policy": policy_to_dict(config), "state": state}


def open_snapshot(config: WindowPolicy, snapshot: object) -> dict[str, Any]:
    """Check the envelope against ``config`` and return the inner state dict."""
    if not isinstance(snapshot, dict):
        raise StateError(f"window snapshot must be a mapping, got {type(snapshot).__name__}")
    version = snapshot.get("version")
    if version != SNAPSHOT_VERSION:
        raise StateError(f"window snapshot version {version!r} is not supported (expected {SNAPSHOT_VERSION})")
    policy = snapshot.get("policy")
    if not _same_policy(policy, config):
        expected = policy_to_dict(config)
        raise StateError(f"window snapshot was taken under policy {policy!r}, not the configured {expected!r}")
    state = snapshot.get("state")
    if not isinstance(state, dict):
        raise StateError("window snapshot has no 'state' mapping")
    return state


def _same_policy(saved: object, config: WindowPolicy) -> bool:
    """The saved policy is the configured one. A field the snapshot lacks (it was written before the field existed)
    reads as the field's default, so adding a policy field with a default keeps older snapshots resumable."""
    if not isinstance(saved, dict):
        return False
    try:
        return policy_from_dict(saved) == config
    except (ConfigError, TypeError):
        return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@overload
def read_int(state: dict[str, Any], name: str, *, optional: Literal[False] = False) -> int: ...
@overload
def read_int(state: dict[str, Any], name: str, *, optional: bool) -> int | None: ...
def read_int(state: dict[str, Any], name: str, *, optional: bool = False) -> int | None:
    value = state.get(name)
    if value is None and optional:
        return None
    if not _is_int(value):
        raise StateError(f"window snapshot field {name!r} must be an integer, got {value!r}")
    return value


def encode_items(items: Iterable[Item]) -> list[list[Any]]:
    return [[item.event_ms, item.arrival_ms, item.payload] for item in items]


def decode_items(raw: object, where: str) -> list[Item]:
    if not isinstance(raw, list):
        raise StateError(f"window snapshot field {where!r} must be a list of items")
    items = []
    for entry in raw:
        if (
            not isinstance(entry, list)
            or len(entry) != 3
            or not _is_int(entry[0])
            or not _is_int(entry[1])
            or not isinstance(entry[2], dict)
        ):
            raise StateError(f"window snapshot field {where!r} holds a malformed item: {entry!r}")
        items.append(Item(event_ms=entry[0], arrival_ms=entry[1], payload=entry[2]))
    return items


def check(condition: bool, problem: str) -> None:
    """Raise StateError unless ``condition``: for invariants a hand-edited or truncated snapshot may break."""
    if not condition:
        raise StateError(f"window snapshot is inconsistent: {problem}")
