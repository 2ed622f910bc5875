"""Charts of a run, drawn from its raw results alone (matplotlib, Agg, no pyplot state).

Report layer. Every chart is written as PNG and SVG into ``<run>/charts/``,
carries a title, units, the machine and commit in small print, and follows the
same marks so a reader learns them once (docs/reading-a-report.md):

- every repetition is a point; the line joins the medians of the valid
  repetitions (never best-of-N);
- a repetition with loss (missing, duplicate or out-of-order events) gets a
  red ✗ on its point and a footnote;
- an invalid repetition (clients saturated or publisher behind) is a hollow
  grey point, labelled, and left out of the median line: its latency is the
  clients' or the publisher's, not the server's;
- the loopback floor (``floor`` transport, a bare TCP push server) is a grey
  dashed line where the run has it.

Scenarios are recognised by their ``sweep`` field and by which parameter
varies inside a sweep (rate, subscribers, payload, runtime, one-way delay...),
never by their names. A sweep the run does not have just skips its chart.
"""

from __future__ import annotations

import math
import re
import statistics
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from hdrh.histogram import HdrHistogram
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bench.contract.schema import Result, Run

from .hero import HERO_STEM, draw_hero
from .peers import Point, peer_points
from .sweeps import AXES, Sweep, find_sweeps
from .tables import byte_parts, bytes_per_event, events_per_response, lab_results

__all__ = ["AXES", "Chart", "Sweep", "find_sweeps", "percentile_spectrum", "write_charts"]

MODEL_TRANSITS = {1.0: "1 transit (push)", 3.0: "3 transits (RFC 6202 §2.2 long-poll worst case)"}

_COLORS = {"websocket": "#1f77b4", "longpoll": "#d95f02", "polling": "#7b3294", "sse": "#1b9e77", "floor": "#7f7f7f"}
_POLLING_SHADES = ("#7b3294", "#c2a5cf", "#40004b", "#9970ab")
_MARKERS = {"websocket": "o", "longpoll": "s", "polling": "^", "sse": "v", "floor": "D"}


def _color(series: str) -> str:
    if series.startswith("polling "):
        digits = sum(map(ord, series))
        return _POLLING_SHADES[digits % len(_POLLING_SHADES)]
    return _COLORS.get(series.split(" ")[0], "#333333")


@dataclass(frozen=True)
class Chart:
    """One written chart: its file stem, title, a one-line caption, and the PNG and SVG paths."""

    stem: str
    title: str
    caption: str
    section: str
    png: Path
    svg: Path


# --- HdrHistogram spectrum ----------------------------------------------------------------------


def percentile_spectrum(hist: HdrHistogram, step: float = 0.02) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """HdrHistogram-style percentile spectrum: ``x = 1/(1-p)`` from 1 to the count, and the value at each.

    Values are each bucket's highest equivalent value, as ``get_value_at_percentile`` reports them.
    The last point is the maximum, at ``x`` = count (the rarest percentile the samples can show).
    """
    counts = np.ctypeslib.as_array(hist.counts)[: hist.counts_len].astype(np.int64)
    index = np.nonzero(counts)[0]
    if index.size == 0:
        return np.array([]), np.array([])
    values = np.array([hist.get_highest_equivalent_value(hist.get_value_from_index(int(i))) for i in index])
    cumulative = np.cumsum(counts[index])
    total = int(cumulative[-1])
    x = 10 ** np.arange(0.0, math.log10(total) + 1e-9, step) if total > 1 else np.array([1.0])
    ranks = np.clip(np.ceil((1 - 1 / x) * total), 1, total)
    y = values[np.searchsorted(cumulative, ranks)]
    return np.append(x, float(total)), np.append(y, float(values[-1]))


# --- drawing helpers ----------------------------------------------------------------------------


@dataclass
class _Marks:
    """Which special marks a chart used, so its footnote explains only those."""

    loss: bool = False
    invalid: bool = False


