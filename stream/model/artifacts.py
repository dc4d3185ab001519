"""Model artifacts: a directory of safetensors weights plus a manifest (the idea of peft's ``adapter_config.json``).

    <artifact>/
      weights.safetensors   a detector's ``base_state()`` or one target's ``adapter_state()``; never pickle
      manifest.json         ``Manifest``: what the weights are, what they need, how they were trained, how they scored

An adapter names the base it was trained on by that base's ``weights_sha256``: the same bytes, not just the same
name. Loading checks every way the weights can be wrong for the running detector (kind, family, base, feature
version, pretrained parts, file hash, tensor names and shapes) and raises ONE ``IncompatibleArtifactError`` listing
them all, before any weight is touched (vLLM's ``lora/peft_helper.py``). Whatever the files hold, callers only ever
see ``ModelError`` subclasses: the library's exceptions are mapped here, at one edge.

Writes are atomic: everything goes into a hidden sibling directory, is fsynced, then renamed to the final name, so
a crash leaves at most a ``.<name>.partial-*`` directory, never a half artifact under the real name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save, save_file

from stream.errors import ConfigError, IncompatibleArtifactError, ModelError
from stream.model.detector import Detector, shape_problems
from stream.model.durable import atomic_write_text, fsync_path
from stream.model.families import create_detector
from stream.model.pretrained import file_sha256, same_part
from stream.records import LABELED, ZERO_LABEL

FORMAT = "adaptlog-artifact/1"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
KINDS = ("base", "adapter")
# safetensors metadata; fixed, so the same tensors always serialize to the same bytes (and the same sha256)
_METADATA = {"format": "pt"}
# a wrong family can mismatch every tensor: list this many per kind of problem, then count the rest
_LISTED = 8


@dataclass(frozen=True, slots=True)
class Manifest:
    format: str
    kind: str  # "base" | "adapter"
    family: str  # Detector.family
    config: dict[str, Any]  # Detector.config(): family_class(family).create(config) rebuilds the architecture
    feature_version: str  # Detector.feature_version: windows must be encoded the same way
    pretrained: dict[str, Any]  # Detector.pretrained_identity(): the frozen parts the weights sit on
    weights_sha256: str  # of weights.safetensors; a base's is the id its adapters refer to
    base: dict[str, Any] | None  # adapter: {"id": base weights_sha256, "name", "version"}; base: None
    target: str  # adapter: the target system; base: the source system it was trained on
    threshold: float | None  # decision threshold chosen on validation
    training: dict[str, Any]  # data summary, split, FitReport.to_dict()
    metrics: dict[str, Any]
    parameters: dict[str, Any]  # {"total", "trainable"} as ParameterCounts, "stored": numbers in the weights file
    package_version: str
    created_at: str  # UTC, ISO 8601
    name: str | None = None  # set by the registry on publish
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest") -> Manifest:
        """Strict: every missing, unexpected or wrongly typed field is listed in one IncompatibleArtifactError."""
        if not isinstance(data, dict):
            raise IncompatibleArtifactError(source, [f"manifest must be a JSON object, got {type(data).__name__}"])
        problems = [f"unexpected field {key!r}" for key in data if key not in _FIELD_TYPES]
        for key, (types, label) in _FIELD_TYPES.items():
            if key not in data:
                if key not in ("name", "version"):
                    problems.append(f"missing field {key!r}")
                continue
            value = data[key]
            # bool is an int subclass in Python, never a valid number here
            if isinstance(value, bool) or not isinstance(value, types):
                problems.append(f"field {key!r} must be {label}, got {type(value).__name__}")
        if not problems:
            problems += _semantic_problems(data)
        if problems:
            raise IncompatibleArtifactError(source, problems)
        values = dict(data)
        if isinstance(values["threshold"], int):
            values["threshold"] = float(values["threshold"])
        return cls(**values)

    @property
    def threshold_rule(self) -> str | None:
        """The rule that set ``threshold`` (``stream.model.thresholds``), as training recorded it in
        ``metrics.validation.threshold_rule``; None for a manifest written before rules were recorded."""
        validation = self.metrics.get("validation")
        rule = validation.get("threshold_rule") if isinstance(validation, dict) else None
        return rule if isinstance(rule, str) else None

    @property
    def supervision(self) -> str | None:
        """What an adapter learned from (``stream.records.SUPERVISIONS``): ``training.supervision`` as ``adapt``
        records it, else derived from the labeled windows its training recorded (an anomalous one: ``labeled``,
        none: ``zero-label``); None for a base or a manifest that says neither."""
        if self.kind != "adapter":
            return None
        recorded = self.training.get("supervision")
        if isinstance(recorded, str):
            return recorded
        parts = self.training.get("windows")
        if not isinstance(parts, dict) or not parts:
            return None
        anomalous = sum(part.get("anomalous", 0) for part in parts.values() if isinstance(part, dict))
        return LABELED if anomalous else ZERO_LABEL

    def describe(self) -> str:
        """How messages name this artifact: "bgl/v0003 (sha256 1a2b3c4d5e6f)"."""
        return _describe(self.name, self.version, self.weights_sha256)


_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((str,), "a string"),
    "kind": ((str,), "a string"),
    "family": ((str,), "a string"),
    "config": ((dict,), "an object"),
    "feature_version": ((str,), "a string"),
    "pretrained": ((dict,), "an object"),
    "weights_sha256": ((str,), "a string"),
    "base": ((dict, type(None)), "an object or null"),
    "target": ((str,), "a string"),
    "threshold": ((int, float, type(None)), "a number or null"),
    "training": ((dict,), "an object"),
    "metrics": ((dict,), "an object"),
    "parameters": ((dict,), "an object"),
    "package_version": ((str,), "a string"),
    "created_at": ((str,), "a string"),
    "name": ((str, type(None)), "a string or null"),
    "version": ((str, type(None)), "a string or null"),
}
if set(_FIELD_TYPES) != {f.name for f in fields(Manifest)}:  # a field added to one and not the other is a bug
    raise RuntimeError("artifacts._FIELD_TYPES is out of step with Manifest")


def _semantic_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    if data["format"] != FORMAT:
        problems.append(f"format {data['format']!r} is not {FORMAT!r} (written by another adaptlog version?)")
    if data["kind"] not in KINDS:
        problems.append(f"field 'kind' must be one of {list(KINDS)}, got {data['kind']!r}")
    base = data["base"]
    if data["kind"] == "adapter" and not (isinstance(base, dict) and isinstance(base.get("id"), str)):
        problems.append("an adapter's field 'base' must be an object with the base's sha256 as 'id'")
    if data["kind"] == "base" and base is not None:
        problems.append("a base's field 'base' must be null")
    threshold = data["threshold"]
    # json.loads reads NaN and Infinity: a NaN threshold would alert on nothing, silently, and an infinite one too
    if isinstance(threshold, float) and not math.isfinite(threshold):
        problems.append(f"field 'threshold' must be a finite number or null, got {threshold!r}")
    return problems


def _describe(name: str | None, version: str | None, sha256: str) -> str:
    label = f"{name}/{version}" if name and version else (name or "an unpublished base")
    return f"{label} (sha256 {sha256[:12]})"


def package_version() -> str:
    try:
        return version("adaptlog")
    except PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    """An artifact's weights file as it is now (never a cached hash: see ``pretrained.file_sha256``)."""
    return file_sha256(path, cached=False)


