"""The server under test: started on a port it announces, probed until ready, asked for its stats, stopped.

Run layer of the benchmark: the lab's Flask server (``python -m server``), a peer (``python -m peers.<name>``,
docs/peers.md) or the loopback floor, as a :class:`bench.process.Child`, with what a run reads of it (CPU of
its whole process tree at nanosecond resolution, RSS, the lab's ``/stats``). A peer announces itself on the
same kind of ready line as the lab's server (``{"port": N, ...}``, plus ``publish_port`` when it takes publishes
on another port, and its ``peer``, ``versions`` and ``options``), answers ``GET /healthz``, and has no
``/stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

import httpx

from bench.agents.floor import FloorProcess
from bench.contract.scenarios import Scenario
from bench.process import Child, ChildError, wait_http_ok

__all__ = ["READY_TIMEOUT_S", "RunError", "ServerHandle", "launch_server", "peer_args", "server_args"]

READY_TIMEOUT_S = 60.0
"""Longest wait for a server, a fleet or the publisher to be ready."""


class RunError(RuntimeError):
    """A run that could not be carried out (a process did not start or answer)."""


# --- the server under test ------------------------------------------------------------------------------


@dataclass
class ServerHandle:
    """The server under test (the lab's Flask server or the floor): where it listens and what it costs."""

    port: int
    child: Child
    http: bool
    """Whether it speaks HTTP (``/healthz``); the floor does not."""
    publish_port: int | None = None
    """Where publishes go, when not ``port`` (the ``websockets`` peer)."""
    peer: dict[str, Any] | None = None
    """A peer's ready line: ``name``, ``versions``, ``options`` (``None``: the lab's server or the floor)."""
    stop_timeout: float = 1.0
    """The window is closed when it stops: a server slow to shut down (gunicorn's arbiter) is killed after this."""
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def exited(self) -> bool:
        return self.child.exited()

    def stop(self) -> None:
        self.child.stop(self.stop_timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process and its children (gunicorn workers)."""
        return self.child.cpu_seconds()

    def rss_bytes(self) -> int:
        return self.child.rss_bytes()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Probe ``/healthz`` until it answers 200 (the floor is ready once it announced its port)."""
        if self.exited():
            raise RunError(f"the server on port {self.port} exited at start (see the run's log)")
        if self.http:
            try:
                wait_http_ok(f"{self.base}/healthz", timeout, alive=lambda: not self.exited())
            except ChildError as exc:
                raise RunError(f"the server did not start: {exc} (see the run's log)") from exc

    @property
    def publish_base(self) -> str:
        """The base URL the publisher posts to."""
        return f"http://127.0.0.1:{self.publish_port or self.port}"

    def stats(self) -> dict[str, Any]:
        """``GET /stats`` (empty for the floor and the peers, which have none)."""
        if not self.http or self.peer is not None:
            return {}
        try:
            result: dict[str, Any] = httpx.get(f"{self.base}/stats", timeout=10).json()
        except httpx.HTTPError as exc:  # e.g. every gthread thread held by a long poll
            raise RunError(f"the server's /stats did not answer ({exc!r}): is every worker thread busy?") from exc
        return result


def server_args(scenario: Scenario, port: int, history: int) -> list[str]:
    """The ``python -m server`` command line of a scenario."""
    args = [
        "-m", "server",
        "--runtime", scenario.runtime,
        "--port", str(port),
        "--history", str(history),
        "--threads", str(scenario.threads),
        "--connections", str(scenario.connections),
        "--poll-timeout", str(scenario.poll_timeout_s),
        "--ws-compression", "on" if scenario.compression else "off",
    ]  # fmt: skip
    # Always stated: the server's own default (pings every 25 s) must not decide what a scenario measures.
    args += ["--ws-ping-interval", str(scenario.ws_ping_s or 0)]
    if scenario.fast_path:  # stated only when on: the Flask routes are the server's default
        args += ["--fast-path", "on"]
    return args


def peer_args(scenario: Scenario, history: int) -> list[str]:
    """The ``python -m peers.<name>`` command line of a scenario whose server is a peer (docs/peers.md)."""
    args = ["-m", f"peers.{scenario.server}", "--port", "0"]
    if scenario.server == "flask_socketio":
        args += ["--async-mode", "gevent" if scenario.runtime == "gevent" else "threading"]
        args += ["--nodelay", "on" if scenario.tcp_nodelay else "off"]
        if scenario.ws_ping_s:  # else Socket.IO's own default (25 s): its heartbeat is part of its protocol
            args += ["--ping-interval", str(scenario.ws_ping_s)]
    elif scenario.server == "nchan":
        args += ["--workers", str(scenario.workers or "auto"), "--history", str(history)]
        args += ["--poll-timeout", str(scenario.poll_timeout_s)]
    elif scenario.server == "websockets":
        args += ["--history", str(history)]
    return args


def launch_server(scenario: Scenario, transport: str, history: int, log: IO[bytes]) -> ServerHandle:
    """Start the server under test on a port it picks and announces; :meth:`ServerHandle.wait_ready` waits."""
    if transport == "floor":
        floor = FloorProcess()  # returns once it listens
        return ServerHandle(floor.port, floor, http=False)
    peer = scenario.server != "lab"
    args = peer_args(scenario, history) if peer else server_args(scenario, 0, history)
    name = f"the peer {scenario.server}" if peer else "the server"
    child = Child(args, log=log, name=name)
    try:
        ready = child.expect("port", READY_TIMEOUT_S)
    except ChildError as exc:
        child.stop()
        raise RunError(f"{name} did not start: {exc} (see the run's log)") from exc
    handle = ServerHandle(int(ready["port"]), child, http=True)
    if peer:
        handle.publish_port = int(ready["publish_port"]) if ready.get("publish_port") else None
        handle.peer = {
            "name": str(ready.get("peer", scenario.server)),
            "versions": dict(ready.get("versions") or {}),
            "options": ready.get("options") or {},
        }
    return handle
