"""The link emulator and byte meter: a user-space asyncio TCP relay between the clients and the server.

Benchmark infrastructure layer. On loopback a network transit takes microseconds, so the lab puts this relay
between every client and the server (like Toxiproxy; the kernel's netem needs root and is unavailable). The
relay delays what it forwards as a link would, and counts the bytes it forwards, exactly, per connection and
per direction. The benchmark runs it in its own process (:class:`RelayProcess`), so its CPU is neither the
clients' nor the server's, and measures its own cost once per run (:func:`measure_overhead`).

Layers, from the inside out:

- :class:`Link` and :class:`LinkSchedule`: the sans-I/O delay model. A chunk read from one side at time
  ``arrival`` is released to the other side at
  ``release = max(previous release, serialized + one_way + jitter)``, where ``serialized`` is ``arrival`` on
  an unlimited link, and otherwise the time the link finishes serializing the chunk at ``bandwidth_kbps``
  (one queue per direction per connection). The ``max`` keeps the order: nothing is ever reordered.
- :class:`DirectionMeter`: sans-I/O byte accounting for one direction, including the first HTTP header block
  (up to and including the first ``b"\\r\\n\\r\\n"``: a WebSocket Upgrade request or its ``101`` response).
- :class:`Relay`: the asyncio relay (protocols and timers) that applies both to real sockets.
- ``python -m bench.relay`` and :class:`RelayProcess`: the relay as a process, controlled over stdin (one
  command a line: ``snapshot``, ``snapshot rows``, ``quit``) and answering with JSON lines on stdout.

What it does not emulate (TCP acknowledgements, congestion control, loss, per-packet timing) is written down
in docs/link-emulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import random
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import psutil

__all__ = [
    "DirectionMeter",
    "Link",
    "LinkError",
    "LinkSchedule",
    "Relay",
    "RelayProcess",
    "main",
    "measure_overhead",
]

READ_SIZE = 65536
"""Largest chunk read from a socket at once on an unlimited link."""
CAPPED_READ_SIZE = 4096
"""Largest chunk read on a bandwidth-capped link, so a big write is released progressively, not in one lump."""
MAX_QUEUED_BYTES = 8 * 1024 * 1024
"""Bytes one direction may hold in its delay line before the relay stops reading that side (back-pressure)."""
HEAD_LIMIT = 65536
"""A first header block not ended within this many bytes is not HTTP: the direction has no header block."""
ROOT = Path(__file__).resolve().parent.parent


class LinkError(ValueError):
    """A link description that is not valid; the message names the field."""


@dataclass(frozen=True, slots=True)
class Link:
    """The emulated link, the same in both directions: delay, jitter and bandwidth.

    ``jitter_ms`` draws each chunk's delay uniformly from ``one_way_ms +- jitter_ms`` (clipped at 0), as
    netem does without a distribution table; release times never decrease, so jitter delays but never
    reorders. ``seed`` makes the jitter of every connection and direction reproducible.
    """

    one_way_ms: float = 0.0
    """Propagation delay of each direction, in milliseconds."""
    jitter_ms: float = 0.0
    """Half-width of the uniform delay variation, in milliseconds."""
    bandwidth_kbps: int = 0
    """Serialization rate of each direction in kilobits (1000 bits) per second; 0: unlimited."""
    seed: int = 0
    """Seed of the jitter generators."""

    def __post_init__(self) -> None:
        for name in ("one_way_ms", "jitter_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LinkError(f"link.{name} must be a number of milliseconds, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise LinkError(f"link.{name} must be finite and >= 0, not {value!r}")
        for name in ("bandwidth_kbps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LinkError(f"link.{name} must be an integer, not {value!r}")
        if self.bandwidth_kbps < 0:
            raise LinkError(f"link.bandwidth_kbps must be >= 0 (0: unlimited), not {self.bandwidth_kbps!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        """Parse ``{one_way_ms = 50, jitter_ms = 0, bandwidth_kbps = 0, seed = 0}``; missing fields default."""
        if not isinstance(data, Mapping):
            raise LinkError(f"link must be a table of fields, not {data!r}")
        known = {"one_way_ms", "jitter_ms", "bandwidth_kbps", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinkError(
                f"link: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @property
    def is_transparent(self) -> bool:
        """True when the link adds no delay and no bandwidth limit."""
        return self.one_way_ms == 0 and self.jitter_ms == 0 and self.bandwidth_kbps == 0


class LinkSchedule:
    """Sans-I/O release-time model of one direction of one connection. Times are seconds on any clock.

    ``release(arrival, size)`` returns when a chunk of ``size`` bytes read at ``arrival`` reaches the other
    side: the link serializes chunks one after the other at the link's rate (a FIFO queue), each then takes
    ``one_way + jitter`` to propagate, and a chunk is never released before the one read before it.
    """

    def __init__(self, link: Link, rng: random.Random | None = None) -> None:
        self.link = link
        self._rng = rng or random.Random(link.seed)
        self._link_free = -math.inf
        """When the link finishes serializing what it was given so far."""
        self._last_release = -math.inf

    def delay(self) -> float:
        """One propagation delay sample in seconds: ``one_way +- jitter``, uniform, clipped at 0."""
        ms = self.link.one_way_ms
        if self.link.jitter_ms:
            ms += self._rng.uniform(-self.link.jitter_ms, self.link.jitter_ms)
        return max(ms, 0.0) / 1000.0

    def serialized(self, arrival: float, size: int) -> float:
        """When the link has finished putting ``size`` bytes read at ``arrival`` on the wire."""
        if not self.link.bandwidth_kbps:
            return arrival
        start = max(arrival, self._link_free)
        self._link_free = start + size * 8 / (self.link.bandwidth_kbps * 1000.0)
        return self._link_free

    def release(self, arrival: float, size: int) -> float:
        """When a chunk of ``size`` bytes read at ``arrival`` is handed to the other side."""
        at = max(self._last_release, self.serialized(arrival, size) + self.delay())
        self._last_release = at
        return at


HeadState = Literal["pending", "complete", "none"]


@dataclass(slots=True)
class DirectionMeter:
    """Sans-I/O byte accounting for one direction of one connection.

    ``nbytes`` counts what the relay read from the sending side, ``delivered`` what it wrote to the receiving
    side (they are equal once the direction is drained). ``head_bytes`` is the length of the first HTTP
    header block, up to and including the first ``b"\\r\\n\\r\\n"``, once that block is complete; 0 before,
    and 0 for a direction whose first ``HEAD_LIMIT`` bytes hold no such terminator (``head`` is ``"none"``).
    """

    nbytes: int = 0
    delivered: int = 0
    chunks: int = 0
    head_bytes: int = 0
    head: HeadState = "pending"
    sample_limit: int = 0
    """Keep this many first bytes in :attr:`sample` (0: keep none), for captures."""
    sample: bytearray = field(default_factory=bytearray)
    _tail: bytes = b""

    def observe(self, data: bytes) -> None:
        """Count a chunk read from the sending side."""
        if len(self.sample) < self.sample_limit:
            self.sample += data[: self.sample_limit - len(self.sample)]
        before = self.nbytes
        self.nbytes += len(data)
        self.chunks += 1
        if self.head != "pending":
            return
        window = self._tail + data
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            self.head_bytes = before - len(self._tail) + end + 4
            self.head = "complete"
            self._tail = b""
        elif self.nbytes >= HEAD_LIMIT:
            self.head = "none"
            self._tail = b""
        else:
            self._tail = window[-3:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.nbytes,
            "delivered": self.delivered,
            "chunks": self.chunks,
            "head_bytes": self.head_bytes,
            "head": self.head,
        }


@dataclass(slots=True)
class _Connection:
    """Accounting of one relayed connection: ``up`` is client to upstream, ``down`` upstream to client."""

    id: int
    peer: str
    opened: float
    """Wall clock (``time.time()``) when the client connected."""
    closed: float | None = None
    up: DirectionMeter = field(default_factory=DirectionMeter)
    down: DirectionMeter = field(default_factory=DirectionMeter)
    upstream_error: str | None = None
    reset: bool = False
    """A side reset the connection (or a write to it failed)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "opened": self.opened,
            "closed": self.closed,
            "up": self.up.as_dict(),
            "down": self.down.as_dict(),
            "upstream_error": self.upstream_error,
            "reset": self.reset,
        }


