"""Which subtree of Drain's prefix tree a masked line belongs to: the key for mining one system on several workers.

Drain (drain3's, which ``FastDrain`` keeps) files a line under its token count, then under its first token
(and its next ones where ``depth`` > 4), and compares it only with the clusters of the leaf it reaches. A token
holding a digit goes to the wildcard child ``<*>`` (``parametrize_numeric_tokens``). So two lines with different
keys here are never compared, and a partition of a system's lines by this key gives each shard's miner the
clusters a single miner would have for those lines, in the same order, with three exceptions the bench measures
(bench/shard_bench.py, issue "Scale one system across workers"):

* **overflow**: a token-count node with ``max_children`` children sends every further new first token to its
  wildcard child; a shard sees fewer first tokens, so it keeps a child the single miner would have refused;
* **fall-through**: a first token with no child yet is searched under the wildcard child when there is one, and can
  join a cluster there (a single miner's answer depends on clusters in another key's subtree);
* **bounded state**: the cluster LRU (``max_clusters``) and the masked-line cache evict by the whole system's
  recency; a shard evicts by its own.

Only the first token level is keyed: deeper levels (``depth`` > 4) lie inside one key's subtree.

``KeyedDrain`` removes the first two exceptions: its first token level never overflows and never falls through,
so a line is only ever compared with its own key's clusters, and any partition by key gives each line the template
one keyed miner gives it (bounded state apart, which evicts nothing on the samples). Where it answers differently
from drain3 is exactly the fall-through lines: the bench counts them and the grouping accuracy of both.
``KeyedParser`` removes the third too, at a price: one ``SystemParser`` per key, so the bounds hold per key.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

from drain3.drain import LogCluster, Node

from stream.errors import ConfigError, StateError
from stream.parsing.config import PARAM_STR, DrainParams, MaskRule
from stream.parsing.fastdrain import FastDrain
from stream.parsing.masking import Masker
from stream.parsing.miner import ParsedTemplate, SystemParser


def drain_tokens(masked: str, params: DrainParams) -> list[str]:
    """The tokens Drain reads of a masked line (drain3's ``get_content_as_tokens``)."""
    content = masked.strip()
    for delimiter in params.extra_delimiters:
        content = content.replace(delimiter, " ")
    return content.split()


def drain_key(masked: str, params: DrainParams) -> str:
    """``<token count> <first token>``, the first token as Drain files it (``<*>`` where it holds a digit and numeric
    tokens are parametrized); just ``<token count>`` where Drain has no first token level (``depth`` 3, or a line
    of one token or none, whose clusters sit on the count node itself)."""
    tokens = drain_tokens(masked, params)
    if params.depth < 4 or len(tokens) < 2:
        return str(len(tokens))
    first = tokens[0]
    if params.parametrize_numeric_tokens and any(c.isdigit() for c in first):
        first = PARAM_STR
    return f"{len(tokens)} {first}"


def shard_of(key: str, shards: int) -> int:
    """A stable shard for a key (CRC-32, the same in every process and run; Python's ``hash`` of a str is not)."""
    if shards < 1:
        raise ConfigError("shards", f"must be at least 1, got {shards}")
    return zlib.crc32(key.encode()) % shards


class KeyedDrain(FastDrain):
    """``FastDrain`` whose first token level is a plain key: a new first token always gets its own child (no
    ``max_children`` overflow there) and a first token with no child finds no cluster (no fall-through to the
    wildcard child). Deeper levels and everything else are drain3's."""

    def tree_search(self, root_node: Node, tokens: list, sim_th: float, include_params: bool) -> LogCluster | None:
        if self.max_node_depth >= 2 and len(tokens) >= 2:
            count_node = root_node.key_to_child_node.get(str(len(tokens)))
            if count_node is not None and self._first_key(tokens[0]) not in count_node.key_to_child_node:
                return None
        return super().tree_search(root_node, tokens, sim_th, include_params)

    def add_seq_to_prefix_tree(self, root_node: Node, cluster: LogCluster) -> None:
        tokens = cluster.log_template_tokens
        if self.max_node_depth >= 2 and len(tokens) >= 2:
            count_node = root_node.key_to_child_node.setdefault(str(len(tokens)), Node())
            count_node.key_to_child_node.setdefault(self._first_key(tokens[0]), Node())
        super().add_seq_to_prefix_tree(root_node, cluster)

    def _first_key(self, token: str) -> str:
        return self.param_str if self.parametrize_numeric_tokens and self.has_numbers(token) else token


KEYED_FORMAT = "adaptlog.keyed-drain"
KEY_MEMO_SIZE = 50_000
KEYED_VERSION = 1


def global_template_id(key: str, local_id: int) -> int:
    """A template id that names the key it was mined under: the same whichever worker mines the key, and after a
    restart or a rebalance (a worker's own counter would number the same template differently). 63 bits of
    BLAKE2b, so it stays a positive int64 in every record; two of a system's templates collide with odds about
    n^2 / 2^64 (n = 10^5: 5e-10)."""
    digest = hashlib.blake2b(f"{key}\x1f{local_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class DrainKeyer:
    """A line's Drain key under a system's masks and Drain settings: what routes the line to the worker that mines
    its key (the ingest stage), and what that worker's ``KeyedParser`` files it under."""

    def __init__(self, params: DrainParams, masks: Sequence[MaskRule]) -> None:
        self.params = params
        self._mask = Masker(tuple(masks)).mask
        # masked line -> key: most masked lines repeat, and a dict hit is cheaper than tokenising the line again
        self._keys: dict[str, str] = {}

    def key_of(self, content: str) -> tuple[str, str]:
        """(the line's key, the masked line)."""
        masked = self._mask(content)
        key = self._keys.get(masked)
        if key is None:
            if len(self._keys) >= KEY_MEMO_SIZE:  # a pure function's memo: clearing it changes no answer
                self._keys.clear()
            key = self._keys[masked] = drain_key(masked, self.params)
        return key, masked


class KeyedParser:
    """One system's miner as one independent ``SystemParser`` per Drain key: what a worker that owns some of the
    system's keys runs. Within a key there is one first token, so nothing in one key's Drain (tree, cluster LRU,
    masked-line cache) depends on another key's lines, and any partition of the keys over workers gives every line
    the id and template that one ``KeyedParser`` gives it, at any bounds (tests/unit/test_parsing_sharding.py).

    What that costs against ``SystemParser``: the bounds (``max_clusters``, ``match_cache_size``) hold per key, not
    per system, so a system's memory bound is the number of its keys times them; and the first level is keyed
    (``KeyedDrain``: on Thunderbird 10 of 19,350 lines get another template than drain3 gives)."""

    def __init__(self, params: DrainParams, masks: Sequence[MaskRule]) -> None:
        self.params = params
        self.masks: tuple[MaskRule, ...] = tuple(masks)
        self.key_of = DrainKeyer(params, self.masks).key_of
        self._parsers: dict[str, SystemParser] = {}
        self._ids: dict[str, dict[int, int]] = {}  # key -> local id -> global id, hashed once per template

    def parse(self, content: str) -> ParsedTemplate:
        return self.parse_keyed(*self.key_of(content))

    def parse_keyed(self, key: str, masked: str) -> ParsedTemplate:
        parser = self._parsers.get(key)
        if parser is None:
            parser = self._parsers[key] = SystemParser(self.params, self.masks)
            self._ids[key] = {}
        local = parser.parse_masked(masked)
        ids = self._ids[key]
        global_id = ids.get(local.template_id)
        if global_id is None:
            global_id = ids[local.template_id] = global_template_id(key, local.template_id)
        return ParsedTemplate(global_id, local.template, masked)

    @property
    def keys(self) -> list[str]:
        return list(self._parsers)

    @property
    def cluster_count(self) -> int:
        return sum(parser.cluster_count for parser in self._parsers.values())

    def templates(self) -> dict[int, str]:
        """Live global template id -> template text."""
        return {
            self._ids[key].get(local) or global_template_id(key, local): text
            for key, parser in self._parsers.items()
            for local, text in parser.templates().items()
        }

    def snapshot(self) -> dict[str, object]:
        """Each key's ``SystemParser`` snapshot, so a key's state can move to another worker alone."""
        return {
            "format": KEYED_FORMAT,
            "version": KEYED_VERSION,
            "keys": {key: parser.snapshot() for key, parser in self._parsers.items()},
        }

    @classmethod
    def restore(cls, params: DrainParams, masks: Sequence[MaskRule], snapshot: object) -> KeyedParser:
        """A parser that continues from ``snapshot``; ``StateError`` if it is malformed or made with other settings."""
        if not isinstance(snapshot, dict) or snapshot.get("format") != KEYED_FORMAT:
            raise StateError(f"not a keyed parser snapshot (format {KEYED_FORMAT!r} expected)")
        if snapshot.get("version") != KEYED_VERSION:
            raise StateError(f"keyed parser snapshot version {snapshot.get('version')!r} is not {KEYED_VERSION}")
        keys = snapshot.get("keys")
        if not isinstance(keys, dict) or not all(isinstance(key, str) for key in keys):
            raise StateError("keyed parser snapshot keys must be an object of key -> parser snapshot")
        parser = cls(params, masks)
        for key, saved in keys.items():
            parser._parsers[key] = SystemParser.restore(params, masks, saved)
            parser._ids[key] = {}
        return parser
