"""The raw results schema (docs/results.md, version 1): validation and typed loading.

This is the report layer's gate. Raw files are the source of truth; before a
chart or a table is drawn from one, it is checked here field by field, and a
file that does not match is refused with its name and the path of the field
(``scenario.rate``, ``latency.end_to_end.hdr``). The runner calls
:func:`validate_result` on each result before writing it, so a bad file is
caught where it is made.

Structure is checked with a JSON Schema (``jsonschema``, Draft 2020-12);
the rules JSON Schema cannot say are checked by hand after it: ``valid`` is
false exactly when ``flags`` holds ``clients_saturated`` or
``publisher_behind``, ``loss`` is flagged exactly when missing, duplicate or
out-of-order counts are above 0, and each ``hdr`` decodes to a histogram
holding ``count`` values.

Ratios (``*_per_event``) and latency statistics may be ``null`` when there is
nothing to divide by or no sample (idle scenarios deliver no event).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from hdrh.histogram import HdrHistogram

__all__ = [
    "FLAGS",
    "INVALIDATING_FLAGS",
    "TRANSPORTS",
    "Counters",
    "LatencySummary",
    "Link",
    "Meta",
    "Result",
    "Run",
    "Scenario",
    "SchemaError",
    "decode_hdr",
    "load_run",
    "validate_meta",
    "validate_result",
]

SCHEMA_VERSION = 1
TRANSPORTS = ("longpoll", "websocket", "polling", "floor")
LAYOUTS = ("broadcast", "per-subscriber")
RUNTIMES = ("werkzeug", "gthread", "gevent")
FLAGS = ("loss", "clients_saturated", "publisher_behind", "server_errors")
INVALIDATING_FLAGS = frozenset({"clients_saturated", "publisher_behind"})
"""Flags that make a run's numbers the clients' or the publisher's, not the server's."""

RESULT_FILE_RE = re.compile(r"(?P<scenario>[a-z0-9_.-]+)--(?P<transport>[a-z]+)--r(?P<rep>[0-9]+)\.json")
_UTC = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"


class SchemaError(ValueError):
    """A raw file that does not match docs/results.md; names the file and the field path."""

    def __init__(self, path: str, message: str, file: str | None = None) -> None:
        self.path = path
        self.message = message
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(f"{where}{path or '<root>'}: {message}")


# --- JSON Schema (structure) -------------------------------------------------------------------


def _obj(props: Mapping[str, Any], optional: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A closed object: every key of ``props`` required, only those of ``optional`` besides."""
    return {
        "type": "object",
        "properties": {**props, **(optional or {})},
        "required": list(props),
        "additionalProperties": False,
    }


_NUM0 = {"type": "number", "minimum": 0}
_INT0 = {"type": "integer", "minimum": 0}
_RATIO = {"type": ["number", "null"], "minimum": 0}
_STR = {"type": "string", "minLength": 1}
_UTC_STR = {"type": "string", "pattern": _UTC}
_UPDOWN = _obj({"up": _NUM0, "down": _NUM0})

_LATENCY = _obj(
    {
        "count": _INT0,
        **{k: _RATIO for k in ("min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")},
        "hdr": {"type": "string", "minLength": 1},
    }
)

_SCENARIO = _obj(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9_.-]+$"},
        "sweep": {"type": ["string", "null"]},
        "transport": {"enum": list(TRANSPORTS)},
        "subscribers": {"type": "integer", "minimum": 1},
        "layout": {"enum": list(LAYOUTS)},
        "rate": _NUM0,
        "payload_bytes": _INT0,
        "burst": {"type": "integer", "minimum": 1},
        "burst_gap_ms": _NUM0,
        "runtime": {"enum": list(RUNTIMES)},
        "threads": {"type": "integer", "minimum": 1},
        "connections": {"type": "integer", "minimum": 1},
        "compression": {"type": "boolean"},
        "duration_s": {"type": "number", "exclusiveMinimum": 0},
        "warmup_s": _NUM0,
        "client_processes": {"type": "integer", "minimum": 1},
        "poll_interval_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "link": _obj({"one_way_ms": _NUM0, "jitter_ms": _NUM0, "bandwidth_kbps": _INT0}),
    },
    optional={
        "poll_timeout_s": {"type": ["number", "null"], "minimum": 0},
        "ws_ping_s": {"type": ["number", "null"], "minimum": 0},
        "idle": {"type": "boolean"},
        "repetitions": {"type": "integer", "minimum": 1},
    },
)

