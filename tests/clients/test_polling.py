"""Tests of clients.polling: interval polling against a real server (werkzeug and gevent)."""

from __future__ import annotations

import asyncio

import pytest

from clients import PollingSubscriber
from tests.clients import scenarios


def make(url, channel, **kwargs):
    return PollingSubscriber(url, channel, interval=0.02, **kwargs)


def test_all_arrive_in_order(server, channel):
    sub = scenarios.all_arrive_in_order(make, server, channel)
    assert sub.stats.requests >= 2


def test_reconnect_and_resume(server, channel):
    # Idle polls hold no connection open (werkzeug does not keep them alive), so
    # a drop may find nothing to cut: what must hold is exactly-once delivery.
    scenarios.reconnect_and_resume(make, server, channel)


def test_gap_is_counted(small_server, channel):
    scenarios.gap_is_counted(make, small_server, channel)


def test_reset_is_counted(server, channel):
    scenarios.reset_is_counted(make, server, channel)


def test_bad_channel_is_fatal(server):
    scenarios.bad_channel_is_fatal(make, server)


def test_idle_polls_are_empty_and_ask_for_no_hold(server, channel):
    sub = PollingSubscriber(server.url, channel, interval=0.01)
    assert sub.timeout == 0

    async def main():
        await scenarios.run_until(sub, lambda: sub.stats.requests >= 5)

    asyncio.run(main())
    assert sub.stats.empty_responses == sub.stats.requests
    assert sub.tracker.cursor == 0


def test_interval_is_checked():
    with pytest.raises(ValueError):
        PollingSubscriber("http://lab", "c", interval=0)
