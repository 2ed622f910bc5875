"""Reading a run directory: meta.json and every raw file it lists, validated, typed.

Report layer. Raw files are the source of truth and this is the only way the
report and the notebook read them. A run interrupted in the middle still
loads: meta.json is rewritten after every repetition, so it lists what was
written, and what it planned but never got is :attr:`Run.missing`. A
repetition that failed is a raw file too (:class:`Failed`), reported with
its error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.contract.names import RESULT_FILE_RE
from bench.contract.schema import (
    Failed,
    MemoryResult,
    Result,
    Run,
    SchemaError,
    meta_from,
    result_from,
    sort_key,
    validate_meta,
    validate_result,
)

__all__ = ["load_run"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("", f"cannot read JSON: {exc}", file=path.name) from None


def load_run(run_dir: Path | str) -> Run:
    """Read and validate ``meta.json`` and every result it lists; refuse any file that fails.

    A result file present in the directory but not listed in ``meta.json`` is
    refused too: the meta is the run's table of contents.
    """
    run_dir = Path(run_dir)
    meta_obj = _read_json(run_dir / "meta.json")
    try:
        validate_meta(meta_obj)
    except SchemaError as exc:
        raise SchemaError(exc.path, exc.message, file="meta.json") from None
    listed = set(meta_obj["files"])
    on_disk = {p.name for p in run_dir.glob("*--*--r*.json")}
    for name in sorted(on_disk - listed):
        raise SchemaError("files", "result file on disk is not listed in meta.json", file=name)
    results: list[Result] = []
    failed: list[Failed] = []
    memory: list[MemoryResult] = []
    for name in meta_obj["files"]:
        obj = _read_json(run_dir / name)
        try:
            validate_result(obj)
        except SchemaError as exc:
            raise SchemaError(exc.path, exc.message, file=name) from None
        match = RESULT_FILE_RE.fullmatch(name)
        assert match is not None  # the meta schema's pattern
        expected = (obj["scenario"]["name"], obj["scenario"]["transport"], obj["repetition"])
        if (match["scenario"], match["transport"], int(match["rep"])) != expected:
            raise SchemaError("scenario", f"file name does not match its content {expected}", file=name)
        typed = result_from(name, obj)
        if isinstance(typed, Failed):
            failed.append(typed)
        elif isinstance(typed, MemoryResult):
            memory.append(typed)
        else:
            results.append(typed)
    results.sort(key=sort_key)
    failed.sort(key=sort_key)
    memory.sort(key=sort_key)
    meta = meta_from(meta_obj)
    missing = tuple(f for f in (meta.planned or ()) if f not in listed)
    return Run(
        path=run_dir, meta=meta, results=tuple(results), failed=tuple(failed), missing=missing, memory=tuple(memory)
    )
