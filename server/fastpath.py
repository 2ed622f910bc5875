"""The fast path: the two hot routes answered by WSGI middleware before Flask's routing.

Off by default (``--fast-path on``, ``LAB_FAST_PATH``; docs/configuration.md): the Flask routes in
server/app.py are the lab's routes, the ones to read. With it on, :class:`FastPath` sits in front of
Flask, as Engine.IO's middleware sits in front of Flask-SocketIO's app, and answers

- ``GET /channels/<channel>/poll`` and
- ``POST /channels/<channel>/events``

itself, without Flask's request context, routing, hooks and response object, which cost more CPU per
request than the lab's own code (docs/performance.md). It is not a second implementation: it calls the
functions the Flask routes call (:func:`~server.longpoll.poll_answer`,
:func:`~server.longpoll.publish_answer`, :func:`~server.longpoll.parse_cursor`, the
:class:`~server.security.Policy` checks, the :class:`~server.capacity.Gate`, :class:`~server.errors.ApiError`)
and writes the same status, headers and bytes.

Its rule: **answer only what it answers exactly, hand everything else to Flask untouched.** Every check
that can refuse without a side effect (method, path, channel name, ``Host``, ``Origin``, tokens,
``Content-Type``, the query, a free slot under the capacity limit) is made first, and a request that fails
any of them goes to Flask, which refuses it with its own error (or answers a ``HEAD``, a trailing slash,
a preflight...). Past that point the request is the fast path's: an error that can only happen then (a
body too large or not JSON, the bus closing or unreachable) is answered with the same
:meth:`ApiError.answer <server.errors.ApiError.answer>` Flask's error handler uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import InternalServerError
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_host

from .bus import Bus, BusUnavailable, valid_channel
from .capacity import Gate
from .config import Config
from .errors import ApiError, status_line
from .longpoll import POLL_HEADERS, parse_cursor, parse_timeout, poll_answer, publish_answer
from .security import ANSWER_HEADERS, UNAUTHORIZED_HEADER, Policy, cors_grant, presented_tokens
from .stats import Stats

__all__ = ["FastPath"]

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

PREFIX = "/channels/"
OK = status_line(200)
CREATED = status_line(201)
PUBLISH_HEADERS = (("Content-Type", "application/json"),)
"""A publish answer's own headers, as the Flask route writes them (then ``Content-Length``)."""
HOST_CACHE = 64
"""Most distinct (scheme, ``Host``) pairs whose check is remembered; past it each is checked anew."""


