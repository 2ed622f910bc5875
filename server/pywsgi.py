"""The ``pywsgi`` runtime: gevent's own WSGI server, one process, as Flask-SocketIO's ``socketio.run()`` uses.

Why a fourth runtime: a request costs less here than on gunicorn's gevent
worker (docs/performance.md: with the fast path, about 200 µs of server CPU
for an immediate poll answer against about 370 µs), and Flask-SocketIO, the
peer the lab's long polling is measured against, runs on it. The app is the
same Flask app with the same middleware; only the HTTP server under it
changes, so the report can put "same code, cheaper server" next to the
framework's cost.

What gevent's ``pywsgi`` lacks and the lab's gunicorn workers have
(server/workers.py) is added by :class:`LabHandler` and :class:`LabServer`:

- **A header deadline** (slowloris): a connection's first request head must
  arrive within ``header_timeout`` of the accept, or the client gets ``408``
  and the connection is closed. A kept-alive connection may wait
  :data:`KEEPALIVE` seconds for its next request (then it is closed without
  a word, as gunicorn does), and once the request line has come, its headers
  must follow within ``header_timeout``. Bodies, held polls and WebSockets
  are not cut by it.
- **One write per response**: pywsgi sends a response's head and its first
  body chunk in two ``sendall`` calls; :meth:`LabHandler._write_with_headers`
  sends them in one, as the gunicorn runtimes do (server/runtimes.py).
- **TCP_NODELAY** on the listening socket (accepted sockets inherit it):
  without it each chunk that follows another waits for the client's delayed
  ACK (the Flask-SocketIO peer measured about 40 ms per answer without it).
- **The connection's socket in the environ** under ``gunicorn.socket``, the
  name simple-websocket and :func:`server.capacity.client_gone` look for;
  and, as gunicorn does, ``StopIteration`` raised by the app means the
  connection was taken over (a finished WebSocket): nothing more is written
  and it is closed.
- **An accept that survives EMFILE**: out of file descriptors, the server
  logs one line and stops accepting for :data:`EMFILE_PAUSE` (gevent's own
  handling survives too, but logs a traceback for each failed accept).
- **A bounded pool** of ``connections`` greenlets: at the bound the server
  stops accepting until one ends, and the capacity gate (server/capacity.py)
  refuses held connections politely before that.
- **Shutdown that never waits on held connections**: SIGTERM or SIGINT
  closes the bus (held polls answer ``503 shutting_down``, WebSockets close
  ``1001``), then the server stops, waiting at most ``graceful_timeout``
  for the requests in flight to finish writing.

The module imports gevent but never monkey-patches: ``python -m server``
patches the standard library before it builds the app (:func:`patch`).
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .app import create_app, lab_of
from .capacity import FastRefusal
from .config import Config
from .workers import EMFILE_PAUSE, timeout_answer

__all__ = ["KEEPALIVE", "LabHandler", "LabServer", "patch", "serve_pywsgi"]

log = logging.getLogger(__name__)

KEEPALIVE = 75.0
"""Seconds a kept-alive connection may wait for its next request (gunicorn's ``keepalive`` in the lab)."""


def patch() -> None:
    """gevent's monkey-patching of the standard library: before the app (and its bus's locks) is built."""
    from gevent import monkey

    monkey.patch_all()


class _HeadersLate(Exception):
    """Raised by the header deadline's timer in the handler's greenlet."""


class LabHandler(WSGIHandler):  # type: ignore[misc]
    """gevent's request handler with a header deadline, one write per response and the socket in the environ."""

    header_timeout = 10.0
    """Set per server by :class:`LabServer` from the configuration."""

    _served = 0
    _deadline: gevent.Timeout | None = None

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile)
        self._timers: dict[float, gevent.Timeout] = {}

    def read_requestline(self) -> str:
        first = self._served == 0
        self._served += 1
        self._arm(self.header_timeout if first else KEEPALIVE)
        try:
            line: str = super().read_requestline()
        except _HeadersLate:
            if first:
                self._refuse()
            return ""  # handle_one_request closes the connection on an empty line
        except BaseException:
            self._disarm()
            raise
        if not line:
            self._disarm()
        elif not first:  # the next request began: its headers get the header deadline
            self._arm(self.header_timeout)
        return line

    def read_request(self, raw_requestline: str) -> bool:
        try:
            ok: bool = super().read_request(raw_requestline)
        except _HeadersLate:
            self._refuse()
            raise ConnectionResetError(
                errno.ECONNRESET, f"request headers not received within {self.header_timeout:g} s"
            ) from None
        finally:
            self._disarm()
        return ok

    def _arm(self, seconds: float) -> None:
        """Start the connection's deadline of ``seconds`` (a gevent timer's interval is fixed when it is made:
        one timer per interval, made once per connection and restarted, not two new ones per request)."""
        self._disarm()
        timer = self._timers.get(seconds)
        if timer is None:
            timer = self._timers[seconds] = gevent.Timeout(seconds, _HeadersLate())
        timer.start()
        self._deadline = timer

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def log_request(self) -> None:
        """No access log (as the gunicorn runtimes): pywsgi formats the line even when it writes it nowhere."""

    def _refuse(self) -> None:
        """Answer ``408`` without waiting on the client, and have the connection closed."""
        self.close_connection = True
        try:
            self.socket.setblocking(False)
            self.socket.send(timeout_answer(self.header_timeout))
        except OSError:
            pass

    def _handle_client_error(self, ex: BaseException) -> Any:
        if isinstance(ex, ConnectionResetError):  # the 408 is written: close without a 400 after it
            return None
        return super()._handle_client_error(ex)

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ["gunicorn.socket"] = self.socket
        return environ

    def run_application(self) -> None:
        try:
            super().run_application()
        except StopIteration:  # the app took the connection over (a WebSocket that has ended): close it
            self.close_connection = True

    def _write_with_headers(self, data: bytes) -> None:
        # pywsgi's own, but the head and the first chunk of the body in one sendall.
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for header, value in self.response_headers:
            out += header
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
        self._sendall(out)


