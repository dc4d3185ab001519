"""Durable, atomic file writes: the one way artifacts and the registry replace a small file.

A reader sees the old content or the new, never a part: the text goes to a hidden temporary sibling, is fsynced,
replaces the file in one ``os.replace`` and the directory is fsynced, so the rename survives a power cut. The
temporary file is removed whatever goes wrong (a full disk, an interrupt), so failed writes leave nothing behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically and durably (see the module docstring)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes the names in it, renames included, durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
