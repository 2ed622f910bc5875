"""The loopback floor: the least a push server can do, measured through the fleet's own WebSocket path.

Agent layer of the benchmark. What this machine can do at all, measured in every run so each chart can
show how far long polling and WebSocket are from it. The floor speaks just enough of the lab's protocol
(docs/protocol.md) that the fleet and the publisher use it exactly as they use the real server: the same
:class:`bench.agents.websocket.LeanWebSocketSubscriber`, the same
:class:`bench.agents.publisher.HttpPublishPool`, the same byte meter. What it leaves out is everything a
server adds: no Flask, no WSGI, no bus, no locks, no threads or greenlets, no validation beyond what it
needs to answer. So its latency is a floor in the strict sense: the same client path with no server logic.

- ``POST /channels/<channel>/events`` (``Content-Length`` body, the event's JSON ``data``): the event gets
  the next seq of its channel and the wall clock as ``ts``, is serialized as the lab does
  (``{"channel":...,"seq":...,"ts":...,"data":...}``), framed once (an unmasked text frame) and written to
  every subscriber's transport without awaiting, as ``websockets.broadcast`` does; the answer is ``201``
  with ``{"channel", "seq", "ts"}``, keep-alive.
- ``GET /channels/<channel>/ws?after=<seq>`` with an Upgrade: ``101``, then the frames of every event after
  ``seq`` (kept in memory for the run), then each new one. A close frame from the client is answered and the
  connection closed; anything else it sends is ignored.

``python -m bench.agents.floor --port 0`` prints ``{"port": N}`` when listening (:mod:`bench.process`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import socket
import struct
import time
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from bench.process import Child, say

__all__ = ["FloorProcess", "FloorServer", "server_frame"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_BODY = 16 << 20
"""Largest publish body the floor reads, bytes (the benchmark's payloads are far smaller)."""


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final server frame (RFC 6455 5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class FloorServer:
    """The floor's state: per channel, the frames so far and the subscribers' transports."""

    def __init__(self) -> None:
        self.frames: defaultdict[str, list[bytes]] = defaultdict(list)
        """Every event's frame per channel, in seq order (seq ``k`` at index ``k - 1``)."""
        self.subscribers: defaultdict[str, set[asyncio.Transport]] = defaultdict(set)
        self.writers: set[asyncio.StreamWriter] = set()
        """Open connections, closed at shutdown so their handlers end on EOF, not on cancellation."""

    async def close_connections(self) -> None:
        for writer in list(self.writers):
            writer.close()
        while self.writers:
            await asyncio.sleep(0.01)

    def publish(self, channel: str, data: bytes) -> bytes:
        """Append, frame once, write to every subscriber; the ``201`` answer's body."""
        frames = self.frames[channel]
        seq, ts = len(frames) + 1, time.time_ns()
        event = b'{"channel":"%s","seq":%d,"ts":%d,"data":%s}' % (channel.encode("ascii"), seq, ts, data)
        frame = server_frame(event)
        frames.append(frame)
        for transport in self.subscribers[channel]:
            transport.write(frame)
        return b'{"channel":"%s","seq":%d,"ts":%d}' % (channel.encode("ascii"), seq, ts)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: keep-alive publishes, or one WebSocket subscriber."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, _, rest = head.partition(b"\r\n")
                method, target, _ = line.split(b" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (h.partition(b":") for h in rest.split(b"\r\n") if h)
                }
                parts = urlsplit(target.decode("ascii"))
                path = parts.path.split("/")
                if method == b"POST" and len(path) == 4 and path[1] == "channels" and path[3] == "events":
                    length = int(headers.get(b"content-length", b"0"))
                    if length > MAX_BODY:
                        break
                    body = self.publish(path[2], (await reader.readexactly(length)).strip())
                    writer.write(
                        b"HTTP/1.1 201 CREATED\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body)
                    )
                elif method == b"GET" and len(path) == 4 and path[1] == "channels" and path[3] == "ws":
                    after = int(parse_qs(parts.query).get("after", ["0"])[0])
                    await self._subscribe(path[2], after, headers[b"sec-websocket-key"], reader, writer)
                    break
                else:
                    writer.write(b"HTTP/1.1 404 NOT FOUND\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, KeyError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _subscribe(
        self, channel: str, after: int, key: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        catch_up = self.frames[channel][max(0, after) :]
        transport.writelines(
            [
                b"HTTP/1.1 101 SWITCHING PROTOCOLS\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept,
                *catch_up,
            ]
        )
        self.subscribers[channel].add(transport)
        try:
            while data := await reader.read(65536):
                if data[0] & 0x0F == 0x8:  # a close frame (the client's frames start each read in practice)
                    transport.write(server_frame(b"\x03\xe8", opcode=0x8))
                    break
        finally:
            self.subscribers[channel].discard(transport)


async def serve(host: str, port: int) -> None:
    """Listen until SIGTERM/SIGINT; print ``{"port": N}`` once listening."""
    floor = FloorServer()
    server = await asyncio.start_server(floor.handle, host, port, limit=MAX_BODY + 65536)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    say({"port": server.sockets[0].getsockname()[1], "pid": os.getpid()})
    async with server:
        await stop.wait()
        server.close()
        await floor.close_connections()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


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
