"""The three ways to run the app: Werkzeug threads, gunicorn gthread, gunicorn gevent.

- ``werkzeug``: Werkzeug's development server, one thread per connection.
- ``gthread``: gunicorn's threaded worker. A held long poll or an open
  WebSocket occupies one thread of ``--threads`` for its whole life (and
  simple-websocket adds a reader thread per WebSocket).
- ``gevent``: gunicorn's gevent worker, one greenlet per connection up to
  ``--connections``; the worker monkey-patches the standard library before
  the app is built, so the bus's locks and events are cooperative.

Shutdown never waits on held connections: on SIGTERM/SIGINT/SIGQUIT each
worker closes its bus first, which answers held long polls (``503
shutting_down``) and closes WebSockets (``1001``) at once, instead of letting
gunicorn's graceful timeout (30 s by default) run out on them.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from .app import create_app, lab_of
from .config import Config

__all__ = ["RUNTIMES", "ServeOptions", "serve"]

RUNTIMES = ("werkzeug", "gthread", "gevent")


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
    config = config.with_overrides(runtime=options.runtime)
    if options.runtime == "werkzeug":
        _serve_werkzeug(config, options)
    elif options.runtime in ("gthread", "gevent"):
        LabGunicorn(config, options).run()
    else:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {options.runtime!r}")


def _serve_werkzeug(config: Config, options: ServeOptions) -> None:
    from werkzeug.serving import run_simple

    app = create_app(config)
    try:
        run_simple(options.host, options.port, app, threaded=True)
    finally:
        lab_of(app).bus.close()


def _close_bus_on_signals(app: Flask, worker: Any) -> None:
    """Chain a bus close in front of gunicorn's own signal handlers."""
    bus = lab_of(app).bus

    def chain(previous: Any) -> Any:
        def handler(signum: int, frame: FrameType | None) -> None:
            # Not in the handler itself: waking takes locks the interrupted
            # code may hold. A thread (a greenlet under gevent) does it.
            threading.Thread(target=bus.close, name="lab-bus-close", daemon=True).start()
            if callable(previous):
                previous(signum, frame)

        return handler

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, chain(signal.getsignal(signum)))


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
            "worker_class": o.runtime,
            "threads": o.threads,
            "worker_connections": o.connections,
            "graceful_timeout": o.graceful_timeout,
            # Long polls re-poll at once; keep their connections open.
            "keepalive": 75,
            "timeout": 60,
            "post_worker_init": lambda worker: _close_bus_on_signals(worker.wsgi, worker),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Runs in the worker, after gevent's monkey-patching.
        return create_app(self.lab_config)
