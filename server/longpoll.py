"""The long-poll adapter: a held ``GET`` answered by the bus's next batch.

Long polling is a technique on top of plain HTTP: the server holds the
request until the channel has news (or the hold times out), answers, and the
client asks again with its new cursor. Everything about cursors lives in the
bus core; this module only parses the query and writes the JSON.
"""

from __future__ import annotations

import json

from flask import Response, request

from .bus import Batch, Bus, BusClosed
from .capacity import client_gone
from .config import Config
from .errors import ApiError
from .stats import Stats

__all__ = ["MAX_CURSOR", "encode_batch", "handle_poll", "parse_cursor", "parse_timeout"]


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
    """The long-poll answer body. Events are embedded as their stored bytes."""
    head = b'{"channel":"%s","events":[' % channel.encode("ascii")
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


def handle_poll(bus: Bus, stats: Stats, config: Config, channel: str) -> Response:
    """Serve ``GET /channels/<channel>/poll`` (docs/protocol.md, "Long polling")."""
    after = parse_cursor(request.args.get("after"))
    timeout = parse_timeout(request.args.get("timeout"), config)
    stats.connect("longpoll")
    try:
        batch = bus.wait(channel, after, config.max_batch, timeout, gone=client_gone(request.environ))
    except BusClosed:
        raise ApiError(503, "shutting_down", "the server is stopping; poll again") from None
    finally:
        stats.connect("longpoll", -1)
    body = encode_batch(channel, batch)
    stats.answered("longpoll", len(batch.events), len(body))
    return Response(body, 200, mimetype="application/json", headers={"Cache-Control": "no-store"})
