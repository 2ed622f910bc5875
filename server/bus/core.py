"""Sans-I/O core of the event bus: events, per-channel history, cursors.

Nothing here blocks, sleeps, locks or touches a socket. The memory and Redis
buses wrap this core with their own locking and waking; the long-poll and
WebSocket routes turn its :class:`Batch` into bytes. The rules of
``docs/protocol.md`` (contiguous ``seq``, bounded history, gap and reset
notices, the batch cap) are implemented here and nowhere else.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHANNEL_RE",
    "MAX_DEPTH",
    "MAX_NUMBER",
    "Batch",
    "ChannelLog",
    "Event",
    "Gap",
    "InvalidPayload",
    "Reset",
    "Window",
    "encode_event",
    "event_parts",
    "loads_message",
    "nesting_depth",
    "parse_payload",
    "valid_channel",
]

CHANNEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Valid channel names (docs/protocol.md, "Channels")."""


def valid_channel(name: str) -> bool:
    """Return whether ``name`` is a valid channel name."""
    return CHANNEL_RE.fullmatch(name) is not None


MAX_DEPTH = 128
"""Deepest nesting of arrays and objects a payload may have (``[[1]]`` is 2 deep).

Python's parser recurses once per level and fails past about 1,000 with a
``RecursionError``; a documented limit well below that keeps the answer a
``400``, and the payload readable by any client's parser.
"""

MAX_NUMBER = 4300
"""Longest JSON number literal a payload may hold, in characters (sign, digits, point, exponent).

Python refuses to convert integers of more than 4,300 digits
(``sys.int_max_str_digits``), and so would any Python subscriber.
"""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
"""A JSON string in valid JSON text (what the depth scan skips)."""
_JSON_WHITESPACE = " \t\n\r"
"""The white space JSON allows around a value (RFC 8259 section 2)."""
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class InvalidPayload(ValueError):
    """A publish body that is not a single JSON value, or one beyond the limits.

    :attr:`error` names which (docs/protocol.md, "Errors"): ``bad_json``,
    ``too_deep`` (more than :data:`MAX_DEPTH` levels of nesting) or
    ``number_too_long`` (a number literal of more than :data:`MAX_NUMBER`
    characters).
    """

    def __init__(self, message: str, error: str = "bad_json") -> None:
        super().__init__(message)
        self.error = error


def _reject_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not JSON")


def _number_too_long(literal: str) -> InvalidPayload:
    return InvalidPayload(f"a number of {len(literal)} characters: at most {MAX_NUMBER} are allowed", "number_too_long")


def _check_number(literal: str) -> int:
    """``parse_int``/``parse_float`` of a validation-only parse: checks the length, builds nothing."""
    if len(literal) > MAX_NUMBER:
        raise _number_too_long(literal)
    return 0


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER:
        raise _number_too_long(literal)
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER:
        raise _number_too_long(literal)
    return float(literal)


def nesting_depth(text: bytes) -> int:
    """How deep arrays and objects nest in JSON ``text`` (0 for a scalar).

    Exact for valid JSON (brackets inside strings do not count); C-speed
    scans only, no Python loop per character.
    """
    brackets = _STRING.sub(b"", text).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    # Openers become 2, closers 0: the depth after n brackets is (their sum) - n.
    levels = brackets.translate(_LEVELS)
    depth: int = max(map(operator.sub, itertools.accumulate(levels), itertools.count(1)))
    return depth


_LEVELS = bytes(2 if b in b"[{" else 0 for b in range(256))


def _check_depth(text: bytes, envelope: int = 0) -> None:
    """Refuse a payload nested deeper than :data:`MAX_DEPTH`, inside ``envelope`` levels of message."""
    limit = MAX_DEPTH + envelope
    # Only a text with more brackets than the limit can be too deep: count first.
    if text.count(b"[") + text.count(b"{") > limit and (depth := nesting_depth(text)) > limit:
        raise InvalidPayload(
            f"a payload nested {depth - envelope} levels deep: at most {MAX_DEPTH} are allowed", "too_deep"
        )


