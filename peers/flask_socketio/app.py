"""The Flask-SocketIO peer: the course's payment-notification pattern, and how it is served.

A peer of the lab (``peers/``), independent of it: it imports nothing of ``server``, ``clients`` or ``bench``.

The app (:func:`create_app`): a Flask app and a :class:`flask_socketio.SocketIO` on it.

- A client connects over Socket.IO v5 / Engine.IO v4 (``/socket.io/``) with its channel in the handshake's
  query string (``/socket.io/?EIO=4&transport=polling&channel=payments``); the ``connect`` handler reads it
  from the Engine.IO handshake request and joins the room of that name. A bad or missing name refuses the
  connection (Socket.IO ``CONNECT_ERROR``: ``44{"message":"bad_channel"}``). Why the query string rather than a
  ``join`` event: it costs no round trip (the connect ack comes back with the room already joined, so nothing
  published after it is missed), and it is read the same way over both transports.
- ``POST /channels/<channel>/events`` parses the JSON body and emits it to the room as the event
  :data:`EVENT` (``"e"``, one byte of name: the name is on the wire in every event, ``42["e",<payload>]``),
  then answers ``202`` ``{"channel":"<channel>"}``: accepted, queued for every member of the room. Socket.IO
  serializes the payload again with ``separators=(",", ":")``, so a compact JSON body (the benchmark's
  payloads) is delivered byte for byte as it was posted.
- ``GET /healthz``: ``200 ok``.

Serving (:func:`serve`): what ``socketio.run(app)`` does underneath, on a socket bound here so that port 0
works and the port can be announced, with ``TCP_NODELAY`` optional (see the README and :func:`listener`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from types import FrameType
from typing import Any

from flask import Flask, Response, request
from flask_socketio import ConnectionRefusedError as Refused  # socketio's: its message reaches the client
from flask_socketio import SocketIO, join_room

__all__ = ["ASYNC_MODES", "CHANNEL_RE", "EVENT", "ContentLength", "Options", "create_app", "listener", "serve"]

EVENT = "e"
"""The Socket.IO event name every publish is emitted as (on the wire in each event: keep it short)."""
CHANNEL_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Valid channel names, the lab's (docs/protocol.md, "Channels")."""
ASYNC_MODES = ("gevent", "threading")
"""The async modes this peer runs on (eventlet is deprecated upstream and not installed here)."""


@dataclass(frozen=True, slots=True)
class Options:
    """How the peer is started (``python -m peers.flask_socketio``)."""

    host: str = "127.0.0.1"
    port: int = 0
    async_mode: str = "gevent"
    nodelay: bool = False
    """``TCP_NODELAY`` on the listening socket (accepted sockets inherit it on Linux); ``socketio.run`` sets none."""
    ping_interval: float = 25.0
    """Engine.IO's ``pingInterval``, seconds (Socket.IO's default 25)."""
    ping_timeout: float = 20.0
    """Engine.IO's ``pingTimeout``, seconds (Socket.IO's default 20)."""


def _json(status: int, obj: Any) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), status, mimetype="application/json")


def create_app(options: Options) -> tuple[Flask, SocketIO]:
    """The app and its :class:`SocketIO` (the app factory: no module-level state)."""
    app = Flask(__name__)
    socketio = SocketIO(
        app,
        async_mode=options.async_mode,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        # No Origin header from the bench's clients: python-engineio checks origins only when one is sent
        # (None: the server's own origin only, for browsers).
        cors_allowed_origins=None,
        logger=False,
        engineio_logger=False,
    )

    @socketio.on("connect")  # type: ignore[untyped-decorator]
    def connect(auth: Any = None) -> None:
        channel = request.args.get("channel", "")
        if CHANNEL_RE.fullmatch(channel) is None:
            raise Refused("bad_channel")
        join_room(channel)

    @app.post("/channels/<channel>/events")
    def publish(channel: str) -> Response:
        if CHANNEL_RE.fullmatch(channel) is None:
            return _json(400, {"error": "bad_channel", "detail": "channel must match [A-Za-z0-9_.-]{1,64}"})
        try:
            data = json.loads(request.get_data())
        except ValueError as exc:  # not UTF-8 (UnicodeDecodeError is one) or not JSON
            return _json(400, {"error": "bad_json", "detail": str(exc)[:200]})
        socketio.emit(EVENT, data, to=channel)
        return _json(202, {"channel": channel})

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", 200, mimetype="text/plain")

    return app, socketio


