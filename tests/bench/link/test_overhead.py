"""bench.link.overhead: the relay's own cost, in meta.json's shape."""

from __future__ import annotations

import math

from bench.link import measure_overhead


def test_measure_overhead_reports_the_schema_of_meta_json() -> None:
    result = measure_overhead(samples=300, bulk_bytes=2 * 1024 * 1024)
    assert set(result["added_latency_us"]) == {"p50", "p99"}
    assert all(math.isfinite(v) for v in result["added_latency_us"].values())
    assert math.isfinite(result["cpu_us_per_kib"]) and math.isfinite(result["bulk_cpu_us_per_kib"])
    assert result["round_trip_us"]["relayed"]["p50"] > 0 and result["round_trip_us"]["direct"]["p50"] > 0
    assert result["samples"] == 300
