"""Tests of server/longpoll.py: query parsing, the answer body, held polls.

The parsers and the encoder are pure; held polls run through Flask's test
client in threads (a poll blocks its thread until the bus wakes it).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.app import create_app, lab_of
from server.bus import Batch, Event, Gap, Reset
from server.config import Config
from server.errors import ApiError
from server.longpoll import MAX_CURSOR, encode_batch, parse_cursor, parse_timeout
from tests.support import UNIT, wait_until

CONFIG = Config(history=10, max_batch=3)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 0), ("0", 0), ("7", 7), ("007", 7), (str(10**18), 10**18), (str(MAX_CURSOR), MAX_CURSOR)],
)
def test_parse_cursor_accepts_integers(raw: str | None, expected: int) -> None:
    assert parse_cursor(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "-1", "1.5", "1e3", "+1", " 1", "0x1", "abc", "٣", str(MAX_CURSOR + 1), "9" * 5000]
)
def test_parse_cursor_refuses_the_rest(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_cursor(raw)
    assert (info.value.status, info.value.error) == (400, "bad_cursor")


@pytest.mark.parametrize(("raw", "expected"), [(None, 25.0), ("0", 0.0), ("2.5", 2.5), ("30", 30.0), ("1e1", 10.0)])
def test_parse_timeout_accepts_numbers_in_range(raw: str | None, expected: float) -> None:
    assert parse_timeout(raw, Config()) == expected


@pytest.mark.parametrize("raw", ["", "-1", "-0.001", "30.001", "31", "nan", "inf", "-inf", "soon", "0x1"])
def test_parse_timeout_refuses_the_rest(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_timeout(raw, Config())
    assert (info.value.status, info.value.error) == (400, "bad_timeout")


def test_parse_timeout_follows_the_configured_maximum() -> None:
    config = Config(poll_timeout=1, poll_timeout_max=2)
    assert parse_timeout(None, config) == 1
    assert parse_timeout("2", config) == 2
    with pytest.raises(ApiError):
        parse_timeout("2.5", config)


def test_encode_batch_embeds_the_stored_event_bytes() -> None:
    events = (Event.create("c", 4, 11, b'{"a": 1}'), Event.create("c", 5, 12, b"[1,2]"))
    body = encode_batch("c", Batch(events, 5, True, Gap(1, 3), Reset(9, 5)))
    obj = json.loads(body)
    assert obj == {
        "channel": "c",
        "events": [json.loads(e.wire) for e in events],
        "next": 5,
        "more": True,
        "gap": {"first": 1, "last": 3},
        "reset": {"after": 9, "last_seq": 5},
    }
    assert list(obj) == ["channel", "events", "next", "more", "gap", "reset"]
    assert b'"events":[' + events[0].wire + b"," + events[1].wire + b"]" in body


def test_encode_batch_of_nothing() -> None:
    assert json.loads(encode_batch("c", Batch((), 3))) == {
        "channel": "c",
        "events": [],
        "next": 3,
        "more": False,
        "gap": None,
        "reset": None,
    }


def _poll_in_thread(app: Any, query: dict[str, str], out: list[Any]) -> threading.Thread:
    def run() -> None:
        resp = app.test_client().get("/channels/held/poll", query_string=query)
        out.append((resp.status_code, resp.get_json(), resp.headers.get("Cache-Control")))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fast_path", [False, True], ids=["flask", "fast-path"])
def test_a_held_poll_answers_when_an_event_is_published(fast_path: bool) -> None:
    app = create_app(CONFIG.with_overrides(fast_path=fast_path))
    out: list[Any] = []
    thread = _poll_in_thread(app, {"after": "0", "timeout": "30"}, out)
    lab = lab_of(app)
    # Publish only once the poll is held, so it is the publish that wakes it.
    assert wait_until(lambda: lab.stats.snapshot()["connections"]["longpoll"] == 1, 10 * UNIT)
    assert app.test_client().post("/channels/held/events", data=b'{"x": 1}').status_code == 201
    thread.join(10 * UNIT)
    assert not thread.is_alive()
    status, body, cache = out[0]
    assert (status, cache) == (200, "no-store")
    assert [e["seq"] for e in body["events"]] == [1]
    assert body["events"][0]["data"] == {"x": 1}
    assert body["next"] == 1


@pytest.mark.parametrize("fast_path", [False, True], ids=["flask", "fast-path"])
def test_a_held_poll_gets_503_when_the_bus_closes(fast_path: bool) -> None:
    app = create_app(CONFIG.with_overrides(fast_path=fast_path))
    out: list[Any] = []
    thread = _poll_in_thread(app, {"after": "0", "timeout": "30"}, out)
    lab = lab_of(app)
    assert wait_until(lambda: lab.stats.snapshot()["connections"]["longpoll"] == 1, 10 * UNIT)
    lab.bus.close()
    thread.join(10 * UNIT)
    assert not thread.is_alive()
    status, body, cache = out[0]
    assert (status, body["error"], cache) == (503, "shutting_down", "no-store")


@pytest.mark.parametrize("fast_path", [False, True], ids=["flask", "fast-path"])
def test_a_poll_on_a_closed_bus_is_refused_at_once(fast_path: bool) -> None:
    app = create_app(CONFIG.with_overrides(fast_path=fast_path))
    lab_of(app).bus.close()
    resp = app.test_client().get("/channels/c/poll", query_string={"timeout": "30"})
    assert (resp.status_code, resp.get_json()["error"]) == (503, "shutting_down")


@given(st.integers(0, 2**63 - 1), st.booleans(), st.lists(st.integers(1, 10**6), max_size=3))
def test_an_answer_without_notices_has_json_dumps_own_tail(next_seq: int, more: bool, seqs: list[int]) -> None:
    """encode_batch formats the usual tail itself; the bytes are json.dumps's."""
    events = tuple(Event.create("c", seq, 1, b'{"x":%d}' % seq) for seq in seqs)
    body = encode_batch("c", Batch(events, next_seq, more))
    tail = json.dumps({"next": next_seq, "more": more, "gap": None, "reset": None}, separators=(",", ":"))
    events_json = b",".join(e.wire for e in events)
    assert body == b'{"channel":"c","events":[' + events_json + b"]," + tail[1:].encode()
