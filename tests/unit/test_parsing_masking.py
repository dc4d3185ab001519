"""One-pass masking: equal to drain3's sequential masking on real logs, and documented precedence otherwise."""

from __future__ import annotations

import csv

import pytest
from drain3.masking import LogMasker, MaskingInstruction

from harness.streaming import DATA
from stream.errors import ConfigError
from stream.parsing.config import DEFAULT_MASKS, LOGHUB_SETTINGS, MaskRule
from stream.parsing.masking import Masker, mask_sequentially

PARSING = DATA / "parsing"


def contents(dataset: str) -> list[str]:
    path = PARSING / dataset / f"{dataset}_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["Content"] for row in csv.DictReader(handle)]


def hdfs_5k() -> list[str]:
    with (DATA / "hdfs" / "HDFS_5k.log").open(encoding="utf-8") as handle:
        return [line.rstrip("\n").split(None, 5)[5] for line in handle]


@pytest.mark.parametrize("dataset", ["HDFS", "BGL", "Thunderbird", "Hadoop"])
@pytest.mark.parametrize("rule_set", ["loghub", "default"])
def test_one_pass_equals_sequential_on_real_lines(dataset: str, rule_set: str) -> None:
    # These rule sets do not overlap on these logs, so one pass must give exactly what drain3 gives.
    rules = LOGHUB_SETTINGS[dataset][1] if rule_set == "loghub" else DEFAULT_MASKS
    drain3_masker = LogMasker([MaskingInstruction(r.pattern, r.name.upper()) for r in rules], "<", ">")
    masker = Masker(rules)
    lines = contents(dataset) + (hdfs_5k() if dataset == "HDFS" else [])
    changed = 0
    for line in lines:
        ours = masker.mask(line)
        assert ours == drain3_masker.mask(line) == mask_sequentially(rules, line), line
        changed += ours != line
    assert changed > 0  # the rules did something on this data


def test_masks_real_hdfs_line() -> None:
    line = "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
    assert Masker(DEFAULT_MASKS).mask(line) == "Receiving block <BLK> src: /<IP> dest: /<IP>"
    assert Masker(DEFAULT_MASKS).mask("size 67108864 at 0x1f3A, id 3e:4f:10:aa") == "size <NUM> at <HEX>, id <SEQ>"


def test_earlier_rule_wins_at_same_position() -> None:
    ip_first = Masker([MaskRule("ip", r"\d+\.\d+\.\d+\.\d+"), MaskRule("num", r"\d+")])
    num_first = Masker([MaskRule("num", r"\d+"), MaskRule("ip", r"\d+\.\d+\.\d+\.\d+")])
    assert ip_first.mask("from 10.0.0.1 port 22") == "from <IP> port <NUM>"
    assert num_first.mask("from 10.0.0.1 port 22") == "from <NUM>.<NUM>.<NUM>.<NUM> port <NUM>"


def test_leftmost_match_wins_over_rule_order() -> None:
    # Sequentially "bc" is replaced first; in one pass "ab" starts further left and wins.
    rules = [MaskRule("x", "bc"), MaskRule("y", "ab")]
    assert mask_sequentially(rules, "abc") == "a<X>"
    assert Masker(rules).mask("abc") == "<Y>c"


def test_rules_do_not_see_earlier_masks() -> None:
    # Sequentially the second rule can match text the first rule wrote; in one pass it sees only the input.
    rules = [MaskRule("num", r"\d+"), MaskRule("tag", r"<NUM>")]
    assert mask_sequentially(rules, "n=5") == "n=<TAG>"
    assert Masker(rules).mask("n=5") == "n=<NUM>"


def test_inner_groups_flags_and_shared_group_names() -> None:
    rules = [
        MaskRule("pair", r"(?P<k>[a-z]+)=(?P=k)"),
        MaskRule("word", r"(?i)(?P<k>hello)"),
        MaskRule("num", r"(\d+)"),
    ]
    assert Masker(rules).mask("ab=ab HELLO 42 cd=ef") == "<PAIR> <WORD> <NUM> cd=ef"


def test_numeric_backreference_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Masker([MaskRule("rep", r"(\w)\1")])
    assert info.value.setting == "masks.rep"


def test_no_rules_is_identity() -> None:
    assert Masker([]).mask("blk_1 10.0.0.1") == "blk_1 10.0.0.1"
