"""bench.contract.scenarios: the shipped file loads, sweeps expand, bad files name the field; the Link; records."""

from __future__ import annotations

import dataclasses
import math
import textwrap
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from bench.contract.scenarios import (
    DEFAULT_FILE,
    Link,
    LinkError,
    Scenario,
    ScenarioError,
    load_file,
    load_profile,
    record_schema,
)

BASE = """
[defaults]
transports = ["longpoll", "websocket"]
subscribers = 1
layout = "broadcast"
rate = 10
payload_bytes = 32
burst = 1
burst_gap_ms = 0
runtime = "gevent"
threads = 100
connections = 2000
compression = false
duration_s = 2.0
warmup_s = 0.5
repetitions = 1
client_processes = 1
poll_interval_s = 0
poll_timeout_s = 25.0
ws_ping_s = 0
idle = false
throttle = 0.0
link = { one_way_ms = 0, jitter_ms = 0, bandwidth_kbps = 0 }
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "scenarios.toml"
    path.write_text(BASE + textwrap.dedent(body))
    return path


def test_every_shipped_profile_loads() -> None:
    profiles = load_file(DEFAULT_FILE)
    assert {"smoke", "quick", "full"} <= set(profiles)
    for profile in profiles.values():
        assert profile.scenarios
        for s in profile.scenarios:
            assert s.duration_s > 0 and s.transports


def test_quick_holds_the_target_scenarios() -> None:
    quick = load_profile("quick")
    wanted = {("websocket", 100, 100.0), ("websocket", 1000, 10.0), ("longpoll", 100, 10.0), ("longpoll", 1000, 10.0)}
    found = {
        (t, s.subscribers, s.rate)
        for s in quick.scenarios
        for t in s.transports
        if s.runtime == "gevent" and s.layout == "broadcast" and s.link.one_way_ms == 0 and s.payload_bytes <= 32
    }
    assert wanted <= found


def test_quick_covers_the_required_sweeps() -> None:
    sweeps = {s.sweep for s in load_profile("quick").scenarios}
    for sweep in ("rate", "subscribers", "subscribers-per-sub", "payload", "runtime", "burst", "idle", "delay"):
        assert sweep in sweeps
    delays = {s.link.one_way_ms for s in load_profile("quick").scenarios if s.sweep == "delay"}
    assert {0.0, 50.0} <= delays
    polling = {s.poll_interval_s for s in load_profile("quick").scenarios if "polling" in s.transports}
    assert {1.0, 0.1} <= polling
    pairs = [s for s in load_profile("quick").scenarios if s.sweep == "pairs"]
    assert pairs and all(s.burst == 2 and 0 < s.burst_gap_ms < 10 for s in pairs)


def test_full_has_repetitions() -> None:
    assert all(s.repetitions >= 3 for s in load_profile("full").scenarios if not s.idle and s.kind != "memory")


def test_sweep_expands_to_named_scenarios(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [profiles.p.sweeps.rate]
        param = "rate"
        values = [1, 2.5, 1000]
        subscribers = 3
        [profiles.p.sweeps.delay]
        param = "link.one_way_ms"
        values = [0, 50]
        link = { jitter_ms = 1 }
        """,
    )
    p = load_profile("p", path)
    assert [s.name for s in p.scenarios] == ["rate-1", "rate-2.5", "rate-1000", "delay-0", "delay-50"]
    assert [s.rate for s in p.scenarios[:3]] == [1.0, 2.5, 1000.0]
    assert all(s.subscribers == 3 and s.sweep == "rate" for s in p.scenarios[:3])
    assert [(s.link.one_way_ms, s.link.jitter_ms) for s in p.scenarios[3:]] == [(0.0, 1.0), (50.0, 1.0)]
    assert p.runs() == 10


