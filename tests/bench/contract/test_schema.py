"""bench.contract.schema: valid raw files pass; each broken one is refused with the field named."""

from __future__ import annotations

import copy
import json

import pytest

from bench.contract.names import HOST_STEAL_PERCENT
from bench.contract.schema import LatencySummary, SchemaError, min_samples, validate_meta, validate_result
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    specs = [
        Spec("rate-10", "rate", reps=2, lossy={("websocket", 2)}, saturated={("longpoll", 1)}),
        Spec("idle-5", "idle", idle=True, rate=0, subscribers=5, transports=("longpoll", "websocket"), reps=1),
        Spec("delay-50-poll1s", "delay", one_way_ms=50, rate=1, transports=("polling",), poll_interval_s=1.0, reps=1),
    ]
    return write_synthetic_run(tmp_path_factory.mktemp("schema") / "run", specs)


@pytest.fixture
def result(run_dir):
    return json.loads((run_dir / "rate-10--websocket--r1.json").read_text())


@pytest.fixture
def meta(run_dir):
    return json.loads((run_dir / "meta.json").read_text())


def test_every_fixture_file_is_valid(run_dir, meta):
    validate_meta(meta)
    for name in meta["files"]:
        validate_result(json.loads((run_dir / name).read_text()))


def _set(obj, path, value):
    *parents, last = path
    for key in parents:
        obj = obj[key]
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value


_DELETE = object()

BROKEN_RESULTS = [
    (("schema",), 2, "schema"),
    (("scenario", "rate"), -1, "scenario.rate"),
    (("scenario", "rate"), "fast", "scenario.rate"),
    (("scenario", "transport"), "carrier-pigeon", "scenario.transport"),
    (("scenario", "layout"), "fanout", "scenario.layout"),
    (("scenario", "name"), "Rate 10", "scenario.name"),
    (("scenario", "link", "one_way_ms"), _DELETE, "scenario.link.one_way_ms"),
    (("scenario", "surprise"), 1, "scenario.surprise"),
    (("repetition",), 0, "repetition"),
    (("started_utc",), "yesterday", "started_utc"),
    (("counters", "missing"), -3, "counters.missing"),
    (("counters", "delivered"), 1.5, "counters.delivered"),
    (("latency", "end_to_end", "hdr"), _DELETE, "latency.end_to_end.hdr"),
    (("latency", "delivery", "p99_us"), "slow", "latency.delivery.p99_us"),
    (("latency", "end_to_end", "hdr"), "bm90IGEgaGlzdG9ncmFt", "latency.end_to_end.hdr"),
    (("latency", "end_to_end", "count"), 1, "latency.end_to_end.count"),
    (("bytes", "per_event", "down"), -1.0, "bytes.per_event.down"),
    (("bytes", "steady"), _DELETE, "bytes.steady"),
    (("http", "requests"), None, "http.requests"),
    (("server", "rss_bytes"), "big", "server.rss_bytes"),
    (("clients", "cpu_percent"), [10.0, "x"], "clients.cpu_percent[1]"),
    (("idle",), {"seconds": 30}, "idle.bytes_per_connection_per_min"),
    (("flags",), ["loss", "loss"], "flags"),
    (("flags",), ["slow"], "flags[0]"),
    (("flags",), ["loss"], "flags"),  # loss flagged without any loss counted
    (("flags",), ["clients_saturated"], "valid"),  # invalidating flag but valid stays true
    (("valid",), False, "valid"),  # invalid without a reason
    (("clients", "saturated"), True, "flags"),  # saturated but not flagged
]


@pytest.mark.parametrize(
    ("path", "value", "field"), BROKEN_RESULTS, ids=[c[2] + "=" + repr(c[1])[:20] for c in BROKEN_RESULTS]
)
def test_broken_result_is_refused_naming_the_field(result, path, value, field):
    broken = copy.deepcopy(result)
    _set(broken, path, value)
    with pytest.raises(SchemaError) as info:
        validate_result(broken)
    assert info.value.path == field, str(info.value)
    assert field in str(info.value)


def test_missing_counter_is_refused(result):
    broken = copy.deepcopy(result)
    broken["counters"]["missing"] = 2
    with pytest.raises(SchemaError, match="flags"):
        validate_result(broken)
    broken["flags"] = ["loss"]
    validate_result(broken)  # consistent again


