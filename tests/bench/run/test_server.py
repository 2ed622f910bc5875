"""bench.run.server: the server under test starts on a port it announces, answers, and stops with its group."""

from __future__ import annotations

from pathlib import Path

import psutil

from bench.contract.scenarios import load_profile
from bench.run.server import launch_server, server_args
from tests.support import UNIT, wait_until


def test_the_lab_server_announces_its_port_answers_and_stops(tmp_path: Path) -> None:
    scenario = load_profile("smoke").scenarios[0]
    assert server_args(scenario, 0, 1000)[server_args(scenario, 0, 1000).index("--port") + 1] == "0"
    with (tmp_path / "log").open("wb") as log:
        server = launch_server(scenario, "websocket", 1000, log)
        try:
            server.wait_ready()
            assert server.port > 0 and server.http
            assert server.stats()["runtime"] == scenario.runtime
            members = [p.pid for p in server.child.processes()]
            assert members and server.rss_bytes() > 1 << 20
        finally:
            server.stop()
    assert server.exited()
    # SIGKILL to the group has been sent; a worker re-parented to init is reaped a moment later.
    assert wait_until(lambda: all(_gone(pid) for pid in members), 10 * UNIT)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_floor_is_ready_once_it_announced_its_port(tmp_path: Path) -> None:
    scenario = load_profile("smoke").scenarios[0]
    with (tmp_path / "log").open("wb") as log:
        floor = launch_server(scenario, "floor", 1000, log)
        try:
            floor.wait_ready()
            assert floor.port > 0 and not floor.http and floor.stats() == {}
        finally:
            floor.stop()
