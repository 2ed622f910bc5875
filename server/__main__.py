"""``python -m server``: run the lab's server.

Flags override ``LAB_*`` environment variables (docs/configuration.md).
"""

from __future__ import annotations

import argparse

from .config import Config
from .runtimes import RUNTIMES, ServeOptions, serve
from .security import is_loopback


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
        "--ws-ping-interval",
        type=float,
        help="server WebSocket pings every N s; 0: off (LAB_WS_PING_INTERVAL, default 25)",
    )
    p.add_argument("--ws-max-message", type=int, help="largest client WebSocket message, bytes (LAB_WS_MAX_MESSAGE)")
    p.add_argument(
        "--ws-compression", choices=("on", "off"), help="allow permessage-deflate (LAB_WS_COMPRESSION, default off)"
    )
    p.add_argument(
        "--fast-path",
        choices=("on", "off"),
        help="answer polls and publishes before Flask's routing (LAB_FAST_PATH, default off; docs/performance.md)",
    )
    p.add_argument(
        "--history-bytes", type=int, help="largest history per channel, bytes (LAB_HISTORY_BYTES, default 8 MiB)"
    )
    p.add_argument(
        "--history-total-bytes",
        type=int,
        help="largest history of all channels together, bytes (LAB_HISTORY_TOTAL_BYTES, default 256 MiB)",
    )
    p.add_argument(
        "--channel-ttl", type=float, help="drop a channel's history after N s without a publish (LAB_CHANNEL_TTL)"
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="most held polls and WebSockets together (LAB_MAX_CONNECTIONS, default: derived)",
    )
    p.add_argument("--max-longpoll", type=int, help="most held long polls (LAB_MAX_LONGPOLL, default: derived)")
    p.add_argument("--max-websocket", type=int, help="most open WebSockets (LAB_MAX_WEBSOCKET, default: derived)")
    p.add_argument(
        "--header-timeout", type=float, help="seconds to send request headers (LAB_HEADER_TIMEOUT, default 10)"
    )
    p.add_argument("--allowed-hosts", help="Host names served, comma-separated (LAB_ALLOWED_HOSTS; * for any)")
    p.add_argument("--allowed-origins", help="extra browser origins allowed, comma-separated (LAB_ALLOWED_ORIGINS)")
    p.add_argument(
        "--allow-no-token",
        action="store_true",
        help="serve beyond loopback without LAB_PUBLISH_TOKEN and LAB_SUBSCRIBE_TOKEN (anyone may read and publish)",
    )
    a = p.parse_args(argv)
    try:
        env = Config.from_env()
    except ValueError as exc:
        p.error(f"bad environment: {exc}")
    if a.workers > 1 and (a.bus or env.bus) == "memory":
        p.error("--workers > 1 needs --bus redis: memory buses are per process")
    if a.runtime in ("werkzeug", "pywsgi") and a.workers != 1:
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
            fast_path=None if a.fast_path is None else a.fast_path == "on",
            history_bytes=a.history_bytes,
            history_total_bytes=a.history_total_bytes,
            channel_ttl=a.channel_ttl,
            max_connections=a.max_connections,
            max_longpoll=a.max_longpoll,
            max_websocket=a.max_websocket,
            header_timeout=a.header_timeout,
            allowed_hosts=a.allowed_hosts,
            allowed_origins=a.allowed_origins,
        )
    except ValueError as exc:
        p.error(str(exc))
    if not is_loopback(a.host) and not (config.publish_token and config.subscribe_token) and not a.allow_no_token:
        p.error(
            f"--host {a.host} serves beyond this machine: set LAB_PUBLISH_TOKEN and LAB_SUBSCRIBE_TOKEN "
            "(docs/security.md), or pass --allow-no-token to let anyone who reaches the port read and publish"
        )
    options = ServeOptions(a.runtime, a.host, a.port, a.workers, a.threads, a.connections, a.graceful_timeout)
    return config, options


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until a signal stops the server."""
    config, options = parse_args(argv)
    if options.runtime == "pywsgi":
        from .pywsgi import patch

        patch()  # gunicorn's gevent worker does this in the worker; here before the app exists
    serve(config, options)


if __name__ == "__main__":
    main()