class ContentLength:
    """WSGI middleware: a ``Content-Length`` on answers whose body is a list of bytes and that set none.

    python-engineio answers every long-polling request with a one-element list and no ``Content-Length``.
    gevent's pywsgi computes the length of such a body itself; Werkzeug's server sends it chunked instead
    (``Transfer-Encoding: chunked``, the body as a chunk and a last empty chunk). The bench's HTTP client
    reads ``Content-Length`` bodies only (as the peer interface asks), so under ``threading`` this adds the
    header pywsgi would have written: both modes put the same answer on the wire. Anything else (Flask's
    own answers, which have a length; the WebSocket, which takes the socket over) passes through untouched.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started: list[tuple[str, list[tuple[str, str]], Any]] = []

        def defer(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started.append((status, headers, exc_info))
            return self._no_write

        body = self.app(environ, defer)
        if not started:
            return body
        status, headers, exc_info = started[-1]
        if isinstance(body, list) and not any(name.lower() == "content-length" for name, _ in headers):
            headers = [*headers, ("Content-Length", str(sum(len(chunk) for chunk in body)))]
        start_response(status, headers, exc_info)
        return body

    @staticmethod
    def _no_write(data: bytes) -> None:
        raise RuntimeError("the legacy write() callable is not supported by this middleware")


def listener(host: str, port: int, nodelay: bool, backlog: int = 4096) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), with ``TCP_NODELAY`` if ``nodelay``.

    On Linux a socket returned by ``accept()`` inherits ``TCP_NODELAY`` from the listening socket, so every
    connection the server accepts has Nagle's algorithm off without touching the server's code
    (tests/peers/test_flask_socketio.py checks the accepted socket's option).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def versions(async_mode: str) -> dict[str, str]:
    """The packages this peer runs on, for the ready line."""
    names = ["flask", "flask-socketio", "python-socketio", "python-engineio", "simple-websocket", "werkzeug"]
    if async_mode == "gevent":
        names.append("gevent")
    return {name: version(name) for name in names} | {"python": sys.version.split()[0]}


def announce(options: Options, port: int) -> None:
    """The ready line (the peer interface: one JSON object on stdout, once it listens)."""
    line = {
        "listening": f"http://{options.host}:{port}",
        "port": port,
        "peer": "flask_socketio",
        "pid": os.getpid(),
        "versions": versions(options.async_mode),
        "options": asdict(options),
    }
    print(json.dumps(line), flush=True)


def serve(options: Options) -> None:
    """Serve until SIGTERM or SIGINT. Under gevent the caller has monkey-patched first (``__main__``)."""
    if options.async_mode not in ASYNC_MODES:
        raise ValueError(f"async mode must be one of {ASYNC_MODES}, not {options.async_mode!r}")
    app, _socketio = create_app(options)
    if options.async_mode == "gevent":
        _serve_gevent(app, options)
    else:
        _serve_threading(app, options)


def _serve_gevent(app: Flask, options: Options) -> None:
    """gevent's pywsgi, as ``socketio.run`` builds it, on a listening socket bound here.

    ``socketio.run`` passes ``(host, port)`` to ``pywsgi.WSGIServer``, which binds it with gevent's defaults
    (no ``TCP_NODELAY``); here the socket is bound first (:func:`listener`) so that the port it got can be
    announced and ``TCP_NODELAY`` set when asked. The rest is the same: ``log=None`` (``socketio.run``'s
    default, ``log_output`` off), no ``handler_class`` (gevent-websocket is not installed, so python-engineio
    serves the WebSocket with simple-websocket on gevent's sockets).
    """
    import gevent
    from gevent import pywsgi

    sock = listener(options.host, options.port, options.nodelay)
    server = pywsgi.WSGIServer(sock, app, log=None)

    def stop() -> None:
        server.stop(timeout=1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda: gevent.spawn(stop))
    server.start()
    announce(options, int(sock.getsockname()[1]))
    server.serve_forever()


def _serve_threading(app: Flask, options: Options) -> None:
    """Werkzeug's threaded server, as ``socketio.run`` starts it (``app.run(threaded=True)``, i.e. ``make_server``).

    ``make_server`` is called directly (``app.run`` would go through ``run_simple``, which neither announces
    the port it got nor returns the server to stop); ``TCP_NODELAY``, when asked, is set on its listening
    socket before the first accept. Werkzeug logs each request on stderr, as under ``socketio.run``.
    """
    from werkzeug.serving import make_server

    server = make_server(options.host, options.port, ContentLength(app.wsgi_app), threaded=True)
    if options.nodelay:
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handler(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return: not from the handler, which interrupted it.
        threading.Thread(target=server.shutdown, name="peer-stop", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    announce(options, server.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
