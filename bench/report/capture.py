"""Reading a run's ``capture.json``: one real exchange of each transport, typed and split into its lines.

Report layer. :mod:`bench.run.capture` writes the file once per run (docs/results.md): the bytes of one
long poll and of one WebSocket session, read verbatim at the relay. This module reads it back, checks
its shape and offers each HTTP message as its lines with their sizes on the wire, so the notebook can
dissect real headers without parsing JSON or counting bytes itself. A run without the file (the capture
is best effort) reads as ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contract.schema import SchemaError, validate_capture

__all__ = ["Capture", "Frame", "HttpMessage", "load_capture"]

_CRLF = "\r\n"


@dataclass(frozen=True)
class HttpMessage:
    """One HTTP/1.1 message as it crossed the socket: its head (start line and header fields) and body."""

    raw: str

    @property
    def head(self) -> str:
        """The start line and header fields, without the blank line that ends them."""
        return self.raw.partition(_CRLF * 2)[0]

    @property
    def body(self) -> str:
        return self.raw.partition(_CRLF * 2)[2]

    @property
    def size(self) -> int:
        """Bytes on the wire (UTF-8), head, blank line and body."""
        return len(self.raw.encode())

    @property
    def head_size(self) -> int:
        """Bytes of the head, the final blank line (CRLF CRLF) included: the cost of being HTTP."""
        return len(self.head.encode()) + 2 * len(_CRLF)

    @property
    def body_size(self) -> int:
        return len(self.body.encode())

    def lines(self) -> list[tuple[int, str]]:
        """Each line of the head with its size on the wire, its CRLF included."""
        return [(len(line.encode()) + len(_CRLF), line) for line in self.head.split(_CRLF)]


@dataclass(frozen=True)
class Frame:
    """The first WebSocket frame the server sent: its bytes and where its header ends (RFC 6455 §5.2)."""

    hex: str
    header_bytes: int
    payload: str

    @property
    def size(self) -> int:
        return len(self.hex) // 2

    @property
    def header_hex(self) -> str:
        return self.hex[: 2 * self.header_bytes]


@dataclass(frozen=True)
class Capture:
    """capture.json, typed: the published event, the long poll's two messages, the WebSocket's three parts."""

    payload: Mapping[str, Any]
    """The event's data as published (the same for both transports)."""
    longpoll_request: HttpMessage
    longpoll_response: HttpMessage
    websocket_request: HttpMessage
    """The Upgrade request."""
    websocket_response: HttpMessage
    """The ``101 Switching Protocols`` answer."""
    websocket_frame: Frame
    runtime: str | None
    """The server runtime that answered (``None`` in files written before it was recorded)."""

    def messages(self) -> dict[str, HttpMessage]:
        """The four HTTP messages by name, in the order they crossed the wire."""
        return {
            "longpoll_request": self.longpoll_request,
            "longpoll_response": self.longpoll_response,
            "websocket_request": self.websocket_request,
            "websocket_response": self.websocket_response,
        }


def load_capture(run_dir: Path | str) -> Capture | None:
    """Read ``<run>/capture.json``; ``None`` when the run has none; :class:`SchemaError` when it is malformed."""
    path = Path(run_dir) / "capture.json"
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("", f"cannot read JSON: {exc}", file=path.name) from None
    try:
        validate_capture(obj)
    except SchemaError as exc:
        raise SchemaError(exc.path, exc.message, file=path.name) from None
    frame = obj["websocket_frame"]
    return Capture(
        payload=obj["payload"],
        longpoll_request=HttpMessage(obj["longpoll_request"]),
        longpoll_response=HttpMessage(obj["longpoll_response"]),
        websocket_request=HttpMessage(obj["websocket_request"]),
        websocket_response=HttpMessage(obj["websocket_response"]),
        websocket_frame=Frame(frame["hex"], frame["header_bytes"], frame["payload"]),
        runtime=obj.get("server", {}).get("runtime"),
    )
