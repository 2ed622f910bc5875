"""A memory scenario: the server's RSS under idle channels, big payloads and a stalled reader.

Run layer of the benchmark. The server is started as for any run (:func:`bench.run.server.launch_server`);
the memory probe (:mod:`bench.agents.memory`) loads it one step at a time, and between the steps this
module reads the server's resident memory (its whole process tree). After the stall step it keeps
sampling until the server has let the stalled readers go (``/stats`` counts no WebSocket) or the
scenario's ``duration_s`` passes (the lab's writer gives up on a stalled reader after 30 s), so the result
says whether memory is bounded and when the slow consumer was dropped. Nothing here measures latency; the
raw result has a ``memory`` block instead (docs/results.md).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from bench.contract.names import SCHEMA_VERSION
from bench.contract.scenarios import Scenario
from bench.process import Child

from .record import utc_now
from .server import RunError, launch_server

__all__ = ["run_memory"]

STEP_TIMEOUT_S = 300.0
"""Longest wait for one step of the probe."""


def run_memory(scenario: Scenario, transport: str, repetition: int, log_dir: Path) -> dict[str, Any]:
    """Run one memory scenario; its raw result (``kind`` memory)."""
    started_utc, t_start = utc_now(), time.monotonic()
    steps: list[dict[str, Any]] = []
    dropped_after: float | None = None
    log_dir.mkdir(parents=True, exist_ok=True)
    with (
        (log_dir / f"{scenario.name}--{transport}--r{repetition}.log").open("wb") as log,
        contextlib.ExitStack() as stack,
    ):
        server = launch_server(scenario, transport, history=10_000, log=log)
        stack.callback(server.stop)
        server.wait_ready()
        probe = Child(["-m", "bench.agents.memory", server.base], log=log, name="the memory probe")
        stack.callback(probe.stop)
        probe.expect("ready", 60)

        def sample(step: str, published: int = 0) -> None:
            steps.append(
                {
                    "step": step,
                    "published": published,
                    "rss_bytes": server.rss_bytes(),
                    "at_s": round(time.monotonic() - t_start, 3),
                }
            )

        sample("start")
        commands = [
            ({"cmd": "channels", "count": scenario.idle_channels}, "channels"),
            ({"cmd": "big", "count": scenario.big_events, "bytes": scenario.payload_bytes}, "big"),
            (
                {"cmd": "stall", "readers": scenario.stalled, "count": scenario.big_events,
                 "bytes": scenario.payload_bytes},
                "stall",
            ),
        ]  # fmt: skip
        for command, name in commands:
            answer = probe.request(command, "done", STEP_TIMEOUT_S)
            sample(name, int(answer["published"]))
        stall_done = time.monotonic()
        peak = max(s["rss_bytes"] for s in steps)
        while time.monotonic() - stall_done < scenario.duration_s:
            peak = max(peak, server.rss_bytes())
            if scenario.stalled and server.stats()["connections"]["websocket"] == 0:
                dropped_after = round(time.monotonic() - stall_done, 1)
                break
            time.sleep(1.0)
        sample("after_stall")
        if server.exited():
            raise RunError("the server exited during the memory scenario")
    return {
        "schema": SCHEMA_VERSION,
        "status": "ok",
        "scenario": scenario.block(transport),
        "repetition": repetition,
        "started_utc": started_utc,
        "wall_s": round(time.monotonic() - t_start, 3),
        "memory": {
            "steps": steps,
            "peak_rss_bytes": max(peak, *(s["rss_bytes"] for s in steps)),
            "stalled_dropped_after_s": dropped_after,
            "drop_timeout_s": scenario.duration_s,
        },
    }
