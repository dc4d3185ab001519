"""SystemParser: online template mining for one source system (mask, then Drain), with JSON snapshots.

The masked-line cache
---------------------
Most lines of a system repeat exactly once masked ("Receiving block <BLK> src: <IP> dest: <IP>"). The parser
keeps a bounded LRU from masked line to cluster id; a hit bumps the cluster's size and recency, as drain3 would on
a match, and skips tokenising, the tree search and the template update.

This can change Drain's answer, on purpose. Once a line has joined cluster C, C's template agrees with that line
on every non-wildcard token, and later updates only add wildcards, so C stays a perfect match for it. drain3 still
re-runs the search every time, and its similarity ignores wildcard positions, so the same line can later fall
below ``sim_th`` for the now more general C, or be routed through a tree node created since, and land in (or
create) another cluster. With the cache, one masked line always maps to one template id while its cluster lives,
which is what a downstream model keyed on template ids wants. ``match_cache_size=0`` restores drain3's answers
exactly. Measured effect on grouping accuracy: see ``python -m stream.parsing.accuracy`` (a test keeps it within
0.01 of drain3's).

Snapshots are plain JSON data (never pickle) and hold everything that decides future answers: the clusters in LRU
order, the id counter, the prefix tree as it is, and the cache in LRU order.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from drain3.drain import LogCluster

from stream.errors import StateError
from stream.parsing import snapshot as snap
from stream.parsing.config import DrainParams, MaskRule
from stream.parsing.fastdrain import ClusterLRU, FastDrain
from stream.parsing.masking import Masker


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    """Where one line went: the stable cluster id, its template now, and the masked line Drain saw."""

    template_id: int
    template: str
    masked: str


class SystemParser:
    """Masks and mines the lines of one source system. Not thread-safe: one parser per system, one consumer."""

    def __init__(self, params: DrainParams, masks: Sequence[MaskRule], *, drain: type[FastDrain] = FastDrain) -> None:
        self.params = params
        self.masks: tuple[MaskRule, ...] = tuple(masks)
        self._mask = Masker(self.masks).mask
        self._drain = drain(params)  # stream.parsing.sharding.KeyedDrain: a first token level that shards exactly
        clusters = self._drain.id_to_cluster
        # Touching a cluster in the LRU is a move to the end; calling it directly skips a Python-level __getitem__.
        self._touch = clusters.move_to_end if isinstance(clusters, ClusterLRU) else None
        # masked line -> (answer given last time, the template tuple it was built from). Returning the same frozen
        # answer while the template tuple is unchanged saves building one per line.
        self._cache: OrderedDict[str, tuple[ParsedTemplate, tuple[str, ...]]] = OrderedDict()
        self._cache_size = params.match_cache_size

    def parse(self, content: str) -> ParsedTemplate:
        return self.parse_masked(self._mask(content))

    def parse_masked(self, masked: str) -> ParsedTemplate:
        """``parse`` of a line already masked with this parser's masks (a caller that needed the masked line first:
        ``stream.parsing.sharding.KeyedParser`` keys on it)."""
        cache = self._cache
        entry = cache.get(masked)
        if entry is not None:
            parsed, tokens = entry
            cluster = self._drain.id_to_cluster.get(parsed.template_id)
            if cluster is not None:
                cache.move_to_end(masked)
                cluster.size += 1
                if self._touch is not None:
                    self._touch(parsed.template_id)  # as drain3 does on a match
                if cluster.log_template_tokens is tokens:
                    return parsed
                return self._remember(masked, cluster)
            del cache[masked]  # its cluster was evicted: mine the line afresh
        cluster = self._drain.add(masked)
        if not self._cache_size:
            return ParsedTemplate(cluster.cluster_id, " ".join(cluster.log_template_tokens), masked)
        parsed = self._remember(masked, cluster)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return parsed

    def _remember(self, masked: str, cluster: LogCluster) -> ParsedTemplate:
        tokens = cluster.log_template_tokens
        parsed = ParsedTemplate(cluster.cluster_id, " ".join(tokens), masked)
        self._cache[masked] = (parsed, tokens)
        return parsed

    @property
    def cluster_count(self) -> int:
        return len(self._drain.id_to_cluster)

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def templates(self) -> dict[int, str]:
        """Live template id -> template text."""
        return {cid: " ".join(c.log_template_tokens) for cid, c in self._drain.id_to_cluster.items()}

    def snapshot(self) -> dict[str, object]:
        """JSON-serialisable state; ``restore`` of it continues with exactly the ids and templates of this parser."""
        drain = self._drain
        return {
            "format": snap.FORMAT,
            "version": snap.VERSION,
            "params": self.params.to_dict(),
            "masks": [[rule.name, rule.pattern] for rule in self.masks],
            "clusters_counter": drain.clusters_counter,
            # Least recently used first, so re-inserting in this order rebuilds the LRU order.
            "clusters": [[c.cluster_id, list(c.log_template_tokens), c.size] for c in drain.id_to_cluster.values()],
            "tree": snap.encode_tree(drain.root_node),
            "match_cache": [[masked, parsed.template_id] for masked, (parsed, _) in self._cache.items()],
        }

    @classmethod
    def restore(cls, params: DrainParams, masks: Sequence[MaskRule], snapshot: dict[str, object]) -> SystemParser:
        """A parser that continues from ``snapshot``; ``StateError`` if it is malformed or made with other settings.

        The prefix tree is restored as saved rather than rebuilt by re-adding templates: a cluster's place in the
        tree was decided by its first line and by the nodes that existed then (``max_children``, clusters since
        evicted), and its template has generalised since, so re-adding can file it elsewhere and later lines
        would then be routed differently from a parser that never stopped (the tests hold such a case:
        ``test_restore_keeps_routing_that_rebuilding_the_tree_would_lose``; on the real samples it did not occur).
        """
        parser = cls(params, masks)
        if not isinstance(snapshot, dict):
            raise StateError(f"parser snapshot must be a JSON object, got {type(snapshot).__name__}")
        snap.check_header(snapshot, params.to_dict(), [[rule.name, rule.pattern] for rule in parser.masks])
        drain = parser._drain
        counter = snap.require_int(snapshot, "clusters_counter", minimum=0)
        clusters = snap.decode_clusters(snapshot.get("clusters"), counter)
        if params.max_clusters is not None and len(clusters) > params.max_clusters:
            raise StateError(f"snapshot holds {len(clusters)} clusters, more than max_clusters={params.max_clusters}")
        root, tree_ids = snap.decode_tree(snapshot.get("tree"), counter, max_depth=params.depth)
        missing = [c.cluster_id for c in clusters if c.cluster_id not in tree_ids]
        if missing:
            raise StateError(f"snapshot clusters {missing[:5]} are not in its prefix tree")
        cache = snap.decode_cache(snapshot.get("match_cache"), counter)
        if len(cache) > params.match_cache_size:
            raise StateError(f"snapshot cache holds {len(cache)} lines, more than match_cache_size")
        drain.clusters_counter = counter
        for cluster in clusters:
            drain.id_to_cluster[cluster.cluster_id] = cluster
        drain.root_node = root
        for masked, cluster_id in cache.items():
            cluster = drain.id_to_cluster.get(cluster_id)
            # An entry whose cluster was evicted is kept (as in the running parser) and dropped on its next hit.
            tokens = cluster.log_template_tokens if cluster is not None else ()
            template = " ".join(tokens)
            parser._cache[masked] = (ParsedTemplate(cluster_id, template, masked), tokens)
        return parser
