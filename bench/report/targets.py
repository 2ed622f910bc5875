"""Performance targets (bench/contract/targets.toml) checked against a run's results.

Report layer, pure functions over :class:`bench.contract.schema.Run`. A target names a
transport, a subscriber count and a rate; it matches the run's results with
those parameters, runtime gevent, broadcast layout, no emulated link, not idle, on the lab's own
server (a peer's results are the peers section's).
Each check is evaluated on EVERY valid repetition: ``pass`` when all pass,
``FAIL`` when all fail, ``MIXED k/n`` otherwise. Invalid repetitions (clients
saturated, publisher behind) are never used as the server's latency or cost; a
target with only invalid repetitions says so, one with none says "not measured
in this run". Loss is judged over every repetition, valid or not: saturated
clients make latency the clients', but a lost event is lost. The floor column
is the loopback floor's value of the same metric, from the floor results of the
same parameters in the same run.
"""

from __future__ import annotations

import statistics
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bench.contract.schema import Result, Run

from .tables import lab_results

__all__ = ["METRICS", "Check", "Metric", "Target", "TargetRow", "evaluate", "load_targets", "matching"]


@dataclass(frozen=True)
class Metric:
    """How one target metric is measured from a result (``floor_p50_us`` is the floor's median p50)."""

    label: str
    unit: str
    measure: Callable[[Result, float | None], float | None]
    on_floor: Callable[[Result], float | None] | None
    correctness: bool = False
    """Judged over every repetition: saturated clients or a late publisher invalidate latency, not loss."""


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def _ratio_to_floor(r: Result, floor_p50_us: float | None) -> float | None:
    if floor_p50_us is None or floor_p50_us <= 0 or r.end_to_end.p50_us is None:
        return None
    return r.end_to_end.p50_us / floor_p50_us


def _lost(r: Result) -> float:
    return float(r.counters.missing + r.counters.duplicate + r.counters.out_of_order)


METRICS: dict[str, Metric] = {
    "server_us_per_event": Metric(
        "server CPU per delivered event",
        "µs",
        lambda r, _: r.cpu_us_per_event,
        lambda r: r.cpu_us_per_event,
    ),
    "p50_over_floor": Metric("end-to-end p50 / floor p50 (same run)", "x floor", _ratio_to_floor, None),
    "p99_ms": Metric("end-to-end p99", "ms", lambda r, _: _ms(r.end_to_end.p99_us), lambda r: _ms(r.end_to_end.p99_us)),
    "lost_events": Metric(
        "missing + duplicate + out-of-order", "events", lambda r, _: _lost(r), _lost, correctness=True
    ),
    "requests_per_event": Metric(
        "HTTP requests per delivered event", "req/event", lambda r, _: r.num("http", "requests_per_event"), None
    ),
}
"""Every metric a target can check, by the name bench/contract/targets.toml uses."""


@dataclass(frozen=True)
class Check:
    """One condition of a target: ``metric <= max`` or ``metric < below``."""

    metric: str
    limit: float
    strict: bool

    def passes(self, value: float) -> bool:
        return value < self.limit if self.strict else value <= self.limit

    @property
    def text(self) -> str:
        return f"{'<' if self.strict else '≤'} {self.limit:g} {METRICS[self.metric].unit}"


@dataclass(frozen=True)
class Target:
    """A performance target: which results it matches and what they must meet."""

    title: str
    transport: str
    subscribers: int
    rate: float
    checks: tuple[Check, ...]


