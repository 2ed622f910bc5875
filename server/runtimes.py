"""The four ways to run the app: Werkzeug threads, gunicorn gthread, gunicorn gevent, gevent's pywsgi.

- ``werkzeug``: Werkzeug's development server, one thread per connection.
- ``gthread``: gunicorn's threaded worker. A held long poll or an open
  WebSocket occupies one thread of ``--threads`` for its whole life (and
  simple-websocket adds a reader thread per WebSocket).
- ``gevent``: gunicorn's gevent worker, one greenlet per connection up to
  ``--connections``; the worker monkey-patches the standard library before
  the app is built, so the bus's locks and events are cooperative.
- ``pywsgi``: gevent's own WSGI server in one process (server/pywsgi.py),
  the server Flask-SocketIO's ``socketio.run()`` uses; cheaper per request
  than gunicorn's gevent worker (docs/performance.md). ``python -m server``
  monkey-patches the standard library before building the app.

Shutdown never waits on held connections: on SIGTERM/SIGINT/SIGQUIT each
worker closes its bus first, which answers held long polls (``503
shutting_down``) and closes WebSockets (``1001``) at once, instead of letting
gunicorn's graceful timeout (30 s by default) run out on them. Werkzeug's
server has no signal handling of its own (SIGTERM would kill it mid-response),
so :func:`_serve_werkzeug` installs one that closes the bus, waits for the
requests in flight to finish writing (at most ``graceful_timeout``), then stops.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from .app import create_app, lab_of
from .capacity import FD_RESERVE, FastRefusal, HonourConnectionClose, derive_limit, raise_fd_limit
from .config import RUNTIMES, Config
from .security import LOOPBACK_HOSTS, is_loopback

__all__ = ["RUNTIMES", "ServeOptions", "freeze_startup_heap", "serve"]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How to listen and with how many workers, threads and connections."""

    runtime: str = "werkzeug"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """gunicorn worker processes (use the Redis bus with more than one)."""
    threads: int = 100
    """gthread: threads per worker, i.e. concurrent connections per worker."""
    connections: int = 2000
    """gevent: greenlets (concurrent connections) per worker."""
    graceful_timeout: int = 5
    """gunicorn's backstop after the bus has released every held request."""


def serve(config: Config, options: ServeOptions) -> None:
    """Run the server in the foreground until a signal stops it."""
    config = prepare(config.with_overrides(runtime=options.runtime), options, raise_fd_limit())
    if options.runtime == "werkzeug":
        _serve_werkzeug(config, options)
    elif options.runtime in ("gthread", "gevent"):
        LabGunicorn(config, options).run()
    elif options.runtime == "pywsgi":
        from .pywsgi import serve_pywsgi  # the standard library is patched already (python -m server)

        if options.workers != 1:
            raise ValueError("the pywsgi runtime runs one process: use gevent (gunicorn) for several workers")
        serve_pywsgi(config, options.host, options.port, options.connections, options.graceful_timeout)
    else:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {options.runtime!r}")


WORKER_CLASSES = {"gthread": "server.workers.LabThreadWorker", "gevent": "server.workers.LabGeventWorker"}
"""gunicorn's workers with a header deadline (server/workers.py)."""


def prepare(config: Config, options: ServeOptions, fd_limit: int) -> Config:
    """What the configuration leaves to the runtime: connection limits and allowed hosts.

    The held-connection limit (``max_connections``) comes from
    :func:`~server.capacity.derive_limit` unless it is set; a server bound to
    a specific non-loopback address also answers to that address by default,
    and one bound to every interface (``0.0.0.0``, ``::``) to any ``Host``
    (it needs tokens then; ``python -m server`` checks).
    """
    changes: dict[str, Any] = {}
    if config.max_connections is None:
        changes["max_connections"] = derive_limit(options.runtime, options.threads, options.connections, fd_limit)
    if not config.allowed_hosts and not is_loopback(options.host):
        wildcard = options.host in ("", "0.0.0.0", "::", "[::]")
        changes["allowed_hosts"] = "*" if wildcard else ",".join([*sorted(LOOPBACK_HOSTS), options.host])
    return config.with_overrides(**changes)


def announce(runtime: str, host: str, port: int) -> None:
    """The ready line: one JSON object on stdout once the server listens (the only thing it writes there).

    ``python -m server --port 0`` lets the kernel pick a free port; whoever started it reads the port here
    instead of picking one, releasing it and hoping nobody takes it first. Logs go to stderr.
    """
    url = f"http://{host}:{port}"
    print(json.dumps({"listening": url, "port": port, "runtime": runtime, "pid": os.getpid()}), flush=True)


