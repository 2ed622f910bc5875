"""Refusal at capacity: limits on held connections, per transport and in all.

A held long poll or an open WebSocket occupies what a runtime has a fixed
number of (gthread: a thread of ``--threads``; gevent: a greenlet of
``--connections``; any runtime: a file descriptor). Past that, new
connections used to wait in the listen queue until their clients gave up,
``/healthz`` and publishes with them. Now a request that would hold a
connection past its limit is refused at once: ``503 at_capacity`` with
``Retry-After`` and ``Connection: close`` for a long poll, close ``1013``
(try again later) for a WebSocket. The limits are set below what the runtime
has, so short requests (``/healthz``, publishing, refusals themselves) always
find a thread or greenlet: :func:`derive_limit` keeps a reserve.

:class:`Gate` is the counter; it knows nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .config import Config
from .errors import ApiError

__all__ = [
    "CLOSE_TRY_AGAIN_LATER",
    "FD_RESERVE",
    "RETRY_AFTER",
    "AtCapacity",
    "FastRefusal",
    "Gate",
    "HonourConnectionClose",
    "client_gone",
    "derive_limit",
    "raise_fd_limit",
]

CLOSE_TRY_AGAIN_LATER = 1013
"""RFC 6455 close code for a WebSocket refused at capacity."""

RETRY_AFTER = 1
"""Seconds a refused client is told to wait (``Retry-After``)."""

FD_RESERVE = 64
"""File descriptors kept for listening sockets, logs, the bus and short requests."""


class AtCapacity(ApiError):
    """``503 at_capacity``: the transport's limit is reached; try again after ``Retry-After``."""

    def __init__(self, transport: str, limit: int) -> None:
        # The refused connection must not linger as an idle keep-alive: it
        # would hold the very greenlet or thread the refusal frees.
        headers = {"Retry-After": str(RETRY_AFTER), "Connection": "close"}
        super().__init__(
            503, "at_capacity", f"{transport} is at its limit of {limit} connections; retry later", headers
        )


class Gate:
    """Counts held connections per transport against their limits (``None``: no limit)."""

    def __init__(self, total: int | None, per_transport: dict[str, int | None]) -> None:
        self.total = total
        self.limits = dict(per_transport)
        self.held = dict.fromkeys(per_transport, 0)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> Gate:
        total = config.max_connections
        return cls(
            total,
            {
                "longpoll": total if config.max_longpoll is None else config.max_longpoll,
                "websocket": total if config.max_websocket is None else config.max_websocket,
                "sse": total,
            },
        )

    def try_acquire(self, transport: str) -> bool:
        """Take a slot for ``transport``; false when it or the total is at its limit."""
        with self._lock:
            limit = self.limits[transport]
            if limit is not None and self.held[transport] >= limit:
                return False
            if self.total is not None and sum(self.held.values()) >= self.total:
                return False
            self.held[transport] += 1
            return True

    def release(self, transport: str) -> None:
        with self._lock:
            self.held[transport] -= 1

    def full(self, transport: str) -> bool:
        """Whether :meth:`try_acquire` would refuse now (a hint: no slot is taken)."""
        limit = self.limits[transport]
        if limit is not None and self.held[transport] >= limit:
            return True
        return self.total is not None and sum(self.held.values()) >= self.total

    def limit_of(self, transport: str) -> int:
        """The tighter of the transport's limit and the total (``-1``: none)."""
        limits = [x for x in (self.limits[transport], self.total) if x is not None]
        return min(limits) if limits else -1

    @contextlib.contextmanager
    def hold(self, transport: str) -> Iterator[None]:
        """A slot for the ``with`` body, or :class:`AtCapacity` raised at once."""
        if not self.try_acquire(transport):
            raise AtCapacity(transport, self.limit_of(transport))
        try:
            yield
        finally:
            self.release(transport)


class FastRefusal:
    """WSGI middleware: a long poll that would be refused at capacity is refused before Flask runs.

    A refusal through Flask (routing, hooks, the JSON error) cost about 1 ms
    of CPU; under a flood the refusals themselves were what kept ``/healthz``
    waiting. This answers the same ``503 at_capacity`` from pre-built bytes.
    A poll that passes here can still be refused by the route (:meth:`Gate.hold`
    is the authority); a request it refuses was bound to be.
    """

    def __init__(self, app: Any, gate: Gate) -> None:
        self.app = app
        self.gate = gate
        error = AtCapacity("longpoll", gate.limit_of("longpoll"))
        self.body = json.dumps({"error": error.error, "detail": error.detail}).encode()
        self.headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(self.body))),
            ("Cache-Control", "no-store"),
            ("Retry-After", str(RETRY_AFTER)),
            ("Connection", "close"),
        ]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and environ.get("PATH_INFO", "").endswith("/poll")
            and self.gate.full("longpoll")
        ):
            start_response("503 SERVICE UNAVAILABLE", list(self.headers))
            return [self.body]
        return self.app(environ, start_response)


class HonourConnectionClose:
    """WSGI middleware: a response with ``Connection: close`` closes its connection under gunicorn too.

    gunicorn drops hop-by-hop headers an app sets and keeps the connection
    alive; a refusal at capacity must not stay as an idle keep-alive holding
    the greenlet or thread it frees. gunicorn's ``start_response`` is a bound
    method of its response, whose ``force_close()`` does what the header says.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def client_gone(environ: dict[str, Any]) -> Callable[[], bool] | None:
    """A check that the client of this request has closed its connection, if the runtime exposes it.

    Every runtime of the lab puts the connection's socket in the WSGI environ
    (``gunicorn.socket``, ``werkzeug.socket``). Peeking one byte without
    waiting tells the three cases apart: end of stream or a reset (gone),
    nothing to read (still there), bytes (a client that sent more: still there).
    Under gevent the raw socket underneath is peeked, which never yields.
    """
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return None
    # Under gevent, socket.socket is gevent's class and the raw one is ``_sock``.
    raw = getattr(sock, "_sock", sock)
    if not callable(getattr(raw, "recv", None)):
        return None

    def gone() -> bool:
        try:
            peeked: bytes = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except ValueError:  # a TLS socket: cannot peek at the stream
            return False
        except OSError:
            return True
        return peeked == b""

    return gone


def raise_fd_limit() -> int:
    """Raise this process's soft file-descriptor limit to its hard limit; return it.

    The default soft limit (often 1,024) is below what gevent's 2,000
    connections need; at the limit ``accept()`` fails with ``EMFILE``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def derive_limit(runtime: str, threads: int, connections: int, fd_limit: int) -> int:
    """Held connections a runtime can take while short requests still get through.

    gthread: ``threads`` less a tenth (at least 2) kept for short requests;
    gevent and pywsgi: ``connections`` less a tenth (at least 2); werkzeug: no pool, so
    the file descriptors. All capped by ``fd_limit`` less :data:`FD_RESERVE`.
    """
    by_fd = max(1, fd_limit - FD_RESERVE)
    if runtime == "gthread":
        pool = threads
    elif runtime in ("gevent", "pywsgi"):
        pool = connections
    else:
        return by_fd
    return max(1, min(pool - max(2, pool // 10), by_fd))
