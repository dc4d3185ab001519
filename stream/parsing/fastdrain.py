"""drain3's Drain with a faster candidate scan and an inspectable LRU; same answers as drain3.

Why a subclass and not drain3 as is:

* ``fast_match`` in drain3 compares a line with each candidate template in a Python loop over tokens. On long
  lines (Thunderbird's 40-token sensor messages) that loop is most of the parse time. Here the token comparison
  is ``sum(map(eq, ...))`` (a C loop), and candidates that cannot beat the best so far are skipped from their
  wildcard count alone. Ties are broken exactly as drain3 does (first best in leaf order, then more wildcards),
  so the chosen cluster is the same; ``tests/unit/test_parsing_miner.py`` checks that against drain3 itself.
* drain3's LRU (a cachetools ``LRUCache``) keeps its recency order in a private attribute; a snapshot needs that
  order so that eviction after restore picks the same victims. ``ClusterLRU`` keeps it in a public
  ``OrderedDict`` and mirrors cachetools' rules (insert evicts the least recent when full, indexing touches,
  ``get`` does not).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from operator import eq

from drain3.drain import Drain, LogCluster

from stream.parsing.config import PARAM_STR, DrainParams


class ClusterLRU(OrderedDict[int, LogCluster]):
    """Cluster id -> cluster, least recently used first, bounded to ``maxsize``."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __getitem__(self, key: int) -> LogCluster | None:
        # drain3 touches a cluster with ``id_to_cluster[cid]`` and expects None (not KeyError) when evicted.
        cluster = self.get(key)
        if cluster is not None:
            self.move_to_end(key)
        return cluster

    def __setitem__(self, key: int, value: LogCluster) -> None:
        if key not in self and len(self) >= self.maxsize:
            self.popitem(last=False)
        super().__setitem__(key, value)
        self.move_to_end(key)


class FastDrain(Drain):
    """Drain whose ``add`` returns the cluster a masked line belongs to, updating templates as drain3 does."""

    def __init__(self, params: DrainParams) -> None:
        # profiler=None: drain3 checks ``if self.profiler`` before every section, so None skips that overhead.
        super().__init__(
            depth=params.depth,
            sim_th=params.sim_th,
            max_children=params.max_children,
            max_clusters=params.max_clusters,
            extra_delimiters=params.extra_delimiters,
            profiler=None,
            param_str=PARAM_STR,
            parametrize_numeric_tokens=params.parametrize_numeric_tokens,
        )
        if params.max_clusters is not None:
            self.id_to_cluster = ClusterLRU(params.max_clusters)

    def add(self, masked: str) -> LogCluster:
        """drain3's ``add_log_message`` without profiling or the change-type bookkeeping."""
        tokens = self.get_content_as_tokens(masked)
        cluster = self.tree_search(self.root_node, tokens, self.sim_th, False)
        if cluster is None:
            self.clusters_counter += 1
            cluster = LogCluster(tokens, self.clusters_counter)
            self.id_to_cluster[cluster.cluster_id] = cluster
            self.add_seq_to_prefix_tree(self.root_node, cluster)
            return cluster
        template = cluster.log_template_tokens
        param = self.param_str
        # drain3's create_template: keep the template token where the line agrees, else a wildcard.
        cluster.log_template_tokens = tuple(t if t == s else param for t, s in zip(template, tokens, strict=True))
        cluster.size += 1
        self.id_to_cluster[cluster.cluster_id]  # touch, as drain3 does
        return cluster

    def fast_match(
        self, cluster_ids: Sequence[int], tokens: list[str], sim_th: float, include_params: bool
    ) -> LogCluster | None:
        param = self.param_str
        # The shortcut counts a literal "<*>" in the line as similar; drain3 does not. Rare: use drain3's loop.
        if include_params or param in tokens:
            return super().fast_match(cluster_ids, tokens, sim_th, include_params)
        get = self.id_to_cluster.get
        best: LogCluster | None = None
        best_sim = -1  # similar (non-wildcard, equal) tokens; all candidates have len(tokens) tokens
        best_params = -1
        for cluster_id in cluster_ids:
            cluster = get(cluster_id)
            if cluster is None:
                continue
            template = cluster.log_template_tokens
            params = template.count(param)
            ceiling = len(template) - params
            # Cannot beat the best: fewer possible matches, or equal and not more wildcards (drain3's tie rule).
            if ceiling < best_sim or (ceiling == best_sim and params <= best_params):
                continue
            sim = sum(map(eq, template, tokens))
            if sim > best_sim or (sim == best_sim and params > best_params):
                best, best_sim, best_params = cluster, sim, params
        if best is not None and float(best_sim) / len(tokens) >= sim_th:
            return best
        return None