# ---------------------------------------------------------------------------------------------------------- writing


def save_base(
    detector: Detector,
    directory: str | Path,
    *,
    source: str,
    threshold: float | None,
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
    name: str | None = None,
) -> Manifest:
    """Write ``detector``'s base (trained on system ``source``) as a new artifact at ``directory``."""
    counts = detector.parameter_counts("base")
    return _write_artifact(
        Path(directory),
        detector.base_state(),
        lambda stored, sha256: _new_manifest(
            detector,
            "base",
            sha256,
            base=None,
            target=source,
            threshold=threshold,
            training=training,
            metrics=metrics,
            parameters={"total": counts.total, "trainable": counts.trainable, "stored": stored},
            name=name,
        ),
    )


def save_adapter(
    detector: Detector,
    target: str,
    directory: str | Path,
    *,
    base: Manifest,
    threshold: float | None,
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> Manifest:
    """Write ``target``'s adapter as a new artifact at ``directory``, tied to ``base`` (the base it was trained on).

    The detector's base weights must be exactly ``base``'s: an adapter never claims a base it was not trained on.
    """
    if base.kind != "base" or base.family != detector.family:
        raise ModelError(f"save_adapter: base must be a {detector.family} base, got a {base.family} {base.kind}")
    if target not in detector.targets:
        raise ModelError(f"save_adapter: the detector has no target {target!r} (targets: {detector.targets})")
    running = hashlib.sha256(save(_portable(detector.base_state()), metadata=_METADATA)).hexdigest()
    if running != base.weights_sha256:
        raise ModelError(
            f"save_adapter: the detector's base weights (sha256 {running[:12]}) are not base {base.describe()}; "
            "was the base changed while the adapter trained?"
        )
    counts = detector.parameter_counts("adapter", target)
    reference = {"id": base.weights_sha256, "name": base.name, "version": base.version}
    return _write_artifact(
        Path(directory),
        detector.adapter_state(target),
        lambda stored, sha256: _new_manifest(
            detector,
            "adapter",
            sha256,
            base=reference,
            target=target,
            threshold=threshold,
            training=training,
            metrics=metrics,
            parameters={"total": counts.total, "trainable": counts.trainable, "stored": stored},
            name=None,
        ),
    )


def _new_manifest(
    detector: Detector,
    kind: str,
    sha256: str,
    *,
    base: dict[str, Any] | None,
    target: str,
    threshold: float | None,
    training: Mapping[str, Any],
    metrics: Mapping[str, Any],
    parameters: dict[str, Any],
    name: str | None,
) -> Manifest:
    draft = {
        "format": FORMAT,
        "kind": kind,
        "family": detector.family,
        "config": detector.config(),
        "feature_version": detector.feature_version,
        "pretrained": detector.pretrained_identity(),
        "weights_sha256": sha256,
        "base": base,
        "target": target,
        "threshold": threshold,
        "training": dict(training),
        "metrics": dict(metrics),
        "parameters": parameters,
        "package_version": package_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "name": name,
        "version": None,
    }
    for key, value in draft.items():  # name the field that cannot be written, before anything is on disk
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"manifest field {key!r} is not JSON (finite numbers, str keys): {exc}") from None
    # through JSON once, so the manifest returned equals the one read back later (tuples become lists, ...)
    return Manifest.from_dict(json.loads(json.dumps(draft)), source="new manifest")


