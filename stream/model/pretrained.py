"""Identity of frozen pretrained files (encoders, word vectors, decoders): a name plus a sha256 of their weights.

Artifacts record it, so weights trained on top of one encoder are never loaded on top of another. Hashes are cached
per (path, size, mtime): a 90 MB file is hashed once per process.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".npy", ".pt")


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def identity(name: str, path: str | Path) -> dict[str, Any]:
    """{"name", "sha256"} of a weights file, or of a directory's weight files (hash of their names and hashes)."""
    path = Path(path)
    if path.is_file():
        return {"name": name, "sha256": file_sha256(path)}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path)}:{file_sha256(file)}\n".encode())
    return {"name": name, "sha256": digest.hexdigest()}