def parse_payload(body: bytes) -> bytes:
    """Validate a publish body and return the JSON text to store, stripped.

    The payload is kept as the publisher wrote it ("untouched"): it is parsed
    only to prove it is one JSON value within the limits (:data:`MAX_DEPTH`,
    :data:`MAX_NUMBER`), then its own bytes are reused, so no
    re-serialization cost and no change of number formatting.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"body is not UTF-8: {exc.reason}") from None
    text = text.strip(_JSON_WHITESPACE)  # str.strip() would also take U+0085, U+2028...: not JSON's
    if not text:
        raise InvalidPayload("body is empty: send one JSON value")
    stored = text.encode("utf-8")
    _check_depth(stored)
    try:
        json.loads(text, parse_constant=_reject_constant, parse_int=_check_number, parse_float=_check_number)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"body is not JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:  # pragma: no cover - _check_depth comes first
        raise InvalidPayload(f"nested too deep: at most {MAX_DEPTH} levels are allowed", "too_deep") from None
    return stored


def loads_message(text: str) -> Any:
    """Parse a client's WebSocket message (a JSON object that may carry a payload one level down).

    The payload limits apply to it: :data:`MAX_NUMBER`, and
    :data:`MAX_DEPTH` plus the message's own level. Raises
    :class:`InvalidPayload` naming the error.
    """
    _check_depth(text.encode("utf-8", "surrogatepass"), envelope=1)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"{exc.msg} at char {exc.pos}") from None
    except RecursionError:  # pragma: no cover - _check_depth comes first
        raise InvalidPayload(f"nested too deep: at most {MAX_DEPTH} levels are allowed", "too_deep") from None


def encode_event(channel: str, seq: int, ts: int, data: bytes) -> bytes:
    """Serialize an event: the one and only serialization it ever gets.

    ``channel`` is a valid name (no characters that need escaping) and
    ``data`` is already JSON text, so plain concatenation is exact.
    """
    return b'{"channel":"%s","seq":%d,"ts":%d,"data":%s}' % (
        channel.encode("ascii"),
        seq,
        ts,
        data,
    )


def event_parts(channel: str, data: bytes) -> tuple[bytes, bytes, bytes]:
    """The serialization of :func:`encode_event` split around ``seq`` and ``ts``.

    ``head + b"%d" % seq + mid + b"%d" % ts + tail == encode_event(channel, seq, ts, data)``.
    For a bus that assigns ``seq`` and ``ts`` elsewhere (the Redis bus does it
    in a server-side script) and must still store the event's one
    serialization; the format stays defined here only.
    """
    return b'{"channel":"%s","seq":' % channel.encode("ascii"), b',"ts":', b',"data":%s}' % data


@dataclass(frozen=True, slots=True)
class Event:
    """One published event, with its wire bytes computed once.

    Only the wire bytes are kept: the payload is a slice of them, cut when
    asked for (:attr:`data`). Keeping it as a second ``bytes`` doubled the
    memory of every retained event.
    """

    channel: str
    seq: int
    """Contiguous per channel, from 1."""
    ts: int
    """Server publish time, wall clock, ns since the epoch."""
    wire: bytes
    """The event object serialized (docs/protocol.md, "Events")."""
    data_start: int
    """Where the payload starts in :attr:`wire` (it ends before the closing brace)."""

    @property
    def data(self) -> bytes:
        """The payload's JSON text (a copy cut from :attr:`wire`)."""
        return self.wire[self.data_start : -1]

    @classmethod
    def create(cls, channel: str, seq: int, ts: int, data: bytes) -> Event:
        wire = encode_event(channel, seq, ts, data)
        return cls(channel, seq, ts, wire, len(wire) - len(data) - 1)

    @classmethod
    def from_wire(cls, wire: bytes) -> Event:
        """Rebuild an event from its serialization (used by the Redis bus)."""
        obj = json.loads(wire)
        # Keep the exact original bytes of data: they are where the wire says.
        prefix = b'"data":'
        return cls(obj["channel"], obj["seq"], obj["ts"], wire, wire.index(prefix) + len(prefix))


@dataclass(frozen=True, slots=True)
class Gap:
    """Events ``first..=last`` are gone from history: the subscriber missed them."""

    first: int
    last: int

    def as_dict(self) -> dict[str, int]:
        return {"first": self.first, "last": self.last}


@dataclass(frozen=True, slots=True)
class Reset:
    """The cursor ``after`` is ahead of the channel, whose newest seq is ``last_seq``."""

    after: int
    last_seq: int

    def as_dict(self) -> dict[str, int]:
        return {"after": self.after, "last_seq": self.last_seq}


