"""Tests of bench/run/runner.py: channel layout, sharding, selection, one real run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil
import pytest

from bench.contract.scenarios import Scenario, load_profile
from bench.contract.schema import validate_result
from bench.report.load import load_run
from bench.run.runner import RunError, run_one, selected, shard


def smoke(name: str) -> Scenario:
    return next(s for s in load_profile("smoke").scenarios if s.name == name)


def test_channels_per_layout() -> None:
    s = smoke("smoke-broadcast")
    assert s.channels == ["bench"] * s.subscribers
    per = dataclasses.replace(s, layout="per-subscriber", subscribers=3)
    assert per.channels == ["sub-0", "sub-1", "sub-2"]


def test_shard_deals_round_robin_without_empty_shards() -> None:
    assert shard(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert shard(["a"], 4) == [["a"]]
    assert sum(map(len, shard([str(i) for i in range(1000)], 3))) == 1000


def test_only_selects_by_glob() -> None:
    scenarios = load_profile("quick").scenarios
    assert [s.name for s in selected(scenarios, "rate-*")] == ["rate-100", "rate-1000"]
    assert {s.name for s in selected(scenarios, "rate-100,payload-32")} == {"rate-100", "payload-32"}
    assert selected(scenarios, None) == list(scenarios)
    assert selected(scenarios, "nothing-*") == []


def test_one_run_end_to_end_leaves_no_process(tmp_path: Path) -> None:
    scenario = dataclasses.replace(smoke("smoke-broadcast"), subscribers=3, client_processes=2, duration_s=0.5)
    result = run_one(scenario, "floor", 1, tmp_path)
    validate_result(result)
    c = result["counters"]
    assert c["expected"] == c["delivered"] == 3 * result["publisher"]["sent"] > 0
    assert c["missing"] == c["duplicate"] == c["out_of_order"] == 0
    assert result["bytes"]["steady"]["down"] > 0
    assert psutil.Process().children(recursive=True) == []


def test_a_run_that_raises_is_a_raw_file_and_the_profile_goes_on(tmp_path: Path, monkeypatch) -> None:
    """Any exception of one run (not only RunError) becomes that run's raw file; the others still run."""
    from bench.run import runner

    calls: list[tuple[str, str, int]] = []

    def broken(scenario: Scenario, transport: str, repetition: int, log_dir: Path) -> dict[str, object]:
        calls.append((scenario.name, transport, repetition))
        raise KeyError(f"no such thing in {scenario.name}/{transport}")

    cost = {"added_latency_us": {"p50": -1.5, "p99": 3.0}, "cpu_us_per_kib": -0.25}
    monkeypatch.setattr(runner, "run_one", broken)
    monkeypatch.setattr(runner, "run_memory", broken)
    monkeypatch.setattr(runner, "measure_overhead", lambda **_: cost)
    monkeypatch.setattr(runner, "write_capture", lambda run_dir: (_ for _ in ()).throw(OSError("no capture")))
    profile = load_profile("smoke")
    with pytest.raises(runner.RunError, match=f"{profile.runs()} of {profile.runs()} runs failed"):
        runner.run_profile(profile, tmp_path, report=False)
    assert len(calls) == profile.runs()
    run = load_run(tmp_path / "latest")
    assert run.results == () and run.missing == ()
    assert len(run.failed) == profile.runs()
    assert all(f.error.startswith("KeyError: ") for f in run.failed)
    assert run.meta.finished_utc is not None
    # Measured values are stored as measured, negative ones included: nothing clamped.
    assert run.meta.raw["relay"] == cost


# --- behind a proxy (issue 13) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "transport", "words"),
    [
        ({"http": "2"}, "longpoll", 'http = "2" needs proxy'),
        ({"tls": True}, "sse", "tls = true needs proxy"),
        ({"proxy_buffering": True}, "sse", "proxy_buffering = true needs proxy"),
        ({"proxy": "nginx", "streams_per_connection": 4}, "longpoll", 'streams_per_connection > 1 needs http = "2"'),
        ({"proxy": "nginx", "server": "websockets"}, "websocket", "lab's server only"),
        ({"proxy": "nginx"}, "floor", "transport runs of the lab's server"),
    ],
)
def test_a_proxy_combination_that_makes_no_sense_is_refused(
    tmp_path: Path, fields: dict[str, object], transport: str, words: str
) -> None:
    """Refused before anything starts, with a sentence that names the fields."""
    scenario = dataclasses.replace(smoke("smoke-broadcast"), **fields)  # type: ignore[arg-type]
    with pytest.raises(RunError, match=words):
        run_one(scenario, transport, 1, tmp_path)
    assert psutil.Process().children(recursive=True) == []


@pytest.mark.parametrize(
    ("transport", "http", "streams"),
    [("longpoll", "2", 3), ("sse", "2", 3), ("polling", "2", 1), ("websocket", "2", 1), ("sse", "1.1", 1)],
)
def test_one_run_through_nginx(tmp_path: Path, transport: str, http: str, streams: int) -> None:
    """Through nginx over TLS (HTTP/2 multiplexed, or HTTP/1.1): every event exactly once, nginx's CPU apart,
    TLS bytes above the HTTP/2 frame bytes, HPACK's later requests smaller than the first, nothing left running."""
    scenario = dataclasses.replace(
        smoke("smoke-broadcast"),
        subscribers=6,
        client_processes=1,
        duration_s=0.6,
        proxy="nginx",
        http=http,
        tls=True,
        streams_per_connection=streams,
    )
    result = run_one(scenario, transport, 1, tmp_path)
    validate_result(result)
    c = result["counters"]
    assert c["expected"] == c["delivered"] == 6 * result["publisher"]["sent"] > 0
    assert c["missing"] == c["duplicate"] == c["out_of_order"] == 0
    proxy = result["proxy"]
    assert proxy["options"]["http"] == http and proxy["options"]["publisher"] == "direct"
    assert proxy["versions"]["nginx"]
    assert proxy["cpu_s"] >= 0 and proxy["reads"]["reads"] > 0
    assert result["bytes"]["meter"] == "client"
    steady = result["bytes"]["steady"]
    assert proxy["tls"]["steady"]["down"] > steady["down"] > 0
    if http == "2" and transport != "websocket":
        hpack = proxy["hpack"]
        assert hpack["connections"] == 6 // streams
        assert hpack["later_requests"] > 0 or transport == "sse"
        if transport != "sse":
            assert hpack["later_request_bytes"] / hpack["later_requests"] < hpack["first_request_bytes"] / 2
    else:
        assert proxy["hpack"] is None or transport == "websocket"
    assert psutil.Process().children(recursive=True) == []


def test_one_run_through_nginx_plain_with_a_link(tmp_path: Path) -> None:
    """Plain HTTP/1.1 through nginx behind the relay's emulated link: the fleet meters, the relay only delays."""
    scenario = dataclasses.replace(
        smoke("smoke-broadcast"),
        subscribers=3,
        client_processes=1,
        duration_s=0.5,
        proxy="nginx",
        link=dataclasses.replace(smoke("smoke-broadcast").link, one_way_ms=5.0),
    )
    result = run_one(scenario, "longpoll", 1, tmp_path)
    validate_result(result)
    c = result["counters"]
    assert c["expected"] == c["delivered"] > 0 and c["missing"] == c["duplicate"] == c["out_of_order"] == 0
    assert result["bytes"]["meter"] == "client" and result["proxy"]["tls"] is None
    assert psutil.Process().children(recursive=True) == []
