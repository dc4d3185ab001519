"""Several labeled systems as one data set: the training data of a base that is not tied to one system.

    combined, split = combine([(hdfs, hdfs_split), (thunderbird, tb_split)], name="all-but-bgl", max_normals=10_000)

Each system keeps its own split (time or group, as the papers do), so no window of a source's test part trains
the base; the parts are concatenated. Each source's train part is capped at ``max_normals`` normal windows (every
anomaly kept): BGL's 46k windows would otherwise outnumber Thunderbird's 968 about fifty to one, and the base would
learn one system rather than what the systems share.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.datasets.model import Dataset, LabeledWindow, Split
from trainer.datasets.splits import limit


def combine(
    parts: Sequence[tuple[Dataset, Split]], *, name: str, max_normals: int | None = None, seed: int = 0
) -> tuple[Dataset, Split]:
    """One data set of every source's windows and one split of their parts (each source's train part capped)."""
    if not parts:
        raise ValueError("combine needs at least one data set")
    windows: list[LabeledWindow] = []
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    methods = []
    for dataset, split in parts:
        offset = len(windows)
        windows += dataset.windows
        capped = limit(dataset, split.train, max_anomalies=None, max_normals=max_normals, seed=seed)
        train += [offset + i for i in capped]
        validation += [offset + i for i in split.validation]
        test += [offset + i for i in split.test]
        methods.append(f"{dataset.name}: {split.method}")
    cap = "all" if max_normals is None else f"at most {max_normals}"
    method = f"each source's own split, train part with {cap} normal windows; " + "; ".join(methods)
    combined_split = Split(tuple(train), tuple(validation), tuple(test), method=method, seed=seed)
    dataset = Dataset(
        name=name,
        system=name,
        windows=tuple(windows),
        split_by="given",
        given_split=combined_split,
        sources=tuple(source for dataset, _ in parts for source in dataset.sources),
        dropped_lines=sum(dataset.dropped_lines for dataset, _ in parts),
    )
    return dataset, combined_split
