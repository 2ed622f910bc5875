"""Access control: which hosts, origins and tokens the server answers, and CORS.

A Flask layer, installed by :func:`install` before every other request hook,
so a refused request reaches no route. The threats it answers
(docs/security.md):

- **DNS rebinding**: a page on ``evil.example`` whose name later resolves to
  127.0.0.1 talks to the server as its own origin. The ``Host`` header still
  says ``evil.example``: a request whose host is not allowed gets ``403
  forbidden_host``.
- **Cross-site WebSocket hijacking and cross-site publishing**: browsers send
  ``Origin`` on every cross-origin request and on every WebSocket handshake,
  but a WebSocket, or a ``text/plain`` POST (a "simple" request, sent without
  a preflight), is not stopped by the same-origin policy. A request whose
  ``Origin`` is present and not allowed gets ``403 forbidden_origin`` (for a
  handshake: before the upgrade, so no WebSocket opens).
- **Publishing with a body a form can send**: ``POST /events`` takes
  ``application/json`` only (``415 unsupported_media_type`` otherwise). A
  request with no ``Content-Type`` at all is taken as JSON: browsers send one
  with every body a page can build, except a ``Blob`` or buffer, and such a
  request carries ``Origin`` (checked above); tools such as ``httpx`` with
  ``content=`` send none.
- **Anyone who can reach the port**: optional bearer tokens, one to publish
  and one to subscribe. A browser's WebSocket cannot set headers, so the
  subscribe token may also come as ``?token=`` in the URL (as may the publish
  token, for the WebSocket's own publish messages).

CORS is answered deliberately: a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin gets ``204`` with
the methods and headers the routes take; from any other origin ``403``.
Answers to an allowed cross-origin request carry
``Access-Control-Allow-Origin`` with that origin and ``Vary: Origin``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request

from .bus import Bus, Event
from .config import Config
from .errors import ApiError

__all__ = [
    "ANSWER_HEADERS",
    "CLOSE_FORBIDDEN",
    "LOOPBACK_HOSTS",
    "UNAUTHORIZED_HEADER",
    "Policy",
    "PublishForbidden",
    "ReadOnlyBus",
    "cors_grant",
    "csp_for",
    "install",
    "is_loopback",
    "presented_tokens",
]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""Names of this machine's loopback interface, as a ``Host`` header or origin carries them."""

PUBLISH_ENDPOINT = "publish"
SUBSCRIBE_ENDPOINTS = frozenset({"poll", "websocket", "sse", "stats"})
MAY_PUBLISH = "lab.may_publish"
"""WSGI environ key: whether this request presented the publish token (or none is needed)."""


CLOSE_FORBIDDEN = 4403
"""WebSocket close code: a publish message on a connection opened without the publish token."""


class PublishForbidden(PermissionError):
    """A publish through a :class:`ReadOnlyBus`."""


class ReadOnlyBus:
    """A bus seen by a WebSocket opened without the publish token: everything but :meth:`publish`.

    The WebSocket route turns :class:`PublishForbidden` into close ``4403``.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def publish(self, channel: str, data: bytes) -> Event:
        raise PublishForbidden("publishing needs the publish token (?token= or Authorization: Bearer)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 with or without brackets) is loopback."""
    host = host.strip("[]").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")


def _split_host(header: str) -> tuple[str, int | None]:
    """``Host`` header to (lower-case name, port); IPv6 brackets removed."""
    try:
        parts = urlsplit("//" + header)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


