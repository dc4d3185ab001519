"""Which subtree of Drain's prefix tree a masked line belongs to: the key for mining one system on several workers.

Drain (drain3's, which ``FastDrain`` keeps) files a line under its token count, then under its first token (the
first ``depth - 2`` tokens), and compares it only with the clusters of the leaf it reaches. A token holding a digit
goes to the wildcard child ``<*>`` (``parametrize_numeric_tokens``). So two lines with different keys here are
never compared, and a partition of a system's lines by this key gives each shard's miner the clusters a single
miner would have for those lines, in the same order, with three exceptions the bench measures
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
"""

from __future__ import annotations

import zlib

from drain3.drain import LogCluster, Node

from stream.errors import ConfigError
from stream.parsing.config import PARAM_STR, DrainParams
from stream.parsing.fastdrain import FastDrain


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
