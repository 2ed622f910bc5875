"""The long-poll adapter: a held ``GET`` answered by the bus's next batch.

Long polling is a technique on top of plain HTTP: the server holds the
request until the channel has news (or the hold times out), answers, and the
client asks again with its new cursor. Everything about cursors lives in the
bus core; this module only parses the query and writes the JSON. Publishing
over HTTP, the other half, is here too (:func:`publish_answer`). The cores
(:func:`poll_answer`, :func:`publish_answer`) take a WSGI environ, not
Flask's request: the Flask routes call them, and so does the fast path
(server/fastpath.py), so both answer the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from .bus import Batch, Bus, BusClosed, InvalidPayload, parse_payload
from .capacity import client_gone
from .config import Config
from .errors import ApiError, json_body, read_body
from .stats import Stats

__all__ = [
    "MAX_CURSOR",
    "POLL_HEADERS",
    "encode_batch",
    "handle_poll",
    "parse_cursor",
    "parse_timeout",
    "poll_answer",
    "publish_answer",
]


MAX_CURSOR = 2**63 - 1
"""The largest cursor taken: a signed 64-bit integer, as Redis counters are."""


def parse_cursor(raw: str | None) -> int:
    """``after`` query value to a cursor; 400 ``bad_cursor`` if it is not one.

    Absent means 0; present but empty is refused like any other non-integer.
    The length check comes before ``int()``, which refuses (with a
    ``ValueError``, i.e. a 500) strings of more than 4,300 digits.
    """
    if raw is None:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_CURSOR)) or int(raw) > MAX_CURSOR:
        raise ApiError(400, "bad_cursor", f"after must be an integer from 0 to 2**63-1, got {raw[:40]!r}")
    return int(raw)


def parse_timeout(raw: str | None, config: Config) -> float:
    """``timeout`` query value to seconds; 400 ``bad_timeout`` if out of range.

    Absent means the configured default; present but empty is refused.
    """
    if raw is None:
        return config.poll_timeout
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= config.poll_timeout_max:  # also rejects nan
        raise ApiError(
            400,
            "bad_timeout",
            f"timeout must be a number of seconds from 0 to {config.poll_timeout_max:g}, got {raw[:40]!r}",
        )
    return value


def encode_batch(channel: str, batch: Batch) -> bytes:
    """The long-poll answer body. Events are embedded as their stored bytes.

    Without a gap or reset notice (nearly every answer) the tail is formatted directly: the bytes
    ``json.dumps`` gives (tests/server/test_longpoll.py compares them), at a tenth of its cost.
    """
    head = b'{"channel":"%s","events":[' % channel.encode("ascii")
    if batch.gap is None and batch.reset is None:
        end = _PLAIN_TAIL % (batch.next, b"true" if batch.more else b"false")
        return b"".join((head, b",".join(e.wire for e in batch.events), end))
    tail = json.dumps(
        {
            "next": batch.next,
            "more": batch.more,
            "gap": batch.gap.as_dict() if batch.gap else None,
            "reset": batch.reset.as_dict() if batch.reset else None,
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((head, b",".join(e.wire for e in batch.events), b"],", tail[1:]))


_PLAIN_TAIL = b'],"next":%d,"more":%s,"gap":null,"reset":null}'
"""The end of an answer without notices, after the events."""


def poll_answer(
    bus: Bus, stats: Stats, config: Config, channel: str, after: int, timeout: float, environ: dict[str, Any]
) -> bytes:
    """Hold a poll until the channel has news or ``timeout`` passes; the answer's body, counted in ``stats``.

    Request-independent (``environ`` is the WSGI one, for :func:`~server.capacity.client_gone`): the Flask
    route and the fast path (server/fastpath.py) both call it. ``503 shutting_down`` if the bus closes.
    """
    stats.connect("longpoll")
    try:
        batch = bus.wait(channel, after, config.max_batch, timeout, gone=client_gone(environ))
    except BusClosed:
        raise ApiError(503, "shutting_down", "the server is stopping; poll again") from None
    finally:
        stats.connect("longpoll", -1)
    body = encode_batch(channel, batch)
    stats.answered("longpoll", len(batch.events), len(body))
    return body


POLL_HEADERS = (("Cache-Control", "no-store"), ("Content-Type", "application/json"))
"""A poll answer's own headers, in the order the Flask route writes them (then ``Content-Length``)."""


def handle_poll(bus: Bus, stats: Stats, config: Config, channel: str) -> Response:
    """Serve ``GET /channels/<channel>/poll`` (docs/protocol.md, "Long polling")."""
    after = parse_cursor(request.args.get("after"))
    timeout = parse_timeout(request.args.get("timeout"), config)
    body = poll_answer(bus, stats, config, channel, after, timeout, request.environ)
    return Response(body, 200, headers=list(POLL_HEADERS))


def publish_answer(bus: Bus, stats: Stats, config: Config, channel: str, environ: dict[str, Any]) -> bytes:
    """Publish the request's body to ``channel``; the ``201`` answer's body (``channel``, ``seq``, ``ts``).

    The other half of long polling over plain HTTP (``POST /channels/<channel>/events``), request-independent
    like :func:`poll_answer`: ``413`` above ``max_body``, ``400`` for a body that is not one JSON value.
    """
    try:
        data = parse_payload(read_body(environ, config.max_body))
    except InvalidPayload as exc:
        raise ApiError(400, exc.error, str(exc)) from None
    event = bus.publish(channel, data)
    stats.published(via_http=True)
    return json_body({"channel": channel, "seq": event.seq, "ts": event.ts})
