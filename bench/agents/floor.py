"""The loopback floor: the same events pushed over bare asyncio TCP.

What this machine can do at all, measured in every run so each chart can show
how far long polling and WebSocket are from it. The floor server uses the
bus's own sans-I/O core (:class:`server.bus.core.ChannelLog`), so events get
the same seq, ts and serialization, and skips everything a transport adds:
no HTTP, no framing beyond a newline, no threads, no greenlets. Fan-out
writes each event's bytes to every subscriber's transport without awaiting,
as ``websockets.broadcast`` does.

Line protocol (newline-terminated, ASCII commands):

- subscriber sends ``SUB <channel> <after>``; receives one line per event
  (the event object), or ``{"type":"gap",...}`` / ``{"type":"reset",...}``
  lines first, as on the WebSocket;
- publisher sends ``PUB <channel> <json>``; receives ``OK <seq> <ts>``.

``python -m bench.agents.floor --port 0`` prints ``{"port": N}`` when listening (:mod:`bench.process`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from collections import defaultdict
from typing import Any

from bench.process import Child, say
from clients import Subscriber, now_ns
from server.bus.core import Batch, ChannelLog, InvalidPayload, parse_payload, valid_channel

__all__ = ["FloorProcess", "FloorPublisher", "FloorServer", "FloorSubscriber", "encode_notices"]

HISTORY = 1_000_000
"""Events the floor retains per channel: a whole benchmark run."""


def encode_notices(batch: Batch) -> list[bytes]:
    """Gap and reset notices of a batch as lines (same objects as the WebSocket's)."""
    lines = []
    if batch.reset:  # first: the gap is relative to the reset cursor
        lines.append(json.dumps({"type": "reset", **batch.reset.as_dict()}, separators=(",", ":")).encode() + b"\n")
    if batch.gap:
        lines.append(json.dumps({"type": "gap", **batch.gap.as_dict()}, separators=(",", ":")).encode() + b"\n")
    return lines


class FloorServer:
    """An asyncio TCP server pushing events to line-protocol subscribers."""

    def __init__(self, history: int = HISTORY) -> None:
        self.history = history
        self.channels: dict[str, ChannelLog] = {}
        self.subscribers: defaultdict[str, set[asyncio.BaseTransport]] = defaultdict(set)
        self.delivered = 0
        self.writers: set[asyncio.StreamWriter] = set()
        """Open connections, closed at shutdown so their handlers end on EOF, not on cancellation."""

    async def close_connections(self) -> None:
        for writer in list(self.writers):
            writer.close()
        while self.writers:
            await asyncio.sleep(0.01)

    def _log(self, channel: str) -> ChannelLog:
        log = self.channels.get(channel)
        if log is None:
            log = self.channels[channel] = ChannelLog(channel, self.history)
        return log

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: a subscriber or a publisher, by its first command."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subscribed: str | None = None
        transport = writer.transport
        self.writers.add(writer)
        try:
            while line := await reader.readline():
                verb, _, rest = line.rstrip(b"\r\n").partition(b" ")
                if verb == b"PUB":
                    target, _, body = rest.partition(b" ")
                    writer.write(self._publish(target.decode("ascii", "replace"), body))
                elif verb == b"SUB" and subscribed is None:
                    name, _, after = rest.decode("ascii", "replace").partition(" ")
                    if not valid_channel(name) or not after.isdigit():
                        writer.write(b'{"type":"error","detail":"SUB <channel> <after>"}\n')
                        break
                    batch = self._log(name).read(int(after), self.history)
                    writer.writelines([*encode_notices(batch), *(e.wire + b"\n" for e in batch.events)])
                    self.subscribers[name].add(transport)
                    subscribed = name
                else:
                    writer.write(b'{"type":"error","detail":"unknown command"}\n')
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if subscribed is not None:
                self.subscribers[subscribed].discard(transport)
            self.writers.discard(writer)
            writer.close()

    def _publish(self, channel: str, body: bytes) -> bytes:
        if not valid_channel(channel):
            return b"ERR bad_channel\n"
        try:
            data = parse_payload(body)
        except InvalidPayload as exc:
            return f"ERR bad_json {exc}\n".encode()
        event = self._log(channel).append(data, time.time_ns())
        line = event.wire + b"\n"
        for transport in self.subscribers.get(channel, ()):
            if not transport.is_closing():
                transport.write(line)  # type: ignore[attr-defined]
                self.delivered += 1
        return b"OK %d %d\n" % (event.seq, event.ts)


async def serve(host: str, port: int) -> None:
    """Listen until SIGTERM/SIGINT; print ``{"port": N}`` once listening."""
    floor = FloorServer()
    server = await asyncio.start_server(floor.handle, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say({"port": server.sockets[0].getsockname()[1], "pid": os.getpid()})
    async with server:
        await stop.wait()
        server.close()
        await asyncio.wait_for(floor.close_connections(), 5)


class FloorPublisher:
    """An asyncio publisher for the floor server (one connection, pipelined)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: asyncio.Queue[asyncio.Future[tuple[int, int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read_acks())

    async def _read_acks(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            future = await self._pending.get()
            parts = line.split()
            if parts[0] == b"OK":
                future.set_result((int(parts[1]), int(parts[2])))
            else:
                future.set_exception(RuntimeError(line.decode(errors="replace").strip()))

    async def publish(self, channel: str, data: bytes) -> tuple[int, int]:
        """Send one event (JSON text without newlines); return ``(seq, ts)``."""
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait(future)
        self._writer.write(b"PUB %s %s\n" % (channel.encode("ascii"), data))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()


class FloorSubscriber(Subscriber):
    """A floor subscriber: the lab's accounting and latency over bare TCP lines.

    Shares :class:`clients.Subscriber` with the real transports,
    so the floor's numbers are computed exactly as theirs are.
    """

    transport = "floor"
    retry_on = (OSError, asyncio.IncompleteReadError)

    def __init__(self, host: str, port: int, channel: str, **kwargs: Any) -> None:
        super().__init__(channel, **kwargs)
        self.host = host
        self.port = port

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24)
        try:
            self.stats.connections += 1
            writer.write(b"SUB %s %d\n" % (self.channel.encode("ascii"), self.tracker.cursor))
            stats = self.stats
            while line := await reader.readline():
                recv_ns, recv_mono_ns = now_ns()
                stats.frames += 1
                stats.payload_bytes += len(line)
                self._on_message(json.loads(line), recv_ns, recv_mono_ns)
            raise ConnectionResetError("the floor server closed the connection")
        finally:
            writer.close()


class FloorProcess(Child):
    """``python -m bench.agents.floor`` in its own process, like the real server; ready once it listens."""

    def __init__(self, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        super().__init__(["-m", "bench.agents.floor", "--host", host, "--port", "0"], name="the floor server")
        try:
            self.port: int = int(self.expect("port", timeout)["port"])
        except BaseException:
            self.stop()
            raise


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.agents.floor", description="The loopback floor server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    asyncio.run(serve(a.host, a.port))


if __name__ == "__main__":
    main()
