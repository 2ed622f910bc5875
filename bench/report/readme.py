"""``python -m bench.report.readme RUN [--readme README.md]``: the README's generated hero caption.

Report layer, a command of its own (not imported by the package, so ``python -m`` runs it cleanly): prints
:func:`bench.report.hero.hero_caption` of a run, or rewrites the README's block between
:data:`bench.report.hero.BEGIN` and :data:`bench.report.hero.END` with it. ``tests/test_readme.py`` fails when
the committed README's block differs from what ``results/reference`` gives.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .hero import hero_caption, replace_readme_block
from .load import load_run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the run's hero caption, or rewrite ``--readme``'s generated block with it; 2 when there is none."""
    parser = argparse.ArgumentParser(prog="python -m bench.report.readme", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (results/reference for the README)")
    parser.add_argument("--readme", type=Path, help="rewrite this file's generated block instead of printing")
    args = parser.parse_args(argv)
    caption = hero_caption(load_run(args.run))
    if not caption:
        print("bench.report.readme: the run has no Poisson-arrival sweep under delay", file=sys.stderr)
        return 2
    if args.readme is None:
        print(caption)
        return 0
    text = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(replace_readme_block(text, caption), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
