"""The Flask application factory: routes that adapt HTTP to the bus.

``create_app(config)`` builds everything a server process needs (bus,
counters, routes) and keeps it on ``app.extensions["lab"]``; nothing lives at
module level, so tests build as many independent apps as they like.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import cast

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing.exceptions import WebsocketMismatch

from .bus import Bus, BusUnavailable, make_bus, valid_channel
from .capacity import CLOSE_TRY_AGAIN_LATER, Gate
from .config import Config
from .errors import ApiError
from .fastpath import FastPath
from .longpoll import handle_poll, parse_cursor, publish_answer
from .security import CLOSE_FORBIDDEN, MAY_PUBLISH, PublishForbidden, ReadOnlyBus
from .security import install as install_security
from .sse import handle_sse
from .stats import Stats
from .websocket import LabWebSocket, WebSocketSession, check_handshake, websocket_route

__all__ = ["Lab", "create_app", "lab_of"]

WS_ENDPOINT = "websocket"

_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
_EMPTY_CHANNEL = re.compile(r"/channels//(events|poll|ws|sse)")


@dataclass(slots=True)
class Lab:
    """What one server process holds: the configuration, the bus, the counters."""

    config: Config
    bus: Bus
    stats: Stats
    gate: Gate = field(default_factory=lambda: Gate(None, {"longpoll": None, "websocket": None, "sse": None}))
    """Held connections against their limits (server/capacity.py)."""


def lab_of(app: Flask) -> Lab:
    """The :class:`Lab` that :func:`create_app` attached to ``app``."""
    lab: Lab = app.extensions["lab"]
    return lab


def _channel(name: str) -> str:
    if not valid_channel(name):
        raise ApiError(400, "bad_channel", f"channel must match [A-Za-z0-9_.-]{{1,64}}, got {name[:80]!r}")
    return name


def create_app(config: Config | None = None, bus: Bus | None = None) -> Flask:
    """Build the lab's Flask app. ``bus`` overrides the one ``config`` names."""
    config = config or Config.from_env()
    lab = Lab(config, bus or make_bus(config), Stats(), Gate.from_config(config))
    app = Flask(__name__)
    app.extensions["lab"] = lab
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": config.ws_ping_interval,
        "max_message_size": config.ws_max_message,
        "write_timeout": config.ws_write_timeout,
    }
    install_security(app, config)  # first hook: a refused request reaches nothing else

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(BusUnavailable)
    def bus_unavailable(exc: BusUnavailable) -> Response:
        return ApiError(503, "bus_unavailable", str(exc)).response()

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if isinstance(exc, WebsocketMismatch):
            error = ApiError(400, "not_websocket", "this route needs a WebSocket Upgrade handshake")
        elif status == 404 and _EMPTY_CHANNEL.fullmatch(request.path):
            # No route matches an empty path segment; it is still a bad name.
            error = ApiError(400, "bad_channel", "channel must match [A-Za-z0-9_.-]{1,64}, got ''")
        else:
            error = ApiError(status, _HTTP_ERRORS.get(status, "http_error"), exc.description or exc.name)
        return error.response()

    @app.before_request
    def check_websocket_handshake() -> None:
        """Refuse a bad WebSocket handshake with JSON before upgrading it."""
        if request.endpoint != WS_ENDPOINT or request.view_args is None:
            return
        _channel(request.view_args["channel"])
        parse_cursor(request.args.get("after"))
        check_handshake(request.environ)
        if not config.ws_compression:
            # simple-websocket accepts permessage-deflate whenever it is
            # offered; hiding the offer is the only way to keep it off.
            request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)

    @app.post("/channels/<channel>/events")
    def publish(channel: str) -> Response:
        body = publish_answer(lab.bus, lab.stats, config, _channel(channel), request.environ)
        return Response(body, 201, mimetype="application/json")

    @app.get("/channels/<channel>/poll")
    def poll(channel: str) -> Response:
        with lab.gate.hold("longpoll"):
            return handle_poll(lab.bus, lab.stats, config, _channel(channel))

    @app.get("/channels/<channel>/sse")
    def sse(channel: str) -> Response:
        return handle_sse(lab.bus, lab.stats, lab.gate, config, _channel(channel))

    @websocket_route(app, "/channels/<channel>/ws", endpoint=WS_ENDPOINT)
    def websocket(ws: LabWebSocket, channel: str) -> None:
        if not lab.gate.try_acquire("websocket"):
            ws.close(CLOSE_TRY_AGAIN_LATER, "at capacity: try again later")
            return
        try:
            _websocket(ws, channel)
        except PublishForbidden as exc:
            ws.close(CLOSE_FORBIDDEN, f"forbidden: {exc}"[:120])
        finally:
            lab.gate.release("websocket")

    def _websocket(ws: LabWebSocket, channel: str) -> None:
        bus = lab.bus if request.environ.get(MAY_PUBLISH, True) else cast(Bus, ReadOnlyBus(lab.bus))
        offered = request.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", "")
        WebSocketSession(
            ws,
            bus,
            lab.stats,
            channel,
            parse_cursor(request.args.get("after")),
            config.max_batch,
            compressed="permessage-deflate" in offered,
        ).run()

    @app.get("/")
    def demo_page() -> Response:
        """The live side-by-side demo page (server/static/, docs/demo.md)."""
        return app.send_static_file("index.html")

    @app.get("/healthz")
    def healthz() -> Response:
        check = getattr(lab.bus, "check", None)
        if check is not None:
            check()  # the Redis bus pings Redis: down, it is 503 bus_unavailable, and a load balancer moves on
        return jsonify(status="ok", bus=lab.bus.name, runtime=config.runtime, pid=os.getpid())

    @app.get("/stats")
    def stats() -> Response:
        resp = jsonify(runtime=config.runtime, bus=lab.bus.name, **lab.stats.snapshot())
        resp.headers["Cache-Control"] = "no-store"
        return resp

    if config.fast_path:
        # The two hot routes answered before Flask's routing (server/fastpath.py); the routes above stay
        # the reference, and what the fast path does not answer exactly reaches them.
        app.wsgi_app = FastPath(app.wsgi_app, config, lab.bus, lab.stats, lab.gate)  # type: ignore[method-assign]
    return app
