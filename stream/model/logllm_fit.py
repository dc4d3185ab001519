"""LogLLM training: minority oversampling, then the paper's three stages (mode "base") or one adapter stage.

Stages (Guan et al., 2024, section 3.4; their train.py):

1. ``stage1``: only the decoder's LoRA trains, on at most ``stage1_windows`` windows per epoch: the LLM learns the
   answer template ("The sequence is ...") while the line vectors are still untrained;
2. ``stage2``: the decoder is frozen; the line encoder's Linear and the projector learn to put log lines where the
   decoder can read them (the paper's stages 2-1 and 2-2, projector then projector + BERT);
3. ``stage3``: line encoder, projector and LoRA together.

Mode "adapter" runs one stage, ``adapter``: the target's own LoRA and projector; the base is frozen.

Each stage: AdamW, the paper's schedule (lr times ``lr_decay`` ten times over the stage), batches of ``batch_size``
windows whose gradients accumulate over forwards of ``micro_batch_size``, loss = mean cross-entropy over the answer
tokens of a batch; the forwards run in bf16 autocast when the config's ``train_dtype`` asks (1.7x on this project's
AVX512-BF16 CPU). ``FitOptions.epochs``/``lr``/``batch_size`` replace the config's values for the last stage
(stage 3, or the adapter stage), which is also the stage whose epochs early stopping on validation watches; the time
budget (``max_seconds``) ends the whole fit after the epoch that crosses it. ``FitReport.losses`` has one mean loss
per stage that ran.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from stream.model.decoder import disable_cpu_repacking
from stream.model.detector import (
    FitOptions,
    FitReport,
    Mode,
    Progress,
    Stopwatch,
    WindowText,
    check_fit_arguments,
    epochs_for_steps,
    set_seed,
)
from stream.model.training import EarlyStopping

if TYPE_CHECKING:
    from stream.model.logllm import LogLLMDetector

DECAYS_PER_STAGE = 10  # the paper steps ExponentialLR every total_steps / 11 steps


@dataclass(frozen=True)
class Stage:
    name: str
    parts: tuple[str, ...]  # what trains: "lora", "line", "projector" (of the base, or of the target in "adapter")
    epochs: int
    lr: float
    max_windows: int | None = None  # windows per epoch (stage 1 only)
    validates: bool = False  # the stage whose epochs early stopping on validation watches
    min_epochs: int = 0  # early stopping waits for these (FitOptions.min_steps)


def stages(detector: LogLLMDetector, mode: Mode, options: FitOptions) -> list[Stage]:
    cfg = detector.cfg
    if mode == "adapter":
        return [
            Stage(
                "adapter",
                ("lora", "projector"),
                _given(options.epochs, cfg.adapter_epochs),
                _given(options.lr, cfg.adapter_lr),
                validates=True,
            )
        ]
    return [
        Stage("stage1", ("lora",), cfg.stage1_epochs, cfg.stage1_lr, max_windows=cfg.stage1_windows),
        Stage("stage2", ("line", "projector"), cfg.stage2_epochs, cfg.stage2_lr),
        Stage(
            "stage3",
            ("line", "projector", "lora"),
            _given(options.epochs, cfg.stage3_epochs),
            _given(options.lr, cfg.stage3_lr),
            validates=True,
        ),
    ]


def _given(option: float | None, default: float) -> float:
    return default if option is None else option


def oversample(labels: Sequence[int], beta: float, rng: random.Random) -> list[int]:
    """Indices of the training set plus random repeats of the minority class, until it is at least ``beta`` of all
    (the paper's ``min_less_portion``); unchanged when the minority already is, or when a class is missing."""
    positives = [i for i, label in enumerate(labels) if label]
    negatives = [i for i, label in enumerate(labels) if not label]
    minority, majority = sorted((positives, negatives), key=len)
    indices = list(range(len(labels)))
    if not minority or len(minority) >= beta * len(labels):
        return indices
    wanted = math.ceil(beta * len(majority) / (1.0 - beta))  # minority / (minority + majority) >= beta
    return indices + [rng.choice(minority) for _ in range(wanted - len(minority))]


def fit(
    detector: LogLLMDetector,
    windows: Sequence[WindowText],
    labels: Sequence[int],
    *,
    target: str | None,
    mode: Mode,
    options: FitOptions,
    progress: Progress | None = None,
) -> FitReport:
    check_fit_arguments(detector, windows, labels, target, mode)
    set_seed(options.seed)  # LoRA dropout masks
    rng = random.Random(options.seed)
    clock = Stopwatch()
    report = FitReport(parameters=detector.parameter_counts(mode, target))
    lines = detector.window_lines(windows)
    labels = [int(label) for label in labels]
    order = oversample(labels, detector.cfg.beta, rng)
    disable_cpu_repacking(detector.lm)  # raises if a 4-bit layer was repacked: its LoRA would get no gradients
    for parameter in _all_parameters(detector):  # no stale gradients from an earlier fit; this fit's last step stays
        parameter.grad = None
    try:
        for stage in stages(detector, mode, options):
            if stage.validates:  # the last stage is the one FitOptions.min_steps raises, as in the other families
                batch = options.batch_size if options.batch_size is not None else detector.cfg.batch_size
                min_steps = options.min_steps if options.min_steps is not None else detector.min_steps
                floor = epochs_for_steps(0, len(order), batch, min_steps)
                stage = replace(stage, epochs=max(stage.epochs, floor), min_epochs=floor)
            if stage.epochs > 0 and _run_stage(
                detector, stage, lines, labels, order, target, options, report, clock, progress, rng
            ):
                break
    finally:
        _freeze(detector)
        detector.set_training(False)
    report.seconds = clock.seconds
    return report


def _run_stage(
    detector: LogLLMDetector,
    stage: Stage,
    lines: list[tuple[str, ...]],
    labels: list[int],
    order: list[int],
    target: str | None,
    options: FitOptions,
    report: FitReport,
    clock: Stopwatch,
    progress: Progress | None,
    rng: random.Random,
) -> bool:
    """One stage; True when the fit must stop (time budget, or patience run out on validation)."""
    cfg = detector.cfg
    batch_size = options.batch_size if stage.validates and options.batch_size is not None else cfg.batch_size
    micro = min(cfg.micro_batch_size, batch_size)
    projector = detector.projector_for(target)
    parameters = _trainable(detector, stage, target)
    optimizer = torch.optim.AdamW(parameters.values(), lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    per_epoch = min(len(order), stage.max_windows or len(order))
    total_steps = stage.epochs * math.ceil(per_epoch / batch_size)
    decay_every = max(1, total_steps // (DECAYS_PER_STAGE + 1))
    validation = options.validation if stage.validates else None
    stopper = EarlyStopping(
        replace(options, validation=validation),
        report,
        clock,
        score_validation=lambda: detector.scores(list(validation[0]), target=target),  # type: ignore[index]
        trainable=lambda: parameters,
        restore=lambda snapshot: _restore(parameters, snapshot),
        min_epochs=stage.min_epochs,
    )
    loss_sum, token_count, step = 0.0, 0, 0
    stop = False
    for epoch in range(stage.epochs):
        _freeze(detector)  # scoring validation (in after_epoch) froze the adapters: unfreeze this stage's part again
        detector.activate(target)
        for parameter in parameters.values():
            parameter.requires_grad_(True)
        detector.set_training(True)
        shuffled = rng.sample(order, len(order))[:per_epoch]
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            tokens = sum(len(detector.prompt.answers[labels[i]]) for i in batch)
            optimizer.zero_grad(set_to_none=True)
            for first in range(0, len(batch), micro):
                part = batch[first : first + micro]
                with detector.autocast(cfg.train_dtype):  # the backward runs outside, as autocast asks
                    loss, _ = detector.answer_loss([lines[i] for i in part], [labels[i] for i in part], projector)
                (loss / tokens).backward()  # the batch's mean over answer tokens, accumulated across forwards
                loss_sum += loss.item()
                report.windows_seen += len(part)
            token_count += tokens
            optimizer.step()
            step += 1
            if step % decay_every == 0:
                scheduler.step()
            if progress is not None:
                progress(stage.name, step, total_steps)
        detector.set_training(False)
        if stopper.after_epoch(epoch):
            stop = True
            break
    stopper.finish()
    report.losses.append(loss_sum / max(token_count, 1))
    return stop


def _trainable(detector: LogLLMDetector, stage: Stage, target: str | None) -> dict[str, nn.Parameter]:
    """The parameters a stage trains, by their state names (so early stopping can snapshot and restore them)."""
    if target is not None:
        return detector.adapter_parameters(target)
    chosen = {}
    for name, parameter in detector.base_state_parameters().items():
        part = name.split(".", 1)[0]
        if part in stage.parts:
            chosen[name] = parameter
    return chosen


def _all_parameters(detector: LogLLMDetector) -> list[nn.Parameter]:
    modules = (detector.lm, detector.line, detector.projector, detector.target_projectors)
    return [parameter for module in modules for parameter in module.parameters()]


def _freeze(detector: LogLLMDetector) -> None:
    for parameter in _all_parameters(detector):  # LoRA weights too; a stage unfreezes its own
        parameter.requires_grad_(False)


@torch.no_grad()
def _restore(parameters: dict[str, nn.Parameter], snapshot: dict[str, torch.Tensor]) -> None:
    for name, parameter in parameters.items():
        parameter.copy_(snapshot[name])
