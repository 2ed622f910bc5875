"""``python -m bench.run.demo --delay 100``: the demo page over an emulated link (``make demo DELAY=100``).

Run layer of the benchmark: it puts the lab's link relay (:mod:`bench.link.relay`, one-way delay per
direction) in front of the lab's server, so that every connection the demo page opens (its long polls, its
WebSocket, its Server-Sent Events stream, its publishes and its round-trip probes) crosses a link with a real
delay. On loopback a transit takes microseconds and the difference between the transports is the browser's
own fetch path; at 100 ms one way RFC 6202's extra round trip is something you watch (docs/demo.md).

The server starts on a port it picks and announces (as the benchmark's server under test does:
:class:`bench.run.server.ServerHandle`), the relay on the requested port (default 8000) forwards to it.
The launcher prints one JSON line when both are ready (``{"event": "ready", "url": ..., "port": ...,
"server_port": ..., "delay_ms": ...}``, the lab's ready-line convention) and a sentence for people on
stderr, then waits. Ctrl-C, SIGTERM or either child exiting stops both; the last line it prints is
``{"event": "bye", ...}`` with the relay's final byte totals (every byte the page's connections carried,
both directions, headers included). No process is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import IO, Any

from bench.contract.scenarios import Link, LinkError
from bench.link.process import RelayProcess
from bench.process import Child, ChildError

from .server import READY_TIMEOUT_S, RunError, ServerHandle

__all__ = ["RUNTIMES", "Demo", "demo_url", "main", "server_command"]

RUNTIMES = ("gevent", "gthread", "werkzeug")
"""The server's runtimes (``python -m server --runtime``); gevent is what ``make demo`` runs."""

WATCH_INTERVAL_S = 0.2
"""How often the launcher checks that both children are alive."""


def server_command(runtime: str) -> list[str]:
    """The lab's server on a port it picks and announces (the demo page is its ``/``)."""
    return ["-m", "server", "--runtime", runtime, "--port", "0"]


def demo_url(host: str, port: int, delay_ms: float) -> str:
    """The URL to open: the relay's address, with the delay the page is told it is under."""
    shown = f"[{host}]" if ":" in host else host
    delay = f"{delay_ms:g}"
    return f"http://{shown}:{port}/?delay={delay}"


class Demo:
    """The lab's server with the relay in front of it; :meth:`start` then :meth:`stop` (or ``with``).

    ``port`` 0 lets the relay pick a free port (tests); :attr:`port` is the one it listens on. Stopping
    asks the relay to quit (its final totals land in :attr:`bye`) and stops the server's process group.
    """

    def __init__(
        self,
        delay_ms: float,
        port: int = 8000,
        host: str = "127.0.0.1",
        runtime: str = "gevent",
        log: IO[bytes] | None = None,
    ) -> None:
        self.link = Link(one_way_ms=float(delay_ms))
        self.log = log
        """Where the server's log goes (``None``: a temporary file, quoted when it fails to start)."""
        self.host = host
        self.listen_port = port
        self.runtime = runtime
        self.server: ServerHandle | None = None
        self.relay: RelayProcess | None = None
        self.bye: dict[str, Any] | None = None
        """The relay's final snapshot (bytes up and down, connections), once stopped."""

    @property
    def port(self) -> int:
        """Where the page is served: the relay's port."""
        if self.relay is None:
            raise RuntimeError("the demo is not started")
        return self.relay.port

    @property
    def url(self) -> str:
        return demo_url(self.host, self.port, self.link.one_way_ms)

    def start(self) -> Demo:
        """Start the server, wait for ``/healthz``, then start the relay in front of it."""
        try:
            child = Child(server_command(self.runtime), log=self.log, name="the server")
            self.server = ServerHandle(0, child, http=True, stop_timeout=10.0)
            try:
                ready = child.expect("port", READY_TIMEOUT_S)
            except ChildError as exc:
                raise RunError(f"the server did not start: {exc}") from exc
            self.server = ServerHandle(int(ready["port"]), child, http=True, stop_timeout=10.0)
            self.server.wait_ready()
            self.relay = RelayProcess(("127.0.0.1", self.server.port), self.link, (self.host, self.listen_port))
            try:
                self.relay.start()
            except ChildError as exc:
                raise RunError(
                    f"the relay could not listen on {self.host}:{self.listen_port} ({exc}); "
                    "is the port taken? (--port / PORT=)"
                ) from exc
        except BaseException:
            self.stop()
            raise
        return self

    def exited(self) -> str | None:
        """Which child has exited, if one has."""
        if self.server is not None and self.server.exited():
            return "the server"
        if self.relay is not None and self.relay.child.exited():
            return "the relay"
        return None

    def stop(self) -> None:
        """Stop the relay, then the server; safe to call twice, never leaves either running."""
        relay, self.relay = self.relay, None
        server, self.server = self.server, None
        try:
            if relay is not None:
                relay.stop()
                self.bye = relay.bye
        finally:
            if server is not None:
                server.stop()

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Stop(Exception):
    """SIGTERM or SIGINT arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run.demo",
        description=(
            "The demo page over an emulated link: the lab's server on a free port, the lab's relay on --port in "
            "front of it adding --delay ms in each direction. Open the URL it prints; Ctrl-C stops both."
        ),
    )
    parser.add_argument("--delay", type=float, required=True, help="one-way delay in ms, each direction (e.g. 100)")
    parser.add_argument("--port", type=int, default=8000, help="the page's port, the relay's (default: %(default)s)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address the relay listens on (default: %(default)s; keep it loopback)"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="gevent", help="server runtime (default: %(default)s)")
    return parser


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: start, announce, wait for a signal or a child's exit, stop both."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        demo = Demo(args.delay, args.port, args.host, args.runtime, log=sys.stderr.buffer)
    except LinkError as exc:
        parser.error(str(exc))
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        demo.start()
        assert demo.server is not None
        _say(
            {
                "event": "ready",
                "url": demo.url,
                "port": demo.port,
                "server_port": demo.server.port,
                "delay_ms": demo.link.one_way_ms,
                "runtime": demo.runtime,
                "pid": os.getpid(),
            }
        )
        print(
            f"demo: open {demo.url}\n"
            f"      the lab's relay on port {demo.port} adds {demo.link.one_way_ms:g} ms each way in front of the "
            f"{demo.runtime} server on port {demo.server.port}; Ctrl-C stops both",
            file=sys.stderr,
            flush=True,
        )
        while (gone := demo.exited()) is None:
            time.sleep(WATCH_INTERVAL_S)
        print(f"demo: {gone} exited; stopping", file=sys.stderr, flush=True)
        code = 1
    except _Stop:
        pass
    except RunError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for signum in previous:  # a second Ctrl-C must not cut the stop short
            signal.signal(signum, signal.SIG_IGN)
        demo.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    bye = demo.bye or {}
    _say({"event": "bye", "up": bye.get("up"), "down": bye.get("down"), "connections": bye.get("connections")})
    return code


if __name__ == "__main__":
    raise SystemExit(main())
