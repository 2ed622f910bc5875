"""Tests of bench/run/runner.py: channel layout, sharding, selection, one real run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil

from bench.contract.scenarios import Scenario, load_profile
from bench.contract.schema import validate_result
from bench.run.runner import run_one, selected, shard


def smoke(name: str) -> Scenario:
    return next(s for s in load_profile("smoke").scenarios if s.name == name)


def test_channels_per_layout() -> None:
    s = smoke("smoke-broadcast")
    assert s.channels == ["bench"] * s.subscribers
    per = dataclasses.replace(s, layout="per-subscriber", subscribers=3)
    assert per.channels == ["sub-0", "sub-1", "sub-2"]


def test_shard_deals_round_robin_without_empty_shards() -> None:
    assert shard(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert shard(["a"], 4) == [["a"]]
    assert sum(map(len, shard([str(i) for i in range(1000)], 3))) == 1000


def test_only_selects_by_glob() -> None:
    scenarios = load_profile("quick").scenarios
    assert [s.name for s in selected(scenarios, "rate-*")] == ["rate-1", "rate-100", "rate-1000"]
    assert {s.name for s in selected(scenarios, "rate-1,payload-32")} == {"rate-1", "payload-32"}
    assert selected(scenarios, None) == list(scenarios)
    assert selected(scenarios, "nothing-*") == []


def test_one_run_end_to_end_leaves_no_process(tmp_path: Path) -> None:
    scenario = dataclasses.replace(smoke("smoke-broadcast"), subscribers=3, client_processes=2, duration_s=0.5)
    result = run_one(scenario, "floor", 1, tmp_path)
    validate_result(result)
    c = result["counters"]
    assert c["expected"] == c["delivered"] == 3 * result["publisher"]["sent"] > 0
    assert c["missing"] == c["duplicate"] == c["out_of_order"] == 0
    assert result["bytes"]["steady"]["down"] > 0
    assert psutil.Process().children(recursive=True) == []
