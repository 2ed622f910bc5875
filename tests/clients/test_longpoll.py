"""Tests of clients.longpoll: what only the long-poll subscriber does.

Its requests and answer handling are tested through the poller seam with a
scripted fake (``conftest.ScriptedPoller``, no network): the exact requests it
makes, how it counts answers, which answers it retries. What every
transport must do against a real server is in test_subscriber_contract.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from clients import LongPollSubscriber, PollAnswer, Received, ServerUnavailable, SubscriberError
from tests.clients.conftest import ScriptedPoller, answer, run_until
from tests.support import UNIT, ServerProcess


def error(status: int, name: str, detail: str) -> PollAnswer:
    return PollAnswer(status, json.dumps({"error": name, "detail": detail}).encode(), False)


def play(poller: ScriptedPoller, until: Any, **kwargs: Any) -> tuple[LongPollSubscriber, list[Received]]:
    """Run a subscriber over ``poller`` until ``until(sub)`` holds; returns it and what it received."""
    got: list[Received] = []
    sub = LongPollSubscriber("http://lab", "c", poller=poller, on_event=got.append, backoff_min=0.001, **kwargs)
    asyncio.run(run_until(sub, lambda: until(sub), timeout=10 * UNIT))
    return sub, got


def test_requests_follow_the_cursor_and_503_is_retried() -> None:
    script = (
        error(503, "shutting_down", "the server is stopping; poll again"),
        answer((1, 2), more=True, new_connection=True),
        answer((3,)),
        answer(after=3),
    )
    poller = ScriptedPoller(*script)
    sub, got = play(poller, lambda sub: len(poller.urls) == 5, timeout=1, margin=4)
    assert poller.urls[0] == "http://lab/channels/c/poll?after=0&timeout=1"
    assert poller.params("after") == ["0", "0", "2", "3", "3"]
    assert poller.timeouts == [5.0] * 5  # the hold plus the margin
    assert [r.seq for r in got] == [1, 2, 3]
    assert isinstance(sub.last_error, ServerUnavailable)
    assert "GET /channels/c/poll -> 503 shutting_down" in str(sub.last_error)
    stats = sub.stats
    assert (stats.requests, stats.empty_responses, stats.reconnects, stats.connections) == (4, 1, 1, 1)
    assert stats.payload_bytes == sum(len(a.body) for a in script)
    assert poller.closed == 1  # run() closes its poller when it returns


def test_a_failed_exchange_reconnects_from_the_cursor() -> None:
    poller = ScriptedPoller(answer((1,)), ConnectionResetError("cut"), TimeoutError("late"), answer((2,)))
    sub, got = play(poller, lambda sub: len(poller.urls) == 5)
    assert poller.params("after") == ["0", "1", "1", "1", "2"]
    assert [r.seq for r in got] == [1, 2]
    assert sub.stats.reconnects == 2
    assert (sub.stats.requests, sub.tracker.finish(2).delivered) == (2, 2)


def test_a_reset_is_applied_before_a_gap_in_the_same_answer() -> None:
    # A cursor of 100 on a channel whose last seq is 30 and whose history starts at 21.
    poller = ScriptedPoller(
        answer(
            (21, 22, 23, 24, 25, 26, 27, 28, 29, 30), reset={"after": 100, "last_seq": 30}, gap={"first": 1, "last": 20}
        )
    )
    sub, got = play(poller, lambda sub: len(poller.urls) == 2, after=100)
    assert poller.params("after") == ["100", "30"]
    assert [r.seq for r in got] == list(range(21, 31))
    c = sub.tracker.finish(30)
    assert (c.resets, c.gaps, c.gap_lost, c.delivered, c.missing, c.duplicate) == (1, 1, 20, 10, 0, 0)


@pytest.mark.parametrize(
    ("refusal", "message"),
    [
        (error(400, "bad_cursor", "nope"), "GET /channels/c/poll -> 400 bad_cursor: nope"),
        (PollAnswer(404, b"<html>not here</html>", False), "GET /channels/c/poll -> 404 <html>not here</html>"),
    ],
)
def test_client_errors_are_fatal(refusal: PollAnswer, message: str) -> None:
    poller = ScriptedPoller(refusal)
    sub = LongPollSubscriber("http://lab", "c", poller=poller)
    with pytest.raises(SubscriberError) as caught:
        asyncio.run(asyncio.wait_for(sub.run(), 10 * UNIT))
    assert str(caught.value) == message
    assert (sub.stats.reconnects, sub.stats.requests, poller.closed) == (0, 1, 1)


def test_the_channel_is_quoted_in_the_path() -> None:
    poller = ScriptedPoller()
    play(poller, lambda sub: len(poller.urls) == 1, timeout=25)
    assert poller.urls == ["http://lab/channels/c/poll?after=0&timeout=25"]
    poller = ScriptedPoller()
    sub = LongPollSubscriber("http://lab/", "a b/é", poller=poller)
    asyncio.run(run_until(sub, lambda: len(poller.urls) == 1, timeout=10 * UNIT))
    assert poller.urls == ["http://lab/channels/a%20b%2F%C3%A9/poll?after=0&timeout=25"]


def test_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="from 0 to 30"):
        LongPollSubscriber("http://lab", "c", timeout=31)
    with pytest.raises(ValueError, match="from 0 to 30"):
        LongPollSubscriber("http://lab", "c", timeout=-1)


def test_timeout_answers_are_counted_empty(server: ServerProcess, channel: str) -> None:
    """A real server's held polls that run out answer with no event: counted, the cursor stays."""
    sub = LongPollSubscriber(server.url, channel, timeout=0.1)
    asyncio.run(run_until(sub, lambda: sub.stats.empty_responses >= 3))
    assert sub.tracker.cursor == 0
    assert sub.stats.requests == sub.stats.empty_responses
    assert sub.stats.connections >= 1


def test_events_carry_the_time_the_poller_read_the_answer() -> None:
    """A poller that says when it read an answer: every event of it carries that time; one that does not: now."""
    stamped = answer((1, 2))
    stamped = PollAnswer(stamped.status, stamped.body, False, recv_ns=111, recv_mono_ns=222)
    poller = ScriptedPoller(stamped, answer((3,)))
    _sub, got = play(poller, lambda sub: sub.tracker.cursor >= 3)
    assert [(r.seq, r.recv_ns, r.recv_mono_ns) for r in got[:2]] == [(1, 111, 222), (2, 111, 222)]
    assert got[2].recv_ns > 10**18 and got[2].recv_mono_ns > 0  # taken by the subscriber when get returned
    assert stamped == PollAnswer(stamped.status, stamped.body, False)  # times are not part of equality
