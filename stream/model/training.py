"""The one training loop every family runs (``LoopDetector.fit``), the hooks a family gives it (``FitHooks``, from
its ``fit_hooks``), and what the loop shares: class weighting and early stopping on validation F1.

The loop owns everything that is the same for TransLog, LogTransfer and LogLLM: the argument checks, the seed,
stages of epochs of batches (micro-batches accumulate their gradients), AdamW and its learning rate, the optional
step-wise decay, which parameters require gradients, ``windows_seen``, progress, early stopping on validation, the
time budget, and freezing everything when the fit ends, also when it fails. A family says only what differs:

* ``prepare``: work before the seed is set (LogTransfer fits its word vectors);
* ``encode``: windows (and labels) -> what batches are cut from (embedding indices, padded vectors, line texts);
* ``stages``: what trains in mode "base" and "adapter", with the family's default epochs, lr and batch size;
* ``pool``/``shuffle``: the rows of one epoch (LogLLM oversamples the minority class and keeps its own RNG);
* ``loss``: the supervised loss of a micro-batch, normalised over its whole batch;
* ``forward``: the anomaly logit and the representation the head reads, per row of a batch;
* ``train``/``eval``: train and eval mode (LogLLM also activates the target's LoRA).

One semantics for every family (issue 18 item 6 listed where the loops had drifted):

* ``FitOptions.lr``/``batch_size``/``epochs``: None is the family's default, any other value is used as given
  (``FitOptions`` refuses a non-positive one); they apply to the stage that validates (the last).
* ``FitReport.windows_seen`` counts labeled windows through forward and backward, batch by batch, so a fit cut
  short inside an epoch still reports what it did; oversampled repeats count each time they are seen.
* ``requires_grad``: at the start of every epoch exactly the stage's parameters require gradients (scoring the
  validation windows in between may have changed that: peft freezes LoRA weights when it activates an adapter);
  when the fit ends, normally or not, none does, and no gradient from an earlier fit is left behind.
* epochs: ``FitOptions.plan`` raises the validating stage's epochs to ``min_steps`` optimizer steps over the rows of
  an epoch (LogLLM's oversampled ones included), and early stopping waits for them.

Unlabeled target windows (issue 18 item 3) enter here, in one place for all families: ``fit(...,
unlabeled=windows, objective=term)``. The loop encodes them with the family's ``encode``, cycles through them in
its own shuffled order (so the labeled batches stay those of a fit without them), and for every labeled
micro-batch draws as many unlabeled rows. ``term(labeled, unlabeled, stage)`` returns a scalar added to that
micro-batch's supervised loss before the backward pass: ``unlabeled`` is the family's ``forward`` on the drawn
rows (logits [B] and representations [B, d], with gradients), ``labeled()`` runs it on the labeled micro-batch
when the term needs it (domain-adversarial alignment compares the two; self-training on pseudo-labels or a
normal-only objective reads only the unlabeled one); an objective's own layers (a discriminator) train in the same
optimizer. ``stream.model.alignment`` has the terms.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from stream.model.detector import (
    Detector,
    FitOptions,
    FitReport,
    Mode,
    Progress,
    Stopwatch,
    WindowText,
    check_fit_arguments,
    set_seed,
)
from stream.model.fit_parts import Forward, Stage, UnlabeledObjective
from stream.model.quality import best_threshold

DECAYS_PER_STAGE = 10  # LogLLM's paper steps ExponentialLR every total_steps / 11 steps of a stage


def positive_weight(labels: Sequence[int]) -> float:
    """negatives / positives, for BCE on imbalanced windows (1.0 when one class is missing)."""
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    return negatives / positives if positives and negatives else 1.0


@dataclass(frozen=True, slots=True)
class LossTerm:
    """A micro-batch's loss: ``value`` is what backpropagates (normalised over the whole batch, so that the
    micro-batches' gradients add up to the batch's); ``total / count`` summed over an epoch is the reported loss."""

    value: torch.Tensor  # scalar
    total: float  # the summed loss of the micro-batch
    count: float  # what it is a sum over (windows, answer tokens)


E = TypeVar("E")  # a family's encoded windows


class FitHooks(ABC, Generic[E]):
    """What one family supplies to the loop (``LoopDetector.fit``; see the module docstring)."""

    def prepare(self, windows: Sequence[WindowText], mode: Mode) -> None:
        """Runs before the seed is set: work that keeps its own seed (LogTransfer fits word vectors here)."""

    @abstractmethod
    def encode(self, windows: Sequence[WindowText], labels: Sequence[int] | None) -> E:
        """Windows (labels None: unlabeled) -> what ``loss`` and ``forward`` cut batches from, by row index."""

    @abstractmethod
    def stages(self, mode: Mode) -> list[Stage]: ...

    @abstractmethod
    def parameters(self) -> list[nn.Parameter]:
        """Every parameter a fit may touch: frozen when it starts and when it ends."""

    def pool(self, labels: Sequence[int]) -> list[int]:
        """The rows an epoch draws from (repeats allowed)."""
        return list(range(len(labels)))

    def shuffle(self, pool: list[int], generator: torch.Generator) -> torch.Tensor:
        """One epoch's order of the pool's rows."""
        order = torch.randperm(len(pool), generator=generator)
        return order if pool == list(range(len(pool))) else torch.tensor(pool)[order]

    @abstractmethod
    def loss(self, encoded: E, part: torch.Tensor, batch: torch.Tensor) -> LossTerm:
        """The supervised loss of rows ``part`` (a micro-batch of ``batch``), under the family's autocast."""

    @abstractmethod
    def forward(self, encoded: E, rows: torch.Tensor) -> Forward: ...

    def train(self, stage: Stage) -> None:
        """Train mode for an epoch of ``stage`` (before the loop unfreezes the stage's parameters)."""

    def eval(self) -> None:
        """Eval mode: after every epoch and when the fit ends."""


