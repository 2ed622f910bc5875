"""Property-based fuzzing of what a client can send: publish bodies, query strings, WebSocket messages.

Whatever comes in, the answer is one docs/protocol.md documents: never a
5xx, never a WebSocket close ``1011`` or a dropped connection, and never
silent truncation: a publish that is accepted stores exactly the payload sent
(the body stripped, over HTTP; the value, over a WebSocket), and one that is
refused stores nothing. HTTP runs through Flask's test client (fast, many
examples); WebSocket messages go to a real server, one connection each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simple_websocket import ConnectionClosed

from server.app import create_app
from server.bus.core import MAX_DEPTH, MAX_NUMBER
from server.config import Config
from tests.support import UNIT, ServerProcess, run_server, ws_connect

MAX_BODY = 16384
"""The fuzzed app's LAB_MAX_BODY: small enough to reach the 413, big enough for the longest number and 5,000 levels."""
JSON = {"Content-Type": "application/json"}
BODY_ERRORS = {"bad_json", "too_deep", "number_too_long"}
CLOSE_CODES = {1003, 1008, 1009, 4400}
"""Close codes docs/protocol.md gives for a client's bad message (1011 would be a bug)."""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text, often at or just beyond the limits, with random white space."""
    kind = draw(st.sampled_from(["value", "deep", "digits", "float"]))
    if kind == "deep":
        depth = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2) | st.sampled_from([1000, 3000, 5000]))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        return opener * depth + draw(st.sampled_from(["1", '"x"', "[]"])) + closer * depth
    if kind == "digits":
        n = draw(st.integers(MAX_NUMBER - 2, MAX_NUMBER + 2))
        return draw(st.sampled_from(["", "-"])) + "1" + "0" * (n - 1)
    if kind == "float":
        return draw(st.sampled_from(["1e999", "-1e999", "1.5e308", "0." + "1" * MAX_NUMBER, "1E+2"]))
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()))
    return draw(st.sampled_from(["", " ", "\n", "\t\r\n "])) + text + draw(st.sampled_from(["", " ", "\n"]))


bodies = st.one_of(
    json_texts().map(lambda t: t.encode()),
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(MAX_BODY - 2, MAX_BODY + 2).map(lambda n: b'"' + b"x" * (n - 2) + b'"'),
)


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    config = Config(max_body=MAX_BODY, history=100_000, poll_timeout=0.0, poll_timeout_max=0.01)
    return create_app(config).test_client()


def last_event(client: FlaskClient, channel: str) -> dict[str, Any] | None:
    answer = client.get(f"/channels/{channel}/poll", query_string={"after": 0, "timeout": 0})
    events: list[dict[str, Any]] = answer.get_json()["events"]
    return events[-1] if events else None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_a_publish_body_is_stored_exactly_or_refused_with_a_documented_4xx(client: FlaskClient, body: bytes) -> None:
    before = last_event(client, "fuzz")
    resp = client.post("/channels/fuzz/events", data=body, headers=JSON)
    after = last_event(client, "fuzz")
    assert resp.status_code in (201, 400, 413), (resp.status_code, resp.data[:200])
    if resp.status_code == 201:
        assert after is not None and after["seq"] == resp.get_json()["seq"]
        stored = json.dumps(after["data"], separators=(",", ":"), ensure_ascii=False)
        assert stored == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
        # The raw event carries the body's own bytes, stripped: read them from the poll answer.
        raw = client.get("/channels/fuzz/poll", query_string={"after": after["seq"] - 1, "timeout": 0}).data
        assert b'"data":' + body.strip(b" \t\n\r") + b"}]" in raw
    else:
        assert after == before  # nothing stored
        error = resp.get_json()["error"]
        assert error in (BODY_ERRORS if resp.status_code == 400 else {"too_large"})


queries = st.dictionaries(
    st.sampled_from(["after", "timeout", "x", "after[]", ""]),
    st.one_of(
        st.text(max_size=30),
        st.integers(-(2**70), 2**70).map(str),
        st.floats().map(str),
        st.sampled_from(["", "0", "1e309", "nan", "-0", "0x10", "٣", "9" * 5000, "1_000", " 1", "+1"]),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries, route=st.sampled_from(["poll", "events"]))
def test_a_query_string_never_makes_a_5xx(client: FlaskClient, query: dict[str, str], route: str) -> None:
    if route == "poll":
        resp = client.get("/channels/fuzzq/poll", query_string=query)
        assert resp.status_code in (200, 400), (resp.status_code, resp.data[:200])
        if resp.status_code == 400:
            assert resp.get_json()["error"] in {"bad_cursor", "bad_timeout"}
        else:
            assert set(resp.get_json()) == {"channel", "events", "next", "more", "gap", "reset"}
    else:
        resp = client.post("/channels/fuzzq/events", query_string=query, data=b"1", headers=JSON)
        assert resp.status_code == 201, resp.data[:200]


# -- WebSocket messages, to a real server ------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with run_server("werkzeug", "--ws-max-message", str(4 * MAX_BODY)) as proc:
        yield proc


messages = st.one_of(
    st.builds(
        lambda kind, data, extra: json.dumps({"type": kind, **extra, **({"data": data} if data is not None else {})}),
        st.sampled_from(["publish", "ping", "subscribe", None]),
        st.one_of(st.none(), values),
        st.dictionaries(st.sampled_from(["id", "channel"]), st.one_of(scalars, st.just("fuzzws"))),
    ),
    json_texts().map(lambda t: '{"type": "publish", "data": ' + t + "}"),
    json_texts().map(lambda t: '{"type": "ping", "id": ' + t + "}"),
    st.text(max_size=40),
    st.binary(max_size=16),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages)
def test_a_websocket_message_is_answered_or_closed_as_documented(server: ServerProcess, message: str | bytes) -> None:
    ws = ws_connect(f"{server.ws_url}/channels/fuzzws/ws?after=999999999")  # ahead of the channel: a reset first
    got: list[Any] = []

    def done() -> bool:
        """The closing pong came, and the event of an ack on this channel too."""
        if not any(m.get("type") == "pong" and m.get("id") == "end" for m in got):
            return False
        acked = {m["seq"] for m in got if m.get("type") == "ack"}
        own = isinstance(sent, dict) and sent.get("channel", "fuzzws") == "fuzzws"
        return not own or all(any("type" not in m and m["seq"] == seq for m in got) for seq in acked)

    try:
        sent = json.loads(message)
    except (ValueError, RecursionError):
        sent = None
    try:
        ws.send(message)
        ws.send('{"type": "ping", "id": "end"}')
        while not done():
            text = ws.receive(timeout=10 * UNIT)
            assert text is not None, f"no answer and no close after {got}"
            got.append(json.loads(text))
    except (ConnectionClosed, OSError):  # OSError: a send after the client's reader closed the socket
        assert int(ws.close_reason) in CLOSE_CODES, (ws.close_reason, ws.close_message, got)
        return
    finally:
        if ws.connected:
            ws.close()
    # Still open: the message was a valid ping or publish; a publish was stored exactly.
    assert isinstance(sent, dict)
    acks = [m for m in got if m.get("type") == "ack"]
    if sent.get("type") == "publish":
        assert len(acks) == 1, got
        events = [m for m in got if "type" not in m and m["seq"] == acks[0]["seq"]]
        if sent.get("channel", "fuzzws") == "fuzzws":
            assert [e["data"] for e in events] == [sent["data"]]
    else:
        assert acks == []
