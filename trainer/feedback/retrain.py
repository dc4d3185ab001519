"""One retraining of a target system's adapter from its stored labels, judged against the serving champion.

The labeled windows of a target are split by class and by a hash of their window_id (see ``split``): about
``holdout_share`` of each class is held out and never trains anything, so champion and challenger are always compared
on windows neither has seen. The rest trains the challenger (a fresh adapter on the serving base) with its own
validation share, again per class, for early stopping and the threshold. Splitting each class on its own gives every
part an anomaly even when few labels have arrived, where a split of all windows by hash alone often left the
validation or held-out part with none and the retrain could not run. Class balance comes from the families' loss
weighting (TransLog and LogTransfer weight BCE by negatives / positives; LogLLM oversamples the minority class), so no
label is thrown away.

The challenger is published (and the caller announces it) only when its held-out F1 is at least the champion's plus
``margin`` (a tie publishes with the default margin 0: the newer labels win) and above 0 (a challenger that finds no
held-out anomaly is never published, even when the champion finds none either). The champion is the serving adapter,
or the base alone (zero-shot) when the target has none.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.errors import ModelError
from stream.model.artifacts import load_adapter
from stream.model.detector import Detector, FitOptions, WindowText
from stream.model.quality import confusion
from stream.model.registry import Registry
from stream.model.thresholds import DEFAULT_THRESHOLD, FALSE_ALARM_BUDGET
from stream.records import LABELED, ZERO_LABEL, rfc3339
from stream.runtime.policy import RETRAIN
from trainer.train import adapt_windows, zero_label

log = logging.getLogger(__name__)


class Example(Protocol):
    """A labeled window as retraining reads it (read only: the store's examples are frozen)."""

    @property
    def window_id(self) -> str: ...
    @property
    def templates(self) -> tuple[str, ...]: ...
    @property
    def masked(self) -> tuple[str, ...]: ...
    @property
    def label(self) -> int: ...


@dataclass(frozen=True)
class RetrainPolicy:
    min_new_labels: int = 50  # retrain once this many labels are unused by any training run ...
    max_interval_s: float = 3600.0  # ... or once the oldest unused label has waited this long
    min_per_class: int = 5  # at least this many anomalous and normal labels in all before a first retrain
    margin: float = 0.0  # publish when the challenger's held-out F1 >= the champion's + margin
    holdout_share: float = 0.2
    validation_share: float = 0.2  # of the training part: early stopping and the threshold

    def __post_init__(self) -> None:
        if self.min_new_labels < 1 or self.max_interval_s <= 0 or self.min_per_class < 1:
            raise ValueError("RetrainPolicy: min_new_labels, max_interval_s and min_per_class must be positive")
        for name in ("holdout_share", "validation_share"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"RetrainPolicy.{name} must be in (0, 1)")


def due(policy: RetrainPolicy, counts: dict[str, int], oldest_unused_ms: int | None, now_ms: int) -> str | None:
    """Why the target should retrain now, or None. ``counts``: anomalous, normal, unused (see LabelStore.counts);
    ``oldest_unused_ms``: when the oldest label no retrain has read arrived (so no label waits longer than
    ``max_interval_s`` to be used, and a trickle of labels still gets used)."""
    if counts["anomalous"] < policy.min_per_class or counts["normal"] < policy.min_per_class:
        return None
    if counts["unused"] >= policy.min_new_labels:
        return f"{counts['unused']} new labels"
    if counts["unused"] and oldest_unused_ms is not None and now_ms - oldest_unused_ms >= policy.max_interval_s * 1000:
        return f"{counts['unused']} new labels, the oldest waiting {policy.max_interval_s:.0f}s"
    return None


def failure_entry(
    target: str, why: str, exc: BaseException, last: dict[str, Any] | None, now_ms: int
) -> dict[str, Any]:
    """The history entry of a retrain that raised: the error, how many failed in a row, and when to try again."""
    failures = int(last.get("failures", 0)) + 1 if last and last.get("failed") else 1
    delay_s = RETRAIN.backoff.delay_s(failures) if RETRAIN.backoff is not None else 0.0
    return {
        "at_ms": now_ms,
        "why": why,
        "target": target,
        "published": False,
        "failed": True,
        "error": f"{type(exc).__name__}: {exc}",
        "failures": failures,
        "retry_at_ms": now_ms + int(delay_s * 1000),
    }


def retry_at_ms(last: dict[str, Any] | None) -> int | None:
    """When a target whose latest history entry is a failed retrain may retrain again; None when it is not backing
    off. Kept in the history, so a restarted service backs off as well."""
    if not last or not last.get("failed"):
        return None
    retry_at = last.get("retry_at_ms")
    return retry_at if isinstance(retry_at, int) else None


def next_retrain(
    policy: RetrainPolicy,
    counts: dict[str, int],
    oldest_unused_ms: int | None,
    last: dict[str, Any] | None,
    now_ms: int,
) -> str:
    """When the target retrains next, in words, as the service decides it (``due``, the backoff after a failure):
    ``adaptlog-train status`` prints it and the console's system page shows it (``RetrainSchedule``)."""
    retry_at = retry_at_ms(last)
    if retry_at is not None and now_ms < retry_at:
        failures = (last or {}).get("failures", 1)
        return f"not before {rfc3339(retry_at)} (backing off after {failures} failed retrains in a row)"
    reason = due(policy, counts, oldest_unused_ms, now_ms)
    if reason:
        return f"now ({reason})"
    short = [(policy.min_per_class - counts[c], c) for c in ("anomalous", "normal") if counts[c] < policy.min_per_class]
    if short:
        missing = " and ".join(f"{n} more {label}" for n, label in short)
        return f"after {missing} labels (a retrain needs {policy.min_per_class} of each class)"
    text = f"after {policy.min_new_labels - counts['unused']} more labels"
    if oldest_unused_ms is not None:
        text += f" or at {rfc3339(int(oldest_unused_ms + policy.max_interval_s * 1000))}"
    return text


def share_of(window_id: str, salt: str) -> float:
    """A stable number in [0, 1) per window: its place in every split, the same in any process."""
    digest = hashlib.blake2b(f"{salt}/{window_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Split:
    held_out: list[Example]
    validation: list[Example]
    train: list[Example]

    def sizes(self) -> dict[str, int]:
        return {"held_out": len(self.held_out), "validation": len(self.validation), "train": len(self.train)}


def split(examples: Sequence[Example], policy: RetrainPolicy) -> Split:
    """Held-out, validation and training parts of ``examples``, each class split on its own, in input order.

    In each class the windows whose hash falls below the share go to the part, as a plain hash split would; when
    none does, the class's lowest-hash window goes instead, so a class with at least 3 labels is in all three parts;
    and the part never takes so many that a later part is left without the class. A window's part depends on its own
    hash, so it keeps its part as labels accumulate; the fallback only ever picks the lowest hash of a growing set, so
    it never pulls a window that trained an earlier challenger (perhaps today's champion, which that window would
    flatter) into the held-out part. The one exception is a class so small that more of it hashes below the share
    than can be spared: the cap keeps a window out, and it joins the held-out part once the class has grown.
    """
    parts: dict[str, set[int]] = {"held_out": set(), "validation": set(), "train": set()}
    for label in sorted({e.label for e in examples}):
        members = [i for i, e in enumerate(examples) if e.label == label]
        held, rest = _take(examples, members, "holdout", policy.holdout_share, leave=2)
        validation, train = _take(examples, rest, "validation", policy.validation_share, leave=1)
        parts["held_out"].update(held)
        parts["validation"].update(validation)
        parts["train"].update(train)
    return Split(*([e for i, e in enumerate(examples) if i in parts[name]] for name in parts))


def _take(
    examples: Sequence[Example], members: list[int], salt: str, share: float, *, leave: int
) -> tuple[list[int], list[int]]:
    """Split ``members`` (indices into ``examples``, one class) into the part named by ``salt`` and the rest."""
    ranked = sorted(members, key=lambda i: (share_of(examples[i].window_id, salt), examples[i].window_id))
    count = sum(share_of(examples[i].window_id, salt) < share for i in members)
    count = max(0, min(max(count, 1), len(members) - leave))
    return ranked[:count], ranked[count:]


@dataclass
class Decision:
    target: str
    published: bool
    reason: str
    version: str | None = None  # the published version
    champion: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # window_ids that trained the challenger
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "used"}
        out["used_labels"] = len(self.used)
        return out


def texts(examples: Sequence[Example]) -> tuple[list[WindowText], list[int]]:
    return [WindowText(e.templates, e.masked) for e in examples], [int(e.label) for e in examples]


def quality(detector: Detector, examples: Sequence[Example], target: str | None, threshold: float) -> dict[str, Any]:
    windows, labels = texts(examples)
    scores = detector.scores(windows, target=target)
    return confusion(scores, labels, threshold).to_dict() | {"threshold": threshold, "windows": len(labels)}


def retrain(
    registry: Registry,
    base_name: str,
    target: str,
    examples: Sequence[Example],
    policy: RetrainPolicy,
    *,
    options: FitOptions | None = None,
    device: str = "cpu",
) -> Decision:
    """Train a challenger adapter for ``target`` on ``examples`` (on ``device``); publish it when it beats the
    champion."""
    started = time.monotonic()
    parts = split(examples, policy)
    held, validation, train = parts.held_out, parts.validation, parts.train
    labels = parts.sizes()
    for name, part in (("held-out", held), ("validation", validation), ("training", train)):
        if len({e.label for e in part}) < 2:
            return Decision(target, False, f"not enough labels: the {name} part lacks a class", labels=labels)
    loaded = registry.load_serving_base(base_name)
    if loaded is None:
        # raised, not a rejected Decision: nothing judged these labels, so they must not be marked used
        raise ModelError(f"no serving base {base_name!r} in {registry.root}")
    detector, base = loaded
    detector.to_device(device)

    champion_target, champion_manifest = None, registry.serving("adapter", target)
    if champion_manifest is not None and champion_manifest.base and champion_manifest.base["id"] == base.weights_sha256:
        champion_target = f"champion__{champion_manifest.version}"
        path = registry.path("adapter", target, champion_manifest.version or "")
        load_adapter(detector, base, path, as_target=champion_target)
        champion_threshold = (
            champion_manifest.threshold if champion_manifest.threshold is not None else DEFAULT_THRESHOLD
        )
        champion_name = f"adapter {champion_manifest.version}"
    else:
        champion_manifest = None
        champion_threshold = base.threshold if base.threshold is not None else DEFAULT_THRESHOLD
        champion_name = f"base {base.name}/{base.version} (zero-shot)"
    champion = quality(detector, held, champion_target, champion_threshold) | {"model": champion_name}

    # the CLI's adapt on the stored examples; its default rule: best-f1 (validation holds an anomaly: checked above)
    trained = adapt_windows(detector, target, texts(train), texts(validation), options=options)
    threshold, report = trained.threshold, trained.report
    challenger = quality(detector, held, target, threshold) | {"fit_seconds": round(report.seconds, 2)}

    decision = Decision(target, False, "", champion=champion, challenger=challenger, labels=labels)
    decision.used = [e.window_id for e in train + validation]
    if challenger["f1"] <= 0.0:
        # it found none of the held-out anomalies: never worth serving, even against a champion that found none either
        decision.reason = f"challenger F1 {challenger['f1']:.3f}: it finds no held-out anomaly"
    elif challenger["f1"] >= champion["f1"] + policy.margin:
        manifest = registry.save_adapter(
            detector,
            target,
            base=base,
            threshold=threshold,
            training={"labels": labels, "fit": report.to_dict(), "source": "feedback", "supervision": LABELED},
            metrics={
                "held_out": challenger,
                "champion": champion,
                "validation": trained.validation,
            },
            reason=f"retrained from feedback: held-out F1 {challenger['f1']:.3f} vs {champion['f1']:.3f}",
        )
        decision.published, decision.version = True, manifest.version
        decision.reason = f"challenger F1 {challenger['f1']:.3f} >= champion {champion['f1']:.3f} + {policy.margin}"
    else:
        decision.reason = f"challenger F1 {challenger['f1']:.3f} < champion {champion['f1']:.3f} + {policy.margin}"
    decision.seconds = round(time.monotonic() - started, 2)
    outcome = f"published {decision.version}" if decision.published else "rejected"
    log.info("retrain %s: %s (%s) in %.1fs", target, outcome, decision.reason, decision.seconds)
    return decision


def zero_label_adapter(
    registry: Registry,
    base_name: str,
    target: str,
    windows: Sequence[WindowText],
    *,
    budget_per_1000: float,
    threshold_rule: str = FALSE_ALARM_BUDGET,
    device: str = "cpu",
) -> Decision:
    """Publish ``target``'s first adapter from its unlabeled windows alone (``trainer.train.zero_label``): the
    base's scores with a threshold that flags about ``budget_per_1000`` of every 1,000 of the target's windows (or,
    with ``score-mixture``, where a minority upper mode of their scores begins). No
    held-out labels exist to judge it, so it is published without a champion: it only replaces the base's threshold,
    which was placed on another system's scores. The first labeled retrain then has to beat it on held-out labels."""
    started = time.monotonic()
    loaded = registry.load_serving_base(base_name)
    if loaded is None:
        raise ModelError(f"no serving base {base_name!r} in {registry.root}")
    detector, base = loaded
    detector.to_device(device)
    trained = zero_label(detector, target, windows, budget_per_1000=budget_per_1000, threshold_rule=threshold_rule)
    flagged = trained.validation["flagged_unlabeled"]
    reason = f"zero-label: threshold {trained.threshold:.4f} flags {flagged} of {len(windows)} unlabeled windows"
    manifest = registry.save_adapter(
        detector,
        target,
        base=base,
        threshold=trained.threshold,
        training={
            "source": "feedback",
            "supervision": ZERO_LABEL,
            "unlabeled": {"source": "windows topic (stored by the feedback service)", "windows": len(windows)},
            "fit": trained.report.to_dict(),
        },
        metrics={"validation": trained.validation},
        reason=reason,
    )
    decision = Decision(target, True, reason, version=manifest.version, labels={"unlabeled": len(windows)})
    decision.seconds = round(time.monotonic() - started, 2)
    log.info("zero-label %s: published %s (%s) in %.1fs", target, manifest.version, reason, decision.seconds)
    return decision
