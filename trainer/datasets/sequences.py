"""Template-sequence files -> labeled windows: data sets that come already parsed (Hadoop containers, BGL windows).

A sequence file holds ``key,<space-separated template ids>`` lines; the ids index a templates file, either a CSV
with an id column (``event_id,template``) or one template per line whose id is its 1-based line number (Loghub's
``Hadoop_templates.csv``). There are no raw lines, so no times: ``start_ms`` is 0 and windows keep file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainer.datasets.files import csv_rows, file_error, numbered_lines, parse_int, require_file
from trainer.datasets.model import ANOMALOUS, NORMAL, Dataset, LabeledWindow, Split

ID_COLUMNS = ("event_id", "eventid", "id", "template_id")
HADOOP_FILES = ("hadoop_train", "hadoop_test_normal", "hadoop_test_abnormal")  # the _type files repeat the last
GIVEN_PARTS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def read_templates(path: Path) -> dict[int, str]:
    """Template id -> text, from an ``id,template`` CSV (a header naming the id column) or one template per line."""
    first = next(numbered_lines(path), (0, ""))[1]
    id_column = first.split(",", 1)[0].strip().lower()
    if id_column in ID_COLUMNS and "," in first:
        header_id, header_text = first.split(",", 1)
        return {
            parse_int(path, number, row[header_id], "template id"): row[header_text]
            for number, row in csv_rows(path, (header_id, header_text))
        }
    # One per line: a template may hold commas, so the whole line is the template; ids count physical lines.
    return dict(numbered_lines(path))


def read_key_labels(path: Path) -> dict[str, str]:
    """A two-column CSV with a header (e.g. ``app_id,label``): key -> label text."""
    labels: dict[str, str] = {}
    for number, row in csv_rows(path, ()):
        if len(row) != 2:
            raise file_error(path, f"line {number}: expected two columns, key,label")
        key, label = row.values()
        labels[key] = label
    return labels


def label_of_text(label: str) -> int:
    return NORMAL if label.strip().lower() in ("normal", "0", "-") else ANOMALOUS


def label_of_file(path: Path) -> int:
    name = path.name.lower()
    if "abnormal" in name or "anomal" in name:
        return ANOMALOUS
    if "normal" in name:
        return NORMAL
    raise file_error(path, "its name says neither normal nor abnormal; give a labels file")


def load_sequences(
    files: Sequence[Path],
    templates: Path,
    *,
    system: str,
    labels: Path | None = None,
    group_separator: str = "/",
    name: str | None = None,
) -> Dataset:
    """One window per sequence line. ``group`` is the key up to ``group_separator`` (Hadoop: the application id).

    Labels come from ``labels`` (a key,label CSV keyed by the group; "Normal" is normal, anything else anomalous
    and kept as ``detail``) or, without it, from each file's name (…normal / …abnormal). A key in several files is
    loaded once (identical sequences only: the same key with another sequence is an error).
    """
    texts = read_templates(templates)
    group_labels = read_key_labels(labels) if labels is not None else None
    seen: dict[str, tuple[int, ...]] = {}
    windows = []
    for path in files:
        require_file(path)  # before its name is read for a label: a missing file is the clearer error
        file_label = label_of_file(path) if group_labels is None else NORMAL
        for number, line in numbered_lines(path):
            key, sep, ids_text = line.partition(",")
            if not sep or not key:
                raise file_error(path, f"line {number}: expected key,<template ids>")
            ids = _ids(path, number, ids_text, texts, templates)
            if key in seen:
                if seen[key] != ids:
                    raise file_error(path, f"line {number}: key {key} has another sequence in an earlier file")
                continue
            seen[key] = ids
            group = key.split(group_separator, 1)[0]
            label, detail = file_label, ""
            if labels is not None and group_labels is not None:
                if group not in group_labels:
                    raise file_error(labels, f"no label for {group} (line {number} of {path})")
                label = label_of_text(group_labels[group])
                detail = group_labels[group] if label == ANOMALOUS else ""
            text = tuple(texts[i] for i in ids)
            windows.append(LabeledWindow(system, key, text, ids, (), label, 0, 0, group, detail=detail))
    sources = (*map(str, files), str(templates), *([str(labels)] if labels else []))
    return Dataset(name or system, system, tuple(windows), split_by="group", sources=sources)


def load_hadoop(directory: Path) -> Dataset:
    """Loghub Hadoop as container sequences (978), labeled by application from ``app_labels.csv``."""
    return load_sequences(
        [directory / file for file in HADOOP_FILES],
        directory / "Hadoop_templates.csv",
        system="hadoop",
        labels=directory / "app_labels.csv",
        name="hadoop",
    )


def load_bgl_windows(windows: Path, templates: Path, *, max_rows: int | None = None, every: int = 1) -> Dataset:
    """``bgl_windows20.csv.gz`` (window_id,split,label,event_ids) with its own time-ordered 80/10/10 split kept.

    ``every`` keeps every n-th window: a sample that still spans all 215 days (and so all three parts of the
    split), where ``max_rows`` alone would give the first days only, all of them training data.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    texts = read_templates(templates)
    # Many windows repeat one id sequence (20 x the same event): share the tuples rather than hold 231k copies.
    interned: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {}
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    out: list[LabeledWindow] = []
    for number, row in csv_rows(windows, ("window_id", "split", "label", "event_ids")):
        if max_rows is not None and len(out) >= max_rows:
            break
        if (number - 2) % every:  # number is the file line; line 2 is the first window
            continue
        part = GIVEN_PARTS.get(row["split"])
        if part is None:
            raise file_error(windows, f"line {number}: split {row['split'][:20]!r} is not train, val or test")
        label = row["label"]
        if label not in ("0", "1"):
            raise file_error(windows, f"line {number}: label {label[:20]!r} is not 0 or 1")
        cached = interned.get(row["event_ids"])
        if cached is None:
            ids = _ids(windows, number, row["event_ids"], texts, templates)
            cached = interned[row["event_ids"]] = (ids, tuple(texts[i] for i in ids))
        ids, text = cached
        key = row["window_id"]
        parts[part].append(len(out))
        out.append(LabeledWindow("bgl", key, text, ids, (), int(label), 0, 0, key))
    given = Split(tuple(parts["train"]), tuple(parts["validation"]), tuple(parts["test"]), method="given")
    sources = (str(windows), str(templates))
    return Dataset("bgl_windows20", "bgl", tuple(out), split_by="given", given_split=given, sources=sources)


def _ids(path: Path, number: int, text: str, texts: dict[int, str], templates: Path) -> tuple[int, ...]:
    try:
        ids = tuple(map(int, text.split()))
    except ValueError:
        raise file_error(path, f"line {number}: template ids must be integers, got {text[:60]!r}") from None
    if not ids:
        raise file_error(path, f"line {number}: no template ids")
    unknown = [i for i in ids if i not in texts]
    if unknown:
        raise file_error(path, f"line {number}: template id {unknown[0]} is not in {templates}")
    return ids
