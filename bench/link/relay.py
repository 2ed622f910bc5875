"""The link emulator and byte meter: a user-space asyncio TCP relay between the clients and the server.

Link layer of the benchmark. On loopback a network transit takes microseconds, so when a scenario emulates a
link the lab puts this relay between the clients and the server (like Toxiproxy; the kernel's netem needs
root and is unavailable). The relay delays what it forwards as a link would (:mod:`bench.link.model`), and
counts the bytes it forwards, exactly, per connection and per direction. The benchmark runs it in its own
process (:class:`bench.link.process.RelayProcess`), so its CPU is neither the clients' nor the server's, and
measures its own cost once per profile (:mod:`bench.link.overhead`).

``python -m bench.link.relay`` is that process: it announces ``{"event": "ready", "port": N, ...}`` and
obeys JSON-line commands (:mod:`bench.process`): ``{"cmd": "snapshot", "rows": false}`` and
``{"cmd": "quit"}`` (EOF on stdin also quits), answering ``{"event": "snapshot", ...}`` and
``{"event": "bye", ...}``.

What it does not emulate (TCP acknowledgements, congestion control, loss, per-packet timing) is written down
in docs/link-emulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench.contract.scenarios import Link, LinkError
from bench.process import commands, say

from .model import DirectionMeter, LinkSchedule

__all__ = ["Relay", "main"]

READ_SIZE = 65536
"""Largest chunk read from a socket at once on an unlimited link."""
CAPPED_READ_SIZE = 4096
"""Largest chunk read on a bandwidth-capped link, so a big write is released progressively, not in one lump."""
MAX_QUEUED_BYTES = 8 * 1024 * 1024
"""Bytes one direction may hold in its delay line before the relay stops reading that side (back-pressure)."""


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
        prog="python -m bench.link.relay",
        description=(
            "Link emulator and byte meter: relay TCP from --listen-port to --upstream with delay, jitter and a "
            "bandwidth cap. Prints one JSON line when ready; reads JSON-line commands on stdin: "
            '{"cmd": "snapshot", "rows": false}, {"cmd": "quit"} (EOF on stdin also quits).'
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


async def _obey(relay: Relay) -> None:
    """Answer commands until ``quit`` or EOF."""
    async for command in commands():
        if command["cmd"] == "quit":
            return
        if command["cmd"] == "snapshot":
            say({"event": "snapshot", **relay.snapshot(rows=bool(command.get("rows")))})
        else:
            say({"error": f"unknown command {command['cmd']!r}"})


async def _serve_process(args: argparse.Namespace, link: Link) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Relay(args.upstream, link, (args.listen_host, args.listen_port)) as relay:
        say({"event": "ready", "port": relay.port, "pid": os.getpid(), "link": link.as_dict()})
        obeying, stopping = loop.create_task(_obey(relay)), loop.create_task(stop.wait())
        try:
            await asyncio.wait({obeying, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (obeying, stopping):
                task.cancel()
            say({"event": "bye", **relay.snapshot()})


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.link.relay``."""
    args = _parser().parse_args(argv)
    try:
        link = Link(args.one_way_ms, args.jitter_ms, args.bandwidth_kbps, args.seed)
    except LinkError as exc:
        _parser().error(str(exc))
    asyncio.run(_serve_process(args, link))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
