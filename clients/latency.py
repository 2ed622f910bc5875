"""Latency histograms: a thin wrapper of HdrHistogram, in microseconds.

Values are recorded in **microseconds** from 1 us to 1 hour with 3
significant digits (HdrHistogram keeps every value within 0.1 % of what was
recorded). A value outside that range is clamped into it, never refused, and
counted in :attr:`LatencyHistogram.clamped` so a report can say so.

Histograms of many subscribers are merged exactly (bucket counts add up), and
:meth:`LatencyHistogram.encode` uses HdrHistogram's own compressed, base64
encoding, so raw results can carry a whole distribution, not just a few
percentiles.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

__all__ = ["HIGHEST_US", "LOWEST_US", "SIGNIFICANT_FIGURES", "LatencyHistogram"]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
"""One hour, in microseconds."""
SIGNIFICANT_FIGURES = 3


class LatencyHistogram:
    """A distribution of latencies in microseconds (HdrHistogram underneath)."""

    __slots__ = ("_h", "clamped")

    def __init__(self, histogram: HdrHistogram | None = None) -> None:
        self._h = histogram if histogram is not None else HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self.clamped = 0
        """Values recorded out of range and clamped into it (not part of the encoding)."""

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return int(self._h.get_total_count())

    def record_us(self, value: float) -> None:
        """Record one latency in microseconds; out-of-range values are clamped."""
        v = round(value)
        if v < LOWEST_US:
            v = LOWEST_US
            self.clamped += 1
        elif v > HIGHEST_US:
            v = HIGHEST_US
            self.clamped += 1
        self._h.record_value(v)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add every value of ``other`` into this histogram; returns ``self``.

        hdrh 0.10's ``add`` takes the minimum of both sides' ``get_min_value()``,
        which is 0 for an empty histogram, so merging with an empty one would
        report ``min_us`` 0; the true minimum is restored here.
        """
        mins = [h._h.min_value for h in (self, other) if h.count]
        self._h.add(other._h)
        if mins:
            self._h.min_value = min(mins)
        self.clamped += other.clamped
        return self

    def encode(self) -> str:
        """HdrHistogram's compressed V2 encoding, base64, as text."""
        blob = self._h.encode()
        return blob.decode("ascii") if isinstance(blob, bytes) else str(blob)

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """The histogram :meth:`encode` produced (``clamped`` is not encoded: 0)."""
        return cls(HdrHistogram.decode(text.encode("ascii")))

    def percentile_us(self, percentile: float) -> int:
        """The value at ``percentile`` (0..100), in microseconds."""
        return int(self._h.get_value_at_percentile(percentile))

    def summary(self) -> dict[str, float | int | None]:
        """Count, min, mean, p50, p90, p99, p99.9 and max in microseconds.

        An empty histogram has ``count`` 0 and ``None`` everywhere else: no
        number is made up for a distribution that has no values.
        """
        h = self._h
        count = int(h.get_total_count())
        if count == 0:
            keys = ("min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")
            return {"count": 0, **dict.fromkeys(keys)}
        return {
            "count": count,
            "min_us": int(h.get_min_value()),
            "mean_us": float(h.get_mean_value()),
            "p50_us": int(h.get_value_at_percentile(50)),
            "p90_us": int(h.get_value_at_percentile(90)),
            "p99_us": int(h.get_value_at_percentile(99)),
            "p999_us": int(h.get_value_at_percentile(99.9)),
            "max_us": int(h.get_max_value()),
        }