def _origin(value: str) -> tuple[str, str, int] | None:
    """An ``Origin`` to (scheme, host, port), ``None`` if it is not a URL origin (e.g. ``null``)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname.lower(), port or default


def _names(raw: str) -> frozenset[str]:
    return frozenset(x.strip().lower() for x in raw.split(",") if x.strip())


@dataclass(frozen=True, slots=True)
class Policy:
    """What :func:`install` checks, from the configuration (sans-I/O: no request here)."""

    hosts: frozenset[str]
    """Allowed ``Host`` names; ``*`` allows any."""
    origins: frozenset[str]
    """Allowed origins (``scheme://host[:port]``), beyond this server's own and loopback ones; ``*``: any."""
    publish_token: str
    subscribe_token: str

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        hosts = _names(config.allowed_hosts) or LOOPBACK_HOSTS
        return cls(
            frozenset(h.strip("[]") for h in hosts),
            frozenset(o.rstrip("/") for o in _names(config.allowed_origins)),
            config.publish_token,
            config.subscribe_token,
        )

    def host_allowed(self, host_header: str) -> bool:
        name, _ = _split_host(host_header)
        return bool(name) and ("*" in self.hosts or name in self.hosts)

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """Same origin as the ``Host`` it was sent to, a loopback origin, or one listed."""
        if "*" in self.origins or origin.lower().rstrip("/") in self.origins:
            return True
        parsed = _origin(origin)
        if parsed is None:
            return False
        _, name, port = parsed
        host, host_port = _split_host(host_header)
        if name == host and (host_port is None or port == host_port):
            return True
        return is_loopback(name)

    @staticmethod
    def token_matches(expected: str, presented: Iterable[str]) -> bool:
        """Constant-time comparison against every token the request presented."""
        if not expected:
            return True
        return any(hmac.compare_digest(expected.encode(), p.encode()) for p in presented if p)


def presented_tokens(authorization: str, query_tokens: Iterable[str]) -> list[str]:
    """Tokens a request presents: ``Authorization: Bearer <t>`` and every ``?token=<t>``."""
    tokens = []
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        tokens.append(value.strip())
    tokens.extend(query_tokens)
    return tokens


def cors_grant(policy: Policy, origin: str | None, host: str) -> list[tuple[str, str]]:
    """The CORS headers an answer carries: the grant to an allowed ``Origin``, nothing without one."""
    if origin is not None and policy.origin_allowed(origin, host):
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", "Retry-After")]
    return []


ANSWER_HEADERS = (("Vary", "Origin"), ("X-Content-Type-Options", "nosniff"))
"""What every answer carries after its own headers and the CORS grant."""
UNAUTHORIZED_HEADER = ("WWW-Authenticate", 'Bearer realm="lab"')
"""Added to every ``401``."""


def csp_for(host_header: str) -> str:
    """The demo page's Content-Security-Policy: its own scripts, styles and sockets, nothing else."""
    sockets = f"ws://{host_header} wss://{host_header}" if host_header else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {sockets}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


_PREFLIGHT_HEADERS = "Authorization, Content-Type"
_METHODS = "GET, POST, OPTIONS"


def install(app: Flask, config: Config) -> Policy:
    """Register the checks on ``app``; call before any other ``before_request``."""
    policy = Policy.from_config(config)

    def forbidden(error: str, detail: str) -> ApiError:
        return ApiError(403, error, detail)

    @app.before_request
    def check_access() -> Response | None:
        host = request.host
        if not policy.host_allowed(host):
            raise forbidden("forbidden_host", f"Host {host[:80]!r} is not allowed (LAB_ALLOWED_HOSTS)")
        origin = request.headers.get("Origin")
        if origin is not None and not policy.origin_allowed(origin, host):
            raise forbidden("forbidden_origin", f"Origin {origin[:80]!r} is not allowed (LAB_ALLOWED_ORIGINS)")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            resp = Response(status=204)
            resp.headers["Access-Control-Allow-Methods"] = _METHODS
            resp.headers["Access-Control-Allow-Headers"] = _PREFLIGHT_HEADERS
            resp.headers["Access-Control-Max-Age"] = "600"
            return resp
        endpoint = request.endpoint
        tokens = presented_tokens(request.headers.get("Authorization", ""), request.args.getlist("token"))
        may_publish = policy.token_matches(policy.publish_token, tokens)
        request.environ[MAY_PUBLISH] = may_publish
        if endpoint == PUBLISH_ENDPOINT:
            if not may_publish:
                raise ApiError(401, "unauthorized", "publishing needs the publish token (Authorization: Bearer)")
            ctype = request.mimetype
            if request.content_type is not None and ctype != "application/json":
                raise ApiError(
                    415, "unsupported_media_type", f"publish with Content-Type: application/json, not {ctype!r}"
                )
        elif endpoint in SUBSCRIBE_ENDPOINTS and not policy.token_matches(policy.subscribe_token, tokens):
            raise ApiError(401, "unauthorized", "subscribing needs the subscribe token (Bearer or ?token=)")
        return None

    @app.after_request
    def cors_and_headers(resp: Response) -> Response:
        for name, value in cors_grant(policy, request.headers.get("Origin"), request.host):
            resp.headers[name] = value
        resp.vary.add("Origin")
        resp.headers.setdefault(*ANSWER_HEADERS[1])
        if request.endpoint == "demo_page":
            resp.headers["Content-Security-Policy"] = csp_for(request.host)
            resp.headers["Referrer-Policy"] = "no-referrer"
        if resp.status_code == 401:
            resp.headers[UNAUTHORIZED_HEADER[0]] = UNAUTHORIZED_HEADER[1]
        return resp

    return policy
