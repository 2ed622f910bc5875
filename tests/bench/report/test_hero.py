"""bench.report.hero: the README's first chart and its caption, from the Poisson sweep under delay."""

from __future__ import annotations

import re

import pytest

from bench.report.hero import BEGIN, END, HERO_STEM, hero_caption, hero_points, readme_block, replace_readme_block
from bench.report.load import load_run
from bench.report.markdown import write_report
from bench.report.readme import main
from tests.bench.fixtures.synthetic import Spec, write_synthetic_run

LP_WS = ("longpoll", "websocket")


@pytest.fixture(scope="module")
def poisson_run(tmp_path_factory):
    specs = [
        Spec(f"dp-{d}", "delay-poisson", rate=5, one_way_ms=d, arrivals="poisson", reps=2, transports=LP_WS)
        for d in (5, 25, 50)
    ]
    specs[-1].saturated = {("longpoll", 2)}
    specs.append(Spec("delay-50", "delay", rate=5, one_way_ms=50, reps=1, transports=LP_WS))  # periodic: not drawn
    return write_synthetic_run(tmp_path_factory.mktemp("hero") / "run", specs)


def test_points_pool_valid_repetitions_of_poisson_runs_at_25_ms_and_more(poisson_run):
    points = hero_points(load_run(poisson_run))
    assert [(p.transport, p.one_way_ms) for p in points] == [
        ("longpoll", 25.0),
        ("websocket", 25.0),
        ("longpoll", 50.0),
        ("websocket", 50.0),
    ]
    by = {(p.transport, p.one_way_ms): p for p in points}
    lp50 = by[("longpoll", 50.0)]
    assert (lp50.reps, lp50.valid_reps) == (2, 1)  # the saturated repetition is left out of the pool
    assert lp50.samples == by[("longpoll", 25.0)].samples // 2
    # synthetic long polling: 1, 2 or 3 transits with weights 3:1:1 plus its server time (700 us against
    # WebSocket's 300 in the fixture), counted against WebSocket's slowest at the same delay: some of the
    # one-transit events are above it, none of the two- and three-transit ones
    assert 0.25 < lp50.within_one < 0.6
    assert 2.9 < lp50.max < 3.3
    assert by[("websocket", 50.0)].within_one > 0.95
    assert by[("websocket", 50.0)].max < 1.3


def test_caption_quotes_the_points_numbers(poisson_run):
    run = load_run(poisson_run)
    caption = hero_caption(run)
    by = {(p.transport, p.one_way_ms): p for p in hero_points(run)}
    assert f"{by[('websocket', 25.0)].p50:.2f}, {by[('websocket', 50.0)].p50:.2f}" in caption
    assert f"p99 {by[('longpoll', 25.0)].p99:.2f}, {by[('longpoll', 50.0)].p99:.2f}" in caption
    assert f"long polling's p99 is {by[('longpoll', 50.0)].p99 * 50:.0f} ms" in caption
    assert "Delivery latency" in caption and "end-to-end" not in caption
    assert "\n" not in caption


def test_no_poisson_sweep_no_hero(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "run", [Spec("delay-50", "delay", rate=5, one_way_ms=50, reps=1)])
    assert hero_points(load_run(run_dir)) == []
    assert hero_caption(load_run(run_dir)) == ""
    assert main([str(run_dir)]) == 2


def test_report_draws_the_hero_first(poisson_run):
    write_report(poisson_run)
    assert (poisson_run / "charts" / f"{HERO_STEM}.png").read_bytes()[:4] == b"\x89PNG"
    report = (poisson_run / "REPORT.md").read_text()
    assert report.index(f"charts/{HERO_STEM}.png") < report.index("charts/transits--")


def test_readme_block_is_replaced_and_only_it(poisson_run, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{readme_block('old 1.23 numbers')}\n\nrest 4.56\n")
    assert main([str(poisson_run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old 1.23" not in text and text.endswith("\n\nrest 4.56\n")
    inner = re.search(re.escape(BEGIN) + r"\n(.*)\n" + re.escape(END), text, re.DOTALL)
    assert inner is not None and inner[1] == hero_caption(load_run(poisson_run))
    assert main([str(poisson_run)]) == 0
    assert capsys.readouterr().out.strip() == inner[1]
    with pytest.raises(ValueError, match="no generated hero caption"):
        replace_readme_block("no block here", "x")