class _Line:
    """One direction of one relayed connection: a delay line from a source transport to a sink transport.

    I/O layer over :class:`LinkSchedule` and :class:`DirectionMeter`, driven by protocol callbacks and one
    timer (no task per chunk). A chunk due now with nothing ahead of it is written at once; others wait in a
    FIFO until their release time. The source stops being read while the sink's transport buffer is full
    (``pause_writing``) or the line holds more than ``MAX_QUEUED_BYTES``: back-pressure reaches the sender
    through TCP. ``None`` in the FIFO is the end of the stream, which travels the link like data.
    """

    def __init__(self, session: _Session, schedule: LinkSchedule, meter: DirectionMeter) -> None:
        self.session = session
        self.loop = session.loop
        self.schedule = schedule
        self.meter = meter
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.fifo: deque[tuple[float, bytes | None]] = deque()
        self.queued = 0
        """Bytes in the FIFO."""
        self.timer: asyncio.TimerHandle | None = None
        self.sink_full = False
        """The sink's transport asked us to stop writing (its buffer is above the high-water mark)."""
        self.line_full = False
        self.ended = False
        """The end of the stream entered the line."""
        self.end_reset = False
        """The source ended with a reset (or died), not a clean EOF."""
        self.done = False
        """The end of the stream was passed on to the sink."""

    def push(self, data: bytes) -> None:
        """A chunk arrived from the source."""
        self.meter.observe(data)
        at = self.schedule.release(self.loop.time(), len(data))
        if not self.fifo and at <= self.loop.time():
            self._write(data)
            return
        self.fifo.append((at, data))
        self.queued += len(data)
        if self.queued > MAX_QUEUED_BYTES:
            self.line_full = True
            self.update_reading()
        self._arm()

    def push_end(self, reset: bool) -> None:
        """The source sent EOF (``reset`` False) or is gone (True)."""
        if self.ended:
            return
        self.ended, self.end_reset = True, reset
        self.fifo.append((self.schedule.release(self.loop.time(), 0), None))
        self._arm()

    def _arm(self) -> None:
        if self.timer is None and self.fifo:
            self.timer = self.loop.call_at(self.fifo[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.fifo and self.fifo[0][0] <= now:
            _, data = self.fifo.popleft()
            if data is None:
                self._finish()
                return
            self.queued -= len(data)
            self._write(data)
        if self.line_full and self.queued <= MAX_QUEUED_BYTES // 2:
            self.line_full = False
            self.update_reading()
        self._arm()

    def _write(self, data: bytes) -> None:
        if self.sink is None or self.sink.is_closing():
            return  # the receiver is gone: drop, so the sender is never stuck
        self.sink.write(data)
        self.meter.delivered += len(data)

    def _finish(self) -> None:
        """Pass the end of the stream on: a clean EOF as a half-close, a reset as a close."""
        self.done = True
        sink = self.sink
        if sink is not None and not sink.is_closing():
            if self.end_reset or not sink.can_write_eof():
                sink.close()
            else:
                try:
                    sink.write_eof()
                except OSError:  # the receiver went away meanwhile (ENOTCONN): close instead
                    sink.close()
        self.session.line_done()

    def update_reading(self) -> None:
        """Pause or resume reading the source, as the sink and the line allow."""
        source = self.source
        if source is None or source.is_closing():
            return
        if self.sink_full or self.line_full:
            source.pause_reading()
        else:
            source.resume_reading()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.fifo.clear()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection (the client's or the upstream's), as an asyncio protocol.

    What it reads goes into ``out``; it is the sink of ``into``; its flow-control callbacks pause or resume
    the reading of the other socket.
    """

    def __init__(self, session: _Session, out: _Line, into: _Line) -> None:
        self.session = session
        self.out = out
        self.into = into
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.out.source = transport
        self.into.sink = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self is self.session.client:
            self.session.client_made(transport)

    def data_received(self, data: bytes) -> None:
        self.out.push(data)

    def eof_received(self) -> bool:
        self.out.push_end(reset=False)
        return True  # keep the socket open for writing: a half-close is passed on as a half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.session.conn.reset = True
        self.out.push_end(reset=exc is not None)
        self.into.sink_full = False
        self.into.update_reading()
        self.session.side_lost()

    def pause_writing(self) -> None:
        self.into.sink_full = True
        self.into.update_reading()

    def resume_writing(self) -> None:
        self.into.sink_full = False
        self.into.update_reading()


class _Session:
    """One relayed connection: the client socket, the upstream socket, the two lines between them."""

    def __init__(self, relay: Relay, conn: _Connection) -> None:
        self.relay = relay
        self.loop = asyncio.get_running_loop()
        self.conn = conn
        self.up = _Line(self, relay._schedule(conn.id, 0), conn.up)
        self.down = _Line(self, relay._schedule(conn.id, 1), conn.down)
        self.client = _Side(self, out=self.up, into=self.down)
        self.upstream = _Side(self, out=self.down, into=self.up)
        self.sides = 1
        """Sockets open: the client's, plus the upstream's once connected."""

    def client_made(self, client: asyncio.Transport) -> None:
        """The client connected: stop reading it until the upstream connection is made."""
        peer = client.get_extra_info("peername")
        self.conn.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        client.pause_reading()
        self.relay._track(self.loop.create_task(self._connect(client)))

    async def _connect(self, client: asyncio.Transport) -> None:
        """Connect upstream, then start reading the client."""
        try:
            await self.loop.create_connection(lambda: self.upstream, *self.relay.upstream)
        except OSError as exc:
            self.conn.upstream_error = f"{type(exc).__name__}: {exc}"
            client.close()
            return
        self.sides += 1
        if self.up.done and self.upstream.transport is not None:
            self.upstream.transport.close()  # the client was gone before the upstream socket was there
        elif not client.is_closing():
            client.resume_reading()

    def line_done(self) -> None:
        if self.up.done and self.down.done:
            for side in (self.client, self.upstream):
                if side.transport is not None:
                    side.transport.close()

    def side_lost(self) -> None:
        self.sides -= 1
        if self.sides == 0:
            self.conn.closed = time.time()
            self.relay._live.discard(self)

    def abort(self) -> None:
        for line in (self.up, self.down):
            line.cancel()
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.abort()


class Relay:
    """The asyncio TCP relay: listens, connects each client to ``upstream``, and relays both directions.

    I/O layer, on asyncio protocols and timers (cheaper than streams: the relay's CPU is part of what the lab
    measures). Each direction of each connection has its own :class:`LinkSchedule` (jitter generator seeded
    from ``link.seed``, the connection number and the direction) and :class:`DirectionMeter`. A clean EOF
    from one side is passed on as a half-close after the data in flight; a reset closes the other side after
    the data in flight; both sockets are closed when both directions have ended. Use as ``async with``.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        link: Link | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        backlog: int = 4096,
        sample_bytes: int = 0,
    ) -> None:
        self.upstream = upstream
        self.sample_bytes = sample_bytes
        """Bytes of each direction of each connection kept verbatim (:attr:`DirectionMeter.sample`)."""
        self.link = link or Link()
        self.listen = listen
        self.backlog = backlog
        self._server: asyncio.Server | None = None
        self._connections: list[_Connection] = []
        self._live: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = time.time()

    async def start(self) -> Relay:
        """Start listening; :attr:`port` is then the listening port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, *self.listen, backlog=self.backlog)
        self._started = time.time()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the relay is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every connection (abruptly: in-flight data is dropped)."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in list(self._live):
            session.abort()
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(3):  # let the aborted transports run their connection_lost callbacks
            await asyncio.sleep(0)

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is open; True if that happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(c.closed is None for c in self._connections):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _accept(self) -> _Side:
        """Protocol factory of the listening socket: a new session, its client side."""
        conn = _Connection(id=len(self._connections), peer="?", opened=time.time())
        conn.up.sample_limit = conn.down.sample_limit = self.sample_bytes
        self._connections.append(conn)
        session = _Session(self, conn)
        self._live.add(session)
        return session.client

    def samples(self) -> list[tuple[bytes, bytes]]:
        """``(up, down)`` first bytes of every connection so far, with ``sample_bytes`` set."""
        return [(bytes(c.up.sample), bytes(c.down.sample)) for c in self._connections]

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule(self, conn_id: int, direction: int) -> LinkSchedule:
        return LinkSchedule(self.link, random.Random(f"{self.link.seed}/{conn_id}/{direction}"))

    def snapshot(self, rows: bool = False) -> dict[str, Any]:
        """Totals since start (and, with ``rows``, one row per connection); the benchmark diffs two of them.

        ``up`` is client to upstream, ``down`` upstream to client. ``head_bytes`` sums the complete first
        header blocks, ``heads`` counts them.
        """
        totals: dict[str, dict[str, int]] = {}
        for name in ("up", "down"):
            meters = [getattr(c, name) for c in self._connections]
            totals[name] = {
                "bytes": sum(m.nbytes for m in meters),
                "delivered": sum(m.delivered for m in meters),
                "chunks": sum(m.chunks for m in meters),
                "head_bytes": sum(m.head_bytes for m in meters),
                "heads": sum(m.head == "complete" for m in meters),
            }
        open_now = sum(c.closed is None for c in self._connections)
        snap: dict[str, Any] = {
            "time": time.time(),
            "started": self._started,
            "link": self.link.as_dict(),
            "connections": {
                "opened": len(self._connections),
                "open": open_now,
                "closed": len(self._connections) - open_now,
                "upstream_errors": sum(c.upstream_error is not None for c in self._connections),
                "resets": sum(c.reset for c in self._connections),
            },
            **totals,
        }
        if rows:
            snap["rows"] = [c.as_dict() for c in self._connections]
        return snap


# --- the relay as a process -------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description=(
            "Link emulator and byte meter: relay TCP from --listen-port to --upstream with delay, jitter and a "
            "bandwidth cap. Prints one JSON line when ready; reads commands on stdin, one per line: "
            "'snapshot', 'snapshot rows', 'quit' (EOF on stdin also quits). Answers are JSON lines."
        ),
    )
    parser.add_argument("--upstream", type=_address, required=True, help="HOST:PORT of the server")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0, help="0: any free port (printed when ready)")
    parser.add_argument("--one-way-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--bandwidth-kbps", type=int, default=0, help="0: unlimited")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _serve_process(args: argparse.Namespace) -> None:
    link = Link(args.one_way_ms, args.jitter_ms, args.bandwidth_kbps, args.seed)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    commands = asyncio.StreamReader()
    stdin, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    async with Relay(args.upstream, link, (args.listen_host, args.listen_port)) as relay:
        _emit({"event": "ready", "port": relay.port, "pid": os.getpid(), "link": link.as_dict()})
        stopping = loop.create_task(stop.wait())
        try:
            while True:
                line_task = loop.create_task(commands.readline())
                await asyncio.wait({line_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not line_task.done():
                    line_task.cancel()
                    break
                words = line_task.result().decode(errors="replace").split()
                if not line_task.result() or words == ["quit"]:
                    break
                if words and words[0] == "snapshot":
                    _emit({"event": "snapshot", **relay.snapshot(rows=words[1:] == ["rows"])})
                else:
                    _emit({"event": "error", "error": f"unknown command {' '.join(words)!r}"})
        finally:
            stopping.cancel()
            stdin.close()
            _emit({"event": "bye", **relay.snapshot()})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.relay``."""
    args = _parser().parse_args(argv)
    try:
        Link(args.one_way_ms, args.jitter_ms, args.bandwidth_kbps, args.seed)
    except LinkError as exc:
        _parser().error(str(exc))
    asyncio.run(_serve_process(args))
    return 0


class RelayProcess:
    """Handle on a ``python -m bench.relay`` subprocess, for the benchmark runner.

    ``start()`` waits for the ready line; ``snapshot()`` asks for totals over stdin; ``cpu_seconds()`` is the
    process's user + system CPU; ``stop()`` asks it to quit, then terminates and kills it if it must, and
    never leaves it running. Also a context manager.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        link: Link | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        timeout: float = 10.0,
    ) -> None:
        self.upstream = upstream
        self.link = link or Link()
        self.listen = listen
        self.timeout = timeout
        """Seconds to wait for the ready line and for each answer."""
        self.bye: dict[str, Any] | None = None
        """The final totals the process printed when it quit (``None`` if it was killed)."""
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._port: int | None = None
        self._stderr: IO[bytes] | None = None
        self._last_cpu = 0.0

    def start(self) -> RelayProcess:
        if self._proc is not None:
            raise RuntimeError("already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (outlives this call; closed by stop())
        cmd = [
            sys.executable,
            "-m",
            "bench.relay",
            "--upstream",
            f"{self.upstream[0]}:{self.upstream[1]}",
            "--listen-host",
            self.listen[0],
            "--listen-port",
            str(self.listen[1]),
            "--one-way-ms",
            repr(float(self.link.one_way_ms)),
            "--jitter-ms",
            repr(float(self.link.jitter_ms)),
            "--bandwidth-kbps",
            str(self.link.bandwidth_kbps),
            "--seed",
            str(self.link.seed),
        ]
        self._proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump_stdout, args=(self._proc,), name="relay-stdout", daemon=True).start()
        try:
            ready = self._expect("ready")
        except BaseException:
            self.stop()
            raise
        self._port = int(ready["port"])
        return self

    def _pump_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _expect(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise TimeoutError(f"relay: no {event!r} answer within {self.timeout} s") from None
            if line is None:
                raise RuntimeError(f"relay exited before answering {event!r}: {self._stderr_tail()}")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message
            if message.get("event") == "error":
                raise RuntimeError(f"relay: {message.get('error')}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-3000:]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the relay process is not started")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the relay process is not started")
        return self._proc.pid

    def _command(self, line: str, event: str) -> dict[str, Any]:
        with self._lock:
            if self._proc is None or self._proc.stdin is None or self._proc.poll() is not None:
                raise RuntimeError("the relay process is not running")
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()
            return self._expect(event)

    def snapshot(self, rows: bool = False) -> dict[str, Any]:
        """Totals since the relay started (see :meth:`Relay.snapshot`)."""
        return self._command("snapshot rows" if rows else "snapshot", "snapshot")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the relay process so far (the last value seen once it exited)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(self._proc.pid).cpu_times()
                self._last_cpu = times.user + times.system
        return self._last_cpu

    def stop(self) -> int | None:
        """Ask the relay to quit; terminate, then kill it if it does not. Returns its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.cpu_seconds()
            try:
                with self._lock:
                    assert proc.stdin is not None
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                    self.bye = self._expect("bye")
                proc.wait(self.timeout)
            except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired, ValueError):
                self._kill(proc)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return proc.returncode

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
            try:
                proc.wait(self.timeout)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> RelayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the relay's own cost ---------------------------------------------------------------------------------