@dataclass(frozen=True, slots=True)
class Batch:
    """What a subscriber at a given cursor receives next.

    ``next`` is the cursor to use for the following read: the last event's
    seq, or the input cursor (``0`` after a reset) when ``events`` is empty.
    """

    events: tuple[Event, ...]
    next: int
    more: bool = False
    gap: Gap | None = None
    reset: Reset | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """The cursor rules of docs/protocol.md, for a history ``first..=last``.

    Sans-I/O: given a subscriber's cursor and the bounds of what a channel
    retains, says from which ``seq`` to deliver (every event with
    ``seq > start``) and which notice is owed. :class:`ChannelLog` applies it
    to its deque; the Redis bus to a range read from Redis.
    """

    start: int
    """Deliver the events with ``seq > start``."""
    gap: Gap | None = None
    reset: Reset | None = None

    @classmethod
    def resolve(cls, after: int, first: int, last: int) -> Window:
        """Apply the rules to cursor ``after``; ``first == last + 1`` when nothing is retained."""
        if after < 0:
            raise ValueError("cursor must be >= 0")
        gap = reset = None
        if after > last:
            reset = Reset(after, last)
            after = 0
        if after < first - 1:
            gap = Gap(after + 1, first - 1)
            after = first - 1
        return cls(after, gap, reset)

    def batch(self, events: tuple[Event, ...], more: bool) -> Batch:
        """The batch of ``events`` (the first ones after :attr:`start`, in order)."""
        return Batch(events, events[-1].seq if events else self.start, more, self.gap, self.reset)


class ChannelLog:
    """The bounded history of one channel, and the cursor rules over it.

    Bounded twice: at most ``history`` events and at most ``max_bytes`` bytes
    of stored events (their wire bytes), oldest dropped first; the newest
    event is always kept, whatever its size. Dropped events become gap
    notices, as the protocol says. :meth:`drop_history` forgets every event
    but keeps ``last_seq``, so the channel's ``seq`` goes on where it was and
    a subscriber behind it is told what it missed (a gap), not misled.

    Sans-I/O and not thread-safe: callers serialize access.
    """

    __slots__ = ("_events", "last_seq", "max_bytes", "max_events", "name", "nbytes")

    def __init__(self, name: str, history: int, max_bytes: int | None = None, last_seq: int = 0) -> None:
        if history < 1:
            raise ValueError("history must be >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.name = name
        self.max_events = history
        self.max_bytes = max_bytes
        self.last_seq = last_seq
        """The newest seq assigned (0 before the first publish)."""
        self.nbytes = 0
        """Wire bytes of the retained events."""
        self._events: deque[Event] = deque()

    def __len__(self) -> int:
        return len(self._events)

    @property
    def first_seq(self) -> int:
        """The oldest retained seq (``last_seq + 1`` when nothing is retained)."""
        return self.last_seq - len(self._events) + 1

    def append(self, data: bytes, ts: int) -> Event:
        """Assign the next seq to ``data`` and retain the event."""
        event = Event.create(self.name, self.last_seq + 1, ts, data)
        self.add(event)
        return event

    def add(self, event: Event) -> None:
        """Retain an event whose seq was assigned elsewhere (the Redis bus).

        It must be the next seq; older or duplicate events are ignored.
        """
        if event.seq <= self.last_seq:
            return
        if event.seq != self.last_seq + 1:
            # A hole: what we held is not contiguous with it any more.
            self.drop_history()
        self._events.append(event)
        self.nbytes += len(event.wire)
        self.last_seq = event.seq
        events = self._events
        while len(events) > self.max_events or (
            self.max_bytes is not None and self.nbytes > self.max_bytes and len(events) > 1
        ):
            self.nbytes -= len(events.popleft().wire)

    def drop_history(self) -> None:
        """Forget every retained event; ``last_seq`` stays."""
        self._events.clear()
        self.nbytes = 0

    def read(self, after: int, limit: int) -> Batch:
        """Events with ``seq > after``, at most ``limit``, with gap/reset rules."""
        first = self.first_seq
        if first - 1 <= after <= self.last_seq:  # no notice owed: Window.resolve's answer, without building it
            start = after - first + 1
            stop = min(len(self._events), start + limit)
            events = tuple(self._events[i] for i in range(start, stop))
            return Batch(events, events[-1].seq if events else after, stop < len(self._events))
        window = Window.resolve(after, first, self.last_seq)
        start = window.start - first + 1  # index of seq start+1 in the deque
        stop = min(len(self._events), start + limit)
        events = tuple(self._events[i] for i in range(start, stop))
        return window.batch(events, stop < len(self._events))