def load_targets(text: str | None = None) -> list[Target]:
    """Parse bench/contract/targets.toml (or ``text``); raise ``ValueError`` naming the bad entry."""
    data = tomllib.loads(
        text if text is not None else resources.files("bench.contract").joinpath("targets.toml").read_text()
    )
    targets = []
    for i, entry in enumerate(data.get("targets", [])):
        where = f"targets[{i}]"
        try:
            checks = []
            for j, c in enumerate(entry["checks"]):
                if c["metric"] not in METRICS:
                    raise ValueError(f"{where}.checks[{j}].metric: unknown metric {c['metric']!r}")
                if ("max" in c) == ("below" in c):
                    raise ValueError(f"{where}.checks[{j}]: give exactly one of max, below")
                checks.append(Check(c["metric"], float(c.get("max", c.get("below"))), "below" in c))
            targets.append(
                Target(
                    entry["title"], entry["transport"], int(entry["subscribers"]), float(entry["rate"]), tuple(checks)
                )
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing key {exc}") from None
    return targets


def matching(run: Run, transport: str, subscribers: int, rate: float) -> list[Result]:
    """The lab's results of ``run`` for these parameters, gevent, broadcast, loopback, not idle, never dropped.

    A peer's results are not the lab's (the peers section compares them), and a run whose connections are
    dropped on purpose (the resume test) is not the steady state a target is about.
    """
    return [
        r
        for r in lab_results(run.results)
        if r.scenario.transport == transport
        and r.scenario.subscribers == subscribers
        and r.scenario.rate == rate
        and r.scenario.runtime == "gevent"
        and r.scenario.layout == "broadcast"
        and r.scenario.link.is_loopback
        and not r.scenario.idle
    ]


@dataclass(frozen=True)
class TargetRow:
    """One line of the targets table."""

    target: str
    check: str
    limit: str
    values: tuple[tuple[str, float], ...]
    """(``scenario rK``, measured value) of every valid repetition."""
    floor: float | None
    verdict: str
    source: str
    invalid_reps: tuple[str, ...]

    @property
    def median(self) -> float | None:
        return statistics.median(v for _, v in self.values) if self.values else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def evaluate(run: Run, targets: Sequence[Target] | None = None) -> list[TargetRow]:
    """Check every target against ``run``: one row per target and check."""
    rows = []
    for target in targets if targets is not None else load_targets():
        results = matching(run, target.transport, target.subscribers, target.rate)
        floor = [r for r in matching(run, "floor", target.subscribers, target.rate) if r.valid]
        floor_p50 = _median([r.end_to_end.p50_us for r in floor if r.end_to_end.p50_us is not None])
        valid = [r for r in results if r.valid]
        invalid = tuple(f"{r.scenario.name} r{r.repetition}" for r in results if not r.valid)
        source = ", ".join(sorted({r.scenario.name for r in results})) or "—"
        for check in target.checks:
            metric = METRICS[check.metric]
            judged = results if metric.correctness else valid
            values = tuple(
                (f"{r.scenario.name} r{r.repetition}", v)
                for r in judged
                if (v := metric.measure(r, floor_p50)) is not None
            )
            floor_value: float | None = None
            if metric.on_floor is not None:
                floor_value = _median([v for r in floor if (v := metric.on_floor(r)) is not None])
            elif check.metric == "p50_over_floor":
                floor_value = None if floor_p50 is None else floor_p50 / 1000.0
            rows.append(
                TargetRow(
                    target=target.title,
                    check=metric.label,
                    limit=check.text,
                    values=values,
                    floor=floor_value,
                    verdict=_verdict(check, values, bool(results), bool(judged), check.metric, floor_p50),
                    source=source,
                    invalid_reps=() if metric.correctness else invalid,
                )
            )
    return rows


def _verdict(
    check: Check, values: Sequence[tuple[str, float]], any_result: bool, any_valid: bool, metric: str, floor: Any
) -> str:
    if not any_result:
        return "not measured in this run"
    if not any_valid:
        return "⚠ invalid runs only"
    if not values:
        return "no floor in this run" if metric == "p50_over_floor" and floor is None else "no value"
    passed = sum(check.passes(v) for _, v in values)
    if passed == len(values):
        return "pass"
    if passed == 0:
        return "FAIL"
    return f"MIXED {passed}/{len(values)}"