class _EchoHandler(socketserver.BaseRequestHandler):
    """Echoes every byte back: the upstream of :func:`measure_overhead`."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            while data := sock.recv(READ_SIZE):
                sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _round_trip(sock: socket.socket, message: bytes) -> float:
    """Seconds to send ``message`` and read it back whole."""
    view = bytearray(len(message))
    start = time.perf_counter()
    sock.sendall(message)
    got = 0
    while got < len(message):
        n = sock.recv_into(memoryview(view)[got:])
        if not n:
            raise ConnectionError("echo connection closed")
        got += n
    return time.perf_counter() - start


def _bulk(sock: socket.socket, total: int) -> None:
    """Send ``total`` bytes and read them back, concurrently (a sender thread)."""
    block = random.Random(1).randbytes(READ_SIZE)

    def send() -> None:
        left = total
        while left > 0:
            sock.sendall(block[: min(left, len(block))])
            left -= len(block)

    sender = threading.Thread(target=send, name="relay-bulk-sender")
    sender.start()
    got = 0
    while got < total:
        data = sock.recv(READ_SIZE)
        if not data:
            break
        got += len(data)
    sender.join()


def _p50_p99(seconds: list[float]) -> tuple[float, float]:
    """The 50th and 99th percentiles, in microseconds (linear interpolation between samples)."""
    cuts = statistics.quantiles([s * 1e6 for s in seconds], n=100, method="inclusive")
    return cuts[49], cuts[98]


def measure_overhead(
    samples: int = 5000, message_bytes: int = 128, bulk_bytes: int = 32 * 1024 * 1024
) -> dict[str, Any]:
    """Measure the relay's own cost at zero delay, as the benchmark runs it (a separate process).

    ``added_latency_us``: percentiles of a ping-pong of ``message_bytes`` messages to an echo server through
    the relay, minus the same percentiles direct (rounds interleaved, so both see the same machine load).
    ``cpu_us_per_kib``: relay process CPU during the relayed ping-pong rounds per KiB relayed (both
    directions), that is, for small messages (the benchmark's events); ``bulk_cpu_us_per_kib`` the same for
    ``bulk_bytes`` streamed through and back. Percentile differences can be slightly negative on a quiet
    machine: they are reported as measured.
    """
    echo = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    serving = threading.Thread(target=echo.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        echo_port = int(echo.server_address[1])
        with RelayProcess(("127.0.0.1", echo_port), Link()) as relay:
            message = b"x" * message_bytes
            direct, relayed = _connect(echo_port), _connect(relay.port)
            with direct, relayed:
                for _ in range(min(200, samples)):  # warm-up: caches, allocator, scheduler
                    _round_trip(direct, message)
                    _round_trip(relayed, message)
                before, cpu0 = relay.snapshot(), relay.cpu_seconds()
                direct_s: list[float] = []
                relayed_s: list[float] = []
                for _ in range(samples):
                    direct_s.append(_round_trip(direct, message))
                    relayed_s.append(_round_trip(relayed, message))
                after, cpu1 = relay.snapshot(), relay.cpu_seconds()
            with _connect(relay.port) as bulk:
                _bulk(bulk, bulk_bytes)
            bulk_after, cpu2 = relay.snapshot(), relay.cpu_seconds()
    finally:
        echo.shutdown()
        echo.server_close()

    def relayed_kib(a: dict[str, Any], b: dict[str, Any]) -> float:
        return sum(int(b[d]["bytes"]) - int(a[d]["bytes"]) for d in ("up", "down")) / 1024

    direct_us = _p50_p99(direct_s)
    relayed_us = _p50_p99(relayed_s)
    return {
        "added_latency_us": {
            "p50": round(relayed_us[0] - direct_us[0], 1),
            "p99": round(relayed_us[1] - direct_us[1], 1),
        },
        "cpu_us_per_kib": round((cpu1 - cpu0) * 1e6 / relayed_kib(before, after), 2),
        "bulk_cpu_us_per_kib": round((cpu2 - cpu1) * 1e6 / relayed_kib(after, bulk_after), 3),
        "round_trip_us": {
            "direct": {"p50": round(direct_us[0], 1), "p99": round(direct_us[1], 1)},
            "relayed": {"p50": round(relayed_us[0], 1), "p99": round(relayed_us[1], 1)},
        },
        "samples": samples,
        "message_bytes": message_bytes,
        "bulk_bytes": bulk_bytes,
    }


if __name__ == "__main__":
    raise SystemExit(main())
