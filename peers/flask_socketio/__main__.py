"""``python -m peers.flask_socketio``: parse the options, monkey-patch for gevent, serve (see README.md).

Flask-SocketIO's documentation asks for gevent's ``monkey.patch_all()`` before anything else is imported,
so this module imports only ``argparse`` before it, and the app afterwards.
"""

from __future__ import annotations

import argparse
import signal


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (the peer interface: ``--port 0`` and the peer's own options)."""
    parser = argparse.ArgumentParser(prog="python -m peers.flask_socketio", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 (default): a free one, announced")
    parser.add_argument("--async-mode", choices=("gevent", "threading"), default="gevent")
    parser.add_argument(
        "--nodelay", choices=("on", "off"), default="off", help="TCP_NODELAY on accepted sockets (default off)"
    )
    parser.add_argument("--ping-interval", type=float, default=25.0, help="Engine.IO pingInterval, s (default 25)")
    parser.add_argument("--ping-timeout", type=float, default=20.0, help="Engine.IO pingTimeout, s (default 20)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    # A parent may start us with SIGINT blocked (a mask is inherited across exec): the peer stops on it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("this peer binds a loopback address only")
    if args.async_mode == "gevent":
        from gevent import monkey

        monkey.patch_all()
    from .app import Options, serve

    serve(
        Options(
            host=args.host,
            port=args.port,
            async_mode=args.async_mode,
            nodelay=args.nodelay == "on",
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
        )
    )


if __name__ == "__main__":
    main()
