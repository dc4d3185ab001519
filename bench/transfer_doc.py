"""docs/transfer.md (tables, goals) and docs/transfer_<family>.png (F1 against N per pair) from the curve rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from transfer_report import GOAL_RULE, TRANSFER_METHODS

from stream.model.count_pca import Q_STATISTIC
from stream.model.thresholds import BEST_F1, BUDGET_AND_ANOMALIES, NORMALS_AND_TRAFFIC, SCORE_MIXTURE

COMMAND = "nice -n 19 .venv/bin/python bench/transfer_curves.py --families logtransfer,translog --threads 1"
PAIR_ORDER = (
    ("hdfs", "bgl"),
    ("bgl", "hdfs"),
    ("bgl", "thunderbird"),
    ("thunderbird", "bgl"),
    ("hdfs", "thunderbird"),
    ("thunderbird", "hdfs"),
    ("hdfs", "hadoop"),
)
GOAL_PAIRS = PAIR_ORDER[:6]  # the six ordered pairs of HDFS, BGL and Thunderbird
MULTI_PAIRS = tuple((f"all-but-{t}", t) for t in ("hdfs", "bgl", "thunderbird", "hadoop"))  # one base per target
TABLE_PAIRS = PAIR_ORDER + MULTI_PAIRS
FEW = (10, 50, 200)
# bases aligned to the target's unlabeled windows (bench/transfer_curves.py ALIGNMENTS): scored as they are at N = 0,
# an adapter tuned on them at N > 0
ALIGNED = ("aligned-moments", "aligned-adversarial")
METHOD_COLUMNS = ("adapter", "full", "scratch", *ALIGNED)
FEW_RULES = (BEST_F1, BUDGET_AND_ANOMALIES, NORMALS_AND_TRAFFIC)  # the rules a run with few labels is scored by
# methods added after the first curves were run: a pair without their runs lists no goal line for them
NEW_ZERO_LABEL = (
    *ALIGNED, "self-trained", "template-rarity", "zero-shot+rarity", "aligned-moments+rarity", "count-pca"
)  # fmt: skip
ZERO_LABEL_METHODS = ("zero-shot", "normal-replay", *NEW_ZERO_LABEL)
# methods that read the target's traffic and nothing of the source: a figure of theirs is not transfer's
NO_SOURCE = ("template-rarity", "count-pca")

Key = tuple[str, str, str, Any, str, str]  # family, source, target, N, method, rule


def _index(rows: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {
        (r["family"], r["source"], r["target"], r["n_anomalies"], r["method"], r["threshold_rule"]): r for r in rows
    }


def _cell(row: dict[str, Any] | None, pr: bool = True) -> str:
    if row is None:
        return "—"
    text = f"{row['f1_mean']:.3f} ± {row['f1_sd']:.3f}"
    return f"{text} ({row['pr_auc_mean']:.2f})" if pr else text


def _in_domain(rows: list[dict[str, Any]], family: str, target: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["family"] == family and r["method"] == "in-domain" and r["target"] == target), None
    )


VARIANTS = (
    *((method, multi) for multi in (False, True) for method in TRANSFER_METHODS),
    *((method, False) for method in ALIGNED),
)


def _variant(method: str, multi: bool) -> str:
    return f"{method} (multi-source base)" if multi else method


def _goal_line(what: str, hits: list[str], seen: int) -> str:
    verdict = "met" if len(hits) >= 4 else ("missed" if seen == 6 else f"open ({seen} of 6 pairs run)")
    return f"- {what} on {len(hits)} of {seen} pairs run ({', '.join(hits) or 'none'}): **{verdict}** (goal: 4 of 6)"


def _scratch_room(index: dict[Key, dict[str, Any]], rows: list[dict[str, Any]], family: str, few: int) -> str:
    """Where scratch at N already comes within 0.05 of in-domain training on all labels, beating it by 0.05 means
    beating training on all the target's labels: the goal line below counts those pairs all the same."""
    tight, seen = [], 0
    for source, target in GOAL_PAIRS:
        scratch = index.get((family, source, target, few, "scratch", GOAL_RULE["few"]))
        bar = _in_domain(rows, family, target)
        seen += bool(scratch and bar)
        if scratch and bar and bar["f1_mean"] - scratch["f1_mean"] < 0.05:
            tight.append(f"{source}→{target} ({scratch['f1_mean']:.3f} against {bar['f1_mean']:.3f})")
    where = ", ".join(tight) if tight else "none"
    return (
        f"- N = {few}: pairs where scratch is already within 0.05 of in-domain (all labels), so that beating it by"
        f" 0.05 means beating all labels: {len(tight)} of {seen} pairs with both figures ({where})"
    )


