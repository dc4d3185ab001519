"""Ground-truth label files shared by replay (labels into record headers) and the trainer (labels of windows)."""

from __future__ import annotations

import csv
from pathlib import Path

from stream.errors import ConfigError
from stream.records import ANOMALOUS, NORMAL

LOGHUB_BLOCK_LABELS = {"Normal": NORMAL, "Anomaly": ANOMALOUS}


def read_block_labels(path: Path) -> dict[str, str]:
    """A Loghub ``BlockId,Label`` CSV as block id -> normal/anomalous. Any other label is an error, never a guess."""
    setting = f"labels file {path}"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"BlockId", "Label"} <= set(reader.fieldnames):
                raise ConfigError(setting, f"needs the columns BlockId,Label, has {reader.fieldnames}")
            labels: dict[str, str] = {}
            for row in reader:
                label = LOGHUB_BLOCK_LABELS.get(row["Label"] or "")
                if label is None:
                    raise ConfigError(
                        setting, f"line {reader.line_num}: label {row['Label']!r} is neither Normal nor Anomaly"
                    )
                labels[row["BlockId"]] = label
            return labels
    except FileNotFoundError:
        raise ConfigError(setting, "no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(setting, f"cannot read: {exc}") from exc
