"""The models one inference worker serves: the registry's serving base, and each target system's serving adapter.

A target system is served by the adapter published under its name (``adapters/<system>/``); a system without one is
scored by the base alone, zero-shot, and its verdicts say so. ``refresh`` reads the registry's serving pointers and
loads what changed: a new version is loaded beside the old one (under an internal name carrying the version), checked
by ``stream.model.artifacts`` (another base, another encoder, wrong shapes, a corrupt file: all refused with every
reason), and only then does the system's route move to it and the old one leave memory. A refused version is logged
and counted once, and the previous version keeps serving. ``score`` and ``refresh`` run on the same single worker
thread, so a swap always falls between two batches.

The base is loaded in host memory and then moved to the host's ``device`` (``Detector.to_device``: "auto" is the
first CUDA device when torch sees one); an adapter loaded later is created on the base's device, so a hot swap needs
no move. Every family moves (LogLLM: its decoder with every LoRA adapter, projectors and line encoder).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stream.errors import IncompatibleArtifactError, ModelError
from stream.inference.explain import explain
from stream.inference.score_cache import Cached, ScoreCache, reading_key, window_key
from stream.model import artifacts
from stream.model.artifacts import Manifest
from stream.model.detector import Detector, WindowText, resolve_device
from stream.model.registry import Registry
from stream.model.thresholds import DEFAULT_THRESHOLD  # a base published without one (no validation windows)
from stream.records import ANOMALOUS, NORMAL, ZERO_SHOT, Cause, Verdict, Window

log = logging.getLogger(__name__)


SERVING_PRECISIONS = ("auto", "float32", "bfloat16")  # see stream.model.detector.scoring_autocast
DEFAULT_SCORE_CACHE = 100_000  # windows' verdicts kept by reading (about 200 bytes each)
UNREADABLE_POINTER = "pointer"  # the "version" under which a system's unreadable serving pointer is refused


@dataclass(frozen=True, slots=True)
class Route:
    """Where a system's windows go: the detector target (None = the base) and the adapter behind it."""

    target: str | None
    adapter: Manifest | None
    threshold: float


def internal_name(system: str, version: str) -> str:
    """A detector target name for one version of a system's adapter: ``<system>__<version>``, the system's name
    kept readable for logs. Module names allow letters, digits and '_' only, so every other character, and '_'
    itself, is written as '_<hex code point>_' ("web-1" -> "web_2d_1", "web_1" -> "web_5f_1"). No two systems share
    a name (they once did: "web-1" and "web_1" were both "web_1", and one's swap removed the other's adapter): read
    from the left, a '_' opens an escape (hex digits, then '_') unless another '_' follows; that pair separates."""
    escaped = re.sub(r"[^A-Za-z0-9]", lambda match: f"_{ord(match.group()):x}_", system)
    return f"{escaped}__{version}"


THRESHOLD_SLACK = 1e-5


def threshold_problem(threshold: float | None) -> str | None:
    """Why a manifest's threshold cannot decide verdicts, or None (None itself is fine: ``DEFAULT_THRESHOLD``).
    Scores are probabilities: a threshold outside [0, 1] flags every window or none, and NaN flags none. Just above
    1 is allowed: training picks the top score plus 1e-6 when its validation holds no anomaly ("flag nothing yet"),
    and that adapter is a valid one."""
    if threshold is None or (math.isfinite(threshold) and 0.0 <= threshold <= 1.0 + THRESHOLD_SLACK):
        return None
    return f"threshold {threshold!r} is not a number in [0, 1]"