def test_polling_needs_an_interval(run_dir):
    obj = json.loads((run_dir / "delay-50-poll1s--polling--r1.json").read_text())
    obj["scenario"]["poll_interval_s"] = None
    with pytest.raises(SchemaError) as info:
        validate_result(obj)
    assert info.value.path == "scenario.poll_interval_s"


BROKEN_META = [
    (("schema",), 0, "schema"),
    (("git", "commit"), "not-a-sha", "git.commit"),
    (("machine", "cores"), 0, "machine.cores"),
    (("machine", "cpu_model"), _DELETE, "machine.cpu_model"),
    (("relay", "cpu_us_per_kib"), "fast", "relay.cpu_us_per_kib"),
    (("files",), ["notes.txt"], "files[0]"),
    (("finished_utc",), _DELETE, "finished_utc"),
]


@pytest.mark.parametrize(("path", "value", "field"), BROKEN_META, ids=[c[2] for c in BROKEN_META])
def test_broken_meta_is_refused_naming_the_field(meta, path, value, field):
    broken = copy.deepcopy(meta)
    _set(broken, path, value)
    with pytest.raises(SchemaError) as info:
        validate_meta(broken)
    assert info.value.path == field, str(info.value)


def test_a_failed_repetition_is_valid_with_its_error_and_nothing_else(result):
    failed = {k: result[k] for k in ("schema", "scenario", "repetition", "started_utc", "wall_s")}
    validate_result({**failed, "status": "failed", "error": "RunError: the server did not start"})
    with pytest.raises(SchemaError) as info:
        validate_result({**failed, "status": "failed"})
    assert info.value.path == "error"
    with pytest.raises(SchemaError) as info:
        validate_result({**failed, "status": "failed", "error": "x", "counters": result["counters"]})
    assert info.value.path == "counters"


def test_min_samples_of_each_percentile() -> None:
    assert [min_samples(p) for p in (50, 90, 99, 99.9)] == [2, 10, 100, 1000]


def test_a_percentile_the_count_cannot_support_is_withheld(result) -> None:
    block = {**result["latency"]["end_to_end"], "count": 99}
    summary = LatencySummary.from_block(block)
    assert summary.p99_us is None and summary.p999_us is None
    assert summary.withheld == ("p99_us", "p999_us")
    assert summary.p50_us == block["p50_us"] and summary.p90_us == block["p90_us"]
    assert summary.max_us == block["max_us"]  # the maximum is always a sample
    full = LatencySummary.from_block({**block, "count": 1000})
    assert full.withheld == () and full.p999_us == block["p999_us"]


def test_cpu_per_event_is_withheld_below_the_least_cpu_that_says_anything(run_dir) -> None:
    from bench.contract.schema import MIN_CPU_S, result_from

    obj = json.loads((run_dir / "rate-10--websocket--r1.json").read_text())
    enough = result_from("f", {**obj, "server": {**obj["server"], "cpu_s": MIN_CPU_S, "cpu_us_per_event": 12.5}})
    little = result_from("f", {**obj, "server": {**obj["server"], "cpu_s": MIN_CPU_S / 2, "cpu_us_per_event": 6.0}})
    assert enough.cpu_us_per_event == 12.5  # type: ignore[union-attr]
    assert little.cpu_us_per_event is None  # type: ignore[union-attr]


def test_host_steal_is_flagged_exactly_above_the_threshold(result):
    host = {"seconds": 10.0, "cpus": 2, "busy_percent": 80.0, "steal_percent": HOST_STEAL_PERCENT}
    at_threshold = copy.deepcopy(result) | {"host": host}
    validate_result(at_threshold)  # not above it: no flag owed
    above = copy.deepcopy(result) | {"host": host | {"steal_percent": HOST_STEAL_PERCENT + 0.01}}
    with pytest.raises(SchemaError, match="host_steal"):
        validate_result(above)
    above["flags"] = [*above["flags"], "host_steal"]
    validate_result(above)  # flagged, and still valid: steal does not invalidate
    assert above["valid"]
    without_host = copy.deepcopy(above)
    del without_host["host"]
    with pytest.raises(SchemaError, match="host_steal"):
        validate_result(without_host)  # a flag with no measurement behind it
    with pytest.raises(SchemaError, match="steal_percent"):
        validate_result(copy.deepcopy(result) | {"host": host | {"steal_percent": 101.0}})