def _wins_over_scratch(
    index: dict[Key, dict[str, Any]], family: str, few: int, method: str, multi: bool, rule: str
) -> tuple[list[str], int]:
    """The pairs where ``method`` (on the multi-source base when ``multi``) beats scratch by at least 0.05 F1, both
    thresholded by ``rule``, and how many pairs have both figures."""
    wins, seen = [], 0
    for source, target in GOAL_PAIRS:
        ours = index.get((family, f"all-but-{target}" if multi else source, target, few, method, rule))
        scratch = index.get((family, source, target, few, "scratch", rule))
        if ours and scratch:
            seen += 1
            if ours["f1_mean"] - scratch["f1_mean"] >= 0.05:
                wins.append(f"{source}→{target}")
    return wins, seen


def goals(rows: list[dict[str, Any]], family: str) -> list[str]:
    """The issue's three goals for one family, each met or missed, counted from the table. A multi-source base
    serves both pairs into its target (all-but-<target> holds both other systems)."""
    index = _index(rows)
    out = []
    for few in (10, 50):
        out.append(_scratch_room(index, rows, family, few))
        for method, multi in VARIANTS:
            wins, seen = _wins_over_scratch(index, family, few, method, multi, GOAL_RULE["few"])
            if seen or method not in ALIGNED:  # an aligned method not run on any pair yet says nothing
                out.append(_goal_line(f"N = {few}, {_variant(method, multi)} beats scratch by ≥ 0.05", wins, seen))
    for method, multi in VARIANTS:
        near, seen = [], 0
        for source, target in GOAL_PAIRS:
            ours = index.get((family, f"all-but-{target}" if multi else source, target, 50, method, GOAL_RULE["few"]))
            bar = _in_domain(rows, family, target)
            if ours and bar:
                seen += 1
                if bar["f1_mean"] - ours["f1_mean"] <= 0.05:
                    near.append(f"{source}→{target}")
        if seen or method not in ALIGNED:
            out.append(
                _goal_line(f"N = 50, {_variant(method, multi)} within 0.05 of in-domain (all labels)", near, seen)
            )
    for source, target in (("hdfs", "bgl"), ("bgl", "hdfs"), ("all-but-bgl", "bgl"), ("all-but-hdfs", "hdfs")):
        for method in ZERO_LABEL_METHODS:
            for rule in (GOAL_RULE["zero"], SCORE_MIXTURE, Q_STATISTIC):
                row = index.get((family, source, target, 0, method, rule))
                if row is None and (method in NEW_ZERO_LABEL or rule != GOAL_RULE["zero"]):
                    continue
                if method in NO_SOURCE and source.startswith("all-but-"):
                    continue  # the same runs as the plain pair's: the source is in their name only
                state = "not run" if row is None else ("met" if row["f1_mean"] >= 0.80 else "missed")
                figure = (
                    ""
                    if row is None
                    else f" {row['f1_mean']:.3f} ± {row['f1_sd']:.3f}, PR-AUC {row['pr_auc_mean']:.3f}"
                )
                if method in NO_SOURCE:
                    what, state = f"{method} on {target}'s traffic alone (no source)", f"{state}, not by transfer"
                else:
                    what = f"{method} {source}→{target}"
                out.append(f"- N = 0, {what} reaches 0.80 F1 ({rule}):{figure} **{state}**")
    return out


def rule_goals(rows: list[dict[str, Any]], family: str) -> list[str]:
    """The first goal (beat scratch by at least 0.05 F1) counted again under each few-label threshold rule, the same
    rule on both sides: the pairs each transfer variant wins, of the pairs where both were run under that rule. Not a
    verdict: the goals above keep the rule fixed beforehand; this says whether the verdict turns on the rule."""
    index = _index(rows)
    out = [
        "| N | rule (both sides) | " + " | ".join(_variant(m, multi) for m, multi in VARIANTS) + " |",
        "|---|---|" + "---|" * len(VARIANTS),
    ]
    for few in (10, 50):
        for rule in FEW_RULES:
            cells = []
            for method, multi in VARIANTS:
                wins, seen = _wins_over_scratch(index, family, few, method, multi, rule)
                cells.append(f"{len(wins)} of {seen}" + (f" ({', '.join(wins)})" if wins else "") if seen else "—")
            if any(cell != "—" for cell in cells):
                out.append(f"| {few} | {rule} | " + " | ".join(cells) + " |")
    return out if len(out) > 2 else ["No pair has both figures under any rule yet."]


