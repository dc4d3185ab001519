"""Versioned model artifacts on a shared directory: one trainer publishes, inference workers read.

    <root>/
      .lock                      fcntl lock: publishers take versions and move pointers one at a time
      .staging/<uuid>/           artifacts being copied in; never read by anyone else
      .versions/<kind>/<name>    the highest version ever given out for a name (e.g. "v0003")
      bases/<name>/v0001/        a base artifact (weights.safetensors + manifest.json, see stream.model.artifacts)
      bases/<name>/SERVING       {"version", "since", "reason", "previous"}: the version inference serves
      adapters/<target>/v0001/   an adapter artifact for one target system
      adapters/<target>/SERVING

Versions are immutable and monotonic per name (``v0001``, ``v0002``, ...), and a number is never given out twice:
the highest one given is kept in ``.versions``, so deleting the newest version directory (a bad artifact removed by
hand) or a whole name does not bring its number back for different weights. A registry from before ``.versions``
counts from the version directories present. A version directory appears by one
rename of a complete, fsynced directory, so a reader sees a whole artifact or none; the serving pointer is replaced
with ``os.replace``, so a reader sees the old pointer or the new one. Rolling back is moving the pointer
(``set_serving``). Listing skips a directory that is not a sound artifact (logged), so one broken version never
takes the others down.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from stream.errors import IncompatibleArtifactError, ModelError
from stream.model import artifacts
from stream.model.artifacts import Manifest
from stream.model.detector import Detector
from stream.model.durable import atomic_write_text, fsync_path
from stream.model.pretrained import file_sha256

log = logging.getLogger(__name__)

Kind = Literal["base", "adapter"]
KIND_DIRS: dict[str, str] = {"base": "bases", "adapter": "adapters"}
SERVING_FILE = "SERVING"
STAGING = ".staging"
HIGHEST = ".versions"
VERSION = re.compile(r"^v(\d{4,})$")
# a name becomes a directory on a shared volume: no separators, no dot-names, nothing a shell would trip over
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a base or a target in the registry, or None when it can. Callers that take names from
    outside (a feedback record's system) check it up front, so a bad name is refused as data, not a failed publish."""
    if not isinstance(name, str) or not NAME.match(name):
        return f"{name!r} is not usable as a registry name (1-128 letters, digits, . _ -, not starting with . _ -)"
    return None


def _checked_name(kind: str, name: str | None) -> str:
    """``name`` when it can name a ``kind`` in the registry, else a ModelError saying why."""
    problem = name_problem(name)
    if problem is not None or name is None:  # name_problem refuses None; the second test says so to mypy
        raise ModelError(f"{kind} name {problem}")
    return name


