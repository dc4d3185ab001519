"""One-pass masking: all mask rules combined into a single alternation, applied with one ``re.sub``.

drain3's ``LogMasker`` runs one ``re.sub`` per rule, so a line is scanned once per rule; here it is scanned once.

Precedence (how this differs from drain3's sequential masking):

* The scan goes left to right. At each position the rules are tried in their configured order and the first
  rule that matches there wins; the text it matched is replaced and the scan resumes after it.
* So an earlier rule wins at the same position, but a later rule that matches starting further left wins over
  an earlier rule matching further right in overlapping text (sequentially, the earlier rule would have
  replaced its text first over the whole line).
* Rules see the original text only. Sequentially, a later rule sees the masks written by earlier rules
  (e.g. its look-behind sees the ``>`` of ``<IP>``), and could even match inside them.

When no two rules can match overlapping text, both give the same result; the tests check that on real logs.

Speed, measured (not assumed): one pass is NOT generally ~2x faster in CPython's ``re``. A single pattern that
opens with a literal or a character class gets a fast C scan to candidate positions; an alternation does not, so
it pays a match attempt at every position. On Thunderbird/HDFS content, drain3's six example rules took 21/13 us
per line one-pass vs 18/14 us sequentially; the rules in ``config`` (written to open with a character class)
take 4.9/3.0 us one-pass vs 4.7/3.9 us sequentially. The big win is in how rules are written (``config._word``),
not in joining them; the parser's overall speed-up comes from the cache and the Drain shortcuts (``miner``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial

from stream.errors import ConfigError
from stream.parsing.config import MaskRule

# A numeric back-reference would point at the wrong group once the rules are joined; named ones are renamed.
_NUMERIC_BACKREF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]")
_NAMED_GROUP = re.compile(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")
_NAMED_BACKREF = re.compile(r"\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)")
# Global inline flags are only legal at the very start of a whole pattern, so they are turned into a scoped group.
_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


class Masker:
    """Replaces every match of any rule with that rule's ``<NAME>`` in one pass."""

    __slots__ = ("_sub", "rules")

    def __init__(self, rules: Sequence[MaskRule]) -> None:
        self.rules: tuple[MaskRule, ...] = tuple(rules)
        self._sub: Callable[[str], str] | None = None
        if not self.rules:
            return
        # Each rule is followed by an empty group: Match.lastindex is then that rule's marker (it closes last), so
        # the callback is one dict lookup. Putting the marker last (not a group around the rule) keeps the rule's
        # first op first, which lets the regex engine skip an alternative on its first character.
        alternatives = [f"(?:{_isolate(i, rule)})()" for i, rule in enumerate(self.rules)]
        try:
            regex = re.compile("|".join(alternatives))
        except re.error as exc:
            raise ConfigError("masks", f"rules cannot be combined into one regex: {exc}") from exc
        if len(self.rules) == 1:
            # A fixed replacement string avoids a Python call per match (masks hold no backslashes).
            self._sub = partial(regex.sub, self.rules[0].mask)
            return
        # Groups are numbered left to right: a rule's own groups, then its marker.
        replacement: dict[int, str] = {}
        group = 0
        for rule in self.rules:
            group += re.compile(rule.pattern).groups + 1
            replacement[group] = rule.mask

        def choose(match: re.Match[str]) -> str:
            return replacement[match.lastindex]  # type: ignore[index]

        self._sub = partial(regex.sub, choose)

    def mask(self, content: str) -> str:
        return content if self._sub is None else self._sub(content)


def mask_sequentially(rules: Sequence[MaskRule], content: str) -> str:
    """drain3's semantics (one rule after the other), the reference the one-pass masker is tested against."""
    for rule in rules:
        content = re.sub(rule.pattern, rule.mask, content)
    return content


def _isolate(index: int, rule: MaskRule) -> str:
    """The rule's pattern rewritten so that it can sit beside the others in one alternation."""
    pattern = rule.pattern
    if _NUMERIC_BACKREF.search(pattern):
        raise ConfigError(f"masks.{rule.name}", "numeric back-references are not supported; use (?P<n>...)(?P=n)")
    flags = _LEADING_FLAGS.match(pattern)
    if flags:
        pattern = f"(?{flags.group(1)}:{pattern[flags.end() :]})"
    # Prefix inner group names with the rule index so two rules may use the same name.
    pattern = _NAMED_GROUP.sub(lambda m: f"(?P<_r{index}_{m.group(1)}>", pattern)
    return _NAMED_BACKREF.sub(lambda m: f"(?P=_r{index}_{m.group(1)})", pattern)