def _portable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies: safetensors refuses views and tensors sharing storage."""
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}


def _write_artifact(
    directory: Path, tensors: Mapping[str, torch.Tensor], build: Callable[[int, str], Manifest]
) -> Manifest:
    if directory.exists():
        raise ModelError(f"{directory} already exists; artifacts are never overwritten")
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = directory.parent / f".{directory.name}.partial-{uuid.uuid4().hex}"
    partial.mkdir()
    try:
        portable = _portable(tensors)
        save_file(portable, partial / WEIGHTS, metadata=_METADATA)
        fsync_path(partial / WEIGHTS)
        manifest = build(sum(t.numel() for t in portable.values()), sha256_file(partial / WEIGHTS))
        _write_json(partial / MANIFEST, manifest.to_dict())
        fsync_path(partial)
        try:
            os.rename(partial, directory)
        except OSError as exc:  # someone else took the name between our check and the rename
            raise ModelError(f"cannot move the new artifact to {directory}: {exc}") from None
        fsync_path(directory.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def write_manifest(directory: str | Path, manifest: Manifest) -> None:
    """Replace an artifact's manifest atomically (the registry records name and version this way)."""
    directory = Path(directory)
    _write_json(directory / MANIFEST, manifest.to_dict())
    fsync_path(directory)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------------------------------------- reading


