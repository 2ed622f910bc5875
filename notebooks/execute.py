"""Execute the notebook in place (``make notebook``), with nbclient.

``python -m notebooks.execute [--run DIR] [--peers-run DIR] [--deploy-run DIR] [--output FILE]``:
the notebook reads ``--run`` (default: ``results/latest``, else
``results/reference``), for its peers sections ``--peers-run`` (default:
``results/peers``, else the main run if it measured peers), and for its
"Behind a proxy" section ``--deploy-run`` (default: ``results/deploy``, else
the main run if it went through a proxy; without one the section says so and
shows nothing), and is written back with its outputs, so it renders on a code
host as executed. Each is passed to the kernel as an environment variable
(``LAB_RUN``, ``LAB_PEERS_RUN``, ``LAB_DEPLOY_RUN``), which ``make notebook``
users may set instead.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .build import NOTEBOOK

__all__ = ["execute"]


def execute(
    notebook: Path = NOTEBOOK,
    run: Path | None = None,
    output: Path | None = None,
    timeout: int = 300,
    peers_run: Path | None = None,
    deploy_run: Path | None = None,
) -> Path:
    """Run every cell top to bottom; raise on the first failing cell."""
    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]  # nbformat has no annotations
    given = {"LAB_RUN": run, "LAB_PEERS_RUN": peers_run, "LAB_DEPLOY_RUN": deploy_run}
    env_before = {name: os.environ.get(name) for name in given}
    for name, path in given.items():
        if path is not None:
            os.environ[name] = str(path.resolve())
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        resources = {"metadata": {"path": str(notebook.parent)}}
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
        client.execute()
    finally:
        for name, path in given.items():
            before = env_before[name]
            if path is None:
                continue
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
    target = output or notebook
    nbformat.write(nb, target)  # type: ignore[no-untyped-call]
    return target


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m notebooks.execute", description=__doc__)
    p.add_argument("--run", type=Path, help="a run directory (default: results/latest, else results/reference)")
    p.add_argument(
        "--peers-run", type=Path, help="the run the peers sections read (default: results/peers, else the main run)"
    )
    p.add_argument(
        "--deploy-run",
        type=Path,
        help="the run the 'Behind a proxy' section reads (default: results/deploy, else the main run)",
    )
    p.add_argument("--output", type=Path, help="write the executed notebook here instead of in place")
    a = p.parse_args(argv)
    print(f"executed {execute(run=a.run, output=a.output, peers_run=a.peers_run, deploy_run=a.deploy_run)}")


if __name__ == "__main__":
    main()