RESULT_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": SCHEMA_VERSION},
        "scenario": _SCENARIO,
        "repetition": {"type": "integer", "minimum": 1},
        "started_utc": _UTC_STR,
        "wall_s": _NUM0,
        "publisher": _obj(
            {"intended": _INT0, "sent": _INT0, "errors": _INT0, "lag_ms": _obj({"p99": _NUM0, "max": _NUM0})}
        ),
        "counters": _obj(
            {
                k: _INT0
                for k in (
                    "expected",
                    "delivered",
                    "missing",
                    "duplicate",
                    "out_of_order",
                    "gap_lost",
                    "gaps",
                    "resets",
                    "reconnects",
                )
            }
        ),
        "latency": _obj({"end_to_end": _LATENCY, "delivery": _LATENCY}),
        "bytes": _obj(
            {
                "handshake": _obj({"up": _INT0, "down": _INT0, "connections": _INT0}),
                "steady": _obj({"up": _INT0, "down": _INT0}),
                "per_event": _obj({"up": _RATIO, "down": _RATIO}),
            }
        ),
        "http": _obj({"requests": _INT0, "requests_per_event": _RATIO, "empty_responses": _INT0}),
        "server": _obj(
            {
                "cpu_s": _NUM0,
                "cpu_us_per_event": _RATIO,
                "rss_bytes": _INT0,
                "rss_start_bytes": _INT0,
                "rss_per_connection_bytes": _RATIO,
            }
        ),
        "clients": _obj(
            {
                "processes": {"type": "integer", "minimum": 1},
                "cpu_percent": {"type": "array", "items": _NUM0},
                "loop_lag_ms": _obj({"p99": _NUM0, "max": _NUM0}),
                "saturated": {"type": "boolean"},
                "reasons": {"type": "array", "items": {"type": "string"}},
            }
        ),
        "idle": {
            **_obj(
                {
                    "seconds": {"type": "number", "exclusiveMinimum": 0},
                    "bytes_per_connection_per_min": _UPDOWN,
                    "rss_per_connection_bytes": {"type": "number"},
                }
            ),
            "type": ["object", "null"],  # keywords of an object schema do not apply to null
        },
        "valid": {"type": "boolean"},
        "flags": {"type": "array", "items": {"enum": list(FLAGS)}, "uniqueItems": True},
    }
)
"""JSON Schema of one scenario repetition file."""

META_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": SCHEMA_VERSION},
        "profile": _STR,
        "started_utc": _UTC_STR,
        "finished_utc": _UTC_STR,
        "command": _STR,
        "git": _obj({"commit": {"type": "string", "pattern": "^[0-9a-f]{7,40}$"}, "dirty": {"type": "boolean"}}),
        "python": _STR,
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "machine": _obj(
            {
                "cpu_model": _STR,
                "cores": {"type": "integer", "minimum": 1},
                "kernel": {"type": "string"},
                "platform": {"type": "string"},
                "memory_bytes": _INT0,
                "hostname": {"type": "string"},
            }
        ),
        "relay": _obj(
            {"added_latency_us": _obj({"p50": {"type": "number"}, "p99": {"type": "number"}}), "cpu_us_per_kib": _NUM0}
        ),
        "files": {"type": "array", "items": {"type": "string", "pattern": RESULT_FILE_RE.pattern}, "uniqueItems": True},
    }
)
"""JSON Schema of meta.json."""

_RESULT_VALIDATOR = jsonschema.Draft202012Validator(RESULT_SCHEMA)
_META_VALIDATOR = jsonschema.Draft202012Validator(META_SCHEMA)


