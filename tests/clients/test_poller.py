"""Tests of clients.poller: the httpx poller keeps the Poller contract (httpx.MockTransport, and a real server)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from clients import HttpxPoller, LongPollSubscriber, PollAnswer, make_http_client
from tests.clients.conftest import publish_many
from tests.support import UNIT, ServerProcess


def mock_client(handler: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_any_status_is_answered_with_its_body_and_the_timeout_is_the_callers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = 404 if request.url.path == "/missing" else 200
        return httpx.Response(status, content=b"body of " + request.url.path.encode())

    async def main() -> list[PollAnswer]:
        async with mock_client(handler) as client:
            poller = HttpxPoller(client)
            return [await poller.get("http://lab/found?after=1", 7.5), await poller.get("http://lab/missing", 1.0)]

    answers = asyncio.run(main())
    assert answers == [PollAnswer(200, b"body of /found", False), PollAnswer(404, b"body of /missing", False)]
    assert [str(r.url) for r in seen] == ["http://lab/found?after=1", "http://lab/missing"]
    assert seen[0].extensions["timeout"]["read"] == 7.5
    assert seen[1].extensions["timeout"]["read"] == 1.0


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (httpx.ConnectError("refused"), ConnectionError),
        (httpx.RemoteProtocolError("peer closed"), ConnectionError),
        (httpx.ReadTimeout("late"), TimeoutError),
        (httpx.ConnectTimeout("slow"), TimeoutError),
    ],
)
def test_transport_failures_are_oserrors(failure: httpx.TransportError, raised: type[OSError]) -> None:
    """The contract: a failed exchange raises OSError (the subscriber reconnects), its cause attached."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    async def main() -> None:
        async with mock_client(handler) as client:
            await HttpxPoller(client).get("http://lab/poll", 1.0)

    with pytest.raises(raised) as caught:
        asyncio.run(main())
    assert caught.value.__cause__ is failure


def test_a_shared_client_is_not_closed_and_an_own_client_is_closed_and_remade() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}")

    async def main() -> None:
        async with mock_client(handler) as shared:
            poller = HttpxPoller(shared)
            await poller.aclose()
            assert poller.client is shared and not shared.is_closed
        own = HttpxPoller()
        first = own.client
        assert own.client is first  # made once, kept
        await own.aclose()
        assert first.is_closed
        second = own.client
        assert second is not first and not second.is_closed
        await own.aclose()
        assert second.is_closed
        await own.aclose()  # closing twice is harmless

    asyncio.run(main())


def test_new_connections_are_reported_once(server: ServerProcess, channel: str) -> None:
    """A real server: the first request opens a connection; a keep-alive one reuses it, a closed one reopens."""

    async def main() -> list[PollAnswer]:
        poller = HttpxPoller()
        try:
            url = f"{server.url}/channels/{channel}/poll?after=0&timeout=0"
            return [await poller.get(url, 10 * UNIT) for _ in range(3)]
        finally:
            await poller.aclose()

    answers = asyncio.run(main())
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].new_connection is True
    opened = [a.new_connection for a in answers[1:]]
    if server.runtime == "gevent":  # HTTP/1.1 keep-alive
        assert opened == [False, False]
    else:  # werkzeug's development server closes after each answer
        assert opened == [True, True]


def test_a_shared_client_serves_more_held_polls_than_httpx_default_pool(server: ServerProcess, channel: str) -> None:
    """make_http_client has no pool cap: 120 subscribers hold a poll each on one shared client (httpx's cap: 100)."""
    n_subs, n_events = 120, 3

    async def main() -> list[LongPollSubscriber]:
        async with make_http_client() as client:
            poller = HttpxPoller(client)  # one poller, shared: it holds no state of its own
            subs = [LongPollSubscriber(server.url, channel, timeout=5.0, poller=poller) for _ in range(n_subs)]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in subs]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30 * UNIT
            # Every poll held at once by the server (with a pool cap of 100, 20 would wait in the client's pool).
            while (await client.get(f"{server.url}/stats")).json()["connections"]["longpoll"] < n_subs:
                assert loop.time() < deadline, "the polls were not all held at once"
                await asyncio.sleep(0.05)
            await publish_many(server.url, channel, n_events)
            while not all(s.tracker.cursor >= n_events for s in subs):
                assert loop.time() < deadline, [s.tracker.cursor for s in subs]
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
            assert not client.is_closed  # a shared client is not closed by its subscribers
            return subs

    subs = asyncio.run(main())
    for s in subs:
        c = s.tracker.finish(n_events)
        assert (c.delivered, c.duplicate, c.missing) == (n_events, 0, 0)
