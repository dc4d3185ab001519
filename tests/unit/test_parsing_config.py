"""Config validation: every bad setting fails at construction with a ConfigError that names it."""

from __future__ import annotations

import pytest

from stream.errors import ConfigError
from stream.parsing.config import DEFAULT_MASKS, LOGHUB_SETTINGS, DrainParams, MaskRule, drain3_config


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"sim_th": 0}, "drain.sim_th"),
        ({"sim_th": 1.5}, "drain.sim_th"),
        ({"sim_th": float("nan")}, "drain.sim_th"),
        ({"depth": 2}, "drain.depth"),
        ({"depth": True}, "drain.depth"),
        ({"max_children": 1}, "drain.max_children"),
        ({"max_clusters": 0}, "drain.max_clusters"),
        ({"extra_delimiters": "_"}, "drain.extra_delimiters"),
        ({"extra_delimiters": ("",)}, "drain.extra_delimiters"),
        ({"parametrize_numeric_tokens": 1}, "drain.parametrize_numeric_tokens"),
        ({"match_cache_size": -1}, "drain.match_cache_size"),
    ],
)
def test_drain_params_errors_name_the_field(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        DrainParams(**kwargs)  # type: ignore[arg-type]
    assert info.value.setting == setting
    assert setting in str(info.value)


def test_drain_params_accept_edges() -> None:
    assert DrainParams(sim_th=1, max_clusters=None, match_cache_size=0).sim_th == 1
    assert DrainParams(depth=3, extra_delimiters=("_", "=")).depth == 3
    assert DrainParams(extra_delimiters=["_"]).extra_delimiters == ("_",)  # type: ignore[arg-type]  # from YAML


@pytest.mark.parametrize(
    ("name", "pattern", "setting"),
    [
        ("ip", r"(\d+", "masks.ip"),
        ("bad name", r"\d+", "masks.bad name"),
        ("empty", "", "masks.empty"),
        ("opt", r"\d*", "masks.opt"),  # matches the empty string
    ],
)
def test_mask_rule_errors_name_the_rule(name: str, pattern: str, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        MaskRule(name, pattern)
    assert info.value.setting == setting


def test_mask_is_upper_cased_name() -> None:
    assert MaskRule("ip", r"\d+").mask == "<IP>"


def test_drain3_config_is_explicit() -> None:
    params, masks = LOGHUB_SETTINGS["HDFS"]
    config = drain3_config(params, masks)
    assert config.drain_sim_th == params.sim_th
    assert config.drain_depth == params.depth
    assert config.drain_max_clusters == params.max_clusters
    assert [mi.mask_with for mi in config.masking_instructions] == ["BLK", "IP"]
    assert (config.mask_prefix, config.mask_suffix) == ("<", ">")
    assert len(drain3_config(DrainParams(), DEFAULT_MASKS).masking_instructions) == len(DEFAULT_MASKS)
