"""Settings of the online Drain parser: mask rules, Drain parameters, and ready rule sets per Loghub layout.

Everything is a frozen dataclass validated in ``__post_init__`` so a bad setting fails at start with a
``ConfigError`` that names it, instead of surfacing later as an odd template or a regex error mid-stream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from stream.errors import ConfigError

# Drain's wildcard. Our masks are "<NAME>" and Drain's own generalisation writes this; both are fixed here
# (not configurable) because snapshots and accuracy normalisation depend on them.
PARAM_STR = "<*>"
MASK_PREFIX = "<"
MASK_SUFFIX = ">"

_RULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class MaskRule:
    """A regex whose matched text is replaced by ``<NAME>`` (the upper-cased name) before Drain sees the line."""

    name: str
    pattern: str

    def __post_init__(self) -> None:
        # The name becomes a token and a regex group name, so it must be a plain identifier.
        if not isinstance(self.name, str) or not _RULE_NAME.fullmatch(self.name):
            raise ConfigError(f"masks.{self.name}", "name must be a letter followed by letters, digits or _")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ConfigError(f"masks.{self.name}", "pattern must be a non-empty regex")
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"masks.{self.name}", f"invalid regex: {exc}") from exc
        # An empty match would insert the mask between every character.
        if compiled.fullmatch(""):
            raise ConfigError(f"masks.{self.name}", "pattern must not match the empty string")

    @property
    def mask(self) -> str:
        return f"{MASK_PREFIX}{self.name.upper()}{MASK_SUFFIX}"


@dataclass(frozen=True, slots=True)
class DrainParams:
    """Drain's knobs (see drain3.drain.Drain) plus the size of our masked-line -> cluster cache.

    ``match_cache_size`` = 0 turns the cache off; then answers are exactly drain3's.
    """

    depth: int = 4
    sim_th: float = 0.4
    max_children: int = 100
    max_clusters: int | None = 100_000
    extra_delimiters: tuple[str, ...] = ()
    parametrize_numeric_tokens: bool = True
    match_cache_size: int = 50_000

    def __post_init__(self) -> None:
        if not _is_int(self.depth) or self.depth < 3:
            raise ConfigError("drain.depth", "must be an integer >= 3 (root, token count, at least one token)")
        if (
            isinstance(self.sim_th, bool)
            or not isinstance(self.sim_th, int | float)
            or math.isnan(self.sim_th)
            or not 0 < self.sim_th <= 1
        ):
            raise ConfigError("drain.sim_th", "must be in (0, 1]")
        if not _is_int(self.max_children) or self.max_children < 2:
            raise ConfigError("drain.max_children", "must be an integer >= 2")
        if self.max_clusters is not None and (not _is_int(self.max_clusters) or self.max_clusters < 1):
            raise ConfigError("drain.max_clusters", "must be a positive integer or None (unbounded)")
        if isinstance(self.extra_delimiters, list):
            # Settings read from YAML/JSON give lists; keep the dataclass hashable and immutable.
            object.__setattr__(self, "extra_delimiters", tuple(self.extra_delimiters))
        if not isinstance(self.extra_delimiters, tuple) or not all(
            isinstance(d, str) and d for d in self.extra_delimiters
        ):
            raise ConfigError("drain.extra_delimiters", "must be a tuple of non-empty strings")
        if not isinstance(self.parametrize_numeric_tokens, bool):
            raise ConfigError("drain.parametrize_numeric_tokens", "must be a bool")
        if not _is_int(self.match_cache_size) or self.match_cache_size < 0:
            raise ConfigError("drain.match_cache_size", "must be an integer >= 0 (0 disables the cache)")

    def to_dict(self) -> dict[str, object]:
        return {
            "depth": self.depth,
            "sim_th": self.sim_th,
            "max_children": self.max_children,
            "max_clusters": self.max_clusters,
            "extra_delimiters": list(self.extra_delimiters),
            "parametrize_numeric_tokens": self.parametrize_numeric_tokens,
            "match_cache_size": self.match_cache_size,
        }


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a depth is a typo, not a setting.
    return isinstance(value, int) and not isinstance(value, bool)


def drain3_config(params: DrainParams, masks: tuple[MaskRule, ...] | list[MaskRule]) -> TemplateMinerConfig:
    """drain3's own config for the same settings, built explicitly.

    ``TemplateMiner()`` without a config reads drain3.ini from the working directory, which would make results
    depend on where the process was started; the reference side of accuracy and bench uses this instead.
    """
    config = TemplateMinerConfig()
    config.drain_depth = params.depth
    config.drain_sim_th = params.sim_th
    config.drain_max_children = params.max_children
    config.drain_max_clusters = params.max_clusters
    config.drain_extra_delimiters = list(params.extra_delimiters)
    config.parametrize_numeric_tokens = params.parametrize_numeric_tokens
    config.mask_prefix = MASK_PREFIX
    config.mask_suffix = MASK_SUFFIX
    config.masking_instructions = [MaskingInstruction(rule.pattern, rule.name.upper()) for rule in masks]
    config.profiling_enabled = False
    return config


def _word(first: str, rest: str) -> str:
    """A regex for ``first rest`` standing as a whole word: no letter or digit right before or after it.

    Means the same as drain3's example boundaries "((?<=[^A-Za-z0-9])|^)" and "((?=[^A-Za-z0-9])|$)", but puts the
    one-character class ``first`` before the look-behind: a pattern (or alternative) that opens with a character
    class lets Python's regex engine skip positions on one character test, where a leading look-behind makes it
    run the assertion at every position. The look-behind then checks the two characters ending at ``first``.
    """
    return f"{first}(?<![A-Za-z0-9]{first}){rest}(?![A-Za-z0-9])"


# Order matters: an earlier rule wins at the same position (see masking.Masker), so specific shapes
# (block ids, IPs, hex) come before the plain number rule that would otherwise eat their digits.
BLK = MaskRule("blk", r"blk_-?\d+")
IP = MaskRule("ip", _word(r"\d", r"\d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5})?"))
HEX = MaskRule("hex", _word("0", r"[xX][0-9a-fA-F]+"))
SEQ = MaskRule("seq", _word("[0-9a-f]", r"[0-9a-f]+:(?:[0-9a-f]{2,}:){2,}[0-9a-f]{2,}"))
NUM = MaskRule("num", _word(r"\d", r"\d*"))

# drain3's example masking list (ID as SEQ, IP, HEX, NUM), with IP:port and HDFS block ids added.
DEFAULT_MASKS: tuple[MaskRule, ...] = (BLK, SEQ, IP, HEX, NUM)

# Per Loghub layout: the regexes of the Loghub Drain benchmark (He et al.), which the published accuracy
# figures use, as named masks. Loghub's IP regex is "(\d+\.){3}\d+"; written here to open with one digit that
# has no digit before it. That matches the same text (a match starting inside a run of digits would have to
# end where the one starting at the run's first digit ends, and that one is tried first) but lets the engine
# skip every position that is not the first digit of a run, instead of re-scanning long numbers digit by digit.
_LOGHUB_IP = r"\d(?<!\d\d)\d*\.(?:\d+\.){2}\d+"
HDFS_MASKS: tuple[MaskRule, ...] = (BLK, MaskRule("ip", _LOGHUB_IP + r"(?::\d+)?"))
BGL_MASKS: tuple[MaskRule, ...] = (MaskRule("core", r"core\.\d+"),)
THUNDERBIRD_MASKS: tuple[MaskRule, ...] = (MaskRule("ip", _LOGHUB_IP),)
HADOOP_MASKS: tuple[MaskRule, ...] = (MaskRule("ip", _LOGHUB_IP),)

# Loghub benchmark Drain settings: depth 4, similarity 0.5 on all four.
LOGHUB_PARAMS = DrainParams(depth=4, sim_th=0.5)

LOGHUB_SETTINGS: dict[str, tuple[DrainParams, tuple[MaskRule, ...]]] = {
    "HDFS": (LOGHUB_PARAMS, HDFS_MASKS),
    "BGL": (LOGHUB_PARAMS, BGL_MASKS),
    "Thunderbird": (LOGHUB_PARAMS, THUNDERBIRD_MASKS),
    "Hadoop": (LOGHUB_PARAMS, HADOOP_MASKS),
}
