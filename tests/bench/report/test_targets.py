"""bench.report.targets: which repetitions a target judges, and the exact verdict it gives.

The run is SYNTHETIC (tests/bench/fixtures/synthetic.py); the values checked are set here, so each verdict
below is the one the rule must give, not whatever the code printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench.contract.schema import Result, Run
from bench.report.load import load_run
from bench.report.targets import evaluate, load_targets
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run

TARGETS = """
[[targets]]
title = "ws 100x100"
transport = "websocket"
subscribers = 100
rate = 100
checks = [
    { metric = "server_us_per_event", max = 20 },
    { metric = "lost_events", max = 0 },
]

[[targets]]
title = "ws 100x100 loose"
transport = "websocket"
subscribers = 100
rate = 100
checks = [{ metric = "server_us_per_event", below = 100 }]

[[targets]]
title = "lp 100x10, every repetition saturated"
transport = "longpoll"
subscribers = 100
rate = 10
checks = [
    { metric = "p99_ms", max = 1000 },
    { metric = "lost_events", max = 0 },
]

[[targets]]
title = "nowhere"
transport = "websocket"
subscribers = 7
rate = 3
checks = [{ metric = "p99_ms", max = 1 }]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    specs = [
        # r3 is saturated AND lossy: left out of the CPU check, counted in the loss check.
        Spec("ws", None, ("websocket",), subscribers=100, rate=100, reps=3,
             lossy={("websocket", 3)}, saturated={("websocket", 3)}),
        Spec("lp", None, ("longpoll",), subscribers=100, rate=10, reps=2,
             saturated={("longpoll", 1), ("longpoll", 2)}),
    ]  # fmt: skip
    loaded = load_run(write_synthetic_run(Path(tmp_path_factory.mktemp("run")), specs))
    cpu = {1: 10.0, 2: 30.0, 3: 5.0}  # r1 passes 20, r2 fails it, r3 would pass but is invalid

    def with_cpu(r: Result) -> Result:
        if r.scenario.transport != "websocket":
            return r
        raw: dict[str, Any] = {**r.raw, "server": {**r.raw["server"], "cpu_us_per_event": cpu[r.repetition]}}
        return dataclasses.replace(r, raw=raw)

    return dataclasses.replace(loaded, results=tuple(with_cpu(r) for r in loaded.results))


def rows(run: Run) -> dict[tuple[str, str], Any]:
    return {(row.target, row.check): row for row in evaluate(run, load_targets(TARGETS))}


def test_latency_and_cost_checks_judge_valid_repetitions_only(run: Run) -> None:
    row = rows(run)[("ws 100x100", "server CPU per delivered event")]
    assert [label for label, _ in row.values] == ["ws r1", "ws r2"]
    assert [v for _, v in row.values] == [10.0, 30.0]
    assert row.verdict == "MIXED 1/2"
    assert row.invalid_reps == ("ws r3",)
    assert rows(run)[("ws 100x100 loose", "server CPU per delivered event")].verdict == "pass"


def test_loss_is_judged_over_every_repetition_valid_or_not(run: Run) -> None:
    row = rows(run)[("ws 100x100", "missing + duplicate + out-of-order")]
    assert [label for label, _ in row.values] == ["ws r1", "ws r2", "ws r3"]
    assert [v for _, v in row.values] == [0.0, 0.0, 3.0]
    assert row.verdict == "MIXED 2/3"
    assert row.invalid_reps == ()


def test_saturated_repetitions_give_no_latency_verdict_but_a_loss_verdict(run: Run) -> None:
    table = rows(run)
    assert table[("lp 100x10, every repetition saturated", "end-to-end p99")].verdict == "⚠ invalid runs only"
    assert table[("lp 100x10, every repetition saturated", "missing + duplicate + out-of-order")].verdict == "pass"


def test_a_target_with_no_matching_run_says_so(run: Run) -> None:
    assert rows(run)[("nowhere", "end-to-end p99")].verdict == "not measured in this run"


def test_bad_targets_files_name_the_entry() -> None:
    with pytest.raises(ValueError, match=r"targets\[0\]\.checks\[0\]\.metric: unknown metric 'speed'"):
        load_targets(
            '[[targets]]\ntitle="t"\ntransport="websocket"\nsubscribers=1\nrate=1\nchecks=[{metric="speed", max=1}]'
        )
    with pytest.raises(ValueError, match=r"targets\[0\]\.checks\[0\]: give exactly one of max, below"):
        load_targets('[[targets]]\ntitle="t"\ntransport="websocket"\nsubscribers=1\nrate=1\nchecks=[{metric="p99_ms"}]')


def test_the_shipped_targets_file_loads() -> None:
    titles = [t.title for t in load_targets()]
    assert titles and len(titles) == len(set(titles))
