"""bench.report.sweeps: a sweep is found by the parameter that varies in it, whatever its name."""

from __future__ import annotations

from bench.report.load import load_run
from bench.report.sweeps import find_sweeps


def test_sweeps_are_found_by_parameter(run_dir):
    sweeps = {(s.name, s.axis) for s in find_sweeps(load_run(run_dir).results)}
    assert sweeps == {
        ("rate", "rate"),
        ("fanout-size", "subscribers"),
        ("payload", "payload_bytes"),
        ("runtime", "runtime"),
        ("delay", "one_way_ms"),
    }
