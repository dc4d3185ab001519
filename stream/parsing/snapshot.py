"""JSON encoding of SystemParser state, and strict decoding that turns any malformed part into ``StateError``.

Decoding validates types and ranges rather than trusting the file: a snapshot comes back from a state store after
a restart, possibly written by another version, and a half-valid tree would fail much later, mid-stream.
"""

from __future__ import annotations

from collections import OrderedDict

from drain3.drain import LogCluster, Node

from stream.errors import StateError

FORMAT = "adaptlog.drain"
VERSION = 1

# Tree node as JSON: [cluster ids in leaf order, {token: child node}]. Leaf order matters (drain3 breaks ties by
# it) and JSON objects keep key order through orjson and json, so child order survives too.
EncodedNode = list[object]


def check_header(snapshot: dict[str, object], params: dict[str, object], masks: list[list[str]]) -> None:
    if snapshot.get("format") != FORMAT:
        raise StateError(f"not a parser snapshot: format is {snapshot.get('format')!r}, expected {FORMAT!r}")
    version = snapshot.get("version")
    if version != VERSION:
        raise StateError(f"parser snapshot version {version!r} is not supported (this build reads {VERSION})")
    # Other Drain settings or masks would mine differently from the saved clusters: refuse rather than drift.
    saved_params = snapshot.get("params")
    if saved_params != params:
        raise StateError(f"snapshot was made with Drain params {saved_params!r}, not {params!r}")
    saved_masks = snapshot.get("masks")
    if saved_masks != masks:
        raise StateError(f"snapshot was made with masks {saved_masks!r}, not {masks!r}")


def require_int(snapshot: dict[str, object], key: str, minimum: int) -> int:
    value = snapshot.get(key)
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise StateError(f"snapshot {key} must be an integer >= {minimum}, got {value!r}")
    return value  # type: ignore[return-value]


def decode_clusters(raw: object, counter: int) -> list[LogCluster]:
    if not isinstance(raw, list):
        raise StateError("snapshot clusters must be a list")
    clusters: list[LogCluster] = []
    seen: set[int] = set()
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise StateError(f"snapshot cluster must be [id, tokens, size], got {item!r:.200}")
        cluster_id, tokens, size = item
        if not _is_int(cluster_id) or not 1 <= cluster_id <= counter or cluster_id in seen:
            raise StateError(f"snapshot cluster id {cluster_id!r} is invalid, repeated or above the counter")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise StateError(f"snapshot cluster {cluster_id} tokens must be a list of non-empty strings")
        if not _is_int(size) or size < 1:
            raise StateError(f"snapshot cluster {cluster_id} size must be a positive integer")
        cluster = LogCluster(tokens, cluster_id)
        cluster.size = size
        clusters.append(cluster)
        seen.add(cluster_id)
    return clusters


def encode_tree(node: Node) -> EncodedNode:
    return [list(node.cluster_ids), {key: encode_tree(child) for key, child in node.key_to_child_node.items()}]


def decode_tree(raw: object, counter: int, max_depth: int = 64) -> tuple[Node, set[int]]:
    """The prefix tree and the set of cluster ids its leaves name (stale ids of evicted clusters included)."""
    ids: set[int] = set()
    root = _decode_node(raw, counter, ids, max_depth)
    return root, ids


def _decode_node(raw: object, counter: int, ids: set[int], depth_left: int) -> Node:
    if depth_left < 0:
        raise StateError("snapshot prefix tree is deeper than any Drain tree")
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list) and isinstance(raw[1], dict)):
        raise StateError("snapshot tree node must be [cluster ids, {token: node}]")
    cluster_ids, children = raw
    if not all(_is_int(cid) and 1 <= cid <= counter for cid in cluster_ids):
        raise StateError("snapshot tree node names a cluster id that is not an integer up to the counter")
    node = Node()
    node.cluster_ids = list(cluster_ids)
    ids.update(cluster_ids)
    for key, child in children.items():
        node.key_to_child_node[key] = _decode_node(child, counter, ids, depth_left - 1)
    return node


def decode_cache(raw: object, counter: int) -> OrderedDict[str, int]:
    if not isinstance(raw, list):
        raise StateError("snapshot match_cache must be a list of [masked line, cluster id]")
    cache: OrderedDict[str, int] = OrderedDict()
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_int(item[1])):
            raise StateError(f"snapshot match_cache entry must be [masked line, cluster id], got {item!r:.200}")
        if not 1 <= item[1] <= counter:
            raise StateError(f"snapshot match_cache names cluster {item[1]}, above the counter")
        cache[item[0]] = item[1]
    return cache


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
