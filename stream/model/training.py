"""What every family's training loop shares: class weighting and early stopping on validation F1."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from stream.model.detector import FitOptions, FitReport, Stopwatch
from stream.model.metrics import best_threshold


def positive_weight(labels: Sequence[int]) -> float:
    """negatives / positives, for BCE on imbalanced windows (1.0 when one class is missing)."""
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    return negatives / positives if positives and negatives else 1.0


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
        trainable: Callable[[], dict[str, torch.Tensor]],
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
