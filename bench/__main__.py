"""``python -m bench``: run a benchmark profile, or regenerate a run's report.

- ``python -m bench run --profile {smoke,quick,full} [--scenarios FILE] [--only GLOB] [--out DIR]``
  runs the profile's scenarios (bench/contract/scenarios.toml) and writes raw results to
  ``DIR/runs/<UTC>-<profile>/`` (docs/results.md), points ``DIR/latest`` at it, and writes the report.
- ``python -m bench report RUN`` regenerates charts and REPORT.md of RUN from its raw files (:mod:`bench.report`).
- ``python -m bench list [--profile P]`` lists the scenarios of a profile.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.contract.scenarios import DEFAULT_FILE, ScenarioError, load_file, load_profile

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a profile and write raw results, then the report")
    run.add_argument("--profile", default="quick", help="smoke, quick or full (default: %(default)s)")
    run.add_argument(
        "--scenarios", type=Path, default=DEFAULT_FILE, help="scenarios file (default: bench/contract/scenarios.toml)"
    )
    run.add_argument("--only", help="only scenarios whose name matches this glob (comma: several)")
    run.add_argument("--out", type=Path, default=ROOT / "results", help="results directory (default: results/)")
    run.add_argument("--no-report", action="store_true", help="write raw results only")
    report = sub.add_parser("report", help="regenerate charts and REPORT.md of a run from its raw files")
    report.add_argument("run", type=Path, help="a run directory, e.g. results/latest")
    listing = sub.add_parser("list", help="list the scenarios of a profile")
    listing.add_argument("--profile", help="one profile (default: all)")
    listing.add_argument("--scenarios", type=Path, default=DEFAULT_FILE)
    a = p.parse_args(args)
    try:
        if a.command == "run":
            from bench.run.runner import run_profile

            profile = load_profile(a.profile, a.scenarios)
            command = "python -m bench " + shlex.join(args)
            run_profile(profile, a.out, only=a.only, command=command, report=not a.no_report)
        elif a.command == "report":
            from bench.report import write_report

            for path in write_report(a.run):
                print(path)
        else:
            for profile in load_file(a.scenarios).values():
                if a.profile and profile.name != a.profile:
                    continue
                minutes = profile.estimate_s() / 60
                print(f"{profile.name}: {profile.runs()} runs, about {minutes:.0f} min - {profile.description}")
                for s in profile.scenarios:
                    print(f"  {s.name:28} {','.join(s.transports):32} subs={s.subscribers} rate={s.rate:g}")
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:  # bench.run.runner.RunError: some runs failed, the others are written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
