"""README.md: its first chart is the hero of results/reference, and the caption quotes what that run gives.

The caption block is generated (``python -m bench.report.readme results/reference --readme README.md``); this
test fails when the committed README quotes a number the committed reference run does not give, e.g. after a new
reference run without regenerating the caption, or after a hand edit of a number.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.report.hero import BEGIN, END, HERO_STEM, hero_caption
from bench.report.load import load_run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*%?")


def _block() -> str:
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), README, re.DOTALL)
    assert match is not None, "README.md has no generated hero caption block"
    return match[1]


def test_first_chart_is_the_reference_hero_and_exists() -> None:
    first = re.search(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert first is not None
    assert first[1] == f"results/reference/charts/{HERO_STEM}.png"
    assert (ROOT / first[1]).is_file()
    assert README.index(first[0]) < README.index(BEGIN)


def test_caption_block_is_what_results_reference_gives() -> None:
    expected = hero_caption(load_run(ROOT / "results" / "reference"))
    assert expected, "results/reference has no Poisson sweep under delay"
    quoted = _block()
    extra = sorted(set(NUMBER.findall(quoted)) - set(NUMBER.findall(expected)))
    assert not extra, f"README quotes numbers results/reference does not give: {extra}"
    assert quoted == expected, "regenerate it: python -m bench.report.readme results/reference --readme README.md"