class EarlyStopping:
    """After each epoch: score the validation windows, keep the best weights, say when to stop.

    ``trainable`` returns the tensors the fit changes (their copies are the snapshot); ``restore`` puts a snapshot
    back. Without validation in the options only the time budget can stop a fit.
    """

    def __init__(
        self,
        options: FitOptions,
        report: FitReport,
        clock: Stopwatch,
        score_validation: Callable[[], list[float]],
        trainable: Callable[[], Mapping[str, torch.Tensor]],
        restore: Callable[[dict[str, torch.Tensor]], None],
        min_epochs: int = 0,
    ) -> None:
        self.options = options
        self.report = report
        self.clock = clock
        self.score_validation = score_validation
        self.trainable = trainable
        self.restore = restore
        self.min_epochs = min_epochs  # patience only counts once these are done (FitOptions.min_steps)
        self.best_f1 = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.worse = 0

    def after_epoch(self, epoch: int) -> bool:
        """True when training should stop now."""
        if self.options.validation is not None:
            _, labels = self.options.validation
            _, f1 = best_threshold(self.score_validation(), list(labels))
            self.report.validation_f1.append(f1)
            if f1 > self.best_f1:
                self.best_f1, self.worse, self.report.best_epoch = f1, 0, epoch
                self.best_state = {name: t.detach().clone() for name, t in self.trainable().items()}
            else:
                self.worse += 1
                if self.worse >= self.options.patience and epoch + 1 >= self.min_epochs:
                    self.report.stopped_early = True
                    return True
        if self.options.max_seconds is not None and self.clock.seconds >= self.options.max_seconds:
            self.report.stopped_early = True
            return True
        return False

    def finish(self) -> None:
        """Put the best epoch's weights back (a no-op without validation)."""
        if self.best_state is not None:
            self.restore(self.best_state)
        self.report.seconds = self.clock.seconds


