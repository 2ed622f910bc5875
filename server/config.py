"""Server configuration: one frozen object, read from ``LAB_*`` variables.

``python -m server`` flags override the environment (see docs/configuration.md).
Nothing else in the server reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["RUNTIMES", "Config"]

MiB = 1 << 20
RUNTIMES = ("werkzeug", "gthread", "gevent", "pywsgi")
"""The servers ``python -m server --runtime`` can run on (server/runtimes.py); the benchmark's scenarios name them."""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the app factory needs. Defaults are the documented ones."""

    bus: str = "memory"
    """``memory`` (in-process) or ``redis``."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    runtime: str = "werkzeug"
    """Reported by /healthz and /stats; set by ``python -m server``."""
    history: int = 10_000
    """Events retained per channel."""
    max_batch: int = 1_000
    """Most events in one long-poll answer."""
    poll_timeout: float = 25.0
    """Default long-poll hold, seconds."""
    poll_timeout_max: float = 30.0
    """Largest hold a client may ask for (RFC 6202 section 5.5)."""
    max_body: int = MiB
    """Largest publish body, bytes."""
    ws_ping_interval: float | None = 25.0
    """Server WebSocket pings every N seconds; ``None`` or 0: no pings."""
    ws_max_message: int = MiB
    """Largest client WebSocket message, bytes."""
    ws_compression: bool = False
    """Allow permessage-deflate when a client offers it."""
    ws_write_timeout: float = 30.0
    """Seconds a WebSocket write may go without progress before the reader is taken for a slow consumer and
    dropped (it resumes from its cursor and loses nothing); with or without pings."""
    history_bytes: int = 8 * MiB
    """Largest history per channel, bytes of stored events (the newest event is always kept)."""
    history_total_bytes: int = 256 * MiB
    """Largest history of all channels together (memory bus); past it the least recently published channel expires."""
    channel_ttl: float | None = 900.0
    """Seconds without a publish after which a channel's history is dropped; ``None``: never."""
    allowed_origins: str = ""
    """Comma-separated origins a browser may connect from; empty: this server's own and loopback; ``*``: any."""
    allowed_hosts: str = ""
    """Comma-separated names the ``Host`` header may carry; empty: loopback names; ``*``: any."""
    publish_token: str = ""
    """Bearer token required to publish; empty: none."""
    subscribe_token: str = ""
    """Bearer token required to poll, open a WebSocket or read /stats; empty: none."""
    max_connections: int | None = None
    """Most held long polls and WebSockets together; ``None``: derived from the runtime at start-up."""
    max_longpoll: int | None = None
    """Most held long polls; ``None``: ``max_connections``."""
    max_websocket: int | None = None
    """Most open WebSockets; ``None``: ``max_connections``."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers (gunicorn runtimes)."""
    fast_path: bool = False
    """Answer ``GET /channels/<c>/poll`` and ``POST /channels/<c>/events`` by WSGI middleware before Flask's
    routing (server/fastpath.py, docs/performance.md); off: the Flask routes answer everything."""
    sse_heartbeat: float = 15.0
    """Seconds an SSE stream may stay silent before the server writes a heartbeat comment (keeps proxies from
    closing it, and finds a client that has left)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build from ``LAB_<FIELD>`` variables, e.g. ``LAB_HISTORY=500``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get("LAB_" + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, raw)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with the given fields changed (``None`` values are skipped)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def __post_init__(self) -> None:
        # Each message names the LAB_ variable, so a bad environment is
        # found from the error alone.
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} (LAB_{name.upper()}) must be {rule}, got {getattr(self, name)!r}")

        if self.bus not in {"memory", "redis"}:
            raise bad("bus", "'memory' or 'redis'")
        for name in ("history", "max_batch", "max_body", "ws_max_message"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        if not 0 <= self.poll_timeout_max < float("inf"):  # also refuses nan
            raise bad("poll_timeout_max", "a number of seconds >= 0")
        if not 0 <= self.poll_timeout <= self.poll_timeout_max:
            raise bad("poll_timeout", f"from 0 to poll_timeout_max ({self.poll_timeout_max:g})")
        if self.ws_ping_interval is not None and not 0 <= self.ws_ping_interval < float("inf"):
            raise bad("ws_ping_interval", "a number of seconds >= 0 (0, none or off: no pings)")
        if self.history_bytes < 1:
            raise bad("history_bytes", ">= 1")
        if self.history_total_bytes < 1:
            raise bad("history_total_bytes", ">= 1")
        if self.channel_ttl is not None and not 0 < self.channel_ttl < float("inf"):
            raise bad("channel_ttl", "a number of seconds > 0 (0, none or off: never)")
        for name in ("max_connections", "max_longpoll", "max_websocket"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise bad(name, ">= 0 (empty or auto: derived from the runtime)")
        if not 0 < self.header_timeout < float("inf"):
            raise bad("header_timeout", "a number of seconds > 0")
        if not 0 < self.ws_write_timeout < float("inf"):
            raise bad("ws_write_timeout", "a number of seconds > 0")
        if not 0 < self.sse_heartbeat < float("inf"):
            raise bad("sse_heartbeat", "a number of seconds > 0")
        for name in ("publish_token", "subscribe_token"):
            if any(c.isspace() or not c.isprintable() for c in getattr(self, name)):
                raise ValueError(f"{name} (LAB_{name.upper()}) must be printable with no white space")


_INTS = {"history", "max_batch", "max_body", "ws_max_message", "history_bytes", "history_total_bytes"}
_FLOATS = {"poll_timeout", "poll_timeout_max", "header_timeout", "ws_write_timeout", "sse_heartbeat"}
_OPTIONAL_INTS = {"max_connections", "max_longpoll", "max_websocket"}
_OFF = {"", "0", "none", "off"}


def _convert(name: str, raw: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
        if name in ("ws_ping_interval", "channel_ttl"):
            return None if raw.strip().lower() in _OFF else float(raw)
        if name in _OPTIONAL_INTS:
            return None if raw.strip().lower() in {"", "auto"} else int(raw)
        if name in ("ws_compression", "fast_path"):
            return _bool(raw)
    except ValueError as exc:
        raise ValueError(f"LAB_{name.upper()}: {exc}") from None
    return raw