def family_table(rows: list[dict[str, Any]], family: str) -> list[str]:
    index = _index(rows)
    out = [
        "| pair | N | " + " | ".join(METHOD_COLUMNS) + " | in-domain (all labels) | trivial F1 |",
        "|---|---|" + "---|" * len(METHOD_COLUMNS) + "---|---|",
    ]
    for source, target in TABLE_PAIRS:
        bar = _in_domain(rows, family, target)
        for few in FEW:
            cells = [index.get((family, source, target, few, m, GOAL_RULE["few"])) for m in METHOD_COLUMNS]
            if not any(cells):
                continue
            trivial = next(c["trivial_f1"] for c in cells if c)
            out.append(
                f"| {source}→{target} | {few} | "
                + " | ".join(_cell(c) for c in cells)
                + f" | {_cell(bar, pr=False)} | {trivial:.3f} |"
            )
    return out


def rule_table(rows: list[dict[str, Any]], family: str) -> list[str]:
    """Today's rule against the budget rules, on the same scores (the rules share every trained model)."""
    out = [
        "| pair | N | method | best-f1 | budget-and-anomalies | normals-and-traffic |",
        "|---|---|---|---|---|---|",
    ]
    pairs: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        if row["family"] == family and row["method"] in METHOD_COLUMNS and row["n_anomalies"] > 0:
            key = (TABLE_PAIRS.index((row["source"], row["target"])), row["n_anomalies"], row["method"])
            pairs[key][row["threshold_rule"]] = row
    for (pair, few, method), rules in sorted(pairs.items()):
        source, target = TABLE_PAIRS[pair]
        out.append(
            f"| {source}→{target} | {few} | {method} | {_cell(rules.get('best-f1'), pr=False)} | "
            f"{_cell(rules.get('budget-and-anomalies'), pr=False)} | "
            f"{_cell(rules.get(NORMALS_AND_TRAFFIC), pr=False)} |"
        )
    return out


def _ceilings(*rows: dict[str, Any] | None) -> str:
    """The F1 a perfect ranking reaches under each alert budget (``transfer_report.budget_ceiling``); rows kept from
    before that field existed get it from their trivial F1 (2a / (1 + a), a the test part's anomalous share)."""
    cells = []
    for row in rows:
        if not row:
            cells.append("—")
            continue
        ceiling = row.get("rule_ceiling_f1")
        if ceiling is None:
            anomalous = row["trivial_f1"] / (2 - row["trivial_f1"])
            flagged = float(row["threshold_rule"].split("@")[1]) / 1000
            ceiling = 2 * min(flagged, anomalous) / (flagged + anomalous)
        cells.append(f"{ceiling:.3f}")
    return " / ".join(cells)


