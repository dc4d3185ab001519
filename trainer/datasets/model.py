"""What the loaders produce: labeled windows, a dataset of them, and a split of a dataset into train/validation/test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ANOMALOUS = 1
NORMAL = 0

# How a dataset is split when the caller does not say: BGL and Thunderbird by time (the papers keep time order),
# HDFS by block and Hadoop by application at random, and a dataset that ships its own split keeps it.
SplitBy = Literal["time", "group", "given"]


@dataclass(frozen=True, slots=True)
class LabeledWindow:
    """One window as the model sees it, with its ground truth.

    ``templates``/``template_ids``/``masked`` are parallel, one entry per line (or per event of a sequence file).
    Raw-log loaders fill them from the stream's own parser, so a template is the text Drain gave the line when it
    was parsed, as in a served window. Sequence files have no raw lines: ``masked`` is then empty.
    """

    system: str
    key: str  # session key (HDFS block id, Hadoop container); "" for count windows, as the stream emits them
    templates: tuple[str, ...]
    template_ids: tuple[int, ...]
    masked: tuple[str, ...]
    label: int  # ANOMALOUS (1) or NORMAL (0)
    start_ms: int  # min event time of the lines; 0 when the source has no timestamps
    end_ms: int
    group: str  # what a split must not separate: block id, application id, or the window's index
    lines: tuple[int, ...] = ()  # 0-based line numbers in the source file, in window order; () for sequence files
    detail: str = ""  # why anomalous: alert categories (BGL, Thunderbird) or the fault (Hadoop); "" when normal


@dataclass(frozen=True, slots=True)
class Split:
    """Indices into ``Dataset.windows``, each part in dataset order. Parts share no group (see splits.py)."""

    train: tuple[int, ...]
    validation: tuple[int, ...]
    test: tuple[int, ...]
    method: str  # how it was made, fractions included ("time: test 0.2, ..."); goes into the training manifest
    seed: int | None = None

    def parts(self) -> dict[str, tuple[int, ...]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    system: str
    windows: tuple[LabeledWindow, ...]  # in the order the stream closes them (time order for count windows)
    split_by: SplitBy
    given_split: Split | None = None  # the file's own split, when it has one (bgl_windows20)
    sources: tuple[str, ...] = ()  # the files read, for the manifest
    dropped_lines: int = 0  # lines the stream would dead-letter too (e.g. an HDFS line naming no block)

    def select(self, indices: tuple[int, ...] | list[int]) -> list[LabeledWindow]:
        return [self.windows[i] for i in indices]
