"""The child's end of the JSON-lines protocol: announce, answer, read commands.

Process layer of the benchmark. An agent (the fleet, the publisher, the
floor, the relay) is a ``python -m`` process that the runner starts with
:class:`bench.process.child.Child`. It writes one JSON object per line to its
stdout (its first line announces it is ready, with its port when it listens
on one) and reads one JSON object per line from its stdin, each a command
with a ``cmd`` key. EOF on stdin means "stop". Diagnostics go to stderr,
never stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["commands", "say"]


def say(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout and flush it (the parent is waiting for it)."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The commands on stdin, one JSON object per line, until EOF.

    A line that is not a JSON object is answered with ``{"error": ...}`` and skipped, so a parent waiting
    with :meth:`Child.expect` gets a clear message instead of a timeout.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                command = json.loads(line)
            except ValueError:
                command = None
            if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
                say({"error": f"not a command: {line[:120]!r}"})
                continue
            yield command
    finally:
        transport.close()
