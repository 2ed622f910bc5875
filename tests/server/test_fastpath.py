"""Tests of server/fastpath.py: the fast path answers what the Flask routes answer, byte for byte.

Each case sends the same request to two apps built from the same configuration, one with the fast path
and one without, and compares status, headers and body. A probe in front of Flask tells which requests
the fast path answered itself and which it handed to Flask: the hot ones must be its own, and every
refusal it cannot make exactly must reach Flask. Where the answer depends on the bus (a poll's events),
both apps share one bus; where it changes it (a publish), each has its own and the clock's ``ts`` is
compared by type only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask, jsonify
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from server.app import create_app, lab_of
from server.bus import Batch, Bus, BusUnavailable, MemoryBus
from server.config import Config
from server.errors import json_body, status_line
from server.fastpath import FastPath
from tests.support import UNIT, wait_until

JSON = {"Content-Type": "application/json"}


@dataclass
class Probe:
    """WSGI layer between the fast path and Flask: counts the requests that reached Flask."""

    app: Any
    reached: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.reached.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def build(config: Config, bus: Bus | None = None) -> tuple[Flask, Probe | None]:
    """The app of ``config``; with the fast path, a :class:`Probe` under it."""
    app = create_app(config, bus=bus or MemoryBus(history=100))
    if not isinstance(app.wsgi_app, FastPath):
        return app, None
    probe = Probe(app.wsgi_app.app)
    app.wsgi_app.app = probe
    return app, probe


@dataclass
class Pair:
    """The same configuration with and without the fast path."""

    flask: Flask
    fast: Flask
    probe: Probe

    def both(self, method: str, path: str, **kw: Any) -> tuple[TestResponse, TestResponse, bool]:
        """Both answers, and whether the fast path answered without Flask."""
        before = len(self.probe.reached)
        slow = self.flask.test_client().open(path, method=method, **kw)
        fast = self.fast.test_client().open(path, method=method, **kw)
        return slow, fast, len(self.probe.reached) == before


def pair(config: Config | None = None, shared_bus: bool = True) -> Pair:
    config = config or Config()
    bus = MemoryBus(history=100) if shared_bus else None
    flask, none = build(config, bus)
    fast, probe = build(config.with_overrides(fast_path=True), bus)
    assert none is None and probe is not None
    return Pair(flask, fast, probe)


def same(slow: TestResponse, fast: TestResponse) -> None:
    assert fast.status == slow.status
    assert fast.headers.to_wsgi_list() == slow.headers.to_wsgi_list()
    assert fast.get_data() == slow.get_data()


def test_the_fast_path_is_off_by_default() -> None:
    assert not isinstance(create_app(Config()).wsgi_app, FastPath)
    assert isinstance(create_app(Config(fast_path=True)).wsgi_app, FastPath)


def test_json_body_is_what_jsonify_writes() -> None:
    app = Flask(__name__)
    value = {"seq": 3, "channel": "a", "detail": "caf\u00e9 'x'", "ts": 1796170610659808642, "n": None}
    with app.app_context():
        assert json_body(value) == jsonify(value).get_data()
    assert status_line(201) == "201 CREATED"
    assert status_line(503) == "503 SERVICE UNAVAILABLE"


@pytest.mark.parametrize(
    "query",
    ["after=0&timeout=0", "timeout=0", "after=1&timeout=0", "after=5&timeout=0", "after=0&after=x&timeout=0"],
)
def test_a_poll_is_answered_by_the_fast_path_with_the_flask_routes_bytes(query: str) -> None:
    p = pair()
    lab_of(p.flask).bus.publish("a", b'{"x":1}')
    lab_of(p.flask).bus.publish("a", b'{"x":2}')
    slow, fast, own = p.both("GET", f"/channels/a/poll?{query}")
    assert own
    assert fast.status_code == 200
    same(slow, fast)


def test_a_publish_is_answered_by_the_fast_path_with_the_flask_routes_answer() -> None:
    p = pair(shared_bus=False)
    for headers in (JSON, {}, {"Content-Type": "application/json; charset=utf-8"}):
        slow, fast, own = p.both("POST", "/channels/a/events", data=b' {"x": [1, 2]} ', headers=headers)
        assert own
        assert (slow.status_code, fast.status_code) == (201, 201)
        assert fast.headers.to_wsgi_list() == slow.headers.to_wsgi_list()
        a, b = slow.get_json(), fast.get_json()
        assert isinstance(a.pop("ts"), int) and isinstance(b.pop("ts"), int)
        assert a == b
    # What was stored is the same, and so are the counters.
    polls = [app.test_client().get("/channels/a/poll?timeout=0").get_json() for app in (p.flask, p.fast)]
    for body in polls:
        assert [(e["seq"], e["data"]) for e in body["events"]] == [
            (1, {"x": [1, 2]}),
            (2, {"x": [1, 2]}),
            (3, {"x": [1, 2]}),
        ]
    counts = [lab_of(app).stats.snapshot() for app in (p.flask, p.fast)]
    for key in ("events_published", "requests", "delivered", "bytes_sent", "connections"):
        assert counts[0][key] == counts[1][key], key


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/channels/a/poll?after=x&timeout=0", {}),  # bad cursor
        ("GET", "/channels/a/poll?after=&timeout=0", {}),  # empty cursor
        ("GET", "/channels/a/poll?after=99999999999999999999&timeout=0", {}),
        ("GET", "/channels/a/poll?timeout=31", {}),  # beyond poll_timeout_max
        ("GET", "/channels/a/poll?timeout=nan", {}),
        ("GET", "/channels/a%20b/poll?timeout=0", {}),  # bad channel
        ("GET", "/channels/" + "x" * 65 + "/poll?timeout=0", {}),
        ("GET", "/channels//poll?timeout=0", {}),
        ("GET", "/channels/a/poll/?timeout=0", {}),  # trailing slash: Flask's 404
        ("HEAD", "/channels/a/poll?timeout=0", {}),  # Flask answers HEAD for a GET route
        ("PUT", "/channels/a/poll", {}),
        ("GET", "/channels/a/poll?timeout=0", {"Host": "evil.example"}),  # DNS rebinding
        ("GET", "/channels/a/poll?timeout=0", {"Origin": "https://evil.example"}),
        ("GET", "/channels/a/poll?timeout=0", {"Origin": "null"}),
        ("OPTIONS", "/channels/a/poll", {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}),
        ("GET", "/channels/a/events", {}),
        ("GET", "/channels/a/ws", {}),
        ("GET", "/healthz", {}),
    ],
)
def test_what_the_fast_path_cannot_answer_exactly_reaches_flask(
    method: str, path: str, headers: dict[str, str]
) -> None:
    p = pair()
    slow, fast, own = p.both(method, path, headers=headers)
    assert not own
    same(slow, fast)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "text/plain"}, b'{"x": 1}'),  # a form's content type: 415
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"x=1"),
        ({"Content-Type": ""}, b'{"x": 1}'),
        ({**JSON, "Origin": "https://evil.example"}, b'{"x": 1}'),  # cross-site publishing: 403
        ({**JSON, "Host": "evil.example"}, b'{"x": 1}'),
    ],
)
def test_a_publish_refused_before_its_body_reaches_flask(headers: dict[str, str], body: bytes) -> None:
    p = pair()
    slow, fast, own = p.both("POST", "/channels/a/events", data=body, headers=headers)
    assert not own
    assert slow.status_code in (403, 415)
    same(slow, fast)
    assert list(lab_of(p.fast).bus.read("a", 0, 10).events) == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{", 400, "bad_json"),
        (b"1 2", 400, "bad_json"),
        (b"[" * 200 + b"]" * 200, 400, "too_deep"),
        (b"", 400, "bad_json"),
        (b'"' + b"x" * 2000 + b'"', 413, "too_large"),
    ],
)
def test_a_publish_body_refused_by_the_fast_path_is_refused_as_flask_does(body: bytes, status: int, error: str) -> None:
    p = pair(Config(max_body=1000))
    slow, fast, own = p.both("POST", "/channels/a/events", data=body, headers=JSON)
    assert own
    assert (fast.status_code, fast.get_json()["error"]) == (status, error)
    same(slow, fast)


def test_an_allowed_origin_gets_the_same_cors_grant() -> None:
    p = pair(Config(allowed_origins="https://app.example"))
    for origin in ("http://localhost:3000", "https://app.example", "http://localhost"):
        slow, fast, own = p.both("GET", "/channels/a/poll?timeout=0", headers={"Origin": origin})
        assert own
        assert fast.headers["Access-Control-Allow-Origin"] == origin
        same(slow, fast)
    p = pair(Config(allowed_origins="https://app.example"), shared_bus=False)
    slow, fast, own = p.both("POST", "/channels/a/events", data=b"1", headers={**JSON, "Origin": "https://app.example"})
    assert own
    assert fast.headers.to_wsgi_list() == slow.headers.to_wsgi_list()


def test_a_host_beyond_loopback_is_served_only_when_allowed() -> None:
    p = pair(Config(allowed_hosts="lab.example"))
    slow, fast, own = p.both("GET", "/channels/a/poll?timeout=0", headers={"Host": "lab.example:8000"})
    assert own and fast.status_code == 200
    same(slow, fast)
    slow, fast, own = p.both("GET", "/channels/a/poll?timeout=0", headers={"Host": "localhost"})
    assert not own and fast.status_code == 403
    same(slow, fast)


@pytest.mark.parametrize(
    ("method", "path", "headers", "own"),
    [
        ("GET", "/channels/a/poll?timeout=0", {}, False),
        ("GET", "/channels/a/poll?timeout=0", {"Authorization": "Bearer wrong"}, False),
        ("GET", "/channels/a/poll?timeout=0", {"Authorization": "Bearer pub-secret"}, False),
        ("GET", "/channels/a/poll?timeout=0", {"Authorization": "Bearer sub-secret"}, True),
        ("GET", "/channels/a/poll?timeout=0", {"Authorization": "bearer  sub-secret "}, True),
        ("GET", "/channels/a/poll?timeout=0&token=sub-secret", {}, True),
        ("GET", "/channels/a/poll?timeout=0&token=x&token=sub-secret", {}, True),
        ("GET", "/channels/a/poll?timeout=0&token=sub%2Dsecret", {}, True),
        ("POST", "/channels/a/events", JSON, False),
        ("POST", "/channels/a/events", {**JSON, "Authorization": "Bearer sub-secret"}, False),
        ("POST", "/channels/a/events?token=pub-secret", JSON, True),
    ],
)
def test_tokens_are_checked_as_flask_checks_them(method: str, path: str, headers: dict[str, str], own: bool) -> None:
    p = pair(Config(publish_token="pub-secret", subscribe_token="sub-secret"), shared_bus=False)
    slow, fast, answered = p.both(method, path, headers=headers, data=b"1" if method == "POST" else None)
    assert answered is own
    assert fast.status_code == slow.status_code
    assert fast.status_code in ((200, 201) if own else (401,))
    if method == "GET":
        same(slow, fast)
    else:
        assert fast.headers.to_wsgi_list() == slow.headers.to_wsgi_list()


def test_a_poll_at_capacity_reaches_flask_and_is_refused() -> None:
    p = pair(Config(max_longpoll=1))
    for app in (p.flask, p.fast):
        assert lab_of(app).gate.try_acquire("longpoll")
    slow, fast, own = p.both("GET", "/channels/a/poll?timeout=0")
    assert not own
    assert (fast.status_code, fast.headers["Retry-After"], fast.headers["Connection"]) == (503, "1", "close")
    same(slow, fast)
    for app in (p.flask, p.fast):
        lab_of(app).gate.release("longpoll")
    slow, fast, own = p.both("GET", "/channels/a/poll?timeout=0")
    assert own and fast.status_code == 200
    assert lab_of(p.fast).gate.held["longpoll"] == 0


def test_a_held_poll_holds_a_slot_and_is_answered_by_a_publish() -> None:
    app, probe = build(Config(fast_path=True))
    assert probe is not None
    lab = lab_of(app)
    out: list[TestResponse] = []
    thread = threading.Thread(
        target=lambda: out.append(app.test_client().get("/channels/h/poll?after=0&timeout=30")), daemon=True
    )
    thread.start()
    assert wait_until(lambda: lab.gate.held["longpoll"] == 1, 10 * UNIT)
    assert lab.stats.snapshot()["connections"]["longpoll"] == 1
    assert app.test_client().post("/channels/h/events", data=b'{"x":1}', headers=JSON).status_code == 201
    thread.join(10 * UNIT)
    assert not thread.is_alive()
    assert (out[0].status_code, [e["seq"] for e in out[0].get_json()["events"]]) == (200, [1])
    assert lab.gate.held["longpoll"] == 0
    snap = lab.stats.snapshot()
    assert (snap["connections"]["longpoll"], snap["delivered"]["longpoll"], snap["requests"]) == (
        0,
        1,
        {"longpoll": 1, "publish": 1},
    )
    assert probe.reached == []


def test_a_closed_bus_answers_503_shutting_down_as_flask_does() -> None:
    p = pair()
    lab_of(p.flask).bus.close()
    slow, fast, own = p.both("GET", "/channels/a/poll?timeout=30")
    assert own
    assert (fast.status_code, fast.get_json()["error"]) == (503, "shutting_down")
    same(slow, fast)


class BrokenBus(MemoryBus):
    """A bus whose backing service is down (as the Redis bus without Redis), or that fails outright."""

    def __init__(self, failure: Exception) -> None:
        super().__init__(history=10)
        self.failure = failure

    def wait(self, *args: Any, **kw: Any) -> Batch:
        raise self.failure

    def publish(self, channel: str, data: bytes) -> Any:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "status", "error"),
    [(BusUnavailable("redis: connection refused"), 503, "bus_unavailable"), (RuntimeError("bug"), 500, "http_error")],
)
def test_a_failing_bus_is_answered_as_flask_answers_it(failure: Exception, status: int, error: str) -> None:
    bus = BrokenBus(failure)
    flask, _ = build(Config(), bus)
    fast, probe = build(Config(fast_path=True), bus)
    assert probe is not None
    for method, path, data in (("GET", "/channels/a/poll?timeout=0", None), ("POST", "/channels/a/events", b"1")):
        slow = flask.test_client().open(path, method=method, data=data)
        quick = fast.test_client().open(path, method=method, data=data)
        assert (quick.status_code, quick.get_json()["error"]) == (status, error)
        same(slow, quick)
    assert probe.reached == []
    assert lab_of(fast).gate.held["longpoll"] == 0


def test_a_refused_body_is_drained_before_the_answer() -> None:
    """An error past the checks drains what the client still sends, as Flask's error handler does."""
    p = pair(Config(max_body=10))
    slow, fast, own = p.both("POST", "/channels/a/events", data=b"[" + b"1," * 50 + b"1]", headers=JSON)
    assert own
    assert "Connection" not in fast.headers
    same(slow, fast)
    assert json.loads(fast.get_data())["error"] == "too_large"


QUERY_PIECES = st.sampled_from(
    ["after=1", "token=a", "token=", "token", "timeout=0.5", "", "=x", "a=b=c", "after", ";x=1"]
)


@given(st.one_of(st.text(alphabet="abt=&;0123456789.-_~ ", max_size=40), st.lists(QUERY_PIECES).map("&".join)))
def test_a_query_with_nothing_to_decode_is_split_as_parse_qsl_splits_it(raw: str) -> None:
    """FastPath._query splits such a query by hand: the same pairs, first values and tokens."""
    first, tokens = FastPath._query({"QUERY_STRING": raw})
    pairs = parse_qsl(raw, keep_blank_values=True)
    expected: dict[str, str] = {}
    for key, value in pairs:
        expected.setdefault(key, value)
    assert first == expected
    assert tokens == [value for key, value in pairs if key == "token"]
