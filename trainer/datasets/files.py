"""Reading data files (plain or gzip) so that a missing, unreadable or malformed file is a ConfigError naming it."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from stream.errors import ConfigError


def file_error(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"dataset file {path}", problem)


def require_file(path: Path) -> None:
    if not path.is_file():
        raise file_error(path, "no such file")


def _open(path: Path, newline: str | None = None) -> IO[str]:
    require_file(path)
    # surrogateescape as stream.replay reads logs: a stray byte must not stop a load, and Drain sees what replay sends.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline=newline)
    return path.open(encoding="utf-8", errors="surrogateescape", newline=newline)


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its ending) for each non-empty line: replay skips empty lines too."""
    try:
        with _open(path) as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if line:
                    yield number, line
    except (OSError, EOFError) as exc:  # unreadable, or a corrupt or truncated gzip
        raise file_error(path, f"cannot read: {exc}") from exc


def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for a CSV with a header naming at least ``columns``; a short or long row is an error."""
    try:
        with _open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise file_error(path, "is empty, expected a CSV header")
            missing = [name for name in columns if name not in header]
            if missing:
                raise file_error(path, f"header {header} lacks column(s) {missing}")
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise file_error(path, f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
                yield reader.line_num, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise file_error(path, f"not valid CSV: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise file_error(path, f"cannot read: {exc}") from exc


def parse_int(path: Path, number: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise file_error(path, f"line {number}: {what} {text[:40]!r} is not an integer") from None
