"""``python -m peers.websockets``: parse the options and serve until SIGTERM or SIGINT (see README.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from .server import Options, main


def parse(argv: list[str] | None = None) -> Options:
    """The command line (the peer interface: ``--port 0`` and the peer's own options)."""
    parser = argparse.ArgumentParser(prog="python -m peers.websockets", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="WebSocket port; 0 (default): a free one, announced")
    parser.add_argument("--publish-port", type=int, default=0, help="HTTP publish port; 0 (default): a free one")
    parser.add_argument("--history", type=int, default=10_000, help="events kept per channel (default 10,000)")
    parser.add_argument("--ping-interval", type=float, default=0.0, help="seconds between pings; 0 (default): none")
    a = parser.parse_args(argv)
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this peer binds a loopback address only")
    if a.history < 1:
        parser.error("--history must be at least 1")
    return Options(a.host, a.port, a.publish_port, a.history, a.ping_interval or None)


if __name__ == "__main__":
    options = parse()
    # A parent may start us with SIGINT blocked (a mask is inherited across exec): the peer stops on it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    asyncio.run(main(options))
