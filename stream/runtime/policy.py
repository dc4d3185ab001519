"""What a loop does with an exception: one typed table per place that handles them, decided here.

quix-streams lets an application pass ``on_processing_error`` / ``on_producer_error`` callbacks that say, per error,
whether to go on or to raise. adaptlog's loops say the same with a table: an :class:`ErrorPolicy` maps exception
classes to an :class:`Action`, the most specific class of the exception's MRO wins, and whatever no rule names is a
bug (``STOP``). The tables of every loop are at the bottom of this module, so a reader finds in one place why a
ValueError in the parse stage is dead-lettered and one in a retrain stops the trainer:

    ==================  ==============================================  ===========================================
    policy              exception class                                 action
    ==================  ==============================================  ===========================================
    STAGE_RECORD        Exception (anything one record raises in a      DEAD_LETTER (the stage goes on: one bad
                        stream stage's pure processing)                 line never restarts a stage)
    WINDOW_INTAKE       RecordError, JSONDecodeError, KeyError,         DEAD_LETTER (a windows record that does not
                        TypeError, ValueError                           decode: the inference worker, the trainer)
    FEEDBACK_INTAKE     DecodeError (FeedbackError and RecordError      DEAD_LETTER
                        among them), JSONDecodeError, TypeError
    SCORING             torch.OutOfMemoryError                          RETRY (the same batch, in process: 0.5 s
                                                                        doubling, 4 tries in all; then raised, the
                                                                        batch uncommitted, and the restarted worker
                                                                        scores it again)
                        Exception                                       DEAD_LETTER (scored alone; the model probed
                                                                        when none of a batch scores)
    RETRAIN             AdaptlogError, OSError, torch.OutOfMemoryError  RETRY (the target backs off: 60 s doubling
                                                                        per failure in a row, at most 6 h)
                        Stopped                                         STOP (asked to stop: not a failure)
                        anything else                                   STOP (a bug: the service stops loudly)
    COMMIT              CommitFailedError, IllegalStateError,           SKIP (the work is stored or produced; the
                        TimeoutError                                    partition's next owner replays from the
                                                                        last commit)
    DELIVERY            anything the producer reports for a record      STOP (BrokerError: offsets stay uncommitted,
                                                                        a restart delivers again)
    ==================  ==============================================  ===========================================

Classes from libraries this module must not import (torch: the stream stages never load it) are named by their
qualified name, ``"torch.OutOfMemoryError"``; a test checks that each such name is the real class.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from aiokafka.errors import CommitFailedError, IllegalStateError

from stream.errors import AdaptlogError, DecodeError, Stopped
from stream.records import RecordError


class Action(enum.Enum):
    DEAD_LETTER = "dead-letter"  # bad data: the record goes to ``deadletter`` with the reason; the loop goes on
    RETRY = "retry"  # transient infrastructure: do not commit, try again after a backoff
    SKIP = "skip"  # a commit refused or late: the work is done, the partition's next owner replays from the commit
    STOP = "stop"  # a bug (or anything no rule names): raise, loudly


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first_s`` after the first failure, doubled (``factor``) per failure in a row, at most
    ``max_s``. ``attempts``: how many tries in all (the first included) before the error is raised after all; None
    where the caller keeps its own schedule (a retrain's target backs off for as long as it fails)."""

    first_s: float
    max_s: float
    factor: float = 2.0
    attempts: int | None = None

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.max_s < self.first_s or self.factor < 1:
            raise ValueError(f"backoff needs 0 <= first_s <= max_s and factor >= 1, not {self}")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"backoff needs at least one attempt, not {self}")

    def gives_up(self, failures: int) -> bool:
        """Whether ``failures`` failures in a row use up the attempts (never, without a bound)."""
        return self.attempts is not None and failures >= self.attempts

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (1 for the first)."""
        return min(self.first_s * self.factor ** (max(failures, 1) - 1), self.max_s)


# an exception class, or the qualified name of one this module does not import ("torch.OutOfMemoryError")
ErrorClass = type[BaseException] | str


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class ErrorPolicy:
    """Exception class -> action, for one place that handles errors; ``backoff`` is what RETRY waits."""

    name: str
    rules: Mapping[ErrorClass, Action]
    backoff: Backoff | None = None
    _by_name: dict[str, Action] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if Action.RETRY in self.rules.values() and self.backoff is None:
            raise ValueError(f"policy {self.name}: a RETRY rule needs a backoff")
        by_name = {
            rule if isinstance(rule, str) else qualified_name(rule): action for rule, action in self.rules.items()
        }
        object.__setattr__(self, "_by_name", by_name)

    def decide(self, exc: BaseException) -> Action:
        """The action of the most specific rule that names a class of ``exc`` (its MRO, in order); STOP if none."""
        for cls in type(exc).__mro__:
            action = self._by_name.get(qualified_name(cls))
            if action is not None:
                return action
        return Action.STOP

    def handles(self, exc: BaseException, action: Action) -> bool:
        return self.decide(exc) is action


OUT_OF_DEVICE_MEMORY = "torch.OutOfMemoryError"  # GPU (or host) memory ran out for a while: not the data's fault

STAGE_RECORD = ErrorPolicy("stage-record", {Exception: Action.DEAD_LETTER})
WINDOW_INTAKE = ErrorPolicy(
    "window-intake",
    {
        RecordError: Action.DEAD_LETTER,
        orjson.JSONDecodeError: Action.DEAD_LETTER,
        KeyError: Action.DEAD_LETTER,
        TypeError: Action.DEAD_LETTER,
        ValueError: Action.DEAD_LETTER,
    },
)
FEEDBACK_INTAKE = ErrorPolicy(
    "feedback-intake",
    {DecodeError: Action.DEAD_LETTER, orjson.JSONDecodeError: Action.DEAD_LETTER, TypeError: Action.DEAD_LETTER},
)
SCORING = ErrorPolicy(
    "scoring",
    {OUT_OF_DEVICE_MEMORY: Action.RETRY, Exception: Action.DEAD_LETTER},
    # Memory a batch could not get is often free a moment later (another batch's tensors released, the allocator's
    # cache reused). 0.5 + 1 + 2 s of waiting in all: well within the hand-over a rebalance waits for
    # (inference.worker.HANDOVER_WAIT_S); past that the restart is the retry (a supervisor's backoff).
    backoff=Backoff(first_s=0.5, max_s=4.0, attempts=4),
)
RETRAIN = ErrorPolicy(
    "retrain",
    {AdaptlogError: Action.RETRY, Stopped: Action.STOP, OSError: Action.RETRY, OUT_OF_DEVICE_MEMORY: Action.RETRY},
    backoff=Backoff(first_s=60.0, max_s=6 * 3600.0),
)
COMMIT = ErrorPolicy(
    "commit", {CommitFailedError: Action.SKIP, IllegalStateError: Action.SKIP, TimeoutError: Action.SKIP}
)
DELIVERY = ErrorPolicy("delivery", {})  # every failure stops: never commit past a record the broker refused