# flock on NFS degrades to POSIX record locks, which do not exclude threads of one process: this lock does
_PROCESS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class ServingPointer:
    version: str
    since: str  # UTC, ISO 8601
    reason: str
    previous: str | None  # the version served before, where a rollback would go

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------------------------------------- publishing

    def publish_base(
        self, artifact_dir: str | Path, name: str, *, serve: bool = True, reason: str = "published"
    ) -> Manifest:
        """Copy a base artifact in as the next version of ``name``; with ``serve``, inference switches to it."""
        return self._publish("base", name, Path(artifact_dir), staged=False, serve=serve, reason=reason)

    def publish_adapter(self, artifact_dir: str | Path, *, serve: bool = True, reason: str = "published") -> Manifest:
        """Copy an adapter artifact in as the next version of its target (the manifest's ``target``)."""
        return self._publish("adapter", None, Path(artifact_dir), staged=False, serve=serve, reason=reason)

    def save_base(
        self,
        detector: Detector,
        name: str,
        *,
        source: str,
        threshold: float | None,
        training: Mapping[str, Any],
        metrics: Mapping[str, Any],
        serve: bool = True,
        reason: str = "published",
    ) -> Manifest:
        """``artifacts.save_base`` straight into the registry (written once, under the root, then renamed in)."""
        self._folder("base", name)  # a bad name fails before the weights are written
        staged = self._staging_dir() / "artifact"
        try:
            artifacts.save_base(
                detector, staged, source=source, threshold=threshold, training=training, metrics=metrics
            )
        except BaseException:
            shutil.rmtree(staged.parent, ignore_errors=True)
            raise
        return self._publish("base", name, staged, staged=True, serve=serve, reason=reason)

    def save_adapter(
        self,
        detector: Detector,
        target: str,
        *,
        base: Manifest,
        threshold: float | None,
        training: Mapping[str, Any],
        metrics: Mapping[str, Any],
        serve: bool = True,
        reason: str = "published",
    ) -> Manifest:
        self._folder("adapter", target)
        staged = self._staging_dir() / "artifact"
        try:
            artifacts.save_adapter(
                detector, target, staged, base=base, threshold=threshold, training=training, metrics=metrics
            )
        except BaseException:
            shutil.rmtree(staged.parent, ignore_errors=True)
            raise
        return self._publish("adapter", None, staged, staged=True, serve=serve, reason=reason)

    def _publish(
        self, kind: Kind, name: str | None, source: Path, *, staged: bool, serve: bool, reason: str
    ) -> Manifest:
        original = source
        try:
            if kind == "adapter":
                name = artifacts.read_manifest(source).target
            folder = self._folder(kind, name)  # a bad name fails before anything is copied
            name = _checked_name(kind, name)  # passes now (_folder checked it); tells mypy it is a str
            if not staged:
                source = self._copy_in(source)
            # checked after the copy: what is checked is what gets published; a corrupt file never is
            manifest = artifacts.read_manifest(source)
            problems = [] if manifest.kind == kind else [f"this is a {manifest.kind} artifact, not a {kind}"]
            problems += artifacts.verify_weights(source, manifest)
            if kind == "adapter":
                problems += self._base_reference_problems(manifest)
            if problems:
                raise IncompatibleArtifactError(str(original), problems)
            with self._locked():
                version = self._next_version(kind, name, folder)
                self._record_highest(kind, name, version)  # before the rename: a crash skips a number, reuses none
                published = replace(manifest, name=name, version=version)
                artifacts.write_manifest(source, published)
                folder.mkdir(parents=True, exist_ok=True)
                os.rename(source, folder / version)
                fsync_path(folder)
                if serve:
                    self._write_pointer(folder, version, reason)
        finally:
            if source.parent.parent == self.root / STAGING:  # ours: left behind only when publishing failed
                shutil.rmtree(source.parent, ignore_errors=True)
        log.info("published %s %s/%s%s", kind, name, version, " (serving)" if serve else "")
        return published

    def _base_reference_problems(self, adapter: Manifest) -> list[str]:
        """An adapter naming a published base must carry that base's hash (a base found elsewhere is not checked)."""
        reference = adapter.base or {}
        name, version = reference.get("name"), reference.get("version")
        if not (isinstance(name, str) and isinstance(version, str) and NAME.match(name) and VERSION.match(version)):
            return []
        path = self.root / KIND_DIRS["base"] / name / version
        if not path.is_dir():
            return []
        try:
            base = artifacts.read_manifest(path)
        except ModelError:
            return []
        if base.weights_sha256 != reference["id"]:
            return [
                f"adapter says it was trained on base {name}/{version} (sha256 {reference['id'][:12]}), "
                f"but the registry's {name}/{version} is sha256 {base.weights_sha256[:12]}"
            ]
        return []

    def _staging_dir(self) -> Path:
        staging = self.root / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        return staging

    def _copy_in(self, source: Path) -> Path:
        """A private, fsynced copy under the root, so the final step is a rename on the same filesystem."""
        target = self._staging_dir() / "artifact"
        try:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*"))
            for path in target.rglob("*"):
                if path.is_file():
                    fsync_path(path)
            fsync_path(target)
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        return target

    def _next_version(self, kind: Kind, name: str, folder: Path) -> str:
        """Called under the lock. Above every version directory present (broken ones count) and above every number
        ever given out (``.versions``), so a deleted version's number is not reused."""
        taken = [int(m.group(1)) for p in folder.iterdir() if (m := VERSION.match(p.name))] if folder.is_dir() else []
        return f"v{max(*taken, self._highest(kind, name), 0) + 1:04d}"

    def _highest_path(self, kind: Kind, name: str) -> Path:
        return self.root / HIGHEST / KIND_DIRS[kind] / name

    def _highest(self, kind: Kind, name: str) -> int:
        """The highest version number given out for ``name``; 0 when none was recorded (an older registry)."""
        path = self._highest_path(kind, name)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"version record {path} is unreadable: {exc}") from None
        match = VERSION.match(text)
        if match is None:
            # never written like this (it is replaced whole): refuse to guess rather than risk a reused number
            raise ModelError(f"version record {path} holds {text[:40]!r}, not a version like v0001: fix it by hand")
        return int(match.group(1))

    def _record_highest(self, kind: Kind, name: str, version: str) -> None:
        """Called under the lock. Replaced in one os.replace and fsynced, like the serving pointer."""
        path = self._highest_path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, version + "\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with _PROCESS_LOCK:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    # ---------------------------------------------------------------------------------------------------- serving

    def set_serving(self, kind: Kind, name: str, version: str | int, reason: str) -> ServingPointer:
        """Point inference at an existing, sound version (rollback, or serving a version published with
        ``serve=False``). An unknown or broken version is refused and the pointer stays."""
        path = self.path(kind, name, version)
        problems = self._artifact_problems(path, kind, name)
        if problems:
            raise ModelError(f"cannot serve {kind} {name}/{path.name}: {'; '.join(problems)}")
        with self._locked():
            pointer = self._write_pointer(path.parent, path.name, reason)
        log.info("%s %s now serves %s (%s)", kind, name, path.name, reason)
        return pointer

    def pointer(self, kind: Kind, name: str) -> ServingPointer | None:
        path = self._folder(kind, name) / SERVING_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data.get("version"), str) or not VERSION.match(data["version"]):
                raise ValueError(f"no version like v0001 in {data!r}")
            return ServingPointer(
                version=data["version"], since=data["since"], reason=data["reason"], previous=data.get("previous")
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: not an object
            raise ModelError(f"serving pointer {path} is unreadable: {exc}") from None

    def serving(self, kind: Kind, name: str) -> Manifest | None:
        """The manifest of the version being served, None when nothing is."""
        pointer = self.pointer(kind, name)
        if pointer is None:
            return None
        path = self.path(kind, name, pointer.version)
        problems = self._artifact_problems(path, kind, name)
        if problems:
            raise ModelError(f"serving {kind} {name}/{pointer.version} is broken: {'; '.join(problems)}")
        return artifacts.read_manifest(path)

    def _write_pointer(self, folder: Path, version: str, reason: str) -> ServingPointer:
        """Called under the lock. Replaced in one os.replace: a reader sees the old pointer or the new one."""
        current = folder / SERVING_FILE
        previous = None
        with suppress(OSError, ValueError, AttributeError):  # none yet, or a damaged one: nothing to remember
            previous = json.loads(current.read_text(encoding="utf-8")).get("version")
        if not (isinstance(previous, str) and VERSION.match(previous)):
            previous = None
        pointer = ServingPointer(
            version=version,
            since=datetime.now(UTC).isoformat(timespec="milliseconds"),
            reason=reason,
            previous=previous if previous != version else None,
        )
        atomic_write_text(current, json.dumps(pointer.to_dict(), indent=2))
        return pointer

    def load_serving_base(
        self, name: str, *, config_overrides: Mapping[str, Any] | None = None
    ) -> tuple[Detector, Manifest] | None:
        manifest = self.serving("base", name)
        if manifest is None:
            return None
        return artifacts.load_base(self.path("base", name, manifest.version or ""), config_overrides=config_overrides)

    def load_serving_adapter(self, detector: Detector, base_manifest: Manifest, target: str) -> Manifest | None:
        """Load ``target``'s serving adapter into ``detector`` (whose base is ``base_manifest``); None when the
        target serves nothing. An adapter trained on another base raises IncompatibleArtifactError."""
        manifest = self.serving("adapter", target)
        if manifest is None:
            return None
        path = self.path("adapter", target, manifest.version or "")
        return artifacts.load_adapter(detector, base_manifest, path, as_target=target)

    # ---------------------------------------------------------------------------------------------------- listing

    def names(self, kind: Kind) -> list[str]:
        """Base names, or targets with adapters."""
        if kind not in KIND_DIRS:
            raise ModelError(f"kind must be 'base' or 'adapter', got {kind!r}")
        folder = self.root / KIND_DIRS[kind]
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and NAME.match(p.name))

    def versions(self, kind: Kind, name: str) -> list[Manifest]:
        """Every sound version of ``name``, oldest first, with its metrics. Broken ones are skipped and logged."""
        folder = self._folder(kind, name)
        if not folder.is_dir():
            return []
        found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := VERSION.match(p.name)))
        out = []
        for _, path in found:
            problems = self._artifact_problems(path, kind, name)
            if problems:
                log.warning("registry: skipping %s: %s", path, "; ".join(problems))
                continue
            out.append(artifacts.read_manifest(path))
        return out

    def path(self, kind: Kind, name: str, version: str | int) -> Path:
        if isinstance(version, int):
            version = f"v{version:04d}"
        if not VERSION.match(version):
            raise ModelError(f"version must look like v0001, got {version!r}")
        return self._folder(kind, name) / version

    def clean_staging(self, older_than_s: float = 3600.0) -> list[Path]:
        """Remove copies a crashed publisher left in .staging (only old ones: a live publish may be copying)."""
        staging = self.root / STAGING
        if not staging.is_dir():
            return []
        removed = []
        for path in staging.iterdir():
            with suppress(FileNotFoundError):  # a publisher finished with it meanwhile
                if time.time() - path.stat().st_mtime > older_than_s:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed

    def _folder(self, kind: Kind, name: str | None) -> Path:
        if kind not in KIND_DIRS:
            raise ModelError(f"kind must be 'base' or 'adapter', got {kind!r}")
        return self.root / KIND_DIRS[kind] / _checked_name(kind, name)

    @staticmethod
    def _artifact_problems(path: Path, kind: Kind, name: str) -> list[str]:
        """Why ``path`` is not a sound published artifact of ``kind``/``name`` ([] when it is).

        The weights' hash is cached per file (path, size, mtime), so a worker polling ``serving`` or listing again
        does not re-read them; loading always hashes afresh.
        """
        if not path.exists():
            return ["no such version"]
        if not path.is_dir():
            return ["not a directory"]
        try:
            manifest = artifacts.read_manifest(path)
        except ModelError as exc:
            return [str(exc)]
        problems = []
        if (manifest.kind, manifest.name, manifest.version) != (kind, name, path.name):
            problems.append(
                f"manifest says {manifest.kind} {manifest.name}/{manifest.version}, the directory is "
                f"{kind} {name}/{path.name}"
            )
        weights = path / artifacts.WEIGHTS
        if not weights.is_file():
            problems.append(f"{artifacts.WEIGHTS} is missing")
            return problems
        try:
            if file_sha256(weights) != manifest.weights_sha256:
                problems.append(f"{artifacts.WEIGHTS} does not match the manifest's sha256 (corrupt or truncated)")
        except OSError as exc:
            problems.append(f"{artifacts.WEIGHTS} cannot be read: {exc}")
        return problems
