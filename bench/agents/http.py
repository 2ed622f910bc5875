"""The benchmark's minimal HTTP/1.1 response reader (publisher and fleet).

Why not httpx here: on the lab's 2 cores its per-request CPU saturated the
fleet (100 long-pollers: loop lag p99 117 ms) and put the publisher 100 ms
behind schedule at 100 ev/s (docs/metrics.md). The benchmark only ever talks
to the lab's own server, which answers with ``Content-Length`` and
keep-alive, so reading a response is a head up to the blank line and a
body of known length. Anything else is refused loudly rather than guessed.
"""

from __future__ import annotations

import asyncio

__all__ = ["read_response"]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """``(status, body, close)`` of the next response; ``close``: the server will close the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, headers = head.partition(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    length: int | None = None
    close = parts[0] == b"HTTP/1.0"
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not expected from the lab server")
    body = await reader.readexactly(length) if length else b""
    return int(parts[1]), body, close