def read_manifest(directory: str | Path) -> Manifest:
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IncompatibleArtifactError(str(directory), [f"{MANIFEST} cannot be read: {exc}"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompatibleArtifactError(str(directory), [f"{MANIFEST} is not valid JSON: {exc}"]) from None
    return Manifest.from_dict(data, source=str(directory))


def load_base(directory: str | Path, *, config_overrides: Mapping[str, Any] | None = None) -> tuple[Detector, Manifest]:
    """Build the detector the manifest describes, check the weights fit it, load them.

    ``config_overrides`` changes settings that do not change the weights (where the encoder lives on this
    machine, ...); one that does shows up as a shape problem.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems = [] if manifest.kind == "base" else [f"this is an {manifest.kind} artifact, not a base"]
    try:
        detector = create_detector(manifest.family, {**manifest.config, **(config_overrides or {})})
    except ConfigError as exc:
        raise IncompatibleArtifactError(str(directory), [*problems, f"config rejected: {exc.problem}"]) from None
    except ModelError as exc:  # an unknown family
        raise IncompatibleArtifactError(str(directory), [*problems, str(exc)]) from None
    problems += _identity_problems(manifest, detector)
    problems += _weights_problems(directory, manifest, detector.expected_base_shapes())
    if problems:
        raise IncompatibleArtifactError(str(directory), problems)
    detector.load_base_state(_read_tensors(directory))
    return detector, manifest


def load_adapter(
    detector: Detector, base_manifest: Manifest, directory: str | Path, *, as_target: str | None = None
) -> Manifest:
    """Check the adapter at ``directory`` fits ``detector`` (loaded from ``base_manifest``), then load it under its
    target's name or ``as_target``. Nothing is loaded when anything is wrong."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    problems = [] if manifest.kind == "adapter" else [f"this is a {manifest.kind} artifact, not an adapter"]
    if manifest.family != detector.family:
        problems.append(f"family {manifest.family!r} differs from the detector's {detector.family!r}")
    if manifest.base is not None and manifest.base["id"] != base_manifest.weights_sha256:
        trained_on = _describe(manifest.base.get("name"), manifest.base.get("version"), manifest.base["id"])
        problems.append(f"adapter was trained on base {trained_on}, this base is {base_manifest.describe()}")
    problems += _identity_problems(manifest, detector)
    problems += _weights_problems(directory, manifest, detector.expected_adapter_shapes())
    target = as_target or manifest.target
    if not target:
        problems.append("no target name: the manifest's target is empty and as_target was not given")
    if problems:
        raise IncompatibleArtifactError(str(directory), problems)
    detector.load_adapter_state(target, _read_tensors(directory))
    return manifest


def verify_weights(directory: str | Path, manifest: Manifest) -> list[str]:
    """Problems with the weights file alone (missing, unreadable, hash differs from the manifest); [] when sound."""
    return _weights_problems(Path(directory), manifest, None)


def _identity_problems(manifest: Manifest, detector: Detector) -> list[str]:
    problems = []
    if manifest.feature_version != detector.feature_version:
        problems.append(
            f"feature_version {manifest.feature_version!r} differs from the detector's {detector.feature_version!r}"
            " (windows would be encoded differently)"
        )
    running = json.loads(json.dumps(detector.pretrained_identity()))  # compared as the manifest stores it
    for part in sorted(set(manifest.pretrained) | set(running)):
        if not same_part(manifest.pretrained.get(part), running.get(part)):
            problems.append(
                f"pretrained {part} differs: trained with {_part(manifest.pretrained.get(part))}, "
                f"this detector has {_part(running.get(part))}"
            )
    return problems


def _part(identity: Any) -> str:
    if isinstance(identity, dict) and "sha256" in identity:
        return f"{identity.get('name', '?')} (sha256 {str(identity['sha256'])[:12]})"
    return "nothing" if identity is None else json.dumps(identity)


def _weights_problems(directory: Path, manifest: Manifest, expected: dict[str, tuple[int, ...]] | None) -> list[str]:
    """The weights file's problems: unreadable, hash differs from the manifest, tensors differ from ``expected``."""
    path = directory / WEIGHTS
    try:
        actual = sha256_file(path)
    except OSError as exc:
        return [f"{WEIGHTS} cannot be read: {exc}"]
    problems = []
    if actual != manifest.weights_sha256:
        problems.append(
            f"{WEIGHTS} has sha256 {actual[:12]}, the manifest says {manifest.weights_sha256[:12]} "
            "(corrupt, truncated or replaced)"
        )
    try:
        with safe_open(path, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises SafetensorError, OSError, ValueError... on bad bytes: ours now
        problems.append(f"{WEIGHTS} is not a readable safetensors file ({type(exc).__name__}: {exc})")
        return problems
    if expected is not None:
        problems += shape_problems(expected, shapes, listed=_LISTED)
    return problems


def _read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(directory / WEIGHTS)
    except Exception as exc:  # validated a moment ago; changed since?
        raise IncompatibleArtifactError(str(directory), [f"{WEIGHTS} cannot be loaded ({exc})"]) from None