def test_profile_defaults_override_file_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [profiles.p]
        defaults = { duration_s = 7 }
        [[profiles.p.scenarios]]
        name = "one"
        transports = ["floor"]
        """,
    )
    (s,) = load_profile("p", path).scenarios
    assert (s.name, s.sweep, s.duration_s, s.transports, s.rate) == ("one", None, 7.0, ("floor",), 10.0)


BAD = [
    (
        """
        [profiles.quick.sweeps.rate]
        param = "rate"
        values = [1, 10, -5]
        """,
        "profiles.quick.sweeps.rate.values[2]: rate must be > 0",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        subscribers = 0
        """,
        "profiles.p.scenarios[0].subscribers: subscribers must be >= 1",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        layout = "star"
        """,
        "profiles.p.scenarios[0].layout: layout must be one of broadcast, per-subscriber",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        transports = ["longpoll", "carrier-pigeon"]
        """,
        "profiles.p.scenarios[0].transports[1]: transports[1] must be one of longpoll, websocket, polling, sse, floor, "
        "got 'carrier-pigeon'",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        transports = ["polling"]
        """,
        "profiles.p.scenarios[0].poll_interval_s: the polling transport needs poll_interval_s > 0",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        rats = 10
        """,
        "profiles.p.scenarios[0].rats: unknown field 'rats'",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "Bad Name"
        """,
        "profiles.p.scenarios[0]: name 'Bad Name' must match",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        link = { one_way_ms = -1 }
        """,
        "profiles.p.scenarios[0].link.one_way_ms: one_way_ms must be >= 0",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        runtime = "uvicorn"
        """,
        "profiles.p.scenarios[0].runtime: runtime must be one of werkzeug, gthread, gevent",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        duration_s = "long"
        """,
        "profiles.p.scenarios[0].duration_s: duration_s must be a number",
    ),
    (
        """
        [profiles.p.sweeps.s]
        param = "colour"
        values = [1]
        """,
        "profiles.p.sweeps.s.param: unknown or unsweepable field 'colour'",
    ),
    (
        """
        [profiles.p.sweeps.s]
        param = "rate"
        values = []
        """,
        "profiles.p.sweeps.s.values: values must be a non-empty list",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        rate = 100
        burst = 2
        burst_gap_ms = 30
        """,
        "profiles.p.scenarios[0].burst_gap_ms: a burst must end before the next tick",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        [[profiles.p.scenarios]]
        name = "x"
        """,
        "profiles.p: two scenarios are named 'x'",
    ),
    (
        """
        [[profiles.p.scenarios]]
        name = "x"
        server = "websockets"
        transports = ["websocket", "longpoll"]
        """,
        "profiles.p.scenarios[0].transports: server 'websockets' has no longpoll (it has websocket)",
    ),
    (
        """
        [profiles.p.sweeps.s]
        param = "server"
        values = ["lab", "websockets"]
        transports = ["longpoll"]
        """,
        "profiles.p.sweeps.s.values[1]: server 'websockets' has none of this sweep's transports",
    ),
    ("[profiles.p]\ndescription = 'empty'\n", "profiles.p: a profile needs at least one scenario or sweep"),
    ("[profiles.p\n", "not valid TOML"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_files_name_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    assert str(info.value).startswith("scenarios.toml: ")
    assert message in str(info.value)


def test_bad_default_names_the_defaults_table(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.toml"
    path.write_text(BASE.replace("payload_bytes = 32", "payload_bytes = 0") + '[[profiles.p.scenarios]]\nname = "x"\n')
    with pytest.raises(ScenarioError, match=r"defaults\.payload_bytes: payload_bytes must be >= 1"):
        load_file(path)


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"profiles\.nope: no such profile"):
        load_profile("nope")


# --- Link ---------------------------------------------------------------------------------------------


def test_link_from_dict_reads_the_scenario_table() -> None:
    link = Link.from_dict({"one_way_ms": 50, "jitter_ms": 2.5, "bandwidth_kbps": 1000})
    assert link == Link(one_way_ms=50, jitter_ms=2.5, bandwidth_kbps=1000, seed=0)
    assert Link.from_dict(link.as_dict()) == link
    assert Link.from_dict({}) == Link()
    assert Link().is_loopback and not link.is_loopback


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"one_way_ms": -1}, "one_way_ms"),
        ({"one_way_ms": math.nan}, "one_way_ms"),
        ({"one_way_ms": "50"}, "one_way_ms"),
        ({"jitter_ms": -0.5}, "jitter_ms"),
        ({"jitter_ms": True}, "jitter_ms"),
        ({"bandwidth_kbps": 1.5}, "bandwidth_kbps"),
        ({"bandwidth_kbps": -1}, "bandwidth_kbps"),
        ({"bandwidth_kbps": False}, "bandwidth_kbps"),
        ({"seed": "x"}, "seed"),
        ({"delay_ms": 5}, "delay_ms"),
    ],
)
def test_link_refuses_bad_fields_naming_them(data: dict[str, Any], field: str) -> None:
    with pytest.raises(LinkError, match=field):
        Link.from_dict(data)


