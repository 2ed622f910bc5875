"""Sans-I/O parser of ``text/event-stream`` (Server-Sent Events), after the WHATWG HTML standard.

Bytes in (:meth:`EventStreamParser.feed`, chunks split anywhere), dispatched
events out; no socket, no clock. The clients' httpx subscriber
(:mod:`clients.sse`) and the benchmark fleet's lean one
(``bench.agents.sse``) are its two I/O frontends.

The rules implemented (HTML, "Server-sent events", section 9.2.6 "Interpreting
an event stream"):

- the stream is UTF-8 (invalid bytes become U+FFFD); one leading BOM is dropped;
- a line ends with CRLF, LF or CR (a CR at the end of one chunk and an LF at
  the start of the next are one line end);
- an empty line dispatches the event being built, if its data is not empty,
  and always starts a new one (its ``event`` name is forgotten);
- a line starting with ``:`` is a comment (a heartbeat): ignored, counted;
- ``field:value`` (one space after the colon dropped) or ``field`` alone (an
  empty value): ``data`` appends the value and an LF to the data (the last LF
  is dropped at dispatch), ``event`` sets the event's name (default
  ``message``), ``id`` sets the last event ID unless it holds a NUL (it is not
  reset by a dispatch: every later event carries it), ``retry`` sets the
  reconnection time if it is ASCII digits only; other fields are ignored;
- an event still being built when the stream ends is never dispatched.

Only LF, CR and the field names are ASCII, so lines are split on bytes and
each line decoded once: a multi-byte character can never straddle a line end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_LINE", "EventStreamError", "EventStreamParser", "ServerSentEvent"]

MAX_LINE = 64 << 20
"""Longest line (bytes without its end) a parser accepts by default: beyond, :class:`EventStreamError`."""

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventStreamError(ValueError):
    """The stream cannot be parsed within the parser's limits (a line longer than ``max_line``)."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event."""

    event: str
    """Its type: the ``event`` field, ``message`` without one."""
    data: str
    """Its ``data`` lines joined with LF."""
    id: str
    """The last event ID when it was dispatched (``""``: none was ever set)."""


class EventStreamParser:
    """Incremental ``text/event-stream`` parser: :meth:`feed` bytes, get the events they complete.

    Sans-I/O: holds the unterminated tail of the input and the event being built, nothing else.
    """

    __slots__ = ("_bom_done", "_data", "_event", "_skip_lf", "_tail", "comments", "last_event_id", "max_line", "retry")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.last_event_id = ""
        """The last event ID buffer (what a reconnecting ``EventSource`` sends as ``Last-Event-ID``)."""
        self.retry: int | None = None
        """The reconnection time the stream set, ms (``None``: never set)."""
        self.comments = 0
        """Comment lines seen (the lab server's heartbeats among them)."""
        self._tail = b""
        """Input after the last line end."""
        self._skip_lf = False
        """The input so far ended with a CR: an LF next is the rest of that line end."""
        self._bom_done = False
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Parse ``data`` (the next bytes of the stream); return the events it completes, in order."""
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 0x0A:
                data = data[1:]
        buf = self._tail + data if self._tail else data
        if not self._bom_done:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._tail = buf
                return []
            self._bom_done = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        events: list[ServerSentEvent] = []
        if b"\r" not in buf:
            lines = buf.split(b"\n")
            self._tail = lines.pop()
            for line in lines:
                self._line(line, events)
        else:
            start = 0
            for match in _LINE_END.finditer(buf):
                self._line(buf[start : match.start()], events)
                start = match.end()
            self._tail = buf[start:]
            if start == len(buf) and buf[-1] == 0x0D:  # a CR is the input's last byte: its LF may come next
                self._skip_lf = True
        if len(self._tail) > self.max_line:
            raise EventStreamError(f"a line longer than {self.max_line} bytes")
        return events

    def _line(self, line: bytes, events: list[ServerSentEvent]) -> None:
        if not line:
            if self._data:
                data = b"\n".join(self._data).decode("utf-8", "replace")
                events.append(ServerSentEvent(self._event or "message", data, self.last_event_id))
                self._data = []
            self._event = None
            return
        if line[0] == 0x3A:  # ":"
            self.comments += 1
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():  # bytes.isdigit(): ASCII digits only
            self.retry = int(value)
