"""The memory probe: what makes a push server's memory grow, applied one step at a time.

Agent layer of the benchmark (``python -m bench.agents.memory``, JSON lines, :mod:`bench.process`). The
runner (:mod:`bench.run.memory`) reads the server's RSS between the steps; this process only loads the
server:

- ``{"cmd": "channels", "count": N}``: one small event to each of ``N`` channels (``mem-0`` ...), which are
  then left idle: what idle channels cost, and whether they ever expire.
- ``{"cmd": "big", "count": K, "bytes": B}``: ``K`` events of ``B`` bytes to one channel (``mem-big``): what
  history costs when it is bounded by count alone.
- ``{"cmd": "stall", "readers": S, "count": K, "bytes": B}``: ``S`` WebSocket readers on ``mem-stall`` that
  complete the handshake and then never read, with a 4 KiB receive buffer, then ``K`` events of ``B`` bytes
  to that channel: what a slow consumer costs, and whether the server lets it go.

Each step answers ``{"done": "<step>", "published": n, "seconds": s}``. The stalled sockets stay open until
``{"cmd": "stop"}`` (or EOF); publishes go over a few keep-alive connections
(:class:`bench.agents.publisher.HttpPublishPool`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from urllib.parse import urlsplit

from bench.contract.payload import encode_payload
from bench.process import commands, say

from .publisher import HttpPublishPool

__all__ = ["STALLED_RCVBUF", "open_stalled_reader"]

STALLED_RCVBUF = 4096
"""The stalled readers' receive buffer, bytes: the kernel holds little for them, the server the rest."""
CONCURRENCY = 64
"""Publishes in flight at once over the pool's connections."""


def open_stalled_reader(host: str, port: int, channel: str) -> socket.socket:
    """A WebSocket on ``channel`` that completed its handshake and will never read again (blocking socket)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(30)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /channels/{channel}/ws?after=0 HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing past the 101's head is read
        if not chunk:
            raise ConnectionError("the server closed the stalled reader during its handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"the stalled reader's handshake was refused: {head[:80]!r}")
    return sock


async def _publish(pool: HttpPublishPool, channels: list[str], payload_bytes: int) -> int:
    """Publish one event to each entry of ``channels`` (repeats allowed), ``CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int, channel: str) -> None:
        async with gate:
            await pool.publish(channel, encode_payload(index, time.monotonic_ns(), False, payload_bytes))

    await asyncio.gather(*(one(i, c) for i, c in enumerate(channels)))
    return len(channels)


async def _serve(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool = HttpPublishPool(host, port)
    await pool.connect()
    stalled: list[socket.socket] = []
    say({"ready": True})
    try:
        async for command in commands():
            started = time.monotonic()
            if command["cmd"] == "channels":
                n = await _publish(pool, [f"mem-{i}" for i in range(int(command["count"]))], 32)
            elif command["cmd"] == "big":
                n = await _publish(pool, ["mem-big"] * int(command["count"]), int(command["bytes"]))
            elif command["cmd"] == "stall":
                loop = asyncio.get_running_loop()
                for _ in range(int(command["readers"])):
                    stalled.append(await loop.run_in_executor(None, open_stalled_reader, host, port, "mem-stall"))
                n = await _publish(pool, ["mem-stall"] * int(command["count"]), int(command["bytes"]))
            elif command["cmd"] == "stop":
                break
            else:
                say({"error": f"unknown command {command['cmd']!r}"})
                continue
            say({"done": command["cmd"], "published": n, "seconds": round(time.monotonic() - started, 3)})
    finally:
        for sock in stalled:
            sock.close()
        await pool.close()


def main() -> None:
    """Entry point of ``python -m bench.agents.memory URL``."""
    import sys

    asyncio.run(_serve(sys.argv[1]))


if __name__ == "__main__":
    main()