def test_link_refuses_a_non_table() -> None:
    with pytest.raises(LinkError, match="table"):
        Link.from_dict([("one_way_ms", 5)])  # type: ignore[arg-type]


# --- one run's record ---------------------------------------------------------------------------------


def test_a_records_block_holds_every_field_and_reads_back_as_the_same_scenario() -> None:
    for profile in load_file().values():
        for scenario in profile.scenarios:
            for transport in scenario.transports:
                block = scenario.block(transport)
                assert "throttle" in block and "link" in block  # nothing dropped
                back = Scenario.from_block(block)
                assert back == dataclasses.replace(scenario.for_transport(transport), description="")
                jsonschema.validate(block, record_schema())


def test_an_older_record_without_the_newer_fields_still_reads() -> None:
    scenario = load_profile("smoke").scenarios[0]
    block = scenario.block("longpoll")
    for key in ("poll_timeout_s", "ws_ping_s", "idle", "repetitions", "throttle"):
        del block[key]
    del block["link"]["seed"]
    jsonschema.validate(block, record_schema())
    back = Scenario.from_block(block)
    assert (back.poll_timeout_s, back.ws_ping_s, back.idle, back.repetitions, back.throttle) == (
        25.0,
        None,
        False,
        1,
        0,
    )
    assert back.link.seed == 0


def test_polling_interval_is_recorded_only_for_polling() -> None:
    scenario = next(s for s in load_profile("smoke").scenarios if "polling" in s.transports)
    assert scenario.block("polling")["poll_interval_s"] == scenario.poll_interval_s
    assert scenario.block("longpoll")["poll_interval_s"] is None


@pytest.mark.parametrize(("profile", "minimum"), [("quick", 200), ("full", 1000)])
def test_every_latency_scenario_measures_enough_samples(profile: str, minimum: int) -> None:
    """Enough latency samples that p99 is a percentile, not the maximum (quick: 200, full: 1,000)."""
    from bench.agents.publisher import PublishPlan

    short = []
    for s in load_profile(profile).scenarios:
        if s.idle or s.kind == "memory":
            continue
        plan = PublishPlan(
            url="", channels=list(dict.fromkeys(s.channels)), rate=s.rate, burst=s.burst,
            burst_gap_ms=s.burst_gap_ms, warmup_s=s.warmup_s, duration_s=s.duration_s, arrivals=s.arrivals,
            seed=s.seed + 1,
        )  # fmt: skip
        measured = plan.total_events - plan.warm_events
        samples = measured * s.subscribers if s.layout == "broadcast" else measured
        if samples < minimum:
            short.append(f"{s.name}: {samples}")
    assert short == []


def test_the_delay_sweep_has_random_arrivals_in_full() -> None:
    delay = [s for s in load_profile("full").scenarios if s.sweep and s.sweep.startswith("delay")]
    assert {s.arrivals for s in delay} == {"periodic", "poisson"}


def test_a_sweep_over_servers_runs_each_on_the_transports_it_has(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [profiles.p.sweeps.peers]
        param = "server"
        values = ["lab", "flask_socketio", "nchan", "websockets"]
        transports = ["longpoll", "websocket", "sse"]
        """,
    )
    got = {s.name: (s.server, s.transports) for s in load_file(path)["p"].scenarios}
    assert got == {
        "peers-lab": ("lab", ("longpoll", "websocket", "sse")),
        "peers-flask_socketio": ("flask_socketio", ("longpoll", "websocket")),
        "peers-nchan": ("nchan", ("longpoll", "websocket", "sse")),
        "peers-websockets": ("websockets", ("websocket",)),
    }
