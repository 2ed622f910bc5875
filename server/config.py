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
RUNTIMES = ("werkzeug", "gthread", "gevent")
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
    ws_ping_interval: float | None = None
    """Server WebSocket pings every N seconds; ``None`` or 0: no pings."""
    ws_max_message: int = MiB
    """Largest client WebSocket message, bytes."""
    ws_compression: bool = False
    """Allow permessage-deflate when a client offers it."""

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


_INTS = {"history", "max_batch", "max_body", "ws_max_message"}
_FLOATS = {"poll_timeout", "poll_timeout_max"}


def _convert(name: str, raw: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
        if name == "ws_ping_interval":
            return None if raw.strip().lower() in {"", "0", "none", "off"} else float(raw)
        if name == "ws_compression":
            return _bool(raw)
    except ValueError as exc:
        raise ValueError(f"LAB_{name.upper()}: {exc}") from None
    return raw
