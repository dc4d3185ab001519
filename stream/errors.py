"""Exceptions raised by adaptlog.

One root, so callers can catch everything of ours in one place::

    AdaptlogError
     ├── ConfigError          a setting is wrong; raised at start, names the setting
     ├── DecodeError          one input record cannot be used (bad bytes, bad JSON, unknown system, ...);
     │                        carries the stage and reason that go into the dead-letter record
     ├── StateError           persisted state (miner or window snapshot) cannot be restored
     ├── BrokerError          the Kafka broker cannot be reached or refused a request (transient: retried)
     ├── ModelError           a model or artifact cannot be built, loaded or served
     │    └── IncompatibleArtifactError   an artifact does not fit the base it is loaded onto; lists every reason
     ├── RequestError         a person's request to the console cannot be done (bad input, not allowed, too late
     │                        to undo); the message is shown to them
     └── Stopped              not a failure: a loop was asked to stop in the middle of an operation, which is left
                              uncommitted (``stream.runtime.loop.StopLoop``, the notifier's ``DeliveryStopped``)

Exceptions defined elsewhere derive from one of these, so a policy (``stream.runtime.policy``) that names a class
here never has to name a builtin to catch ours.
"""

from __future__ import annotations


class AdaptlogError(Exception):
    """Root of every exception adaptlog raises on purpose."""


class ConfigError(AdaptlogError):
    """A setting is wrong. The message names the setting, so the operator can fix it at start."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


class DecodeError(AdaptlogError):
    """One record cannot be used. It is dead-lettered with ``stage`` and ``reason``; the stream goes on."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class StateError(AdaptlogError):
    """A snapshot of miner or window state is malformed or from an incompatible version."""


class BrokerError(AdaptlogError):
    """The broker is unreachable or refused a request; the caller retries with backoff."""


class ModelError(AdaptlogError):
    """A model cannot be built or loaded: missing pretrained files, unreadable artifact, unknown family."""


class IncompatibleArtifactError(ModelError):
    """An artifact does not fit where it is being loaded. ``problems`` lists every incompatibility found, not just
    the first, so one error tells the operator everything to fix."""

    def __init__(self, artifact: str, problems: list[str]) -> None:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"artifact {artifact} is incompatible:\n{listed}")
        self.artifact = artifact
        self.problems = list(problems)


class RequestError(AdaptlogError):
    """A person's request cannot be done; the message says why and is shown to them (the console answers 4xx)."""


class Stopped(AdaptlogError):
    """A loop was asked to stop while an operation was under way; what the operation had not committed is done
    again after the restart. Not a failure: the retrain policy stops on it rather than retry."""
