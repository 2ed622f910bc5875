"""Tests of server/app.py: every HTTP route and answer shape of docs/protocol.md.

Shapes run through Flask's test client. The table of bad inputs runs against
a real server, with a healthy WebSocket subscriber on the same channel that
must keep receiving (and see nothing from the refused request).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from server.app import create_app, lab_of
from server.config import Config
from tests.support import UNIT, ServerProcess, receive_json, run_server, ws_connect

MAX_BODY = 1000
"""LAB_MAX_BODY of the real server below."""


@pytest.fixture(params=[False, True], ids=["flask", "fast-path"])
def client(request: pytest.FixtureRequest) -> FlaskClient:
    return create_app(Config(history=10, max_batch=3, fast_path=request.param)).test_client()


def post(client: FlaskClient, channel: str, body: bytes | str) -> Any:
    return client.post(f"/channels/{channel}/events", data=body)


def poll(client: FlaskClient, channel: str, **query: str | int) -> Any:
    return client.get(f"/channels/{channel}/poll", query_string={"timeout": "0", **query})


def test_healthz(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body == {"status": "ok", "bus": "memory", "runtime": "werkzeug", "pid": os.getpid()}


def test_publish_answers_201_with_seq_and_ts(client: FlaskClient) -> None:
    first = post(client, "pay-1", '{"amount": 10}')
    second = post(client, "pay-1", "[]")
    other = post(client, "pay-2", "null")
    assert [r.status_code for r in (first, second, other)] == [201, 201, 201]
    assert set(first.get_json()) == {"channel", "seq", "ts"}
    assert [(r.get_json()["channel"], r.get_json()["seq"]) for r in (first, second, other)] == [
        ("pay-1", 1),
        ("pay-1", 2),
        ("pay-2", 1),
    ]
    assert isinstance(first.get_json()["ts"], int)
    assert first.get_json()["ts"] <= second.get_json()["ts"]


def test_payload_is_kept_as_sent_but_stripped(client: FlaskClient) -> None:
    post(client, "raw", '  \n{"b": 1.50, "a": [1e3, "\\u00e9"]}\t ')
    body = poll(client, "raw").get_data()
    assert b'"data":{"b": 1.50, "a": [1e3, "\\u00e9"]}}' in body


def test_poll_answer_shape(client: FlaskClient) -> None:
    post(client, "shape", '{"x": 1}')
    resp = poll(client, "shape", after=0)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert list(body) == ["channel", "events", "next", "more", "gap", "reset"]
    assert body["channel"] == "shape"
    assert body["next"] == 1 and body["more"] is False and body["gap"] is None and body["reset"] is None
    (event,) = body["events"]
    assert list(event) == ["channel", "seq", "ts", "data"]
    assert (event["channel"], event["seq"], event["data"]) == ("shape", 1, {"x": 1})


def test_timeout_answer_is_200_with_no_events_and_the_same_cursor(client: FlaskClient) -> None:
    post(client, "quiet", "1")
    for after in (0, 1):
        resp = poll(client, "quiet", after=after)
        assert resp.status_code == 200
        assert resp.headers["Cache-Control"] == "no-store"
    body = poll(client, "quiet", after=1).get_json()
    assert body == {"channel": "quiet", "events": [], "next": 1, "more": False, "gap": None, "reset": None}
    body = poll(client, "never-published").get_json()
    assert (body["events"], body["next"]) == ([], 0)


def test_more_when_the_batch_cap_cuts_the_answer(client: FlaskClient) -> None:
    for i in range(7):
        post(client, "more", str(i))
    seen: list[int] = []
    flags: list[bool] = []
    after = 0
    for _ in range(3):
        body = poll(client, "more", after=after).get_json()
        seen += [e["seq"] for e in body["events"]]
        flags.append(body["more"])
        after = body["next"]
    assert seen == list(range(1, 8))
    assert flags == [True, True, False]


def test_gap_notice(client: FlaskClient) -> None:
    for i in range(15):
        post(client, "gap", str(i))
    body = poll(client, "gap", after=2).get_json()
    assert body["gap"] == {"first": 3, "last": 5}
    assert [e["seq"] for e in body["events"]] == [6, 7, 8]
    assert (body["next"], body["more"], body["reset"]) == (8, True, None)


def test_reset_notice(client: FlaskClient) -> None:
    post(client, "reset", "1")
    post(client, "reset", "2")
    body = poll(client, "reset", after=50).get_json()
    assert body["reset"] == {"after": 50, "last_seq": 2}
    assert [e["seq"] for e in body["events"]] == [1, 2]
    assert (body["next"], body["gap"]) == (2, None)
    body = poll(client, "empty-reset", after=4).get_json()
    assert (body["reset"], body["events"], body["next"]) == ({"after": 4, "last_seq": 0}, [], 0)


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/channels/c", 404, "not_found"),
        ("GET", "/channels/a/b/poll", 404, "not_found"),
        ("GET", "/channels/c/events", 405, "method_not_allowed"),
        ("PUT", "/channels/c/events", 405, "method_not_allowed"),
        ("POST", "/channels/c/poll", 405, "method_not_allowed"),
        ("GET", "/channels/c/ws", 400, "not_websocket"),
        ("POST", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_http_errors_are_json(client: FlaskClient, method: str, path: str, status: int, error: str) -> None:
    resp = client.open(path, method=method)
    assert resp.status_code == status
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"] == error
    assert isinstance(resp.get_json()["detail"], str)


def test_stats_shape_and_counts(client: FlaskClient) -> None:
    for i in range(3):
        post(client, "st", str(i))
    poll(client, "st", after=0)
    poll(client, "st", after=3)
    resp = client.get("/stats")
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert set(body) == {
        "pid",
        "runtime",
        "bus",
        "connections",
        "events_published",
        "delivered",
        "bytes_sent",
        "requests",
        "cpu_seconds",
        "rss_bytes",
        "gc",
    }
    assert set(body["gc"]) == {"frozen", "collections"} and len(body["gc"]["collections"]) == 3
    assert (body["pid"], body["runtime"], body["bus"]) == (os.getpid(), "werkzeug", "memory")
    assert body["connections"] == {"longpoll": 0, "websocket": 0, "sse": 0}
    assert body["events_published"] == 3
    assert body["requests"] == {"longpoll": 2, "publish": 3}
    assert body["delivered"] == {"longpoll": 3, "websocket": 0, "sse": 0}
    wire = poll(client, "st", after=0).get_json()["events"]
    assert body["bytes_sent"]["longpoll"] > sum(len(json.dumps(e, separators=(",", ":"))) for e in wire)
    assert body["bytes_sent"]["websocket"] == 0


def test_apps_do_not_share_state() -> None:
    one, two = create_app(Config()), create_app(Config())
    one.test_client().post("/channels/c/events", data="1")
    assert lab_of(two).bus is not lab_of(one).bus
    assert two.test_client().get("/channels/c/poll?timeout=0").get_json()["events"] == []


# The table of bad inputs: one row per refused request, checked on a real server
# with a healthy WebSocket subscriber on the same channel.

BIG = b"[" + b"1," * (MAX_BODY // 2) + b"1]"
BAD_REQUESTS: list[tuple[str, str, str, dict[str, str], bytes | None, int, str]] = [
    # id, method, path (CH: the test's channel), query, body, status, error
    ("cursor-text", "GET", "/channels/CH/poll", {"after": "abc"}, None, 400, "bad_cursor"),
    ("cursor-negative", "GET", "/channels/CH/poll", {"after": "-1"}, None, 400, "bad_cursor"),
    ("cursor-float", "GET", "/channels/CH/poll", {"after": "1.5"}, None, 400, "bad_cursor"),
    ("cursor-empty", "GET", "/channels/CH/poll", {"after": ""}, None, 400, "bad_cursor"),
    ("cursor-huge", "GET", "/channels/CH/poll", {"after": str(2**63)}, None, 400, "bad_cursor"),
    ("cursor-5000-digits", "GET", "/channels/CH/poll", {"after": "9" * 5000}, None, 400, "bad_cursor"),
    ("cursor-exponent", "GET", "/channels/CH/poll", {"after": "1e3"}, None, 400, "bad_cursor"),
    ("timeout-negative", "GET", "/channels/CH/poll", {"timeout": "-1"}, None, 400, "bad_timeout"),
    ("timeout-above-max", "GET", "/channels/CH/poll", {"timeout": "30.5"}, None, 400, "bad_timeout"),
    ("timeout-nan", "GET", "/channels/CH/poll", {"timeout": "nan"}, None, 400, "bad_timeout"),
    ("timeout-inf", "GET", "/channels/CH/poll", {"timeout": "inf"}, None, 400, "bad_timeout"),
    ("timeout-text", "GET", "/channels/CH/poll", {"timeout": "soon"}, None, 400, "bad_timeout"),
    ("timeout-empty", "GET", "/channels/CH/poll", {"timeout": ""}, None, 400, "bad_timeout"),
    ("body-too-large", "POST", "/channels/CH/events", {}, BIG, 413, "too_large"),
    ("body-empty", "POST", "/channels/CH/events", {}, b"", 400, "bad_json"),
    ("body-blank", "POST", "/channels/CH/events", {}, b" \n\t", 400, "bad_json"),
    ("body-not-json", "POST", "/channels/CH/events", {}, b"hello", 400, "bad_json"),
    ("body-two-values", "POST", "/channels/CH/events", {}, b"1 2", 400, "bad_json"),
    ("body-not-utf8", "POST", "/channels/CH/events", {}, b'"\xff\xfe"', 400, "bad_json"),
    ("body-nan", "POST", "/channels/CH/events", {}, b"NaN", 400, "bad_json"),
    ("body-nested-nan", "POST", "/channels/CH/events", {}, b'{"a": NaN}', 400, "bad_json"),
    ("body-infinity", "POST", "/channels/CH/events", {}, b"[-Infinity]", 400, "bad_json"),
    ("publish-long-channel", "POST", "/channels/" + "c" * 65 + "/events", {}, b"1", 400, "bad_channel"),
    ("publish-space-channel", "POST", "/channels/a%20b/events", {}, b"1", 400, "bad_channel"),
    ("publish-unicode-channel", "POST", "/channels/%C3%A9t%C3%A9/events", {}, b"1", 400, "bad_channel"),
    ("publish-empty-channel", "POST", "/channels//events", {}, b"1", 400, "bad_channel"),
    ("poll-long-channel", "GET", "/channels/" + "c" * 65 + "/poll", {}, None, 400, "bad_channel"),
    ("poll-bad-channel", "GET", "/channels/a%2Cb/poll", {}, None, 400, "bad_channel"),
    ("poll-empty-channel", "GET", "/channels//poll", {}, None, 400, "bad_channel"),
    ("poll-slash-in-channel", "GET", "/channels/a%2Fb/poll", {}, None, 404, "not_found"),
    ("ws-plain-get", "GET", "/channels/CH/ws", {}, None, 400, "not_websocket"),
    ("ws-bad-channel-plain-get", "GET", "/channels/a%20b/ws", {}, None, 400, "not_websocket"),
    ("events-get", "GET", "/channels/CH/events", {}, None, 405, "method_not_allowed"),
    ("poll-post", "POST", "/channels/CH/poll", {}, b"1", 405, "method_not_allowed"),
    ("unknown-route", "GET", "/channels/CH", {}, None, 404, "not_found"),
]


@pytest.fixture(scope="module", params=["off", "on"], ids=["flask", "fast-path"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with run_server("werkzeug", env={"LAB_MAX_BODY": str(MAX_BODY), "LAB_FAST_PATH": request.param}) as proc:
        yield proc


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "status", "error"),
    [row[1:] for row in BAD_REQUESTS],
    ids=[row[0] for row in BAD_REQUESTS],
)
def test_a_bad_request_is_refused_and_changes_nothing(
    server: ServerProcess,
    request: pytest.FixtureRequest,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes | None,
    status: int,
    error: str,
) -> None:
    channel = "bad-" + request.node.callspec.id
    healthy = ws_connect(f"{server.ws_url}/channels/{channel}/ws")
    try:
        with httpx.Client(base_url=server.url, timeout=10 * UNIT) as http:
            resp = http.request(method, path.replace("CH", channel), params=query, content=body)
            assert (resp.status_code, resp.headers["content-type"]) == (status, "application/json")
            assert resp.json()["error"] == error
            assert resp.json()["detail"]
            if "/poll" in path:
                assert resp.headers["cache-control"] == "no-store"
            assert http.post(f"/channels/{channel}/events", content=b'"ok"').json()["seq"] == 1
            assert receive_json(healthy, 1) == [
                {"channel": channel, "seq": 1, "ts": receive_ts(http, channel), "data": "ok"}
            ]
    finally:
        healthy.close()


def receive_ts(http: httpx.Client, channel: str) -> int:
    """The ts of the channel's only event, read back by a long poll."""
    events = http.get(f"/channels/{channel}/poll", params={"after": 0, "timeout": 0}).json()["events"]
    assert [e["seq"] for e in events] == [1]
    ts: int = events[0]["ts"]
    return ts


@pytest.mark.redis
def test_redis_going_away_is_a_503_naming_the_bus() -> None:
    from tests.support import run_redis

    with run_redis() as url:
        app = create_app(Config(bus="redis", redis_url=url))
        client = app.test_client()
        assert client.post("/channels/r/events", data=b"1").status_code == 201
    # redis-server is stopped now
    answer = client.post("/channels/r/events", data=b"2")
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "bus_unavailable"
    answer = client.get("/channels/r/poll?after=0&timeout=0")
    assert answer.status_code == 503
    assert answer.get_json()["error"] == "bus_unavailable"
    lab_of(app).bus.close()
