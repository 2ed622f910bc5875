"""gunicorn workers with a request-header deadline, and an ``accept`` that survives ``EMFILE``.

I/O layer under :mod:`server.runtimes`, imported by gunicorn (by name) in
the worker process only: ``gthread`` uses :class:`LabThreadWorker`,
``gevent`` uses :class:`LabGeventWorker`.

**Slowloris.** A client that sends its headers one byte a second used to
hold a gthread thread (or a gevent greenlet) for as long as it kept going;
two hundred of them took a 100-thread server out. Each client socket is
wrapped in :class:`HeaderDeadline` while gunicorn reads a request's head:
every ``recv`` waits at most until the deadline (``LAB_HEADER_TIMEOUT``,
10 s by default, from when gthread queues the connection for a thread, or
from when gevent's greenlet takes it). Past
it the client gets ``408`` and the connection is closed. The deadline is
disarmed when the request reaches the app, so bodies, held polls and
WebSockets are not cut by it. gthread arms it for every request on a
connection; gevent for the first one (gunicorn's gevent worker already
bounds the wait for later requests on a kept-alive connection by
``keepalive``, 75 s here).

**Closing never waits on the client.** gunicorn 27's gthread worker closes
a connection that is not kept alive "gracefully" on its main thread: it
half-closes, then reads what the client still sends until the client closes
or 2 s pass. A client that keeps its socket after a ``Connection: close``
answer (a ``503`` refusal read and left open) so stalled the main loop 2 s
each: no accepts, no keep-alive service, for anyone. :class:`HeaderDeadline`
makes that drain take only what has already arrived.

**File descriptors.** gunicorn's gthread worker re-raises ``EMFILE`` from
``accept()``, which kills the worker (and with it a memory bus's history).
:class:`LabThreadWorker` logs it and pauses accepting for a moment instead.
"""

from __future__ import annotations

import email.utils
import errno
import json
import socket
import time
from typing import Any, NoReturn

from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

from .app import lab_of

__all__ = ["EMFILE_PAUSE", "DateCache", "HeaderDeadline", "LabGeventWorker", "LabThreadWorker", "timeout_answer"]

EMFILE_PAUSE = 0.05
"""Seconds the gthread worker stops accepting after running out of file descriptors."""


class DateCache:
    """The ``Date`` header's value, formatted once a second instead of once a response (every runtime's writer)."""

    __slots__ = ("raw", "second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""
        self.raw = b""
        """:attr:`text` in bytes, for a writer that builds the head in bytes (server/pywsgi.py)."""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.text = email.utils.formatdate(second, localtime=False, usegmt=True)
            self.raw = self.text.encode("latin-1")
            self.second = second
        return self.text

    def now_bytes(self) -> bytes:
        self.now()
        return self.raw


def timeout_answer(seconds: float) -> bytes:
    """The ``408`` a client gets when its request head is late (also :mod:`server.pywsgi`'s)."""
    body = json.dumps(
        {"error": "request_timeout", "detail": f"request headers not received within {seconds:g} s"}
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderDeadline:
    """A client socket whose reads must end before a deadline while it is armed.

    Everything but :meth:`recv` goes to the wrapped socket (``_sock``, the
    raw socket under a gevent one, included), so the app sees no difference.
    """

    __slots__ = ("deadline", "draining", "inner", "seconds")

    def __init__(self, inner: socket.socket, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.deadline: float | None = None
        self.draining = False
        """Half-closed by gunicorn (``shutdown(SHUT_WR)``): reads take what is there, never wait."""

    def arm(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def disarm(self) -> None:
        self.deadline = None

    def shutdown(self, how: int) -> None:
        if how == socket.SHUT_WR:
            self.draining = True
        self.inner.shutdown(how)

    def recv(self, size: int, *flags: int) -> bytes:
        if self.draining:
            self.inner.settimeout(0.0)  # BlockingIOError when nothing is there: the drain stops
            return self.inner.recv(size, *flags)
        if self.deadline is None:
            return self.inner.recv(size, *flags)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self._expire()
        previous = self.inner.gettimeout()
        self.inner.settimeout(remaining)
        try:
            return self.inner.recv(size, *flags)
        except TimeoutError:
            self._expire()
        finally:
            self.inner.settimeout(previous)

    def _expire(self) -> NoReturn:
        """Answer 408 (best effort, without waiting on the client) and drop the connection."""
        self.deadline = None
        try:
            self.inner.settimeout(0)
            self.inner.send(timeout_answer(self.seconds))
        except OSError:
            pass
        # gunicorn logs ECONNRESET at debug level and closes the connection.
        raise ConnectionResetError(errno.ECONNRESET, f"request headers not received within {self.seconds:g} s")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _header_timeout(worker: Any) -> float:
    return float(lab_of(worker.wsgi).config.header_timeout)


class LabThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker with :class:`HeaderDeadline` and an ``EMFILE``-proof accept."""

    def accept(self, listener: socket.socket) -> None:
        try:
            super().accept(listener)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.log.warning("accept: out of file descriptors (%s); pausing %s s", exc, EMFILE_PAUSE)
            time.sleep(EMFILE_PAUSE)

    def enqueue_req(self, conn: Any) -> None:
        # Armed when the connection is queued for a thread, not when a thread
        # takes it: a slow client queued behind others is already late, and
        # is answered 408 at once instead of holding a thread for the full time.
        if not isinstance(conn.sock, HeaderDeadline):
            conn.sock = HeaderDeadline(conn.sock, _header_timeout(self))
        conn.sock.arm()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        try:
            return super().handle(conn)
        finally:
            conn.sock.disarm()

    def handle_request(self, req: Any, conn: Any) -> Any:
        guarded = conn.sock
        guarded.disarm()
        conn.sock = guarded.inner  # the app gets the socket itself
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock = guarded


class LabGeventWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker with :class:`HeaderDeadline` on a connection's first request."""

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        guarded = HeaderDeadline(client, _header_timeout(self))
        guarded.arm()
        super().handle(listener, guarded, addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        if isinstance(sock, HeaderDeadline):
            sock.disarm()
            sock = sock.inner  # the app gets the socket itself
        super().handle_request(listener_name, req, sock, addr)
