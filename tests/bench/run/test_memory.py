"""bench.run.memory: a small memory scenario end to end: every step sampled, the counts it published, valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.contract.scenarios import load_profile
from bench.contract.schema import validate_result
from bench.run.memory import run_memory


def test_a_memory_scenario_samples_every_step(tmp_path: Path) -> None:
    scenario = next(s for s in load_profile("smoke").scenarios if s.kind == "memory")
    scenario = dataclasses.replace(scenario, idle_channels=50, big_events=2, payload_bytes=50_000, duration_s=1.0)
    result = run_memory(scenario, "websocket", 1, tmp_path)
    validate_result(result)
    steps = result["memory"]["steps"]
    assert [(s["step"], s["published"]) for s in steps] == [
        ("start", 0), ("channels", 50), ("big", 2), ("stall", 2), ("after_stall", 0),
    ]  # fmt: skip
    assert result["memory"]["peak_rss_bytes"] >= max(s["rss_bytes"] for s in steps) > 1 << 20
    assert result["memory"]["drop_timeout_s"] == 1.0
