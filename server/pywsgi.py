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
  sends them in one, as the gunicorn runtimes do (server/runtimes.py). The
  ``Date`` header is formatted once a second, not once a response.
- **A strict, cheaper header parser** (:func:`read_headers`): pywsgi hands
  each request's head to the standard library's e-mail parser
  (``http.client.parse_headers``), a fifth of an immediate poll's CPU
  (docs/performance.md). The lab reads the lines itself, with the standard
  library's limits, and refuses with ``400`` what RFC 9112 says a server must
  refuse and the e-mail parser lets through (a space before the colon, a
  folded line, a name that is not a token), as gunicorn does.
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
import re
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .app import create_app, lab_of
from .capacity import FastRefusal
from .config import Config
from .workers import EMFILE_PAUSE, DateCache, timeout_answer

__all__ = ["KEEPALIVE", "LabHandler", "LabServer", "RequestHeaders", "patch", "read_headers", "serve_pywsgi"]

log = logging.getLogger(__name__)

KEEPALIVE = 75.0
"""Seconds a kept-alive connection may wait for its next request (gunicorn's ``keepalive`` in the lab)."""


def patch() -> None:
    """gevent's monkey-patching of the standard library: before the app (and its bus's locks) is built."""
    from gevent import monkey

    monkey.patch_all()


MAX_HEADER_LINE = 65536
"""Longest header line read (``http.client``'s ``_MAXLINE``, the limit pywsgi's own parser has)."""
MAX_HEADERS = 100
"""Most header lines in a request (``http.client``'s ``_MAXHEADERS``)."""
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110's ``token``: what a field name is made of."""
DATES = DateCache()


class RequestHeaders:
    """A request's header fields, as :func:`read_headers` parsed them.

    Offers the part of ``http.client.HTTPMessage`` (through gevent's ``OldMessage``) that
    ``gevent.pywsgi.WSGIHandler`` uses: ``status`` (non-empty: refuse the request with ``400``),
    ``get`` and ``getheader`` (case-insensitive, the first field of that name), deleting a field by
    name, ``headers`` (each field as a ``"Name: value\\r\\n"`` line) and ``typeheader``.
    """

    __slots__ = ("fields", "status")

    def __init__(self, fields: list[tuple[str, str]], status: str = "") -> None:
        self.fields = fields
        """(name as sent, value without surrounding whitespace), in order; repeated names kept."""
        self.status = status

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.fields:
            if key.lower() == name:
                return value
        return default

    getheader = get

    def __delitem__(self, name: str) -> None:
        name = name.lower()
        self.fields = [(k, v) for k, v in self.fields if k.lower() != name]

    @property
    def headers(self) -> list[str]:
        return [f"{key}: {value}\r\n" for key, value in self.fields]

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")


def read_headers(rfile: Any) -> RequestHeaders:
    """Read a request's header lines up to the empty line; a non-empty ``status`` says why it is refused.

    Refused (RFC 9112, section 5; RFC 9110, section 5.5): a line without a colon, a name that is not
    a token (a space before the colon included), a folded line (``obs-fold``), a CR or NUL inside a
    value, a line longer than
    :data:`MAX_HEADER_LINE` or more than :data:`MAX_HEADERS` lines. The end of the stream ends the
    head, as in ``http.client``.
    """
    fields: list[tuple[str, str]] = []
    while True:
        line: bytes = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            return RequestHeaders([], "Line too long")
        if line in (b"\r\n", b"\n", b""):
            return RequestHeaders(fields)
        if len(fields) == MAX_HEADERS:
            return RequestHeaders([], f"got more than {MAX_HEADERS} headers")
        name, colon, value = line.partition(b":")
        value = value.strip(b" \t\r\n")
        if not colon or _FIELD_NAME.fullmatch(name) is None or b"\r" in value or b"\0" in value:
            return RequestHeaders([], f"invalid header line {line[:60]!r}")
        fields.append((name.decode("latin-1"), value.decode("latin-1")))


class _HeadersLate(Exception):
    """Raised by the header deadline's timer in the handler's greenlet."""


class LabHandler(WSGIHandler):  # type: ignore[misc]
    """gevent's request handler with a header deadline, one write per response and the socket in the environ."""

    header_timeout = 10.0
    """Set per server by :class:`LabServer` from the configuration."""

    _served = 0
    _deadline: Any = None
    """The running deadline's timer (a libev timer of the hub's loop), if any."""

    def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile)
        self._timers: dict[float, Any] = {}

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self._disarm()
            for timer in self._timers.values():
                timer.close()

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
        """Start the connection's deadline of ``seconds``: :class:`_HeadersLate` is thrown into this greenlet then.

        A libev timer of the hub's loop, as ``gevent.Timeout`` uses, without its Python wrapper (two per
        request). A timer's interval is fixed when it is made: one per interval, made once per connection
        and restarted, not two new ones per request.
        """
        self._disarm()
        timer = self._timers.get(seconds)
        if timer is None:
            timer = self._timers[seconds] = gevent.get_hub().loop.timer(seconds)
        timer.start(gevent.getcurrent().throw, _HeadersLate())
        self._deadline = timer

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.stop()
            self._deadline = None

    def _headers(self) -> Iterator[tuple[str, str]]:
        # pywsgi's own (fields whose name has "_" dropped, CONTENT_TYPE and CONTENT_LENGTH left to it) without
        # formatting each field as a line and splitting it again; get_environ joins repeated names.
        for name, value in self.headers.fields:
            if "_" not in name:
                key = name.replace("-", "_").upper()
                if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                    yield "HTTP_" + key, value

    def MessageClass(self, rfile: Any, *_: Any) -> RequestHeaders:  # pywsgi's name for it
        return read_headers(rfile)

    def finalize_headers(self) -> None:
        if self.provided_date is None:  # type: ignore[has-type]  # pywsgi's own, but the Date once a second
            self.response_headers.append((b"Date", DATES.now_bytes()))
            self.provided_date = True
        super().finalize_headers()

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
    from .runtimes import announce, freeze_startup_heap

    app = create_app(config)
    lab = lab_of(app)
    # Refusals at capacity skip Flask, as under gunicorn; pywsgi honours ``Connection: close`` itself.
    app.wsgi_app = FastRefusal(app.wsgi_app, lab.gate)  # type: ignore[method-assign]
    freeze_startup_heap()
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
