"""Sans-I/O delivery accounting: cursor, gaps, loss, duplicates and reordering.

Every subscriber (long poll, interval polling, WebSocket, the benchmark
fleet) feeds what it receives through one :class:`Tracker`, so "missing",
"duplicate" and "out of order" mean the same thing for every transport. The
tracker never touches a socket or a clock; it only sees sequence numbers.

Definitions (``cursor`` is the highest ``seq`` accepted so far, 0 at first):

- ``event(seq)``:

  - ``seq == cursor + 1``: in order. Accepted; ``delivered += 1``.
  - ``seq > cursor + 1`` with no gap notice: accepted, ``delivered += 1``;
    the skipped ``cursor + 1 .. seq - 1`` become *holes*, provisionally
    missing. A jump alone is not a reordering: if the skipped events never
    come, they are loss, counted once, in ``missing``.
  - ``seq <= cursor`` and ``seq`` is a hole: a late arrival, i.e. an event
    received after one with a higher ``seq`` (RFC 4737's definition of a
    reordered packet). Accepted, ``delivered += 1`` and ``out_of_order += 1``;
    the hole is filled.
  - ``seq <= cursor`` otherwise: ``duplicate += 1``, not accepted.

  ``event`` returns ``True`` for an accepted event, which is then handed to
  the application; a duplicate never is.
- ``gap(first, last)``: the server says events ``first ..= last`` are gone
  from its history (docs/protocol.md). ``gap_lost += last - first + 1``,
  ``gaps += 1``, ``cursor = max(cursor, last)``. Loss announced by a gap is
  counted in ``gap_lost``, never also in ``missing``.
- ``reset(after, last_seq)``: the channel is behind the cursor (for example
  the memory bus restarted), so its sequence space started over.
  ``resets += 1`` and the cursor goes back to 0; holes of the old epoch can
  no longer be filled and count as missing.
- ``finish(last_published)``: end of a run. ``missing`` = holes (of every
  epoch) + ``last_published - cursor`` when positive (events published but
  never received nor announced by a gap). ``None`` when the last published
  ``seq`` is unknown: only holes count.

A run is clean when ``duplicate == out_of_order == missing == gap_lost == 0``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

__all__ = ["Counters", "Tracker"]


@dataclass(slots=True)
class Counters:
    """What one subscriber (or, merged, a fleet) received. All counts of events."""

    delivered: int = 0
    """Events accepted and handed to the application, each ``seq`` once per epoch."""
    duplicate: int = 0
    """Events received again after being accepted (dropped)."""
    out_of_order: int = 0
    """Events accepted after a later ``seq`` was (the jump and each late arrival)."""
    missing: int = 0
    """Events never received nor announced by a gap (set by :meth:`Tracker.finish`)."""
    gap_lost: int = 0
    """Events the server announced as lost by gap notices."""
    gaps: int = 0
    """Gap notices received."""
    resets: int = 0
    """Reset notices received."""

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for raw results and JSON)."""
        return asdict(self)

    def merge(self, other: Counters) -> Counters:
        """A new :class:`Counters` holding the sum of both (fleet totals)."""
        return Counters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @classmethod
    def total(cls, many: Iterable[Counters]) -> Counters:
        """The sum of any number of counters."""
        result = cls()
        for c in many:
            result = result.merge(c)
        return result


class Tracker:
    """Sans-I/O accounting of one subscriber's stream (module docstring: the rules)."""

    __slots__ = ("_holes", "_old_missing", "counters", "cursor")

    def __init__(self, after: int = 0) -> None:
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        self.cursor = after
        """Highest ``seq`` accepted (or the starting cursor): where to resume."""
        self.counters = Counters()
        self._holes: set[int] = set()
        """Skipped ``seq`` of this epoch that may still arrive."""
        self._old_missing = 0
        """Holes left behind by resets."""

    @property
    def holes(self) -> int:
        """How many skipped ``seq`` of this epoch have not arrived (yet)."""
        return len(self._holes)

    def event(self, seq: int) -> bool:
        """Account one received event; ``True`` if accepted, ``False`` for a duplicate."""
        cursor = self.cursor
        c = self.counters
        if seq == cursor + 1:
            self.cursor = seq
        elif seq > cursor:
            self._holes.update(range(cursor + 1, seq))
            self.cursor = seq
        elif seq in self._holes:
            self._holes.discard(seq)
            c.out_of_order += 1
        else:
            c.duplicate += 1
            return False
        c.delivered += 1
        return True

    def gap(self, first: int, last: int) -> None:
        """Account a gap notice: ``first ..= last`` will never arrive."""
        if last < first:
            raise ValueError(f"a gap needs first <= last, got {first}..{last}")
        c = self.counters
        c.gap_lost += last - first + 1
        c.gaps += 1
        if self._holes:  # a hole the server now calls lost is counted once, as gap_lost
            self._holes = {s for s in self._holes if not first <= s <= last}
        self.cursor = max(self.cursor, last)

    def reset(self, after: int, last_seq: int) -> None:
        """Account a reset notice: the channel's sequence space started over.

        ``after`` (the cursor the server was asked for) and ``last_seq`` (the
        channel's newest ``seq``) are part of the notice; the tracker only
        needs to know that it happened.
        """
        self.counters.resets += 1
        self._old_missing += len(self._holes)
        self._holes = set()
        self.cursor = 0

    def finish(self, last_published: int | None = None) -> Counters:
        """Settle ``missing`` against the last ``seq`` published; returns the counters.

        May be called more than once (it recomputes ``missing`` each time).
        """
        behind = 0 if last_published is None else max(0, last_published - self.cursor)
        self.counters.missing = self._old_missing + len(self._holes) + behind
        return self.counters
