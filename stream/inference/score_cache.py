"""Verdicts already computed, by what the model read: a window the model has seen is not scored again.

Log windows repeat. Of HDFS_2pct's 11,501 block sessions only 1,665 distinct template sequences exist; a normal
block of a healthy system looks like thousands before it. A detector's score is a pure function of what its family
reads of a window (``Detector.reads``: TransLog and LogTransfer the templates, LogLLM the masked lines) and of the
weights that read it, so the score of an earlier window with the same reading, by the same adapter version, is
exact, not an approximation. An explanation is not a function of the reading (its offsets are positions in the
whole window, and occlusion shifts earlier lines into what the model reads): it is kept under the whole window's
key (``window_key``), and reused only for the same window.

Keys are a 128-bit BLAKE2b digest of the reading and the detector target: a cached window costs about 200 bytes
whatever its length, and targets carry the adapter version in their name (``ModelHost``), so a new version never
reads an older version's entries. A version that leaves is dropped from the cache with it. The cache is a bounded
LRU (``inference.score_cache_size`` entries; 0 turns it off).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from stream.model.detector import WindowText
from stream.records import Cause


@dataclass(frozen=True, slots=True)
class Cached:
    score: float
    explanation: tuple[Cause, ...] | None  # None under a reading's key (scores only); set under a window's key


def reading_key(target: str | None, reading: Sequence[str]) -> bytes:
    """The cache key of a reading by a detector target (None: the base; "\x00" is no target's name)."""
    return _digest(("\x00" if target is None else target, *reading))


def window_key(target: str | None, window: WindowText) -> bytes:
    """The cache key of a whole window's explanation by a detector target (see ``ModelHost._explanations``). Its
    first text starts with "\x01", which neither a target's name nor "\x00" does: no reading has this key."""
    named = "\x01\x00" if target is None else f"\x01{target}"
    return _digest((named, str(len(window.templates)), *window.templates, *window.masked))


def _digest(texts: Sequence[str]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:  # each text length-prefixed: no two different sequences hash the same bytes
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


class ScoreCache:
    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"score cache size must be >= 0, got {size}")
        self.size = size
        self._entries: OrderedDict[bytes, tuple[str | None, Cached]] = OrderedDict()
        self._by_target: dict[str | None, set[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Cached | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, target: str | None, key: bytes, value: Cached) -> None:
        if self.size == 0:
            return
        self._entries[key] = (target, value)
        self._entries.move_to_end(key)
        self._by_target.setdefault(target, set()).add(key)
        while len(self._entries) > self.size:
            old, (old_target, _) = self._entries.popitem(last=False)
            self._by_target[old_target].discard(old)

    def drop_target(self, target: str | None) -> int:
        """Forget every entry of a detector target that no longer serves; returns how many."""
        keys = self._by_target.pop(target, set())
        for key in keys:
            self._entries.pop(key, None)
        return len(keys)
