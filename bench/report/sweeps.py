"""Sweeps: the results of a sweep grouped along the one parameter it varies.

Report layer: the charts draw one figure per sweep, and the notebook's tables read the same grouping.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.contract.scenarios import Scenario
from bench.contract.schema import Result

__all__ = ["AXES", "Sweep", "find_sweeps"]

# --- sweeps -------------------------------------------------------------------------------------

AXES: dict[str, Callable[[Scenario], Any]] = {
    "one_way_ms": lambda s: s.link.one_way_ms,
    "rate": lambda s: s.rate,
    "subscribers": lambda s: s.subscribers,
    "payload_bytes": lambda s: s.payload_bytes,
    "runtime": lambda s: s.runtime,
    "burst": lambda s: s.burst,
    "burst_gap_ms": lambda s: s.burst_gap_ms,
    "layout": lambda s: s.layout,
    "compression": lambda s: s.compression,
    "jitter_ms": lambda s: s.link.jitter_ms,
    "bandwidth_kbps": lambda s: s.link.bandwidth_kbps,
}
"""Parameters a sweep can vary, in order of preference for the x axis."""


@dataclass(frozen=True)
class Sweep:
    """The results of one sweep (or one part of it) along the parameter it varies."""

    name: str
    axis: str
    split: tuple[tuple[str, Any], ...]
    """Other parameters that vary inside the sweep, fixed for this part (e.g. layout)."""
    results: tuple[Result, ...]

    @property
    def stem_suffix(self) -> str:
        parts = [self.name, *(f"{k}-{v}" for k, v in self.split)]
        return re.sub(r"[^a-z0-9_.-]+", "_", "--".join(parts).lower())

    @property
    def label(self) -> str:
        """What the sweep holds fixed, in words a reader knows (subscribers, rate, arrivals...), for chart titles.

        Parameters that vary inside the sweep (its axis, and the split's) are named only by the split's values.
        """
        fixed: list[str] = []
        scenarios = [r.scenario for r in self.results]

        def same(get: Callable[[Scenario], Any]) -> Any:
            values = {get(s) for s in scenarios}
            return next(iter(values)) if len(values) == 1 else None

        varying = {self.axis, *(k for k, _ in self.split)}
        if "subscribers" not in varying and (n := same(lambda s: s.subscribers)) is not None:
            fixed.append(f"{n:,} subscriber{'s' if n != 1 else ''}")
        if "rate" not in varying and (rate := same(lambda s: s.rate)) is not None:
            fixed.append(f"{rate:g} ev/s")
        if "burst" not in varying and (burst := same(lambda s: s.burst)) and burst > 1:
            gap = same(lambda s: s.burst_gap_ms)
            fixed.append(f"bursts of {burst}" + (f" {gap:g} ms apart" if gap else ""))
        if same(lambda s: s.arrivals) == "poisson":
            fixed.append("random (Poisson) arrivals")
        if "layout" not in varying and same(lambda s: s.layout) == "per-subscriber":
            fixed.append("one channel per subscriber")
        if "one_way_ms" not in varying and (ow := same(lambda s: s.link.one_way_ms)):
            fixed.append(f"{ow:g} ms one way")
        fixed += [f"{k.replace('_', ' ')} {_words(v)}" for k, v in self.split]
        return ", ".join(fixed) if fixed else self.name


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def find_sweeps(results: Iterable[Result]) -> list[Sweep]:
    """Group non-idle results of the lab by ``sweep`` and find the parameter each sweep varies.

    A peer's results (``scenario.server`` not ``lab``) and the resume test's (``drop_every_s``) are left out:
    a sweep over servers is the peers section's (:mod:`bench.report.peers`), and none of :data:`AXES` would
    tell its points apart.
    """
    by_name: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        sc = r.scenario
        if sc.sweep and not sc.idle and sc.server == "lab" and sc.drop_every_s is None:
            by_name[sc.sweep].append(r)
    sweeps = []
    for name, group in sorted(by_name.items()):
        varying = [a for a, get in AXES.items() if len({get(r.scenario) for r in group}) > 1]
        if not varying:
            continue
        axis, others = varying[0], varying[1:]
        parts: dict[tuple[Any, ...], list[Result]] = defaultdict(list)
        for r in group:
            parts[tuple(AXES[a](r.scenario) for a in others)].append(r)
        for key, part in sorted(parts.items(), key=lambda kv: str(kv[0])):
            if len({AXES[axis](r.scenario) for r in part}) < 2:
                continue  # one point is not a sweep (e.g. the target scenarios filed under one sweep name)
            sweeps.append(Sweep(name, axis, tuple(zip(others, key, strict=True)), tuple(part)))
    return sweeps
