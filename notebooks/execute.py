"""Execute the notebook in place (``make notebook``), with nbclient.

``python -m notebooks.execute [--run DIR] [--output FILE]``: the notebook
reads ``DIR`` (default: ``results/latest``, else ``results/reference``) and is
written back with its outputs, so it renders on a code host as executed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from .build import NOTEBOOK

__all__ = ["execute"]


def execute(notebook: Path = NOTEBOOK, run: Path | None = None, output: Path | None = None, timeout: int = 300) -> Path:
    """Run every cell top to bottom; raise on the first failing cell."""
    nb = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]  # nbformat has no annotations
    env_before = os.environ.get("LAB_RUN")
    if run is not None:
        os.environ["LAB_RUN"] = str(run.resolve())
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        resources = {"metadata": {"path": str(notebook.parent)}}
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
        client.execute()
    finally:
        if run is not None:
            if env_before is None:
                os.environ.pop("LAB_RUN", None)
            else:
                os.environ["LAB_RUN"] = env_before
    target = output or notebook
    nbformat.write(nb, target)  # type: ignore[no-untyped-call]
    return target


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m notebooks.execute", description=__doc__)
    p.add_argument("--run", type=Path, help="a run directory (default: results/latest, else results/reference)")
    p.add_argument("--output", type=Path, help="write the executed notebook here instead of in place")
    a = p.parse_args(argv)
    print(f"executed {execute(run=a.run, output=a.output)}")


if __name__ == "__main__":
    main()
