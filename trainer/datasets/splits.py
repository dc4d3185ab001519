"""Train/validation/test splits as the papers make them, few-label limits, and the manifest's data summary.

* BGL, Thunderbird: by time. The first (1 - test_fraction) of the windows train, the rest test; validation is the
  last ``validation_fraction`` of the train part (so 0.2/0.1 gives 72/8/20). Overlapping (sliding) windows that
  share a line with an earlier part are dropped from the later one, so no test line was seen in training.
* HDFS, Hadoop: at random by group (block, application) with a seed; ``validation_fraction`` is again of the
  train part. Stratified by default: each group's label is its worst window's, and normal and anomalous groups
  are split separately, so both parts get their share of the rare anomalies (350 of 11,501 HDFS blocks; 11 normal
  of 55 Hadoop applications, where a plain draw can leave a test part with one normal application or none).
* bgl_windows20: its own split column.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from stream.errors import ConfigError
from trainer.datasets.model import ANOMALOUS, Dataset, LabeledWindow, Split


def default_split(
    dataset: Dataset, *, seed: int = 0, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> Split:
    """The split the papers use for this kind of dataset (see the module docstring)."""
    if dataset.split_by == "given" and dataset.given_split is not None:
        return dataset.given_split
    if dataset.split_by == "time":
        return chronological_split(dataset, test_fraction=test_fraction, validation_fraction=validation_fraction)
    return group_split(dataset, seed=seed, test_fraction=test_fraction, validation_fraction=validation_fraction)


def chronological_split(dataset: Dataset, *, test_fraction: float = 0.2, validation_fraction: float = 0.1) -> Split:
    _check_fractions(test_fraction, validation_fraction)
    windows = dataset.windows
    train_end = len(windows) - round(len(windows) * test_fraction)
    validation_start = train_end - round(train_end * validation_fraction)
    train = tuple(range(validation_start))
    validation = _after(windows, range(validation_start, train_end), _last_line(windows, train))
    test = _after(windows, range(train_end, len(windows)), _last_line(windows, train + validation))
    return Split(
        train, validation, test, method=f"time: test {test_fraction}, validation {validation_fraction} of train"
    )


def group_split(
    dataset: Dataset,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    stratify: bool = True,
) -> Split:
    _check_fractions(test_fraction, validation_fraction)
    members: dict[str, list[int]] = {}
    for index, window in enumerate(dataset.windows):
        members.setdefault(window.group, []).append(index)
    strata: dict[int, list[str]] = {}
    for group, indices in members.items():  # first-appearance order, so a seed always draws the same groups
        label = max(dataset.windows[i].label for i in indices) if stratify else 0
        strata.setdefault(label, []).append(group)
    rng = random.Random(seed)
    test_groups: list[str] = []
    validation_groups: list[str] = []
    for label in sorted(strata):
        groups = strata[label]
        rng.shuffle(groups)
        n_test = round(len(groups) * test_fraction)
        n_validation = round((len(groups) - n_test) * validation_fraction)
        test_groups += groups[:n_test]
        validation_groups += groups[n_test : n_test + n_validation]
    test = _members(members, test_groups)
    validation = _members(members, validation_groups)
    train = tuple(sorted(set(range(len(dataset.windows))) - set(test) - set(validation)))
    fractions = f"test {test_fraction}, validation {validation_fraction} of train"
    method = f"{'stratified ' if stratify else ''}random by group: {fractions}"
    return Split(train, validation, test, method=method, seed=seed)


def limit(
    dataset: Dataset,
    indices: Sequence[int],
    *,
    max_anomalies: int | None,
    max_normals: int | None,
    seed: int = 0,
) -> tuple[int, ...]:
    """At most that many anomalous and normal windows of ``indices`` (None: all), drawn at random, in dataset order.

    Each label is drawn with its own seeded generator, and a cap takes a prefix of one fixed shuffle, so the
    anomalies kept do not depend on ``max_normals``, and the windows kept under cap N are among those kept under
    any larger cap (few-label curves then add labels rather than swap them).
    """
    kept: list[int] = []
    for label, cap, setting in ((ANOMALOUS, max_anomalies, "max_anomalies"), (0, max_normals, "max_normals")):
        if cap is not None and cap < 0:
            raise ConfigError(setting, f"must be >= 0, got {cap}")
        pool = [i for i in indices if dataset.windows[i].label == label]
        if cap is not None and cap < len(pool):
            random.Random(f"{seed}/{label}").shuffle(pool)
            pool = pool[:cap]
        kept += pool
    return tuple(sorted(kept))


def summary(dataset: Dataset, split: Split | None = None) -> dict[str, Any]:
    """Counts per split part and label, JSON-able, for the training manifest's "training data summary"."""
    out: dict[str, Any] = {
        "dataset": dataset.name,
        "system": dataset.system,
        "sources": list(dataset.sources),
        **_counts(dataset.windows, range(len(dataset.windows))),
        "dropped_lines": dataset.dropped_lines,
    }
    if split is not None:
        out["split"] = {
            "method": split.method,
            "seed": split.seed,
            **{part: _counts(dataset.windows, indices) for part, indices in split.parts().items()},
        }
    return out


def _counts(windows: tuple[LabeledWindow, ...], indices: Sequence[int]) -> dict[str, int]:
    anomalous = sum(windows[i].label for i in indices)
    groups = len({windows[i].group for i in indices})
    return {"windows": len(indices), "anomalous": anomalous, "normal": len(indices) - anomalous, "groups": groups}


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    for setting, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(setting, f"must be in [0, 1), got {value}")


def _members(members: dict[str, list[int]], groups: list[str]) -> tuple[int, ...]:
    return tuple(sorted(i for group in groups for i in members[group]))


def _last_line(windows: tuple[LabeledWindow, ...], indices: Sequence[int]) -> int:
    return max((max(windows[i].lines) for i in indices if windows[i].lines), default=-1)


def _after(windows: tuple[LabeledWindow, ...], candidates: range, last_line: int) -> tuple[int, ...]:
    return tuple(i for i in candidates if not windows[i].lines or min(windows[i].lines) > last_line)
