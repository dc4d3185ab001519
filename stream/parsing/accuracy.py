"""Grouping and parsing accuracy of SystemParser and of plain drain3 on Loghub-2.0 corrected ground truth.

    python -m stream.parsing.accuracy [--data-dir ../shared/data/parsing] [--masks loghub|default] [--json FILE]

Definitions (Loghub, Zhu et al. ICSE-SEIP 2019; Loghub-2.0, Jiang et al. ISSTA 2024):

* GA: a line is correct when the set of lines in its predicted group equals the set in its ground-truth group.
* PA: a line is correct when its predicted template equals its ground-truth template. Templates are compared
  after normalising: our masks ``<NAME>`` become ``<*>``, runs of adjacent ``<*>`` merge, whitespace collapses.
  A line's predicted template is its cluster's template after the whole file (as in the Loghub benchmark).

Both sides get the same Drain parameters and masks (Loghub benchmark settings per dataset by default).
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from drain3.template_miner import TemplateMiner

from stream.parsing.config import DEFAULT_MASKS, LOGHUB_SETTINGS, DrainParams, MaskRule, drain3_config
from stream.parsing.fastdrain import FastDrain
from stream.parsing.miner import SystemParser

DATASETS = ("HDFS", "BGL", "Thunderbird", "Hadoop")
DEFAULT_DATA_DIR = Path("../shared/data/parsing")

_MASK_TOKEN = re.compile(r"<[A-Z][A-Z0-9_]*>")
_WILDCARD_RUN = re.compile(r"(?:<\*>){2,}")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Score:
    grouping_accuracy: float
    parsing_accuracy: float
    templates: int


def load_structured(path: Path) -> tuple[list[str], list[str]]:
    """Content and ground-truth EventTemplate columns of a Loghub ``*_structured_corrected.csv``."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [row["Content"] for row in rows], [row["EventTemplate"] for row in rows]


def normalize_template(template: str) -> str:
    template = _MASK_TOKEN.sub("<*>", template)
    template = _WILDCARD_RUN.sub("<*>", template)
    return _SPACES.sub(" ", template).strip()


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[object]) -> float:
    """Loghub GA: lines whose predicted group is exactly one ground-truth group, over all lines."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must have one entry per line")
    if not truth:
        return 0.0
    truth_sizes = Counter(truth)
    members: dict[object, list[str]] = defaultdict(list)
    for true_group, group in zip(truth, predicted, strict=True):
        members[group].append(true_group)
    correct = 0
    for true_groups in members.values():
        first = true_groups[0]
        # Correct only if the predicted group is pure and holds the whole ground-truth group.
        if all(g == first for g in true_groups) and len(true_groups) == truth_sizes[first]:
            correct += len(true_groups)
    return correct / len(truth)


def parsing_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    if not truth:
        return 0.0
    same = sum(normalize_template(t) == normalize_template(p) for t, p in zip(truth, predicted, strict=True))
    return same / len(truth)


def _score(truth: list[str], ids: list[int], final_templates: dict[int, str], seen: list[str]) -> Score:
    # A cluster evicted before the end keeps the template it had when the line was parsed.
    templates = [final_templates.get(cid, at_parse) for cid, at_parse in zip(ids, seen, strict=True)]
    return Score(grouping_accuracy(truth, ids), parsing_accuracy(truth, templates), len(set(ids)))


def score_ours(
    contents: list[str],
    truth: list[str],
    params: DrainParams,
    masks: Sequence[MaskRule],
    *,
    drain: type[FastDrain] = FastDrain,
) -> Score:
    parser = SystemParser(params, masks, drain=drain)
    parsed = [parser.parse(content) for content in contents]
    ids = [p.template_id for p in parsed]
    return _score(truth, ids, parser.templates(), [p.template for p in parsed])


def score_drain3(contents: list[str], truth: list[str], params: DrainParams, masks: Sequence[MaskRule]) -> Score:
    miner = TemplateMiner(config=drain3_config(params, tuple(masks)))
    results = [miner.add_log_message(content) for content in contents]
    ids = [r["cluster_id"] for r in results]
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return _score(truth, ids, final, [r["template_mined"] for r in results])


def evaluate(data_dir: Path, dataset: str, masks_choice: str = "loghub") -> dict[str, object]:
    contents, truth = load_structured(data_dir / dataset / f"{dataset}_2k.log_structured_corrected.csv")
    params, loghub_masks = LOGHUB_SETTINGS[dataset]
    masks = loghub_masks if masks_choice == "loghub" else DEFAULT_MASKS
    ours = score_ours(contents, truth, params, masks)
    reference = score_drain3(contents, truth, params, masks)
    return {
        "lines": len(contents),
        "truth_templates": len(set(truth)),
        "sim_th": params.sim_th,
        "depth": params.depth,
        "masks": [rule.name for rule in masks],
        "ours": _as_dict(ours),
        "drain3": _as_dict(reference),
    }


def _as_dict(score: Score) -> dict[str, object]:
    return {
        "GA": round(score.grouping_accuracy, 4),
        "PA": round(score.parsing_accuracy, 4),
        "templates": score.templates,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GA/PA of SystemParser vs drain3 on Loghub-2.0 2k samples")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--masks", choices=("loghub", "default"), default="loghub")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    results: dict[str, object] = {}
    print(f"masks: {args.masks}")
    header = ("dataset", "GA ours", "GA d3", "PA ours", "PA d3", "tpl ours", "tpl d3", "truth")
    print(f"{header[0]:<12} " + " ".join(f"{h:>8}" for h in header[1:]))
    for dataset in DATASETS:
        row = evaluate(args.data_dir, dataset, args.masks)
        results[dataset] = row
        ours, ref = row["ours"], row["drain3"]
        print(
            f"{dataset:<12} {ours['GA']:>8.4f} {ref['GA']:>8.4f} {ours['PA']:>8.4f} {ref['PA']:>8.4f} "  # type: ignore[index]
            f"{ours['templates']:>8} {ref['templates']:>8} {row['truth_templates']:>8}"  # type: ignore[index]
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({"masks": args.masks, "datasets": results}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