def freeze_startup_heap() -> None:
    """Put every object alive once the app is built in the collector's permanent generation (``gc.freeze``).

    The app, its modules and the libraries are tens of thousands of objects that live as long as the
    process. Each full collection traversed them all: a pause of tens of milliseconds in the middle of a
    fan-out, several times a minute under load, which is where a long poll's p99 came from
    (docs/performance.md). Frozen, a full collection looks only at what the requests made since. Called
    by the production runtimes (gthread, gevent in each gunicorn worker, pywsgi) once their app is built;
    not by werkzeug's development server, whose shutdown then waited on its requests forever (a test
    caught it), and never by ``create_app`` itself: tests build many apps and must get their memory back.
    """
    gc.collect()
    gc.freeze()
    # At exit the frozen objects go back to the collector, so interpreter shutdown finalizes them as it
    # would have (logging's handler references, the bus's threads) instead of after the modules are gone.
    atexit.register(gc.unfreeze)


def _serve_werkzeug(config: Config, options: ServeOptions) -> None:
    from werkzeug.serving import make_server

    app = create_app(config)
    bus = lab_of(app).bus
    in_flight = _InFlight(app.wsgi_app)
    app.wsgi_app = in_flight  # type: ignore[method-assign]
    server = make_server(options.host, options.port, app, threaded=True)

    def stop() -> None:
        bus.close()
        in_flight.wait_idle(options.graceful_timeout)
        server.shutdown()

    def handler(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever() returns: not from here.
        threading.Thread(target=stop, name="lab-stop", daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    announce(options.runtime, options.host, server.port)
    try:
        server.serve_forever()
    finally:
        bus.close()
        server.server_close()


class _InFlight:
    """WSGI middleware counting requests until their response is written.

    A long poll released by :meth:`Bus.close` still has to write its ``503``
    after the view returns; Werkzeug's request threads are daemons, so the
    process must wait for that before it exits.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._count = 0
        self._idle = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from werkzeug.wsgi import ClosingIterator

        with self._idle:
            self._count += 1
        try:
            return ClosingIterator(self.app(environ, start_response), [self._done])
        except BaseException:
            self._done()
            raise

    def _done(self) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout`` ran out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


def _close_bus_on_signals(app: Flask, runtime: str) -> None:
    """Chain a bus close in front of gunicorn's own signal handlers.

    The close must not run inside the handler itself: waking takes locks the
    interrupted code may hold. Under gthread a thread does it. Under gevent
    the handler may run in the hub's loop callback, where anything that
    blocks (even ``Thread.start()``, which waits for the thread to start)
    raises ``BlockingSwitchOutError``: there a greenlet is spawned instead,
    as gunicorn's gevent worker does for its own ``handle_quit``.
    """
    bus = lab_of(app).bus

    def close_soon() -> None:
        if runtime == "gevent":
            import gevent

            gevent.spawn(bus.close)
        else:
            threading.Thread(target=bus.close, name="lab-bus-close", daemon=True).start()

    def chain(previous: Any) -> Any:
        def handler(signum: int, frame: FrameType | None) -> None:
            try:
                close_soon()
            finally:
                if callable(previous):
                    previous(signum, frame)

        return handler

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, chain(signal.getsignal(signum)))


class _MemoryBusGuard:
    """gunicorn ``pre_fork`` hook: never replace a worker that held a memory bus.

    The memory bus lives in its worker. gunicorn replaces a worker that died
    (a crash, the arbiter's timeout, a signal) with a fresh one: an empty bus,
    whose channels start again at ``seq`` 1, so a subscriber coming back with
    its cursor would get a reset notice only if its cursor were above the new
    channel's ``last_seq``, and otherwise new events under old numbers,
    silently. Rather than that, the server stops (exit status 3, the reason in
    its log) and whoever supervises it restarts it, as after any restart.
    With the Redis bus the history is in Redis and workers are replaced as usual.
    """

    def __init__(self, memory: bool, workers: int) -> None:
        self.memory = memory
        self.workers = workers
        self.forked = 0

    def __call__(self, arbiter: Any, worker: Any) -> None:
        from gunicorn.errors import HaltServer

        if self.memory and self.forked >= self.workers:
            raise HaltServer(
                "a worker holding the memory bus exited; a new one would start with no history "
                "(subscribers could be served new events under old cursors): stopping instead",
                3,
            )
        self.forked += 1


def _one_write_response() -> type:
    """gunicorn's ``Response`` writing a response's head and whole body with one ``sendall``.

    gunicorn writes the head (``send_headers``) and then each body item (``write``): two system calls,
    and two TCP segments unless the kernel merges them, for every poll answer and publish. When the first
    item is the whole body of a ``Content-Length`` response (the lab's JSON answers), this writes the same
    bytes at once; anything else (chunked, a body in pieces, ``HEAD``) goes through gunicorn's own path.
    The ``Date`` header is formatted once a second (:class:`~server.workers.DateCache`). Imported in the worker only.
    """
    from gunicorn.http.wsgi import Response

    from .workers import DateCache

    dates = DateCache()

    class OneWriteResponse(Response):  # type: ignore[misc]
        def default_headers(self) -> list[str]:
            # gunicorn 27's own, but for the Date (tests/server/test_runtimes.py compares them).
            if self.upgrade:
                connection = "upgrade"
            elif self.should_close():
                connection = "close"
            else:
                connection = "keep-alive"
            major, minor = self.req.version
            headers = [
                f"HTTP/{major}.{minor} {self.status}\r\n",
                f"Server: {self.version}\r\n",
                f"Date: {dates.now()}\r\n",
                f"Connection: {connection}\r\n",
            ]
            if self.chunked:
                headers.append("Transfer-Encoding: chunked\r\n")
            return headers

        def write(self, arg: bytes) -> None:
            if (
                self.headers_sent  # type: ignore[has-type]
                or self.chunked
                or self._omits_body
                or not isinstance(arg, bytes)
                or self.response_length != len(arg)
            ):
                super().write(arg)
                return
            head = "".join([*self.default_headers(), *(f"{k}: {v}\r\n" for k, v in self.headers), "\r\n"])
            self.headers_sent = True
            self.sent += len(arg)
            self.sock.sendall(head.encode("latin-1") + arg)

    return OneWriteResponse


def install_one_write_response() -> None:
    """Make gunicorn's request handling (``gunicorn.http.wsgi.create``) use :func:`_one_write_response`'s class.

    gunicorn takes the class from its module at each request and offers no setting for it; the worker
    process is the lab's alone, so the module's name is rebound there, once, before the first request.
    """
    import gunicorn.http.wsgi

    if getattr(gunicorn.http.wsgi.Response, "__name__", "") != "OneWriteResponse":
        gunicorn.http.wsgi.Response = _one_write_response()


class LabGunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from code rather than from a config file."""

    def __init__(self, config: Config, options: ServeOptions) -> None:
        self.lab_config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        settings: dict[str, Any] = {
            "bind": f"{o.host}:{o.port}",
            "workers": o.workers,
            "worker_class": WORKER_CLASSES[o.runtime],
            "threads": o.threads,
            # Never more connections than file descriptors: gthread's accept()
            # would fail with EMFILE (server/workers.py survives it, but
            # refusing to accept is cleaner), gevent's would log each failure.
            "worker_connections": max(1, min(o.connections, raise_fd_limit() - FD_RESERVE)),
            "graceful_timeout": o.graceful_timeout,
            # A flood of connections arrives faster than one worker accepts:
            # gunicorn's 2,048 pending connections overflowed, and a dropped
            # SYN is retried after 1 s, 3 s, ... (/healthz too). The kernel caps
            # it at net.core.somaxconn.
            "backlog": 4096,
            # Long polls re-poll at once; keep their connections open.
            "keepalive": 75,
            "timeout": 60,
            # gunicorn's control socket has one default path per user: two
            # lab servers at once (tests, benchmarks) would fight over it.
            "control_socket_disable": True,
            "post_worker_init": lambda worker: _close_bus_on_signals(worker.wsgi, o.runtime),
            "pre_fork": _MemoryBusGuard(self.lab_config.bus == "memory", o.workers),
            # With --port 0 the kernel picks the port: say which, once the arbiter listens.
            "when_ready": lambda arbiter: announce(o.runtime, o.host, arbiter.LISTENERS[0].sock.getsockname()[1]),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Runs in the worker, after gevent's monkey-patching.
        install_one_write_response()
        app = create_app(self.lab_config)
        # Refusals at capacity skip Flask; gunicorn closes what asks to be closed.
        app.wsgi_app = HonourConnectionClose(FastRefusal(app.wsgi_app, lab_of(app).gate))  # type: ignore[method-assign]
        freeze_startup_heap()
        return app
