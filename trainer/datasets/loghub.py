"""Raw Loghub logs -> labeled windows, through the stream's own line formats, parser and windowers.

Training must see the windows serving sees, so nothing here re-implements the stream: each line is cut by the
system's ``LineFormat``, mined by a ``SystemParser`` with the system's masks and Drain settings, and pushed into a
windower built from the system's window policy, in file order (as replay feeds the stream). The file ends with a
flush, as a bounded replay does. Lines are parsed before anything else is decided about them, as the parse stage
does, so the Drain state (and so every template) matches a replay of the same file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stream.errors import ConfigError, DecodeError
from stream.formats import LineFormat
from stream.labels import read_block_labels as read_stream_labels
from stream.parsing.miner import SystemParser
from stream.records import ANOMALOUS as ANOMALOUS_LABEL
from stream.settings import Settings, SystemSettings
from stream.windowing import ClosedWindow, Item, build, policy_from_dict
from trainer.datasets.files import file_error, numbered_lines
from trainer.datasets.model import ANOMALOUS, NORMAL, Dataset, LabeledWindow

NORMAL_TAG = "-"  # Loghub's label column: "-" for a normal line, else the alert category


def builtin_system(name: str) -> SystemSettings:
    """A built-in system (hdfs, bgl, thunderbird, raw) as shipped: the defaults, not the ADAPTLOG_* environment."""
    systems: dict[str, SystemSettings] = Settings.model_fields["systems"].get_default(call_default_factory=True)
    if name not in systems:
        raise ConfigError("system", f"unknown built-in system {name!r}; built in: {sorted(systems)}")
    return systems[name]


def read_block_labels(path: Path) -> dict[str, int]:
    """A Loghub ``BlockId,Label`` CSV as block id -> 0/1 (the stream's strict reader: any other label is an error)."""
    return {
        block: ANOMALOUS if label == ANOMALOUS_LABEL else NORMAL for block, label in read_stream_labels(path).items()
    }


def load_hdfs(
    log: Path,
    labels: Path,
    *,
    system: str = "hdfs",
    spec: SystemSettings | None = None,
    parser: SystemParser | None = None,
    name: str | None = None,
) -> Dataset:
    """One session window per block (a line naming several blocks joins each), labeled from the block label CSV.

    ``spec`` defaults to the built-in system; ``parser`` to a fresh one (pass a restored parser to get the
    template ids of a running stream).
    """
    spec = spec or builtin_system(system)
    if not spec.session_key_pattern:
        raise ConfigError(f"systems.{system}.session_key_pattern", "needed to cut a log into sessions")
    block_labels = read_block_labels(labels)
    key_regex = re.compile(spec.session_key_pattern)
    windower = build(spec.window_policy)
    closed: list[ClosedWindow] = []
    dropped = 0
    for number, content, event_ms, parsed in _parsed_lines(log, spec, system, parser, label_column=False):
        # dict.fromkeys: a block named twice in one line joins its session once, as the parse stage routes it.
        keys = list(dict.fromkeys(key_regex.findall(content)))
        if not keys:
            dropped += 1  # the stream dead-letters a line with no session key
            continue
        item = Item(event_ms, event_ms, {"line": number - 1, **parsed})
        for key in keys:
            closed += windower.push(item, key=key).closed
    closed += windower.flush().closed
    windows = []
    for window in closed:
        label = block_labels.get(window.key)
        if label is None:
            first = window.items[0].payload["line"] + 1
            raise file_error(labels, f"block {window.key} (line {first} of {log}) has no label")
        windows.append(_labeled(system, window, label, group=window.key, detail=""))
    return Dataset(
        name=name or log.name,
        system=system,
        windows=tuple(windows),
        split_by="group",
        sources=(str(log), str(labels)),
        dropped_lines=dropped,
    )


def load_labeled_lines(
    log: Path,
    *,
    system: str,
    size: int | None = None,
    step: int | None = None,
    spec: SystemSettings | None = None,
    parser: SystemParser | None = None,
    name: str | None = None,
) -> Dataset:
    """Loghub BGL / Thunderbird lines (label column first) -> count windows; a window is anomalous if any line is.

    Without ``size``/``step`` the system's own window policy is used (built-in: tumbling windows of 20 lines).
    ``size`` alone gives tumbling windows, with ``step`` sliding ones (LogTransfer: size 20, step 4). The last,
    partial window is kept, as a flush emits it. ``group`` is the window's index (windows are in time order).
    """
    spec = spec or builtin_system(system)
    windower = build(policy_from_dict(_count_window(spec, system, size, step)))
    closed: list[ClosedWindow] = []
    for number, _content, event_ms, parsed in _parsed_lines(log, spec, system, parser, label_column=True):
        closed += windower.push(Item(event_ms, event_ms, {"line": number - 1, **parsed})).closed
    closed += windower.flush().closed
    windows = []
    for index, window in enumerate(closed):
        tags = [item.payload["tag"] for item in window.items]
        alerts = sorted({tag for tag in tags if tag != NORMAL_TAG})
        label = ANOMALOUS if alerts else NORMAL
        windows.append(_labeled(system, window, label, group=str(index), detail=",".join(alerts)))
    return Dataset(name=name or log.name, system=system, windows=tuple(windows), split_by="time", sources=(str(log),))


def _count_window(spec: SystemSettings, system: str, size: int | None, step: int | None) -> dict[str, Any]:
    if size is None and step is None:
        return spec.window
    if size is None:
        size = spec.window.get("size")
        if spec.window_kind not in ("count_tumbling", "count_sliding"):
            raise ConfigError(f"systems.{system}.window", "a step needs a size: the system's window is not a count")
    if step is None or step == size:
        return {"kind": "count_tumbling", "size": size}
    return {"kind": "count_sliding", "size": size, "step": step}


def _parsed_lines(
    log: Path, spec: SystemSettings, system: str, parser: SystemParser | None, *, label_column: bool
) -> Iterator[tuple[int, str, int, dict[str, Any]]]:
    """(line number, content, event ms, payload) per line: the label column cut off, the content split and mined."""
    line_format: LineFormat = spec.line_format(system)
    parser = parser or SystemParser(spec.drain_params(system), spec.mask_rules(system))
    for number, line in numbered_lines(log):
        tag = None
        if label_column:
            tag, _, line = line.partition(" ")  # as replay cuts the label column off
        try:
            content, event_ms = line_format.split(line)
        except DecodeError as exc:
            raise file_error(log, f"line {number}: {exc.reason}") from None
        parsed = parser.parse(content)
        payload = {"id": parsed.template_id, "template": parsed.template, "masked": parsed.masked, "tag": tag}
        # A format without timestamps: the stream would use the broker's time; a file has none, so 0.
        yield number, content, event_ms if event_ms is not None else 0, payload


def _labeled(system: str, window: ClosedWindow, label: int, *, group: str, detail: str) -> LabeledWindow:
    payloads = [item.payload for item in window.items]
    return LabeledWindow(
        system=system,
        key=window.key,
        templates=tuple(p["template"] for p in payloads),
        template_ids=tuple(p["id"] for p in payloads),
        masked=tuple(p["masked"] for p in payloads),
        label=label,
        start_ms=window.start_ms,
        end_ms=window.end_ms,
        group=group,
        lines=tuple(p["line"] for p in payloads),
        detail=detail,
    )
