"""A dead letter's reason as one of a fixed set of categories, for metric labels.

A dead letter keeps its full reason (values, offsets, the record's keys) for the person reading the ``deadletter``
topic; a Prometheus label built from that text would be a new time series per record. ``reason_category`` maps the
free text to one of :data:`REASON_CATEGORIES`: the first rule whose pattern matches wins, so more specific rules come
first. A reason no rule knows is ``other`` (a new reason is still counted; the category test lists every reason the
code writes, so ``other`` growing means a rule is missing).
"""

from __future__ import annotations

import re
from typing import Final

# (category, pattern searched in the reason); order matters: the first match wins
_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("too_large", r"over the limit|more than max_line_bytes|bytes is over"),
    ("empty", r"tombstone|no value|with no lines|holds no log records"),
    ("not_utf8", r"UTF-8"),
    ("late", r"^late:"),
    ("future", r"^future:"),
    ("session_key", r"session key"),
    ("no_system", r"no system"),
    ("unknown_system", r"unknown system"),
    ("label", r"\blabel|key_labels"),
    ("time", r"\btime\b|timestamp|\bts\b|epoch"),
    ("otlp", r"OTLP|otlp_json"),
    ("no_message", r"JSON record has no "),
    ("json", r"JSON"),
    ("format", r"does not match format"),
    ("model", r"model cannot score|alert book|not a window record"),
    ("error", r"^[A-Z]\w*(Error|Exception)\b|^unexpected "),
)
_COMPILED: Final = tuple((category, re.compile(pattern)) for category, pattern in _RULES)
OTHER: Final = "other"
REASON_CATEGORIES: Final[tuple[str, ...]] = (*dict.fromkeys(category for category, _ in _RULES), OTHER)


def reason_category(reason: str) -> str:
    """The category of a dead letter's reason (one of :data:`REASON_CATEGORIES`)."""
    for category, pattern in _COMPILED:
        if pattern.search(reason):
            return category
    return OTHER
