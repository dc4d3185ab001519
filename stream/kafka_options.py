"""Extra Kafka client properties (``consumer_options``, ``producer_options``) checked against aiokafka's constructors,
and the SASL OAUTHBEARER token read from a file.

A property aiokafka does not take would fail only when the first client is built (a TypeError deep in a worker), and
a misspelt one (``sesion_timeout_ms``) would be a crash loop with an unhelpful trace; so settings check every key at
start and report all problems at once, each named. Properties adaptlog derives from its own settings or relies on for
its delivery guarantees (offsets committed by hand, read_committed, acks=all, idempotence) are refused here: they
have settings of their own, or must not change.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider

log = logging.getLogger(__name__)

# Set from adaptlog's own settings (connection, security) or fixed because the stages depend on them.
CONNECTION: Final = frozenset(
    {
        "loop",
        "bootstrap_servers",
        "client_id",
        "security_protocol",
        "ssl_context",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_oauth_token_provider",
    }
)
RESERVED: Final[dict[str, frozenset[str]]] = {
    "consumer": CONNECTION
    | {
        "topics",
        "group_id",  # groups are <group_prefix>-<stage>: set group_prefix
        "enable_auto_commit",  # offsets are committed after the outputs are acknowledged
        "isolation_level",  # read_committed
        "auto_offset_reset",  # a new group starts at the earliest record: nothing is skipped
        "key_deserializer",
        "value_deserializer",
    },
    "producer": CONNECTION
    | {
        "acks",  # all: a checkpoint must not get ahead of what the broker holds
        "enable_idempotence",  # the idempotent_producer setting
        "partitioner",  # Kafka's default, memoized: session keys meet on one partition
        "transactional_id",
        "key_serializer",
        "value_serializer",
    },
}
_CLIENTS: Final = {"consumer": AIOKafkaConsumer, "producer": AIOKafkaProducer}


def accepted(client: str) -> frozenset[str]:
    """The keyword parameters aiokafka's ``client`` ("consumer" or "producer") constructor takes."""
    parameters = inspect.signature(_CLIENTS[client].__init__).parameters
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(name for name, p in parameters.items() if name != "self" and p.kind in keyword)


def option_problems(client: str, options: Mapping[str, Any]) -> list[str]:
    """Every key of ``options`` that the client would not take, or that adaptlog owns, with why (empty: all good)."""
    known = accepted(client)
    problems = []
    for key in options:
        if key in RESERVED[client]:
            problems.append(f"{key!r} is set by adaptlog and cannot be overridden")
        elif key not in known:
            close = difflib.get_close_matches(key, sorted(known - RESERVED[client]), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key!r} is not an aiokafka {client} parameter{hint}")
    return problems


class TokenFileProvider(AbstractTokenProvider):
    """An OAUTHBEARER token read from a file that something else keeps fresh (a Kubernetes projected service-account
    token, a sidecar that fetches tokens from the identity provider).

    aiokafka asks for a token on every (re)authentication; the file is read again whenever its modification time or
    size changed, so a rotated token is used from the next connection on, without a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    async def token(self) -> str:
        return self.read()

    def read(self) -> str:
        """The token now in the file; raises OSError or ValueError (empty file), which fail the authentication."""
        status = os.stat(self.path)
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            token = self.path.read_text(encoding="utf-8").strip()
            if not token:
                raise ValueError(f"OAUTHBEARER token file {self.path} is empty")
            if self._stamp is not None:
                log.info("OAUTHBEARER token file %s changed: using the new token", self.path)
            self._token, self._stamp = token, stamp
        return self._token