def _dotted(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(validator: Any, obj: object) -> SchemaError | None:
    """The deepest, then first, schema violation as a :class:`SchemaError` naming the field."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: (-len(e.absolute_path), list(map(str, e.path))))
    if not errors:
        return None
    err = errors[0]
    parts = list(err.absolute_path)
    if err.validator == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        return SchemaError(_dotted([*parts, missing[0]]), "required field is missing")
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        return SchemaError(_dotted([*parts, extra[0]]), "unknown field (not in docs/results.md)")
    return SchemaError(_dotted(parts), err.message)


def decode_hdr(encoded: str) -> HdrHistogram:
    """Decode a base64 ``HdrHistogram.encode()`` string (values in microseconds)."""
    return HdrHistogram.decode(encoded)


def validate_meta(obj: object) -> None:
    """Raise :class:`SchemaError` unless ``obj`` is a valid meta.json (docs/results.md)."""
    error = _first_error(_META_VALIDATOR, obj)
    if error is not None:
        raise error


def validate_result(obj: object) -> None:
    """Raise :class:`SchemaError` unless ``obj`` is a valid scenario repetition (docs/results.md)."""
    error = _first_error(_RESULT_VALIDATOR, obj)
    if error is not None:
        raise error
    assert isinstance(obj, dict)
    flags = set(obj["flags"])
    counters = obj["counters"]
    lossy = counters["missing"] + counters["duplicate"] + counters["out_of_order"] > 0
    if lossy != ("loss" in flags):
        raise SchemaError("flags", f"'loss' must be flagged exactly when missing+duplicate+out_of_order > 0 ({lossy=})")
    if obj["clients"]["saturated"] and "clients_saturated" not in flags:
        raise SchemaError("flags", "clients.saturated is true but 'clients_saturated' is not flagged")
    if obj["valid"] != (not flags & INVALIDATING_FLAGS):
        raise SchemaError("valid", "must be false exactly when flags hold clients_saturated or publisher_behind")
    if obj["scenario"]["transport"] == "polling" and obj["scenario"]["poll_interval_s"] is None:
        raise SchemaError("scenario.poll_interval_s", "polling needs a poll interval")
    for kind in ("end_to_end", "delivery"):
        summary = obj["latency"][kind]
        path = f"latency.{kind}"
        try:
            hist = decode_hdr(summary["hdr"])
        except Exception as exc:  # hdrh raises assorted errors on bad input (binascii, zlib, struct)
            raise SchemaError(f"{path}.hdr", f"not a base64 HdrHistogram: {exc}") from None
        if hist.get_total_count() != summary["count"]:
            raise SchemaError(f"{path}.count", f"{summary['count']} but the hdr holds {hist.get_total_count()} values")
        if summary["count"] > 0:
            for key in ("min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"):
                if summary[key] is None:
                    raise SchemaError(f"{path}.{key}", "null although count > 0")


# --- typed objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """The emulated link of a scenario (bench/relay.py); all zero on plain loopback."""

    one_way_ms: float
    jitter_ms: float
    bandwidth_kbps: int

    @property
    def is_loopback(self) -> bool:
        return self.one_way_ms == 0 and self.jitter_ms == 0 and self.bandwidth_kbps == 0


@dataclass(frozen=True)
class Scenario:
    """The parameters of one scenario run for one transport (the ``scenario`` block)."""

    name: str
    sweep: str | None
    transport: str
    subscribers: int
    layout: str
    rate: float
    payload_bytes: int
    burst: int
    burst_gap_ms: float
    runtime: str
    threads: int
    connections: int
    compression: bool
    duration_s: float
    warmup_s: float
    client_processes: int
    poll_interval_s: float | None
    link: Link
    idle: bool

    @property
    def rate_per_subscriber(self) -> float:
        """Events per second each subscriber receives (broadcast: all; per-subscriber: its share)."""
        return self.rate if self.layout == "broadcast" else self.rate / self.subscribers

    @property
    def series(self) -> str:
        """The label of the line this belongs to in a chart: transport, plus the interval for polling."""
        if self.transport == "polling" and self.poll_interval_s is not None:
            return f"polling {self.poll_interval_s:g} s"
        return self.transport


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one latency kind, in microseconds, and the histogram they come from."""

    count: int
    min_us: float | None
    mean_us: float | None
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    p999_us: float | None
    max_us: float | None
    hdr: str

    def histogram(self) -> HdrHistogram:
        return decode_hdr(self.hdr)


@dataclass(frozen=True)
class Counters:
    """Correctness counters over the measurement window (clients.Tracker, merged)."""

    expected: int
    delivered: int
    missing: int
    duplicate: int
    out_of_order: int
    gap_lost: int
    gaps: int
    resets: int
    reconnects: int


@dataclass(frozen=True)
class Result:
    """One scenario repetition for one transport, as written by the runner."""

    file: str
    scenario: Scenario
    repetition: int
    counters: Counters
    end_to_end: LatencySummary
    delivery: LatencySummary
    valid: bool
    flags: tuple[str, ...]
    raw: Mapping[str, Any]
    """The whole validated JSON object, for fields without an attribute here."""

    @property
    def lossy(self) -> bool:
        return "loss" in self.flags

    def num(self, *path: str) -> float | None:
        """A number from :attr:`raw` by key path (``num("bytes", "per_event", "up")``), ``None`` if null."""
        value: Any = self.raw
        for key in path:
            value = value[key]
        return None if value is None else float(value)


@dataclass(frozen=True)
class Meta:
    """meta.json: what ran, where and on which commit."""

    profile: str
    started_utc: str
    finished_utc: str
    command: str
    commit: str
    dirty: bool
    python: str
    cpu_model: str
    cores: int
    files: tuple[str, ...]
    raw: Mapping[str, Any]

    @property
    def provenance(self) -> str:
        """One line of small print for every chart: machine, commit, profile, date."""
        dirty = " (dirty)" if self.dirty else ""
        return (
            f"{self.cpu_model}, {self.cores} cores · commit {self.commit[:10]}{dirty} · "
            f"profile {self.profile} · {self.started_utc} · Python {self.python}"
        )


@dataclass(frozen=True)
class Run:
    """A run directory: its meta and every result, sorted by scenario, transport, repetition."""

    path: Path
    meta: Meta
    results: tuple[Result, ...]


def _result_from(file: str, obj: Mapping[str, Any]) -> Result:
    sc = obj["scenario"]
    scenario = Scenario(
        link=Link(**sc["link"]),
        idle=bool(sc.get("idle", False)) or obj["idle"] is not None,
        **{k: sc[k] for k in Scenario.__dataclass_fields__ if k not in ("link", "idle")},
    )
    return Result(
        file=file,
        scenario=scenario,
        repetition=obj["repetition"],
        counters=Counters(**obj["counters"]),
        end_to_end=LatencySummary(**obj["latency"]["end_to_end"]),
        delivery=LatencySummary(**obj["latency"]["delivery"]),
        valid=obj["valid"],
        flags=tuple(obj["flags"]),
        raw=obj,
    )


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
    results = []
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
        results.append(_result_from(name, obj))
    results.sort(key=lambda r: (r.scenario.name, TRANSPORTS.index(r.scenario.transport), r.repetition))
    meta = Meta(
        profile=meta_obj["profile"],
        started_utc=meta_obj["started_utc"],
        finished_utc=meta_obj["finished_utc"],
        command=meta_obj["command"],
        commit=meta_obj["git"]["commit"],
        dirty=meta_obj["git"]["dirty"],
        python=meta_obj["python"],
        cpu_model=meta_obj["machine"]["cpu_model"],
        cores=meta_obj["machine"]["cores"],
        files=tuple(meta_obj["files"]),
        raw=meta_obj,
    )
    return Run(path=run_dir, meta=meta, results=tuple(results))
