"""The documented errors (docs/protocol.md, "Errors") as one exception type.

Routes raise :class:`ApiError`; one handler turns it into a JSON ``4xx`` or
``5xx``. WebSocket close codes live here too, so the table has one home in
code. So does :func:`read_body`, the one way a route reads a request body:
whole, or refused with ``413`` without ever truncating it, and with the
client's unread bytes drained so that it reads the refusal instead of a
connection reset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import Response, has_request_context, request
from werkzeug.http import HTTP_STATUS_CODES

__all__ = [
    "BODY_READ",
    "CLOSE_BAD_MESSAGE",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL",
    "CLOSE_POLICY",
    "CLOSE_UNSUPPORTED",
    "DRAIN_LIMIT",
    "ApiError",
    "TooLarge",
    "drain_body",
    "json_body",
    "read_body",
    "status_line",
]

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
"""A message beyond the JSON limits (nesting depth, number length); also simple-websocket's ping timeout."""
CLOSE_INTERNAL = 1011
CLOSE_BAD_MESSAGE = 4400

DRAIN_LIMIT = 16 << 20
"""Most bytes of a refused body read and discarded so the client gets the refusal; past it the connection is closed."""

BODY_READ = "lab.body_read"
"""WSGI environ key set once the body is consumed (read or drained): nothing is left to drain."""


def json_body(value: Mapping[str, Any]) -> bytes:
    """``value`` as the bytes Flask's ``jsonify`` writes: compact, keys sorted, ASCII, a final newline.

    One encoder for the Flask routes and the fast path (server/fastpath.py), so both answer the same bytes.
    """
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def status_line(status: int) -> str:
    """The WSGI status string Werkzeug's ``Response`` gives ``status`` (``201 CREATED``)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


class ApiError(Exception):
    """A refused request: HTTP ``status``, a stable ``error`` code, a ``detail``, maybe extra headers."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON body: ``{"detail": ..., "error": ...}``."""
        return json_body({"error": self.error, "detail": self.detail})

    def answer(self, environ: dict[str, Any] | None) -> tuple[bytes, list[tuple[str, str]]]:
        """Body and headers of the refusal, once the request's unread body is drained (see :func:`drain_body`).

        Request-independent (``environ`` is the WSGI one, ``None`` outside a request): the Flask error
        handler and the fast path both answer with it.
        """
        body = self.body()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Cache-Control": "no-store"}
        headers.update(self.headers)
        if environ is not None and not drain_body(environ):
            headers["Connection"] = "close"
        return body, list(headers.items())

    def response(self) -> Response:
        """The JSON answer as a Flask response (:meth:`answer`)."""
        body, headers = self.answer(request.environ if has_request_context() else None)
        return Response(body, self.status, headers=headers)


class TooLarge(ApiError):
    """``413 too_large``: a body above the limit, raised once the unread rest is drained (or the connection doomed)."""

    def __init__(self, limit: int, drained: bool) -> None:
        headers = {} if drained else {"Connection": "close"}
        super().__init__(413, "too_large", f"the body is larger than {limit} bytes", headers)


def drain_body(environ: dict[str, Any], limit: int = DRAIN_LIMIT) -> bool:
    """Read and discard what is left of the request body; false if more than ``limit`` bytes remain.

    A request refused before its body was read (a wrong host, a missing
    token, a body too large) still has it on the connection: closing then
    sends a TCP reset, which can destroy the answer before the client reads
    it, so every refusal drains first (:meth:`ApiError.response`). Once is
    enough: the environ remembers (:data:`BODY_READ`). Only the declared
    ``Content-Length`` is read (Werkzeug's development
    server hands over the raw socket, which would block past the body), or
    a chunked body up to its end, which the server marks
    (``wsgi.input_terminated``). A body that cannot be drained must not be
    followed by another request on the connection: answer ``Connection:
    close``.
    """
    if environ.get(BODY_READ):
        return True
    environ[BODY_READ] = True
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        try:
            left = int(length)
        except ValueError:
            return False
        if left > limit:
            return False
        while left > 0:
            chunk = stream.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
        return True
    if not environ.get("wsgi.input_terminated"):
        return True  # no body the server knows of
    read = 0
    while read <= limit:
        chunk = stream.read(65536)
        if not chunk:
            return True
        read += len(chunk)
    return False


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole request body, or :class:`TooLarge` (``413``) if it has more than ``limit`` bytes.

    Reads the WSGI stream itself rather than Werkzeug's ``get_data``, which
    cuts a chunked body at the limit without a word (the cut body was then
    stored, or refused as bad JSON).
    """
    stream = environ["wsgi.input"]
    environ[BODY_READ] = True
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        try:
            declared = int(length)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length is not a number: {length[:20]!r}") from None
        if declared > limit:
            environ[BODY_READ] = False
            raise TooLarge(limit, drain_body(environ))
        parts: list[bytes] = []
        left = declared
        while left > 0:
            chunk = stream.read(left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)
    if not environ.get("wsgi.input_terminated"):
        return b""
    parts = []
    size = 0
    while size <= limit:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
    environ[BODY_READ] = False
    raise TooLarge(limit, drain_body(environ))
