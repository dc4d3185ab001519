"""The registry as the system page shows it: each adapter version with its held-out F1, the serving one and the
rule behind its threshold; and rollback, which is what ``adaptlog-train rollback`` does: move the serving pointer
(``Registry.set_serving``) and announce the version on ``model-updates`` (the feeds task sends the record), so every
inference worker swaps it in.

Reading is cached per target until the target's folder changes (a publish adds a directory, a rollback replaces the
pointer file): listing a registry checks every artifact, too slow to repeat on every page view.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import ModelError
from stream.model.registry import Registry, name_problem


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: str
    created_at: str
    f1: float | None  # held-out F1 of the retrain that published it (None: a zero-label or imported adapter)
    champion_f1: float | None  # the F1 of what served before, on the same held-out windows
    threshold: float | None
    threshold_rule: str | None
    supervision: str | None
    serving: bool


@dataclass(frozen=True, slots=True)
class ModelState:
    target: str
    versions: tuple[VersionRow, ...]
    serving: str | None  # None: the base scores this system zero-shot
    serving_since: str | None
    serving_reason: str | None
    previous: str | None


def _f1(metrics: dict[str, Any], part: str) -> float | None:
    value = (metrics.get(part) or {}).get("f1") if isinstance(metrics.get(part), dict) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Models:
    def __init__(self, root: Path | None) -> None:
        self.registry = Registry(root) if root is not None else None
        self._cache: dict[str, tuple[tuple[Any, ...], ModelState]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _stamp(registry: Registry, target: str) -> tuple[Any, ...]:
        folder = registry.root / "adapters" / target
        try:
            entries = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
        except FileNotFoundError:
            entries = []
        return tuple(entries)

    def state(self, target: str) -> ModelState | None:
        """The target's versions and serving pointer; None without a registry. ModelError from a broken registry."""
        if self.registry is None:
            return None
        if name_problem(target) is not None:  # a stream system the registry cannot name never has an adapter
            return ModelState(target, (), None, None, None, None)
        stamp = self._stamp(self.registry, target)
        with self._lock:
            cached = self._cache.get(target)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        pointer = self.registry.pointer("adapter", target)
        rows = tuple(
            VersionRow(
                version=manifest.version or "",
                created_at=manifest.created_at,
                f1=_f1(manifest.metrics, "held_out"),
                champion_f1=_f1(manifest.metrics, "champion"),
                threshold=manifest.threshold,
                threshold_rule=manifest.threshold_rule,
                supervision=manifest.supervision,
                serving=pointer is not None and manifest.version == pointer.version,
            )
            for manifest in self.registry.versions("adapter", target)
        )
        state = ModelState(
            target,
            rows,
            pointer.version if pointer else None,
            pointer.since if pointer else None,
            pointer.reason if pointer else None,
            pointer.previous if pointer else None,
        )
        with self._lock:
            self._cache[target] = (stamp, state)
        return state

    def rollback(self, target: str, version: str, by: str) -> str:
        """Serve ``version`` of ``target``; returns the version served before. ValueError for an unknown one."""
        if self.registry is None:
            raise ValueError("the console has no registry (console.registry or inference.registry)")
        problem = name_problem(target)
        if problem is not None:
            raise ValueError(problem)
        state = self.state(target)
        known = [row.version for row in state.versions] if state else []
        if version not in known:
            raise ValueError(f"{target} has no sound adapter {version}; published: {', '.join(known) or 'none'}")
        try:
            pointer = self.registry.set_serving("adapter", target, version, reason=f"rollback by {by} (console)")
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        return pointer.previous or ""
