"""What inference says about a window, with the templates that drove it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Cause:
    """One template that drove a verdict: its text, its weight (how much the score falls without its lines) and
    where its lines sit in the window (0-based line offsets)."""

    template: str
    weight: float
    offsets: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "weight": round(self.weight, 6), "offsets": list(self.offsets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cause:
        return cls(d["template"], float(d["weight"]), tuple(int(o) for o in d["offsets"]))


# What the model behind a verdict learned from the target (``Verdict.supervision``): nothing (the base alone), the
# target's unlabeled or normal windows but no labeled anomaly, or labeled anomalies.
ZERO_SHOT = "zero-shot"
ZERO_LABEL = "zero-label"
LABELED = "labeled"
SUPERVISIONS = (ZERO_SHOT, ZERO_LABEL, LABELED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What inference says about one window; published on ``alerts`` when anomalous (key: window_id), and on
    ``verdicts`` when configured. ``adapter_version`` None means the base scored it zero-shot. ``threshold_rule``:
    the rule that set ``threshold`` (``stream.model.thresholds``), as the serving model's manifest records it; None
    for a manifest from before rules were recorded (and in verdicts written before this field existed).
    ``supervision``: ``zero-shot`` (no adapter), ``zero-label`` (an adapter whose training saw no labeled anomaly)
    or ``labeled``; None in verdicts written before this field existed."""

    window_id: str
    system: str
    family: str
    model: str  # base name/version, e.g. "bgl/v0001"
    adapter_version: str | None
    zero_shot: bool
    score: float
    threshold: float
    label: str  # anomalous | normal
    first_event_ms: int
    last_event_ms: int
    lines: int
    explanation: tuple[Cause, ...] = ()
    truth: str | None = None  # the window's replayed ground truth, when it carried one (for evaluation only)
    threshold_rule: str | None = None
    supervision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "system": self.system,
            "family": self.family,
            "model": self.model,
            "adapter_version": self.adapter_version,
            "zero_shot": self.zero_shot,
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "label": self.label,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
            "lines": self.lines,
            "explanation": [cause.to_dict() for cause in self.explanation],
            "truth": self.truth,
            "threshold_rule": self.threshold_rule,
            "supervision": self.supervision,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(
            window_id=d["window_id"],
            system=d["system"],
            family=d["family"],
            model=d["model"],
            adapter_version=d.get("adapter_version"),
            zero_shot=bool(d["zero_shot"]),
            score=float(d["score"]),
            threshold=float(d["threshold"]),
            label=d["label"],
            first_event_ms=int(d["first_event_ms"]),
            last_event_ms=int(d["last_event_ms"]),
            lines=int(d["lines"]),
            explanation=tuple(Cause.from_dict(c) for c in d.get("explanation", ())),
            truth=d.get("truth"),
            threshold_rule=d.get("threshold_rule"),
            supervision=d.get("supervision"),
        )