class FastPath:
    """WSGI middleware answering polls and publishes before Flask (see the module's docstring).

    ``app`` is the Flask app's ``wsgi_app`` (the next layer); ``config``, ``bus``, ``stats`` and ``gate``
    are the ones :func:`~server.app.create_app` gave the Flask routes.
    """

    def __init__(self, app: WsgiApp, config: Config, bus: Bus, stats: Stats, gate: Gate) -> None:
        self.app = app
        self.config = config
        self.bus = bus
        self.stats = stats
        self.gate = gate
        self.policy = Policy.from_config(config)
        """The same policy :func:`server.security.install` builds from the same configuration."""
        self._hosts: dict[tuple[str, str], tuple[str, bool]] = {}
        """(scheme, ``Host`` header) to (Werkzeug's ``request.host``, allowed): done once per client name."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            channel, _, action = path[len(PREFIX) :].partition("/")
            method = environ.get("REQUEST_METHOD")
            if action == "poll" and method == "GET":
                return self._poll(environ, start_response, channel)
            if action == "events" and method == "POST":
                return self._publish(environ, start_response, channel)
        return self.app(environ, start_response)

    # -- checks without side effects: a request failing one goes to Flask --------------------------------

    def _host(self, environ: dict[str, Any]) -> str | None:
        """``request.host`` if the ``Host`` is allowed, else ``None``."""
        key = (environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))
        known = self._hosts.get(key)
        if known is None:
            host = get_host(environ)
            known = (host, self.policy.host_allowed(host))
            if len(self._hosts) < HOST_CACHE:
                self._hosts[key] = known
        return known[0] if known[1] else None

    def _admitted(self, environ: dict[str, Any], tokens: list[str], token: str) -> list[tuple[str, str]] | None:
        """The CORS headers of the answer if ``Host``, ``Origin`` and ``token`` pass, else ``None``."""
        host = self._host(environ)
        if host is None:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self.policy.origin_allowed(origin, host):
            return None
        if token and not self.policy.token_matches(
            token, presented_tokens(environ.get("HTTP_AUTHORIZATION", ""), tokens)
        ):
            return None
        return cors_grant(self.policy, origin, host)

    @staticmethod
    def _query(environ: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """First value of each query key and every ``token``, as Werkzeug's ``request.args`` parses them."""
        first: dict[str, str] = {}
        tokens: list[str] = []
        raw = environ.get("QUERY_STRING", "")
        if raw:
            if raw.isascii() and "%" not in raw and "+" not in raw:
                # Nothing to decode (every query the clients send): parse_qsl's result, split by hand.
                pairs = [(key, value) for key, _, value in (p.partition("=") for p in raw.split("&") if p)]
            else:
                pairs = parse_qsl(raw.encode("latin-1").decode(), keep_blank_values=True, errors="werkzeug.url_quote")
            for key, value in pairs:
                first.setdefault(key, value)
                if key == "token":
                    tokens.append(value)
        return first, tokens

    # -- the two routes ----------------------------------------------------------------------------------

    def _poll(self, environ: dict[str, Any], start_response: Any, channel: str) -> Iterable[bytes]:
        try:
            query, tokens = self._query(environ)
            cors = self._admitted(environ, tokens, self.policy.subscribe_token)
            if cors is None or not valid_channel(channel):
                return self.app(environ, start_response)
            after = parse_cursor(query.get("after"))
            timeout = parse_timeout(query.get("timeout"), self.config)
        except (ApiError, UnicodeError):
            return self.app(environ, start_response)  # Flask refuses it in its own words
        if not self.gate.try_acquire("longpoll"):
            return self.app(environ, start_response)  # Flask's Gate.hold answers 503 at_capacity
        try:
            body = poll_answer(self.bus, self.stats, self.config, channel, after, timeout, environ)
        except Exception as exc:  # answered as Flask's error handlers answer it
            return self._error(exc, environ, start_response, cors)
        finally:
            self.gate.release("longpoll")
        start_response(OK, [*POLL_HEADERS, ("Content-Length", str(len(body))), *cors, *ANSWER_HEADERS])
        return [body]

    def _publish(self, environ: dict[str, Any], start_response: Any, channel: str) -> Iterable[bytes]:
        try:
            _, tokens = self._query(environ)
            cors = self._admitted(environ, tokens, self.policy.publish_token)
        except UnicodeError:
            return self.app(environ, start_response)
        ctype = environ.get("CONTENT_TYPE")
        if (
            cors is None
            or not valid_channel(channel)
            or (ctype is not None and (not ctype or parse_options_header(ctype)[0].lower() != "application/json"))
        ):
            return self.app(environ, start_response)
        try:
            body = publish_answer(self.bus, self.stats, self.config, channel, environ)
        except Exception as exc:  # answered as Flask's error handlers answer it
            return self._error(exc, environ, start_response, cors)
        start_response(CREATED, [*PUBLISH_HEADERS, ("Content-Length", str(len(body))), *cors, *ANSWER_HEADERS])
        return [body]

    @staticmethod
    def _error(
        exc: Exception, environ: dict[str, Any], start_response: Any, cors: list[tuple[str, str]]
    ) -> Iterable[bytes]:
        """Answer an error raised past the checks as server/app.py's error handlers answer it."""
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, BusUnavailable):
            error = ApiError(503, "bus_unavailable", str(exc))
        else:
            log.exception("Exception on %s [%s]", environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"))
            error = ApiError(500, "http_error", InternalServerError.description)
        body, headers = error.answer(environ)
        headers += [*cors, *ANSWER_HEADERS]
        if error.status == 401:
            headers.append(UNAUTHORIZED_HEADER)
        start_response(status_line(error.status), headers)
        return [body]