def _with_options(stage: Stage, options: FitOptions, rows: int, family_min_steps: int) -> tuple[Stage, int]:
    """The stage as ``options`` change it, and the epochs before early stopping may stop it."""
    if not stage.validates:
        return stage, 0
    batch_size = options.batch_size if options.batch_size is not None else stage.batch_size
    epochs, min_epochs = options.plan(stage.epochs, rows, batch_size, family_min_steps)
    lr = options.lr if options.lr is not None else stage.lr
    return replace(stage, epochs=epochs, lr=lr, batch_size=batch_size), min_epochs


@dataclass(frozen=True, eq=False)
class _Fit(Generic[E]):
    """What every stage of one fit shares."""

    detector: Detector
    hooks: FitHooks[E]
    encoded: E
    pool: list[int]
    generator: torch.Generator  # the labeled rows' order, across epochs and stages
    draw: _UnlabeledDraw[E] | None
    objective: UnlabeledObjective | None
    target: str | None
    options: FitOptions
    report: FitReport
    clock: Stopwatch
    progress: Progress | None
    parameters: list[nn.Parameter]  # every parameter the fit may touch (``FitHooks.parameters``)


def _run_stage(fit: _Fit[E], stage: Stage, min_epochs: int) -> bool:
    """One stage; True when the fit must stop (time budget, or patience run out on validation)."""
    hooks, report, progress, parameters = fit.hooks, fit.report, fit.progress, fit.parameters
    trainable = stage.parameters
    own = fit.objective.parameters(fit.draw.sample()) if fit.objective is not None and fit.draw is not None else []
    optimizer = torch.optim.AdamW([*trainable.values(), *own], lr=stage.lr)
    per_epoch = min(len(fit.pool), stage.max_windows or len(fit.pool))
    batches = math.ceil(per_epoch / stage.batch_size)
    total_steps = stage.epochs * batches
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=stage.lr_decay) if stage.lr_decay < 1 else None
    decay_every = max(1, total_steps // (DECAYS_PER_STAGE + 1))
    micro = min(stage.micro_batch_size or stage.batch_size, stage.batch_size)
    validation = fit.options.validation if stage.validates else None
    stopper = EarlyStopping(
        replace(fit.options, validation=validation),
        report,
        fit.clock,
        score_validation=lambda: fit.detector.scores(list(validation[0]), target=fit.target),  # type: ignore[index]
        trainable=lambda: trainable,
        restore=lambda snapshot: _restore(trainable, snapshot),
        min_epochs=min_epochs,
    )
    total, count, step, stop = 0.0, 0.0, 0, False
    for epoch in range(stage.epochs):
        _freeze(parameters, clear_gradients=False)  # exactly this stage's parameters train (see the docstring)
        hooks.train(stage)
        for parameter in trainable.values():
            parameter.requires_grad_(True)
        order = hooks.shuffle(fit.pool, fit.generator)[:per_epoch]
        for done, start in enumerate(range(0, len(order), stage.batch_size), start=1):
            batch = order[start : start + stage.batch_size]
            optimizer.zero_grad(set_to_none=True)
            for first in range(0, len(batch), micro):
                part = batch[first : first + micro]
                term = hooks.loss(fit.encoded, part, batch)
                value = term.value
                if fit.draw is not None and fit.objective is not None:
                    labeled = partial(hooks.forward, fit.encoded, part)
                    value = value + fit.objective(labeled, fit.draw(len(part)), stage)
                value.backward()
                total, count = total + term.total, count + term.count
                report.windows_seen += len(part)
            optimizer.step()
            step += 1
            if scheduler is not None and step % decay_every == 0:
                scheduler.step()
            if progress is not None:
                if stage.name is None:
                    progress(f"epoch {epoch + 1}/{stage.epochs}", done, batches)
                else:
                    progress(stage.name, step, total_steps)
        if stage.losses_per_epoch:
            report.losses.append(total / count)
            total, count = 0.0, 0.0
        hooks.eval()
        if stopper.after_epoch(epoch):
            stop = True
            break
    stopper.finish()
    if not stage.losses_per_epoch:
        report.losses.append(total / max(count, 1))
    return stop


class _UnlabeledDraw(Generic[E]):
    """Unlabeled rows in a shuffled order of their own, reshuffled each time it runs out; their ``forward``."""

    def __init__(self, hooks: FitHooks[E], windows: Sequence[WindowText], seed: int) -> None:
        self.hooks = hooks
        self.encoded = hooks.encode(windows, None)
        self.size = len(windows)
        self.generator = torch.Generator().manual_seed(seed + 1)  # not the labeled order's generator
        self.order = torch.randperm(self.size, generator=self.generator)
        self.next = 0

    @torch.no_grad()
    def sample(self) -> torch.Tensor:
        """One unlabeled row's representation ([1, d]): its width and device, for an objective's own layers."""
        return self.hooks.forward(self.encoded, torch.tensor([0])).representation

    def __call__(self, rows: int) -> Forward:
        picked: list[torch.Tensor] = []
        while rows > 0:
            if self.next == self.size:
                self.order, self.next = torch.randperm(self.size, generator=self.generator), 0
            take = min(rows, self.size - self.next)
            picked.append(self.order[self.next : self.next + take])
            self.next, rows = self.next + take, rows - take
        return self.hooks.forward(self.encoded, torch.cat(picked))


def _freeze(parameters: list[nn.Parameter], *, clear_gradients: bool) -> None:
    for parameter in parameters:
        parameter.requires_grad_(False)
        if clear_gradients:
            parameter.grad = None


@torch.no_grad()
def _restore(parameters: dict[str, nn.Parameter], snapshot: dict[str, torch.Tensor]) -> None:
    for name, parameter in parameters.items():
        parameter.copy_(snapshot[name])


class LoopDetector(Detector):
    """A ``Detector`` whose ``fit`` is the one loop: a family gives only its ``fit_hooks``, so the arguments, their
    checks and the loop are the same for every family."""

    def fit(
        self,
        windows: Sequence[WindowText],
        labels: Sequence[int],
        *,
        target: str | None,
        mode: Mode,
        options: FitOptions,
        progress: Progress | None = None,
        unlabeled: Sequence[WindowText] = (),
        objective: UnlabeledObjective | None = None,
    ) -> FitReport:
        """The loop (see the module docstring), with the family's ``fit_hooks``."""
        check_fit_arguments(self, windows, labels, target, mode)
        if bool(unlabeled) != (objective is not None):
            raise ValueError("unlabeled windows and an objective on them go together: give both or neither")
        hooks = self.fit_hooks(target, options)
        clock = Stopwatch()
        hooks.prepare(windows, mode)
        set_seed(options.seed)  # dropout masks
        report = FitReport(parameters=self.parameter_counts(mode, target))
        encoded = hooks.encode(windows, [int(label) for label in labels])
        pool = hooks.pool([int(label) for label in labels])
        generator = torch.Generator().manual_seed(options.seed)
        draw = _UnlabeledDraw(hooks, unlabeled, options.seed) if objective is not None else None
        parameters = hooks.parameters()
        fit = _Fit(
            self, hooks, encoded, pool, generator, draw, objective, target, options, report, clock, progress, parameters
        )
        _freeze(parameters, clear_gradients=True)  # nothing left from an earlier fit
        try:
            for stage in hooks.stages(mode):
                stage, min_epochs = _with_options(stage, options, len(pool), self.min_steps)
                if stage.epochs > 0 and _run_stage(fit, stage, min_epochs):
                    break
        finally:
            _freeze(parameters, clear_gradients=False)  # the last step's gradients stay, for whoever inspects them
            hooks.eval()
        report.seconds = clock.seconds
        return report

    @abstractmethod
    def fit_hooks(self, target: str | None, options: FitOptions) -> FitHooks[Any]:
        """What this family gives the loop to train ``target`` (None: the base)."""