def _new_figure(ncols: int = 1, width: float = 6.2, height: float = 4.6) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * ncols if ncols > 1 else width + 1.6, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _plain_log_labels(fig: Figure) -> None:
    """Label log axes with plain numbers (0.5, 2, 10, 300), not ``6 x 10^0``: a reader reads them at a glance.

    Minor ticks get a label (2 and 5 of each decade) only when the axis spans less than two decades. Axes with
    a formatter of their own (the spectrum's percentiles) keep it.
    """
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax in fig.axes:
        for axis, scale, lims in (
            (ax.yaxis, ax.get_yscale(), ax.get_ylim()),
            (ax.xaxis, ax.get_xscale(), ax.get_xlim()),
        ):
            if scale != "log" or isinstance(axis.get_major_formatter(), FuncFormatter):
                continue
            axis.set_major_formatter(plain)
            low, high = sorted(lims)
            if low > 0 and high / low < 100:
                axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
            else:
                axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _finish(
    fig: Figure, run: Run, out: Path, stem: str, title: str, marks: _Marks, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    _plain_log_labels(fig)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    lines = list(notes)
    if marks.loss:
        lines.append("red ✗ = repetition with loss (missing, duplicate or out-of-order events > 0)")
    if marks.invalid:
        lines.append(
            "hollow grey point / faint dotted line = INVALID repetition (clients saturated or publisher behind): "
            "not the server's number, left out of the median"
        )
    lines.append(run.meta.provenance)
    fig.text(0.005, 0.003, "\n".join(lines), fontsize=6.5, color="#444444", ha="left", va="bottom")
    fig.get_layout_engine().set(rect=(0, 0.018 * (len(lines) + 1), 1, 1 - 0.018 * (len(lines) + 1)))  # type: ignore[union-attr, call-arg]
    png, svg = out / f"{stem}.png", out / f"{stem}.svg"
    # No date and fixed element ids: the same raw files give the same chart files, byte for byte.
    fig.savefig(png, dpi=120, metadata={"Software": None})
    fig.set_layout_engine("none")  # keep the layout computed for the PNG: drawing the SVG is then cheaper
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        fig.savefig(svg, metadata={"Date": None})
    return png, svg


def _points(
    ax: Axes,
    rows: Sequence[tuple[float | str, float | None, Result]],
    series: str,
    marks: _Marks,
    line: bool = True,
    xpos: Callable[[float | str], float] | None = None,
) -> None:
    """Draw every repetition as a point, marks for loss and invalid, and the line of valid medians."""
    color = _color(series)
    floor = series == "floor"
    place = xpos or (lambda v: float(v))
    marker = _MARKERS.get(series.split(" ")[0], "o")
    valid = [(place(x), y) for x, y, r in rows if y is not None and r.valid]
    invalid = [(place(x), y) for x, y, r in rows if y is not None and not r.valid]
    lossy = [(place(x), y) for x, y, r in rows if y is not None and r.lossy]
    if valid:
        ax.scatter([p[0] for p in valid], [p[1] for p in valid], color=color, s=16, alpha=0.55, marker=marker, zorder=3)
    if invalid:
        marks.invalid = True
        ax.scatter(
            [p[0] for p in invalid],
            [p[1] for p in invalid],
            facecolors="none",
            edgecolors="#9a9a9a",
            s=40,
            marker=marker,
            zorder=3,
        )
        for x, y in invalid:
            ax.annotate("invalid", (x, y), fontsize=6, color="#777777", xytext=(4, 4), textcoords="offset points")
    if lossy:
        marks.loss = True
        ax.scatter(
            [p[0] for p in lossy], [p[1] for p in lossy], color="#d62728", marker="x", s=60, linewidths=2, zorder=4
        )
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, y in valid:
        by_x[x].append(y)
    xs = sorted(by_x)
    if xs:
        meds = [statistics.median(by_x[x]) for x in xs]
        label = "loopback floor" if floor else series
        style = "--" if floor else "-"
        if line:
            ax.plot(xs, meds, style, color=color, label=label, linewidth=1.6, zorder=2)
        else:
            ax.scatter(xs, meds, color=color, marker="_", s=300, linewidths=2, label=label + " (median)", zorder=2)


def _by_series(results: Iterable[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        out[r.scenario.series].append(r)
    order = ["websocket", "longpoll", "sse", "floor"]
    return dict(sorted(out.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 2.5, kv[0])))


def _shift(offset: float, names: Sequence[str] | None = None) -> Callable[[float | str], float]:
    """x position of a category (an index, or a name in ``names``) shifted by ``offset``."""

    def place(value: float | str) -> float:
        return (names.index(str(value)) if names is not None else float(value)) + offset

    return place


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _sortable(value: Any) -> tuple[int, float, str]:
    """Order numbers numerically and anything else (runtime names) by name."""
    return (1, float(value), "") if isinstance(value, int | float) else (0, 0.0, str(value))


def _us_to_ms(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def _legend(ax: Axes, marks: _Marks | None = None, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if marks is not None and marks.loss:
        handles.append(Line2D([], [], color="#d62728", marker="x", linestyle="", markersize=7, markeredgewidth=2))
        labels.append("✗ loss")
    if marks is not None and marks.invalid:
        handles.append(Line2D([], [], color="#9a9a9a", marker="o", markerfacecolor="none", linestyle=""))
        labels.append("invalid run")
    if handles:
        ax.legend(handles, labels, **{"fontsize": 7.5, **kwargs})


def _log_if_wide(ax: Axes, values: Iterable[float], axis: str = "y", factor: float = 30) -> None:
    """A log scale when the values span more than ``factor`` (a linear one reads better below)."""
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > factor:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


# --- the charts ---------------------------------------------------------------------------------


class _Writer:
    """Draws every chart the run's data supports into one directory."""

    def __init__(self, run: Run, out: Path) -> None:
        self.run = run
        self.out = out
        self.charts: list[Chart] = []
        self.lab = lab_results(run.results)
        """The lab's steady-state results: every chart but the peers' (:func:`bench.report.tables.lab_results`)."""

    def save(
        self, fig: Figure, stem: str, title: str, caption: str, section: str, marks: _Marks, notes: Sequence[str] = ()
    ) -> None:
        png, svg = _finish(fig, self.run, self.out, stem, title, marks, notes)
        self.charts.append(Chart(stem, title, caption, section, png, svg))

    def spectra(self) -> None:
        """Latency percentile spectra: every scenario that is no point of a sweep, and the last point of each sweep."""
        groups: list[tuple[str, str, list[Result]]] = []
        sweeps = find_sweeps(self.lab)
        in_sweeps = {r.file for sweep in sweeps for r in sweep.results}
        standalone: dict[str, list[Result]] = defaultdict(list)
        for r in self.lab:
            if r.file not in in_sweeps:
                standalone[r.scenario.name].append(r)
        groups += [(name, name, results) for name, results in sorted(standalone.items())]
        for sweep in sweeps:
            get = AXES[sweep.axis]
            last = max((get(r.scenario) for r in sweep.results), key=_sortable)
            at_last = [r for r in sweep.results if get(r.scenario) == last]
            groups.append((sweep.stem_suffix, f"{sweep.label}, {sweep.axis.replace('_', ' ')} {_fmt(last)}", at_last))
        for stem, name, group in groups:
            results = [r for r in group if not r.scenario.idle and r.end_to_end.count > 0]
            if not results:
                continue
            fig, (ax,) = _new_figure()
            marks = _Marks()
            for series, reps in _by_series(results).items():
                color = _color(series)
                for i, r in enumerate(reps):
                    x, y = percentile_spectrum(r.end_to_end.histogram())
                    y = y / 1000.0
                    tag = f"{'loopback floor' if series == 'floor' else series} r{r.repetition}"
                    if not r.valid:
                        marks.invalid = True
                        ax.plot(x, y, ":", color="#9a9a9a", label=tag + " — INVALID", linewidth=1.4)
                        continue
                    if r.lossy:
                        marks.loss = True
                        tag += " ✗ loss"
                    style = "--" if series == "floor" else "-"
                    ax.plot(x, y, style, color=color, alpha=1.0 if i == 0 else 0.6, label=tag, linewidth=1.3)
                    if r.lossy:
                        ax.plot(x[-1], y[-1], "x", color="#d62728", markersize=9, markeredgewidth=2)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ticks = [t for t in (2, 10, 100, 1000, 10_000, 100_000, 1_000_000) if t <= max(10.0, ax.get_xlim()[1])]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * (1 - 1 / v):g}%" if v > 1 else "0%"))
            ax.set_xlim(1, None)
            ax.set_xlabel("percentile (log scale of 1/(1-p); the last point of each line is the max)")
            ax.set_ylabel("end-to-end latency (ms, log)")
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, None, loc="upper left", ncols=2)
            sc = results[0].scenario
            title = f"Latency percentile spectrum — {name}"
            self.save(
                fig,
                f"spectrum--{stem}",
                title,
                f"{sc.subscribers} subscriber(s), {sc.rate:g} ev/s, {sc.payload_bytes} B, {sc.runtime}, "
                f"one-way {sc.link.one_way_ms:g} ms; one line per repetition",
                "Latency percentile spectra",
                marks,
                ["end-to-end latency: receive time minus the publisher's intended send time (HdrHistogram, µs)"],
            )

    def latency_vs(self, sweep: Sweep, xlabel: str, logx: bool = True) -> None:
        fig, axes = _new_figure(2)
        marks = _Marks()
        get = AXES[sweep.axis]
        for ax, key, label in ((axes[0], "p50_us", "p50"), (axes[1], "p99_us", "p99")):
            ys: list[float] = []
            for series, reps in _by_series(sweep.results).items():
                rows = [(get(r.scenario), _us_to_ms(getattr(r.end_to_end, key)), r) for r in reps]
                ys += [y for _, y, _ in rows if y is not None]
                _points(ax, rows, series, marks)
            if logx:
                ax.set_xscale("log")
            _log_if_wide(ax, ys)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"end-to-end latency {label} (ms)")
            ax.set_title(label, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, marks)
        axis_name = sweep.axis.replace("_", " ")
        self.save(
            fig,
            f"latency-vs-{sweep.axis}--{sweep.stem_suffix}",
            f"Latency versus {axis_name} — {sweep.label}",
            f"p50 and p99 end-to-end latency per transport as {axis_name} varies",
            "Latency",
            marks,
        )

    def requests_per_event(self, sweep: Sweep) -> None:
        http = [r for r in sweep.results if r.scenario.transport in ("longpoll", "polling")]
        if not http:
            return
        fig, (ax,) = _new_figure()
        marks = _Marks()
        for series, reps in _by_series(http).items():
            _points(ax, [(r.scenario.rate, r.num("http", "requests_per_event"), r) for r in reps], series, marks)
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":", label="1 request per event")
        ax.set_xscale("log")
        _log_if_wide(ax, [v for r in http if (v := r.num("http", "requests_per_event")) is not None])
        ax.set_xlabel("publish rate (events/s, log)")
        ax.set_ylabel("HTTP requests per delivered event")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, marks)
        self.save(
            fig,
            f"requests-per-event--{sweep.stem_suffix}",
            f"HTTP requests per delivered event versus rate — {sweep.label}",
            "below 1, long polling batches several events per response",
            "HTTP cost",
            marks,
        )

    def bytes_vs_payload(self, sweep: Sweep) -> None:
        fig, axes = _new_figure(2)
        marks = _Marks()
        for series, reps in _by_series(sweep.results).items():
            wire, over = [], []
            for r in reps:
                total = bytes_per_event(r)
                wire.append((r.scenario.payload_bytes, total, r))
                over.append((r.scenario.payload_bytes, None if total is None else total - r.scenario.payload_bytes, r))
            _points(axes[0], wire, series, marks)
            _points(axes[1], over, series, marks)
        sizes = sorted({r.scenario.payload_bytes for r in sweep.results})
        axes[0].plot(sizes, sizes, ":", color="black", linewidth=0.8, label="payload alone")
        for ax, ylabel in (
            (axes[0], "bytes on the wire per delivered event, up + down"),
            (axes[1], "overhead per event: wire bytes - payload bytes"),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("payload size (bytes, log)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, marks)
        self.save(
            fig,
            f"bytes-vs-payload--{sweep.stem_suffix}",
            f"Bytes per event versus payload size — {sweep.label}",
            "TCP payload bytes counted by the relay, both directions, per delivered event",
            "Bytes on the wire",
            marks,
            ["overhead includes the event envelope (channel, seq, ts), HTTP headers or frame headers"],
        )

    def bytes_decomposed(self) -> None:
        """Bytes per event as stacked bars: payload, envelope, HTTP response head, framing, bytes up."""
        parts = byte_parts(self.run)
        if not parts:
            return
        fig = Figure(figsize=(11.5, 2.6 + 0.42 * len(parts)), layout="constrained")
        ax = fig.subplots()
        segments = [
            ("payload", "payload", "#4d4d4d"),
            ("envelope", "the lab's JSON envelope (channel, seq, ts)", "#9e9e9e"),
            ("response_head", "HTTP response head", "#e6550d"),
            ("framing", "framing: WebSocket frame header,\nSSE lines, long-poll answer's JSON wrapper", "#fdae6b"),
            ("up", "up: HTTP request head\n(WebSocket, SSE: nothing per event)", "#3182bd"),
        ]
        labels = [p.label for p in parts]
        left = [0.0] * len(parts)
        for attr, label, color in segments:
            widths = [max(0.0, float(getattr(p, attr))) for p in parts]
            ax.barh(range(len(parts)), widths, left=left, color=color, label=label, height=0.62, zorder=2)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        for i, p in enumerate(parts):
            note = f"{p.total:.0f} B"
            if p.requests_per_event:
                note += f" ({p.requests_per_event:.2f} requests per event)"
            ax.annotate(note, (left[i], i), xytext=(4, -3), textcoords="offset points", fontsize=7.5)
        ax.set_yticks(range(len(parts)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left) * 1.35)
        ax.set_xlabel("bytes per delivered event, up + down (TCP payload, median of valid repetitions)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        sc = next(r.scenario for r in self.lab if r.scenario.name == parts[0].scenario)
        self.save(
            fig,
            "bytes-decomposed",
            f"What the bytes of one event are: {sc.payload_bytes} B payload, {sc.subscribers} subscribers, "
            f"{sc.rate:g} ev/s",
            "bytes per event split by what they carry; rows with a browser's request headers send Chromium's",
            "Bytes on the wire",
            _Marks(),
            [
                "measured bytes per event; the event's JSON size is WebSocket's frame minus its RFC 6455 header, "
                "the long-poll answer's head is capture.json's"
            ],
        )

    def runtimes(self, sweep: Sweep) -> None:
        names = sorted({r.scenario.runtime for r in sweep.results})
        fig, axes = _new_figure(3, width=4.4)
        marks = _Marks()
        metrics: list[tuple[str, Callable[[Result], float | None]]] = [
            ("end-to-end p50 (ms)", lambda r: _us_to_ms(r.end_to_end.p50_us)),
            ("end-to-end p99 (ms)", lambda r: _us_to_ms(r.end_to_end.p99_us)),
            ("server CPU per delivered event (µs)", lambda r: r.cpu_us_per_event),
        ]
        series_all = _by_series(sweep.results)
        width = 0.8 / max(1, len(series_all))
        for ax, (label, metric) in zip(axes, metrics, strict=True):
            for i, (series, reps) in enumerate(series_all.items()):
                offset = (i - (len(series_all) - 1) / 2) * width
                rows: list[tuple[float | str, float | None, Result]] = [
                    (r.scenario.runtime, metric(r), r) for r in reps
                ]
                _points(ax, rows, series, marks, line=False, xpos=_shift(offset, names))
            ax.set_xticks(range(len(names)), names)
            ax.set_ylabel(label)
            ax.set_ylim(0, None)
            ax.grid(True, axis="y", alpha=0.3)
        _legend(axes[0], marks)
        self.save(
            fig,
            f"runtimes--{sweep.stem_suffix}",
            f"Runtime comparison — {sweep.label}",
            "the same scenario served by each runtime (werkzeug threads, gunicorn gthread, gunicorn gevent)",
            "Runtimes",
            marks,
        )

    def hero(self) -> None:
        """The README's first chart (:mod:`.hero`): delivery latency in transits under random arrivals."""
        fig = draw_hero(self.run)
        if fig is None:
            return
        invalid = any(not r.valid for r in self.lab if r.scenario.arrivals == "poisson" and r.scenario.link.one_way_ms)
        self.save(
            fig,
            HERO_STEM,
            "Delivery latency in transits under random arrivals: long polling against WebSocket",
            "share of events delivered within x one-way delays, one line per repetition; 1 transit is push, "
            "3 the long-poll worst case of RFC 6202 §2.2",
            "Latency under network delay",
            _Marks(invalid=invalid),
            ["delivery latency: receive time minus the bus's publish time (HdrHistogram, µs), over the one-way delay"],
        )

    def transits(self, sweep: Sweep) -> None:
        delayed = [r for r in sweep.results if r.scenario.link.one_way_ms > 0]
        if not delayed:
            return
        fig, axes = _new_figure(2)
        marks = _Marks()
        for ax, key, label in ((axes[0], "p50_us", "p50"), (axes[1], "p99_us", "p99")):
            for series, reps in _by_series(delayed).items():
                rows: list[tuple[float | str, float | None, Result]] = []
                for r in reps:
                    v = getattr(r.end_to_end, key)
                    one_way = r.scenario.link.one_way_ms
                    rows.append((one_way, None if v is None else v / 1000.0 / one_way, r))
                _points(ax, rows, series, marks)
            for level, text in MODEL_TRANSITS.items():
                ax.axhline(level, color="black", linestyle=":" if level == 1 else "-.", linewidth=0.9, label=text)
            _log_if_wide(ax, [1.0, *(float(y) for y in ax.get_ylim())], factor=8)
            if ax.get_yscale() == "linear":
                ax.set_ylim(0, None)
            ax.set_xlabel("emulated one-way delay (ms)")
            ax.set_ylabel(f"end-to-end latency {label} in transits (÷ one-way delay)")
            ax.set_title(label, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, marks)
        self.save(
            fig,
            f"transits--{sweep.stem_suffix}",
            f"End-to-end latency in transits versus one-way delay — {sweep.label}",
            "how many one-way trips a delivery costs: push needs 1; long polling up to 3 (RFC 6202 §2.2)",
            "Latency under network delay",
            marks,
            ["polling adds up to its interval on top of the transit: far above the model lines by design"],
        )

    def cpu_vs_load(self) -> None:
        results = [r for r in self.lab if not r.scenario.idle and r.scenario.link.is_loopback]
        results = [r for r in results if r.cpu_us_per_event is not None]
        if not results:
            return
        fig, (ax,) = _new_figure()
        marks = _Marks()
        for series, reps in _by_series(results).items():
            rows = [(r.counters.delivered / r.scenario.duration_s, r.cpu_us_per_event, r) for r in reps]
            rows = [row for row in rows if float(row[0]) > 0]
            _points(ax, rows, series, marks, line=False)
        ax.set_xscale("log")
        _log_if_wide(ax, [v for r in results if (v := r.cpu_us_per_event) is not None])
        ax.set_xlabel("load: events delivered per second, all subscribers (log)")
        ax.set_ylabel("server CPU per delivered event (µs, user + system)")
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax, marks)
        self.save(
            fig,
            "cpu-vs-load",
            "Server CPU per delivered event versus load",
            "every loopback scenario of the run, one point per repetition; the bar is the scenario's median",
            "Server CPU",
            marks,
            ["floor: CPU of the bare asyncio TCP push server, what the machine needs at least"],
        )

    def idle_cost(self) -> None:
        idle = [r for r in self.lab if r.raw["idle"] is not None]
        if not idle:
            return
        fig, axes = _new_figure(2)
        marks = _Marks()
        for series, reps in _by_series(idle).items():
            per_min = []
            rss = []
            for r in reps:
                b = r.raw["idle"]["bytes_per_connection_per_min"]
                per_min.append((r.scenario.subscribers, float(b["up"] + b["down"]), r))
                rss.append((r.scenario.subscribers, float(r.raw["idle"]["rss_per_connection_bytes"]) / 1024, r))
            _points(axes[0], per_min, series, marks)
            _points(axes[1], rss, series, marks)
        for ax, ylabel in (
            (axes[0], "bytes per idle connection per minute, up + down"),
            (axes[1], "server RSS per connection (KiB)"),
        ):
            ax.set_xscale("log")
            ax.set_xlabel("idle connections (log)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax, marks)
        self.save(
            fig,
            "idle-cost",
            "Idle cost per connection (no events published)",
            "long polling re-polls at every hold timeout; WebSocket sends nothing unless pings are on",
            "Idle connections",
            marks,
        )

    def pairs(self) -> None:
        pairs = [
            r
            for r in self.lab
            if r.scenario.burst >= 2 and r.scenario.burst_gap_ms > 0 and r.scenario.link.one_way_ms > 0
        ]
        by_scenario: dict[str, list[Result]] = defaultdict(list)
        for r in pairs:
            by_scenario[r.scenario.name].append(r)
        for name, results in by_scenario.items():
            sc = results[0].scenario
            fig, (ax,) = _new_figure()
            marks = _Marks()
            keys = [("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p999_us"), ("max", "max_us")]
            series_all = _by_series(results)
            width = 0.7 / max(1, len(series_all))
            for i, (series, reps) in enumerate(series_all.items()):
                offset = (i - (len(series_all) - 1) / 2) * width
                rows: list[tuple[float | str, float | None, Result]] = []
                for r in reps:
                    for k, (_, attr) in enumerate(keys):
                        v = getattr(r.end_to_end, attr)
                        rows.append((k, None if v is None else v / 1000 / sc.link.one_way_ms, r))
                _points(ax, rows, series, marks, line=False, xpos=_shift(offset))
            for level, text in MODEL_TRANSITS.items():
                ax.axhline(level, color="black", linestyle=":" if level == 1 else "-.", linewidth=0.9, label=text)
            ax.set_xticks(range(len(keys)), [k for k, _ in keys])
            ax.set_ylabel("end-to-end latency in transits (÷ one-way delay)")
            ax.set_ylim(0, None)
            ax.grid(True, axis="y", alpha=0.3)
            _legend(ax, marks, fontsize=7)
            self.save(
                fig,
                f"pairs--{name}",
                f"Back-to-back pairs under delay — {name}",
                f"events published in pairs {sc.burst_gap_ms:g} ms apart, one-way delay {sc.link.one_way_ms:g} ms: "
                "the second of a pair finds the long-poll client between polls",
                "Latency under network delay",
                marks,
            )

    def throughput_under_delay(self) -> None:
        delayed = [r for r in self.lab if r.scenario.link.one_way_ms > 0 and not r.scenario.idle]
        delayed = [r for r in delayed if r.scenario.burst == 1 and r.counters.delivered > 0]
        if not delayed:
            return
        fig, axes = _new_figure(2)
        marks = _Marks()
        conditions = sorted({(r.scenario.rate_per_subscriber, r.scenario.link.one_way_ms) for r in delayed})
        labels = [f"{rate:g} ev/s\n{ow:g} ms" for rate, ow in conditions]
        longpoll = [r for r in delayed if r.scenario.transport == "longpoll"]
        place = {c: i for i, c in enumerate(conditions)}

        def key(r: Result) -> int:
            return place[(r.scenario.rate_per_subscriber, r.scenario.link.one_way_ms)]

        rows: list[tuple[float | str, float | None, Result]] = []
        for r in longpoll:
            rows.append((key(r), events_per_response(r), r))
        _points(axes[0], rows, "longpoll", marks, line=False)
        model = [max(1.0, rate * 2 * ow / 1000) for rate, ow in conditions]
        axes[0].scatter(
            range(len(conditions)), model, marker="*", color="black", s=50, label="model: rate x round trip"
        )
        axes[0].set_ylabel("events per non-empty long-poll response")
        _log_if_wide(axes[0], [float(y) for _, y, _ in rows if y is not None] + model)
        series_all = _by_series(delayed)
        width = 0.7 / max(1, len(series_all))
        rates: list[float] = []
        for i, (series, reps) in enumerate(series_all.items()):
            offset = (i - (len(series_all) - 1) / 2) * width
            achieved: list[tuple[float | str, float | None, Result]] = [
                (key(r), r.counters.delivered / r.scenario.subscribers / r.scenario.duration_s, r)
                for r in reps
                if r.scenario.layout == "broadcast"
            ]
            rates += [float(y) for _, y, _ in achieved if y is not None]
            _points(axes[1], achieved, series, marks, line=False, xpos=_shift(offset))
        _log_if_wide(axes[1], rates)
        axes[1].scatter(
            range(len(conditions)), [c[0] for c in conditions], marker="*", color="black", s=50, label="published"
        )
        axes[1].set_ylabel("events delivered per subscriber per second")
        for ax in axes:
            ax.set_xticks(range(len(conditions)), labels, fontsize=7)
            ax.set_xlabel("rate per subscriber / one-way delay")
            ax.grid(True, axis="y", alpha=0.3)
            _legend(ax, marks, fontsize=7)
        self.save(
            fig,
            "throughput-under-delay",
            "Throughput under delay: long polling batches what a round trip lets pile up",
            "each long-poll round trip costs 2 x one-way delay; events published meanwhile ride the next response",
            "Latency under network delay",
            marks,
        )

    def peers(self) -> None:
        """Per point of the peers section: server CPU per event and end-to-end p99, a bar per server and transport."""
        for point in peer_points(self.run):
            self.peer_point(point)

    def peer_point(self, point: Point) -> None:
        variants = list(dict.fromkeys(row.variant for row in point.rows))
        series = list(dict.fromkeys(row.series for row in point.rows))
        height = 0.8 / len(series)
        fig = Figure(figsize=(11.0, max(4.6, 2.6 + 0.32 * len(point.rows) + 0.2 * len(variants))), layout="constrained")
        axes = list(fig.subplots(1, 2, sharey=True))
        marks = _Marks()
        invalid_only = withheld = False
        metrics: list[tuple[str, Callable[[Result], float | None]]] = [
            ("server CPU per delivered event (µs)", lambda r: r.cpu_us_per_event),
            ("end-to-end latency p99 (ms)", lambda r: _us_to_ms(r.end_to_end.p99_us)),
        ]
        for ax, (label, metric) in zip(axes, metrics, strict=True):
            values: list[float] = []
            for row in point.rows:
                y = variants.index(row.variant) + (series.index(row.series) - (len(series) - 1) / 2) * height
                reps = [(r, v) for r in row.results if (v := metric(r)) is not None]
                values += [v for _, v in reps]
                valid = [v for r, v in reps if r.valid]
                color = _color(row.series)
                if valid:
                    ax.barh(y, statistics.median(valid), height=height * 0.9, color=color, alpha=0.8, zorder=2)
                elif reps:  # only invalid repetitions: a hollow grey bar, labelled
                    invalid_only = True
                    median = statistics.median(v for _, v in reps)
                    ax.barh(y, median, height=height * 0.9, facecolor="none", edgecolor="#9a9a9a", hatch="//")
                    ax.annotate(
                        "invalid", (median, y), fontsize=6, color="#777777", xytext=(4, -2), textcoords="offset points"
                    )
                else:
                    withheld = True
                    ax.annotate(
                        "withheld", (0, y), fontsize=6, color="#777777", xytext=(2, -2), textcoords="offset points"
                    )
                for r, v in reps:
                    ax.scatter(
                        v,
                        y,
                        s=14,
                        zorder=3,
                        marker=_MARKERS.get(row.series.split(" ")[0], "o"),
                        color="black" if r.valid else "none",
                        edgecolors="black" if r.valid else "#9a9a9a",
                    )
                    marks.invalid |= not r.valid
                    if r.lossy:
                        marks.loss = True
                        ax.scatter(v, y, color="#d62728", marker="x", s=60, linewidths=2, zorder=4)
            _log_if_wide(ax, values, axis="x")
            ax.set_xlabel(label + (", log" if ax.get_xscale() == "log" else ""))
            ax.grid(True, axis="x", which="both", alpha=0.3)
        axes[0].set_yticks(range(len(variants)), [textwrap.fill(v, 30) for v in variants], fontsize=7.5)
        axes[0].invert_yaxis()
        handles: list[Any] = [Patch(color=_color(s), label=s) for s in series]
        handles.append(Line2D([], [], color="black", marker="o", linestyle="", markersize=4, label="one repetition"))
        if marks.invalid:
            handles.append(
                Line2D([], [], color="#9a9a9a", marker="o", markerfacecolor="none", linestyle="", label="invalid run")
            )
        if invalid_only:
            handles.append(Patch(facecolor="none", edgecolor="#9a9a9a", hatch="//", label="invalid runs only"))
        if marks.loss:
            handles.append(Line2D([], [], color="#d62728", marker="x", linestyle="", markeredgewidth=2, label="✗ loss"))
        axes[1].legend(handles=handles, fontsize=7.5, loc="best")
        self.save(
            fig,
            f"peers--{_stem(point.name)}",
            f"The lab and its peers at {point.title}",
            f"server CPU per delivered event and end-to-end p99 per server and transport (sweep {point.name}); "
            "bars are medians of the valid repetitions, dots each repetition",
            "Peers",
            marks,
            [
                *(
                    ["withheld: too few latency samples for a p99, or too little server CPU in the window to divide"]
                    if withheld
                    else []
                ),
                "latency is end-to-end for every server, from the publisher's intended send time "
                "(Flask-SocketIO and Nchan do not stamp events)",
            ],
        )


def _stem(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "_", name.lower())


def write_charts(run: Run, out_dir: Path) -> list[Chart]:
    """Draw every chart the run's results support into ``out_dir`` (PNG and SVG); return them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    w = _Writer(run, out_dir)
    w.hero()
    w.spectra()
    for sweep in find_sweeps(run.results):
        if sweep.axis == "one_way_ms":
            w.transits(sweep)
        elif sweep.axis == "rate":
            w.latency_vs(sweep, "publish rate (events/s, log)")
            w.requests_per_event(sweep)
        elif sweep.axis == "subscribers":
            w.latency_vs(sweep, "subscribers (log)")
        elif sweep.axis == "payload_bytes":
            w.bytes_vs_payload(sweep)
        elif sweep.axis == "runtime":
            w.runtimes(sweep)
        else:
            w.latency_vs(sweep, sweep.axis.replace("_", " "), logx=False)
    w.bytes_decomposed()
    w.cpu_vs_load()
    w.idle_cost()
    w.pairs()
    w.throughput_under_delay()
    w.peers()
    return w.charts
