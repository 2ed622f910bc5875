"""``python -m server``: run the lab's server.

Flags override ``LAB_*`` environment variables (docs/configuration.md).
"""

from __future__ import annotations

import argparse

from .config import Config
from .runtimes import RUNTIMES, ServeOptions, serve


def parse_args(argv: list[str] | None = None) -> tuple[Config, ServeOptions]:
    """Flags and ``LAB_*`` variables to a configuration; exits with status 2 on a bad one."""
    defaults = ServeOptions()
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    p.add_argument(
        "--runtime", choices=RUNTIMES, default=defaults.runtime, help="server runtime (default: %(default)s)"
    )
    p.add_argument("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=defaults.port, help="port (default: %(default)s)")
    p.add_argument(
        "--workers", type=int, default=defaults.workers, help="gunicorn worker processes (default: %(default)s)"
    )
    p.add_argument(
        "--threads", type=int, default=defaults.threads, help="gthread threads per worker (default: %(default)s)"
    )
    p.add_argument(
        "--connections",
        type=int,
        default=defaults.connections,
        help="gevent connections per worker (default: %(default)s)",
    )
    p.add_argument(
        "--graceful-timeout", type=int, default=defaults.graceful_timeout, help="gunicorn graceful timeout, s"
    )
    p.add_argument("--bus", choices=("memory", "redis"), help="event bus (LAB_BUS, default memory)")
    p.add_argument("--redis-url", help="Redis URL for --bus redis (LAB_REDIS_URL)")
    p.add_argument("--history", type=int, help="events retained per channel (LAB_HISTORY, default 10000)")
    p.add_argument("--max-batch", type=int, help="most events per long-poll answer (LAB_MAX_BATCH, default 1000)")
    p.add_argument("--poll-timeout", type=float, help="default long-poll hold, s (LAB_POLL_TIMEOUT, default 25)")
    p.add_argument(
        "--ws-ping-interval", type=float, help="server WebSocket ping interval, s (LAB_WS_PING_INTERVAL, default off)"
    )
    p.add_argument("--ws-max-message", type=int, help="largest client WebSocket message, bytes (LAB_WS_MAX_MESSAGE)")
    p.add_argument(
        "--ws-compression", choices=("on", "off"), help="allow permessage-deflate (LAB_WS_COMPRESSION, default off)"
    )
    a = p.parse_args(argv)
    try:
        env = Config.from_env()
    except ValueError as exc:
        p.error(f"bad environment: {exc}")
    if a.workers > 1 and (a.bus or env.bus) == "memory":
        p.error("--workers > 1 needs --bus redis: memory buses are per process")
    if a.runtime == "werkzeug" and a.workers != 1:
        p.error("--workers applies to the gunicorn runtimes only")
    for flag in ("workers", "threads", "connections"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be >= 1")
    if not 0 <= a.port <= 65535:
        p.error("--port must be from 0 to 65535")
    try:
        config = env.with_overrides(
            bus=a.bus,
            redis_url=a.redis_url,
            history=a.history,
            max_batch=a.max_batch,
            poll_timeout=a.poll_timeout,
            ws_ping_interval=a.ws_ping_interval,
            ws_max_message=a.ws_max_message,
            ws_compression=None if a.ws_compression is None else a.ws_compression == "on",
        )
    except ValueError as exc:
        p.error(str(exc))
    options = ServeOptions(a.runtime, a.host, a.port, a.workers, a.threads, a.connections, a.graceful_timeout)
    return config, options


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until a signal stops the server."""
    config, options = parse_args(argv)
    serve(config, options)


if __name__ == "__main__":
    main()
