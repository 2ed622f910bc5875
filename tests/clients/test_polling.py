"""Tests of clients.polling: what only interval polling does (its schedule, its zero hold).

What every transport must do against a real server is in test_subscriber_contract.py.
"""

from __future__ import annotations

import asyncio

import pytest

from clients import PollingSubscriber
from tests.clients.conftest import ScriptedPoller, answer, run_until
from tests.support import UNIT, ServerProcess


def test_more_is_followed_at_once_and_otherwise_the_next_slot_is_awaited() -> None:
    """Interval 1000 s: the first poll goes at once, a ``more`` answer is followed at once, then nothing."""
    poller = ScriptedPoller(answer((1, 2), more=True), answer((3,)))
    sub = PollingSubscriber("http://lab", "c", interval=1000.0, poller=poller)

    # run_until looks every 10 ms: a third poll that did not wait for its slot would be made by then.
    asyncio.run(run_until(sub, lambda: sub.tracker.cursor == 3, timeout=10 * UNIT))
    assert poller.urls == [
        "http://lab/channels/c/poll?after=0&timeout=0",
        "http://lab/channels/c/poll?after=2&timeout=0",
    ]
    assert sub.stats.requests == 2


def test_idle_polls_are_empty_and_ask_for_no_hold(server: ServerProcess, channel: str) -> None:
    sub = PollingSubscriber(server.url, channel, interval=0.01)
    assert sub.timeout == 0
    asyncio.run(run_until(sub, lambda: sub.stats.requests >= 5))
    assert sub.stats.empty_responses == sub.stats.requests
    assert sub.tracker.cursor == 0


@pytest.mark.parametrize("interval", [0, -1])
def test_interval_is_checked(interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be > 0"):
        PollingSubscriber("http://lab", "c", interval=interval)


def test_the_first_poll_waits_for_the_phase() -> None:
    """Phase 1000 s: no poll is made in the time a phase-less poller makes its first one at once."""
    waiting = ScriptedPoller(answer((1,)))
    sub = PollingSubscriber("http://lab", "c", interval=2000.0, phase=1000.0, poller=waiting)
    prompt = ScriptedPoller(answer((1,)))
    control = PollingSubscriber("http://lab", "c", interval=2000.0, poller=prompt)

    async def both() -> None:
        await run_until(control, lambda: control.tracker.cursor == 1, timeout=10 * UNIT)
        stop = asyncio.Event()
        task = asyncio.create_task(sub.run(stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 10 * UNIT)

    asyncio.run(both())
    assert prompt.urls == ["http://lab/channels/c/poll?after=0&timeout=0"]
    assert waiting.urls == []


@pytest.mark.parametrize("phase", [-0.1, 1.0, 5.0])
def test_phase_is_checked(phase: float) -> None:
    with pytest.raises(ValueError, match=r"phase must be in \[0, interval\)"):
        PollingSubscriber("http://lab", "c", interval=1.0, phase=phase)
