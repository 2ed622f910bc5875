"""Tests of the peers (``peers/``), and :func:`run_peer`: a peer started as the runner starts it.

A peer is started by command line (``python -m peers.<name> --port 0 ...``) through :class:`bench.process.Child`,
in its own process group, read for its ready line, probed on ``/healthz``, and stopped in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.agents.http import BarePoller
from bench.contract.payload import encode_payload
from bench.process import Child, ChildError, wait_http_ok
from tests.support import TAG_VARIABLE, UNIT

__all__ = ["PeerProcess", "publish", "run_peer", "until"]


@dataclass
class PeerProcess:
    """A running peer: its child process and its ready line."""

    child: Child
    ready: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.ready["listening"])

    @property
    def publish_url(self) -> str:
        """Where to publish: the ``publish_port`` if the peer announced one, else its one port."""
        port = self.ready.get("publish_port", self.ready["port"])
        return f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def run_peer(name: str, *args: str, tag: str | None = None) -> Iterator[PeerProcess]:
    """Start ``python -m peers.<name> --port 0 *args``, wait for its ready line and ``/healthz``, stop it after.

    ``tag`` is put in its environment (:data:`tests.support.TAG_VARIABLE`) so that a test can look for
    processes it left behind.
    """
    env = {**os.environ, **({TAG_VARIABLE: tag} if tag else {})}
    child = Child(["-m", f"peers.{name}", "--port", "0", *args], name=f"peer {name}", env=env)
    try:
        ready = child.expect("listening", 30 * UNIT)
        peer = PeerProcess(child, ready)
        wait_http_ok(f"{peer.url}/healthz", 20 * UNIT, alive=lambda: not child.exited())
        if peer.publish_url != peer.url:
            wait_http_ok(f"{peer.publish_url}/healthz", 20 * UNIT, alive=lambda: not child.exited())
        yield peer
    except ChildError as exc:
        raise RuntimeError(f"peer {name} {' '.join(args)} did not start: {exc}") from None
    finally:
        child.stop(10 * UNIT)


async def publish(url: str, channel: str, numbers: range, size: int = 60, status: int = 202) -> list[bytes]:
    """POST one numbered benchmark payload per number, on one keep-alive connection; the bodies sent.

    Each answer must have ``status`` (the Flask-SocketIO peer's 202, the lab's and the websockets peer's 201).
    """
    bodies = [encode_payload(k, 1000 + k, False, size, number=k) for k in numbers]
    poller = BarePoller()
    try:
        for body in bodies:
            answer, *_ = await poller.request(
                "POST", f"{url}/channels/{channel}/events", 10 * UNIT, {"Content-Type": "application/json"}, body
            )
            assert answer.status == status and json.loads(answer.body)["channel"] == channel
    finally:
        await poller.aclose()
    return bodies


async def until(predicate: Callable[[], bool], tasks: list[asyncio.Task[None]], timeout: float = 20 * UNIT) -> None:
    """Wait until ``predicate()`` holds; fail if one of ``tasks`` (subscribers' runs) ends or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        for task in tasks:
            if task.done():
                task.result()
                raise AssertionError("a subscriber stopped")
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)
