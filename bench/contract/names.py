"""The benchmark's vocabulary: transports, layouts, runtimes, flags, file names, the schema version.

Contract layer: every other module of ``bench/`` takes these from here (the
runtimes from the server's own configuration, which is their one source).
"""

from __future__ import annotations

import datetime as dt
import re

from server.config import RUNTIMES

__all__ = [
    "ARRIVALS",
    "FLAGS",
    "HOST_STEAL_PERCENT",
    "INVALIDATING_FLAGS",
    "KINDS",
    "LAYOUTS",
    "RESULT_FILE_RE",
    "RUNTIMES",
    "SCHEMA_VERSION",
    "SERVERS",
    "SERVER_TRANSPORTS",
    "TRANSPORTS",
    "result_file_name",
    "run_dir_name",
]

SCHEMA_VERSION = 1
"""Version of the raw result and meta.json format (docs/results.md)."""
TRANSPORTS = ("longpoll", "websocket", "polling", "sse", "floor")
"""What a scenario can run: the lab's long-poll, WebSocket and SSE routes, interval polling of the long-poll
route, the loopback floor."""
SERVERS = ("lab", "flask_socketio", "nchan", "websockets")
"""The server under test: the lab's own, or a peer measured on the same bench (``peers/<name>/``)."""
SERVER_TRANSPORTS: dict[str, tuple[str, ...]] = {
    "lab": ("longpoll", "websocket", "polling", "sse", "floor"),
    "flask_socketio": ("longpoll", "websocket"),  # Engine.IO's polling transport is long polling
    "nchan": ("longpoll", "websocket", "polling", "sse"),
    "websockets": ("websocket",),
}
"""The transports each server has."""
LAYOUTS = ("broadcast", "per-subscriber")
ARRIVALS = ("periodic", "poisson")
KINDS = ("transport", "memory")
"""What a scenario measures: a transport delivering events, or the server's memory under load."""
"""How the publisher spaces its bursts (bench.agents.publisher)."""
FLAGS = ("loss", "clients_saturated", "publisher_behind", "server_errors", "host_steal")
HOST_STEAL_PERCENT = 10.0
"""Above this share of the machine's CPU time taken by the hypervisor over the window (``host.steal_percent``),
a result is flagged ``host_steal``: the processes waited for a CPU the host gave elsewhere, so its latency is in
part the host's. Flagged, not invalidating: CPU time per event is counted while running and stands."""
INVALIDATING_FLAGS = frozenset({"clients_saturated", "publisher_behind"})
"""Flags that make a run's latency the clients' or the publisher's, not the server's (correctness still counts)."""
RESULT_FILE_RE = re.compile(r"(?P<scenario>[a-z0-9_.-]+)--(?P<transport>[a-z]+)--r(?P<rep>[0-9]+)\.json")


def result_file_name(scenario: str, transport: str, repetition: int) -> str:
    """``<scenario>--<transport>--r<repetition>.json``: one raw file per run, failed ones too."""
    return f"{scenario}--{transport}--r{repetition}.json"


def run_dir_name(profile: str, now: dt.datetime | None = None) -> str:
    """``<UTC timestamp>-<profile>``, e.g. ``20261127T201500Z-quick``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{profile}"