def unreadable(exc: BaseException) -> bool:
    """Whether loading failed because a file could not be read (an OSError, raised or wrapped by
    ``stream.model.artifacts``, which keeps it as the context) rather than because the artifact is wrong."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def window_text(window: Window) -> WindowText:
    return WindowText(tuple(line.template for line in window.lines), tuple(line.masked for line in window.lines))


class ModelHost:
    def __init__(
        self,
        registry: Registry,
        base: str = "",
        *,
        explain_top: int = 3,
        explain_saliency: bool = True,
        device: str = "auto",
        precision: str = "auto",
        score_cache_size: int = DEFAULT_SCORE_CACHE,
    ) -> None:
        self.registry = registry
        self.explain_top = explain_top
        self.explain_saliency = explain_saliency
        self.cache = ScoreCache(score_cache_size)
        name = base or self._only_base()
        wanted = resolve_device(device)  # before the load: a bad device fails at once, not after a minute of loading
        if precision not in SERVING_PRECISIONS:
            raise ModelError(f"precision {precision!r}: choose one of {SERVING_PRECISIONS}")
        loaded = registry.load_serving_base(name)
        if loaded is None:
            raise ModelError(f"registry {registry.root}: base {name!r} serves no version")
        self.detector: Detector = loaded[0]
        self.base: Manifest = loaded[1]
        self.device = self.detector.to_device(wanted)  # where it really scores
        self.detector.precision = precision  # adapters loaded later are targets of the same detector: they follow
        self.routes: dict[str, Route] = {}
        self.refused: dict[tuple[str, str], str] = {}  # (system, version or UNREADABLE_POINTER) -> why; not retried
        self.counts: Counter[str] = Counter()
        log.info("serving base %s (%s) on %s", self.model_name, self.detector.family, self.device)

    def _only_base(self) -> str:
        if not self.registry.root.is_dir():
            raise ModelError(f"registry {self.registry.root}: no such directory")
        names = self.registry.names("base")
        if len(names) != 1:
            raise ModelError(
                f"registry {self.registry.root} holds bases {names}: name the one to serve (inference.base)"
            )
        return names[0]

    @property
    def model_name(self) -> str:
        return f"{self.base.name}/{self.base.version}"

    @property
    def base_threshold(self) -> float:
        return self.base.threshold if self.base.threshold is not None else DEFAULT_THRESHOLD

    def serving_versions(self) -> dict[str, str]:
        """system -> the adapter version serving it (systems on the base alone are absent). Called from the metrics
        thread: ``list()`` copies the routes in one step, so a swap on the model thread never changes them under it."""
        return {
            system: route.adapter.version
            for system, route in list(self.routes.items())
            if route.adapter and route.adapter.version
        }

    def route(self, system: str) -> Route:
        return self.routes.get(system) or Route(None, None, self.base_threshold)

    # ------------------------------------------------------------------------------------------------ versions

    def refresh(self) -> list[str]:
        """Load every adapter whose serving version changed; returns what changed, as log-ready phrases."""
        changes = []
        for system in self.registry.names("adapter"):
            try:
                pointer = self.registry.pointer("adapter", system)
            except ModelError as exc:
                self._refuse(system, UNREADABLE_POINTER, str(exc))
                continue
            self.refused.pop((system, UNREADABLE_POINTER), None)  # readable again: a later breakage is a new refusal
            current = self.routes.get(system)
            if pointer is None or (current and current.adapter and current.adapter.version == pointer.version):
                continue
            if (system, pointer.version) in self.refused:
                continue
            change = self._swap(system, pointer.version, current)
            if change:
                changes.append(change)
        return changes

    def _swap(self, system: str, version: str, current: Route | None) -> str | None:
        name = internal_name(system, version)
        try:
            path = self.registry.path("adapter", system, version)
            manifest = artifacts.load_adapter(self.detector, self.base, path, as_target=name)
            problem = threshold_problem(manifest.threshold)
            if problem is not None:
                raise ModelError(f"adapter {system}/{version}: {problem}")
        except (IncompatibleArtifactError, ModelError, OSError) as exc:
            if name in self.detector.targets:
                self.detector.remove_target(name)
            if unreadable(exc):  # the file system, not the artifact: a good version must not be refused for good
                self.counts["adapter_loads_retried"] += 1
                log.warning(
                    "system %s: adapter %s could not be read, tried again at the next refresh: %s", system, version, exc
                )
                return None
            self._refuse(system, version, str(exc))
            return None
        threshold = manifest.threshold if manifest.threshold is not None else DEFAULT_THRESHOLD
        self.routes[system] = Route(name, manifest, threshold)
        if current is not None and current.target is not None:
            self.detector.remove_target(current.target)
            self.cache.drop_target(current.target)
        self.counts["adapters_loaded"] += 1
        before = current.adapter.version if current and current.adapter else "zero-shot"
        log.info("system %s: adapter %s -> %s", system, before, version)
        return f"{system}: {before} -> {version}"

    def _refuse(self, system: str, version: str, reason: str) -> None:
        """Refuse a version (or the system's unreadable pointer, ``UNREADABLE_POINTER``): counted and logged once,
        however many refreshes find it still there."""
        if (system, version) in self.refused:
            return
        self.refused[(system, version)] = reason
        self.counts["artifacts_refused"] += 1
        log.error("system %s: refusing adapter %s, previous version keeps serving: %s", system, version, reason)

    # ---------------------------------------------------------------------------------------------------- scoring

    def score(self, windows: Sequence[Window]) -> list[Verdict]:
        """Verdicts for the windows, in their order. Each window is scored by its system's adapter, in one mixed
        batch (``Detector.scores_mixed``: TransLog applies them all in one forward pass), unless the same adapter
        version has read the same before (``ScoreCache``) or another window of the batch reads the same: then its
        earlier score is reused, as exact as scoring it again. An anomalous window's explanation is reused only
        from the same whole window (``window_key``): its offsets are positions in that window."""
        routes = [self.route(window.system) for window in windows]
        texts = [window_text(window) for window in windows]
        targets = [route.target for route in routes]
        keys = [reading_key(target, self.detector.reads(text)) for target, text in zip(targets, texts, strict=True)]
        scores = self._scores(keys, texts, targets)
        flagged = [i for i, key in enumerate(keys) if scores[key] >= routes[i].threshold]
        explanations = self._explanations(flagged, [scores[key] for key in keys], texts, targets)
        verdicts = []
        for i, (window, route, key) in enumerate(zip(windows, routes, keys, strict=True)):
            verdicts.append(self._verdict(window, route, scores[key], explanations.get(i, ())))
            self.counts[f"windows:{window.system}:{route.adapter.version if route.adapter else 'zero-shot'}"] += 1
        return verdicts

    def _scores(
        self, keys: Sequence[bytes], texts: Sequence[WindowText], targets: Sequence[str | None]
    ) -> dict[bytes, float]:
        """The score of each distinct reading: from the cache, or scored now (once per reading)."""
        first: dict[bytes, int] = {}  # each distinct reading of the batch, by its first window
        known: dict[bytes, float] = {}
        for i, key in enumerate(keys):
            if key not in first:
                first[key] = i
                cached = self.cache.get(key)
                if cached is not None:
                    known[key] = cached.score
        unscored = [i for key, i in first.items() if key not in known]
        scores = (
            self.detector.scores_mixed([texts[i] for i in unscored], [targets[i] for i in unscored]) if unscored else []
        )
        for i, score in zip(unscored, scores, strict=True):
            known[keys[i]] = score
            self.cache.put(targets[i], keys[i], Cached(score, None))
        self.counts["windows_scored"] += len(unscored)
        self.counts["windows_reused"] += len(keys) - len(unscored)
        return known

    def _explanations(
        self,
        flagged: Sequence[int],
        scores: Sequence[float],
        texts: Sequence[WindowText],
        targets: Sequence[str | None],
    ) -> dict[int, tuple[Cause, ...]]:
        """Explanations of the flagged windows (by index), each computed once per whole window and target.

        Not by reading, as scores are: a cause's offsets are positions in the window it was computed on, and
        occluding a template shifts earlier lines into what the model reads, so two windows that read the same
        (the same last lines) may still be explained differently."""
        whole = {i: window_key(targets[i], texts[i]) for i in flagged}
        first: dict[bytes, int] = {}
        known: dict[bytes, tuple[Cause, ...]] = {}
        for i in flagged:
            if whole[i] not in first:
                first[whole[i]] = i
                cached = self.cache.get(whole[i])
                if cached is not None and cached.explanation is not None:
                    known[whole[i]] = cached.explanation
        todo = [i for key, i in first.items() if key not in known]
        causes = explain(
            self.detector,
            [texts[i] for i in todo],
            [scores[i] for i in todo],
            [targets[i] for i in todo],
            top=self.explain_top,
            saliency=self.explain_saliency,
        )
        for i, explanation in zip(todo, causes, strict=True):
            known[whole[i]] = explanation
            self.cache.put(targets[i], whole[i], Cached(scores[i], explanation))
        return {i: known[whole[i]] for i in flagged}

    def probe(self, systems: Sequence[str]) -> None:
        """Score a plain one-line window with the model of each system; raises what the model raises.

        The worker asks when no window of a batch could be scored: a model that fails even this is broken (a bug,
        or a device gone), and the error must stop the worker rather than dead-letter every window it reads."""
        targets = list(dict.fromkeys(self.route(system).target for system in systems))
        plain = WindowText(("probe",), ("probe",))
        self.detector.scores_mixed([plain] * len(targets), targets)

    def _verdict(self, window: Window, route: Route, score: float, explanation: tuple[Cause, ...]) -> Verdict:
        events = [line.event_ms for line in window.lines] or [window.start_ms]
        return Verdict(
            window_id=window.window_id,
            system=window.system,
            family=self.detector.family,
            model=self.model_name,
            adapter_version=route.adapter.version if route.adapter else None,
            zero_shot=route.adapter is None,
            score=score,
            threshold=route.threshold,
            label=ANOMALOUS if score >= route.threshold else NORMAL,
            first_event_ms=min(events),
            last_event_ms=max(events),
            lines=len(window.lines),
            explanation=explanation,
            truth=window.label,
            threshold_rule=_rule(route.adapter or self.base),
            supervision=ZERO_SHOT if route.adapter is None else route.adapter.supervision,
        )


def _rule(manifest: Manifest) -> str | None:
    """The rule behind a route's threshold: none where the manifest has no threshold (``DEFAULT_THRESHOLD`` serves)."""
    return manifest.threshold_rule if manifest.threshold is not None else None
