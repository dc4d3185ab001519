"""What every broker starter returns, and what it raises when it cannot start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class BrokerUnavailable(RuntimeError):
    """This way of getting a broker does not work here; the message says why (shown to the person running tests)."""


def _nothing_to_stop() -> None:
    """External brokers belong to someone else: stopping them is a no-op."""


@dataclass(frozen=True)
class RunningBroker:
    """A broker the tests can use.

    ``kind`` is for humans (the pytest summary line), e.g. ``apache-kafka 4.1.1 (local KRaft)``.
    ``supports_idempotence`` is False only for Tansu, which fails InitProducerId; pass it as the
    producer's ``enable_idempotence`` so the same test runs against every broker.
    """

    bootstrap: str
    kind: str
    supports_idempotence: bool = True
    pid: int | None = None  # a broker process on this machine (benchmarks read its CPU time); None otherwise
    _stop: Callable[[], None] = field(default=_nothing_to_stop, repr=False, compare=False)
    oauthbearer_bootstrap: str | None = None  # a SASL_PLAINTEXT/OAUTHBEARER listener (unsecured JWS), when started

    def stop(self) -> None:
        self._stop()

    def describe(self) -> str:
        return f"{self.kind} at {self.bootstrap}"
