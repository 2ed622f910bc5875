"""A synthetic run shared by the report's tests: every chart the report knows has something to draw."""

from __future__ import annotations

import pytest

from bench.report.markdown import write_report
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run

EXPECTED_CHARTS = {
    "spectrum--target-ws-100x100",
    "spectrum--pairs-50",
    "spectrum--throughput-50",
    "spectrum--rate",
    "spectrum--fanout-size",
    "spectrum--payload",
    "spectrum--runtime",
    "spectrum--delay",
    "transits--delay",
    "latency-vs-rate--rate",
    "requests-per-event--rate",
    "latency-vs-subscribers--fanout-size",
    "bytes-vs-payload--payload",
    "bytes-decomposed",
    "runtimes--runtime",
    "cpu-vs-load",
    "idle-cost",
    "pairs--pairs-50",
    "throughput-under-delay",
}


def _specs() -> list[Spec]:
    lp_ws = ("longpoll", "websocket")
    return [
        Spec("rate-1", "rate", rate=1, reps=1),
        Spec("rate-100", "rate", rate=100, reps=2, saturated={("longpoll", 1)}),
        Spec("rate-1000", "rate", rate=1000, reps=1, transports=("longpoll",), saturated={("longpoll", 1)}),
        # an unusual sweep name: charts follow the parameter that varies, not the name
        Spec("fan-1", "fanout-size", subscribers=1, reps=1, transports=lp_ws),
        Spec("fan-100", "fanout-size", subscribers=100, reps=1, transports=lp_ws, lossy={("websocket", 1)}),
        Spec("payload-16", "payload", payload_bytes=16, reps=1, transports=lp_ws),
        Spec("payload-1024", "payload", payload_bytes=1024, reps=1, transports=lp_ws),
        Spec("runtime-werkzeug", "runtime", runtime="werkzeug", reps=1, transports=lp_ws),
        Spec("runtime-gevent", "runtime", runtime="gevent", reps=1, transports=lp_ws),
        Spec("idle-10", "idle", subscribers=10, idle=True, rate=0, reps=1, transports=lp_ws),
        Spec("delay-0", "delay", rate=1, reps=1, transports=lp_ws),
        Spec("delay-50", "delay", rate=1, one_way_ms=50, reps=1, transports=lp_ws),
        Spec("delay-50-poll1s", "delay", rate=1, one_way_ms=50, poll_interval_s=1.0, reps=1, transports=("polling",)),
        Spec("pairs-50", "pairs", rate=2, burst=2, burst_gap_ms=3, one_way_ms=50, reps=1, transports=lp_ws),
        Spec("throughput-50", "throughput", rate=100, one_way_ms=50, reps=1, transports=lp_ws),
        Spec("target-ws-100x100", None, subscribers=100, rate=100, reps=2, transports=("websocket", "floor")),
    ]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("report") / "run", _specs())


@pytest.fixture(scope="session")
def written(run_dir):
    return write_report(run_dir)


@pytest.fixture(scope="session")
def report(written, run_dir):
    return (run_dir / "REPORT.md").read_text()