class LabServer(WSGIServer):  # type: ignore[misc]
    """gevent's WSGI server with an ``EMFILE``-proof accept and ``TCP_NODELAY`` on its listener."""

    handler_class = LabHandler

    def init_socket(self) -> None:
        super().init_socket()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            log.warning("accept: out of file descriptors (%s); pausing %s s", exc, EMFILE_PAUSE)
            self.stop_accepting()
            self._timer = self.loop.timer(EMFILE_PAUSE)
            self._timer.start(self._start_accepting_if_started)
            return None


def serve_pywsgi(config: Config, host: str, port: int, connections: int, graceful_timeout: float) -> None:
    """Build the app (the standard library patched already), listen, announce, serve until a signal."""
    from .runtimes import announce

    app = create_app(config)
    lab = lab_of(app)
    # Refusals at capacity skip Flask, as under gunicorn; pywsgi honours ``Connection: close`` itself.
    app.wsgi_app = FastRefusal(app.wsgi_app, lab.gate)  # type: ignore[method-assign]
    handler = type("LabHandlerHere", (LabHandler,), {"header_timeout": config.header_timeout})
    server = LabServer(
        (host, port),
        app,
        backlog=4096,
        spawn=Pool(connections),
        handler_class=handler,
        log=None,  # no access log, as the gunicorn runtimes
        error_log=sys.stderr,
    )

    def stop() -> None:
        lab.bus.close()  # held polls answer 503 shutting_down, WebSockets close 1001
        server.stop(timeout=graceful_timeout)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda: gevent.spawn(stop))
    server.start()
    announce("pywsgi", host, server.server_port)
    try:
        server.serve_forever()
    finally:
        lab.bus.close()