def zero_table(rows: list[dict[str, Any]], family: str) -> list[str]:
    index = _index(rows)
    out = [
        "| pair | method | 1 / 1,000 | 10 / 1,000 | 100 / 1,000 | score-mixture | q-statistic | PR-AUC | trivial F1 |"
        " ceiling at 10 / 100 per 1,000 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rules = (*(f"alert-budget@{b}" for b in ("1", "10", "100")), SCORE_MIXTURE, Q_STATISTIC)
    for source, target in TABLE_PAIRS:
        for method in ZERO_LABEL_METHODS:
            cells = [index.get((family, source, target, 0, method, rule)) for rule in rules]
            if any(cells):
                first = next(c for c in cells if c)
                out.append(
                    f"| {source}→{target} | {method} | "
                    + " | ".join(_cell(c, pr=False) for c in cells)
                    + f" | {first['pr_auc_mean']:.3f} | {first['trivial_f1']:.3f} | {_ceilings(cells[1], cells[2])} |"
                )
    return out


def plot(rows: list[dict[str, Any]], family: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = _index(rows)
    figure, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True)
    lines = [(method, False) for method in METHOD_COLUMNS] + [(method, True) for method in TRANSFER_METHODS]
    for axis, (source, target) in zip(axes.flat, PAIR_ORDER, strict=False):
        for method, multi in lines:
            base = f"all-but-{target}" if multi else source
            points = [(n, index.get((family, base, target, n, method, GOAL_RULE["few"]))) for n in FEW]
            zero = index.get((family, base, target, 0, method if method in ALIGNED else "zero-shot", GOAL_RULE["zero"]))
            if method != "scratch" and zero:
                points.insert(0, (0, zero))
            points = [(n, r) for n, r in points if r]
            if points:
                axis.errorbar(
                    [n for n, _ in points],
                    [r["f1_mean"] for _, r in points],
                    yerr=[r["f1_sd"] for _, r in points],
                    marker="s" if multi else "o",
                    linestyle="--" if multi else "-",
                    capsize=3,
                    label=f"{method}, multi-source base" if multi else method,
                )
        bar = _in_domain(rows, family, target)
        if bar:
            axis.axhline(bar["f1_mean"], linestyle="--", color="grey", label="in-domain (all labels)")
            if bar.get("ceiling_f1") is not None and bar["ceiling_f1"] < 0.999:
                axis.axhline(bar["ceiling_f1"], linestyle=":", color="black", label="content ceiling")
        axis.set_xscale("symlog", linthresh=10)
        axis.set_xticks([0, *FEW], labels=["0", *map(str, FEW)])
        axis.set_title(f"{source} → {target}")
        axis.set_xlabel("labeled target anomalies N")
        axis.set_ylim(0, 1.02)
    axes.flat[0].set_ylabel("test F1 (mean ± sd, 3 seeds)")
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, loc="center")
    figure.suptitle(f"{family}: transfer learning curves")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def render(rows: list[dict[str, Any]], docs: Path) -> str:
    families = sorted({r["family"] for r in rows if r["method"] != "in-domain"})
    out = [
        "# Transfer learning curves",
        "",
        f"Produced by `{COMMAND}` (the protocol is in that script's docstring; runs are kept under",
        "`bench/results/transfer_runs/`, the table is `bench/results/transfer_curves.json`). Cells: test F1 mean ± sd",
        "over seeds 0, 1, 2 (PR-AUC mean in brackets). N counts the labeled anomalous target windows in all, the",
        "threshold's included; every labeled normal of the target's train part is used. The threshold is chosen",
        f"by `{GOAL_RULE['few']}` on the few labels' validation share for N > 0, and at N = 0, where there is no",
        f"label, by `{GOAL_RULE['zero']}`: the score that flags 10 of every 1,000 unlabeled target windows.",
        "In-domain: the family trained on all of the target's labels (docs/results.md, seeds 0-2).",
        "`aligned-moments` / `aligned-adversarial`: the source's base trained with 2,000 unlabeled target windows",
        "aligned to it (moment matching / a domain discriminator; `adaptlog-train pretrain --align-to`), scored as it",
        "is at N = 0 and with a tuned adapter at N > 0. With no label the alert budget is the operator's one knob: the",
        "zero-label table shows 1, 10 and 100 alerts per 1,000 windows (BGL's windows are 8% anomalous, HDFS's 3%),",
        "and `score-mixture`: where the unlabeled scores show a minority upper mode, the threshold is where that mode",
        "begins, else 10 per 1,000 (`stream.model.thresholds`). `self-trained`: the `aligned-moments` base's",
        "confident pseudo-labels on the unlabeled windows train the target's adapter (`trainer.train.self_train`).",
        "`template-rarity`: no source and no label, each window scored by its rarest template in the unlabeled",
        "pool (`stream.model.rarity`), the baseline a transfer method has to beat at N = 0; `zero-shot+rarity` and",
        "`aligned-moments+rarity`: that method's score plus the rarity, equal weights fixed before any run.",
        "An alert budget caps F1 whatever the ranking: flagging a share b of windows where a share a is anomalous,",
        "F1 is at most 2 min(a, b) / (a + b). At the goal rule's 10 per 1,000 that is 0.22 on BGL and 0.50 on HDFS,",
        "so the zero-label goal (0.80) is out of that rule's reach on either wherever the test part is flagged at",
        "the rate the unlabeled pool is (the last column; ties at the threshold can flag more, which is how",
        "`template-rarity` passes it on HDFS). `template-rarity` cannot rank BGL's test part: its windows come",
        "after the train part's (the given split), and most of them hold a template the train part never printed",
        "(`test_windows_with_an_unseen_template` in each run: 3,954 of 4,631 at seed 0). `count-pca`: no source",
        "and no label either, the classic unsupervised log detector (Xu et al., SOSP 2009) with loglizer's defaults",
        "fixed beforehand (`stream.model.count_pca`): PCA of the unlabeled pool's template counts, each window scored",
        "by what it has outside the components that explain 95% of the pool's variance, and thresholded also by its",
        "own `q-statistic` (Jackson and Mudholkar's limit at a false-alarm rate of 0.0005, read off the pool's",
        "eigenvalues: no label and no guessed alert rate). The other methods have no figure in that column.",
        "",
    ]
    for family in families:
        plot(rows, family, docs / f"transfer_{family}.png")
        out += [f"## {family}", "", "### Goals (mean over 3 seeds)", "", *goals(rows, family), ""]
        out += [
            "### Transfer against scratch under each threshold rule",
            "",
            "Pairs where the variant beats scratch by ≥ 0.05 F1, both thresholded by the same rule. Rows computed",
            "before `normals-and-traffic` (which reads no anomaly) was added have no figure for it, and their runs",
            "are not kept: a pair without the figure on both sides is left out of that rule's count.",
            "",
            *rule_goals(rows, family),
            "",
        ]
        out += ["### F1 against N", "", *family_table(rows, family), ""]
        out += [f"![{family} transfer curves](transfer_{family}.png)", ""]
        out += ["### Zero labels: alert budgets on unlabeled target windows", "", *zero_table(rows, family), ""]
        out += ["### Threshold rules on the same scores", "", *rule_table(rows, family), ""]
    return "\n".join(out) + "\n"
