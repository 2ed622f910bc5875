"""The raw results schema (docs/results.md, version 1): validation and typed views.

Contract layer, and the report's gate (:mod:`bench.report.load` reads files through
it). Raw files are the source of truth; before a chart or a table is drawn from
one, it is checked here field by field, and a file that does not match is
refused with its name and the path of the field (``scenario.rate``, ``latency.end_to_end.hdr``). The runner calls
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

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from hdrh.histogram import HdrHistogram

from .names import FLAGS, HOST_STEAL_PERCENT, INVALIDATING_FLAGS, RESULT_FILE_RE, SCHEMA_VERSION, TRANSPORTS
from .scenarios import Scenario, record_schema

__all__ = [
    "CAPTURE_SCHEMA",
    "MEMORY_SCHEMA",
    "META_SCHEMA",
    "MIN_CPU_S",
    "PERCENTILE_KEYS",
    "RESULT_SCHEMA",
    "SOCKETIO_CAPTURE_SCHEMA",
    "Counters",
    "Failed",
    "LatencySummary",
    "MemoryResult",
    "Meta",
    "Result",
    "Run",
    "SchemaError",
    "decode_hdr",
    "meta_from",
    "min_samples",
    "result_from",
    "sort_key",
    "validate_capture",
    "validate_meta",
    "validate_result",
    "validate_socketio_capture",
]

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
    },
    optional={"clamped": _INT0},  # values recorded out of the histogram's range; absent in older files
)

_SCENARIO = record_schema()

_NULLABLE_OBJ: dict[str, Any] = {"type": ["object", "null"]}

_PROXY = _obj(
    {
        "name": {"enum": ["nginx"]},
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "options": _obj(
            {
                "http": {"enum": ["1.1", "2"]},
                "tls": {"type": "boolean"},
                "streams_per_connection": {"type": "integer", "minimum": 1},
                "sse_buffering": {"type": "boolean"},
                "workers": {"type": "integer", "minimum": 1},
                "config": _STR,
                "publisher": {"enum": ["direct"]},
            }
        ),
        "cpu_s": _NUM0,
        "cpu_us_per_event": _RATIO,
        # TLS bytes on the wire over the window (the fleet's TLS meters), handshakes apart; null without TLS
        "tls": {
            **_obj(
                {
                    **{k: _INT0 for k in ("up", "down", "handshake_up", "handshake_down", "handshakes")},
                    "steady": _obj({"up": _INT0, "down": _INT0}),
                    "per_event": _obj({"up": _RATIO, "down": _RATIO}),
                }
            ),
            **_NULLABLE_OBJ,
        },
        # HTTP/2 header blocks over the whole run, the first on each connection apart; null over HTTP/1.1
        "hpack": {
            **_obj(
                {
                    k: _INT0
                    for k in (
                        "connections",
                        "first_request_bytes",
                        "later_request_bytes",
                        "later_requests",
                        "first_response_bytes",
                        "first_responses",
                        "later_response_bytes",
                        "later_responses",
                    )
                }
            ),
            **_NULLABLE_OBJ,
        },
        # how the measured events came: per subscriber, the events one read delivered (a buffering proxy's lumps)
        "reads": _obj({"reads": _INT0, "events_per_read": _RATIO, "largest_read": _INT0}),
    }
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
            },
            # who counted: the relay in the data path, or the clients' own byte meter (absent: the relay)
            optional={"meter": {"enum": ["relay", "client"]}},
        ),
        "http": _obj({"requests": _INT0, "requests_per_event": _RATIO, "empty_responses": _INT0}),
        "server": _obj(
            {
                "cpu_s": _NUM0,
                "cpu_us_per_event": _RATIO,
                "rss_bytes": _INT0,
                "rss_start_bytes": _INT0,
                "rss_per_connection_bytes": _RATIO,
            },
            # a peer's own account of itself (its ready line): what runs, with which options; absent for the lab
            optional={
                "peer": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "versions": {"type": "object"}, "options": {}},
                    "required": ["name"],
                }
            },
        ),
        "clients": _obj(
            {
                "processes": {"type": "integer", "minimum": 1},
                "cpu_percent": {"type": "array", "items": {"type": "number"}},
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
    },
    # the proxy in front of the lab's server (scenario proxy = "nginx"); absent without one.
    # host: the whole machine over the window (/proc/stat), the hypervisor's steal apart; absent in older files
    optional={
        "status": {"const": "ok"},
        "proxy": _PROXY,
        "host": _obj(
            {
                "seconds": _NUM0,
                "cpus": {"type": "integer", "minimum": 1},
                "busy_percent": {"type": "number", "minimum": 0, "maximum": 100},
                "steal_percent": {"type": "number", "minimum": 0, "maximum": 100},
            }
        ),
    },
)
"""JSON Schema of one scenario repetition file that ran (``status`` is ``ok``, or absent in older files)."""

FAILED_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": SCHEMA_VERSION},
        "status": {"const": "failed"},
        "scenario": _SCENARIO,
        "repetition": {"type": "integer", "minimum": 1},
        "started_utc": _UTC_STR,
        "wall_s": _NUM0,
        "error": _STR,
    }
)
"""JSON Schema of a repetition that could not be carried out: what it was, and the error that stopped it."""

META_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": SCHEMA_VERSION},
        "profile": _STR,
        "started_utc": _UTC_STR,
        "finished_utc": {"type": ["string", "null"], "pattern": _UTC},
        "command": _STR,
        "git": _obj(
            {
                "commit": {"type": ["string", "null"], "pattern": "^[0-9a-f]{7,40}$"},
                "dirty": {"type": ["boolean", "null"]},
            }
        ),
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
            {
                "added_latency_us": _obj({"p50": {"type": "number"}, "p99": {"type": "number"}}),
                "cpu_us_per_kib": {"type": "number"},
            }
        ),
        "files": {"type": "array", "items": {"type": "string", "pattern": RESULT_FILE_RE.pattern}, "uniqueItems": True},
    },
    optional={
        "planned": {
            "type": "array",
            "items": {"type": "string", "pattern": RESULT_FILE_RE.pattern},
            "uniqueItems": True,
        },
    },
)
"""JSON Schema of meta.json."""

MEMORY_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": SCHEMA_VERSION},
        "status": {"const": "ok"},
        "scenario": _SCENARIO,
        "repetition": {"type": "integer", "minimum": 1},
        "started_utc": _UTC_STR,
        "wall_s": _NUM0,
        "memory": _obj(
            {
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "items": _obj({"step": _STR, "published": _INT0, "rss_bytes": _INT0, "at_s": _NUM0}),
                },
                "peak_rss_bytes": _INT0,
                "stalled_dropped_after_s": {"type": ["number", "null"], "minimum": 0},
                "drop_timeout_s": _NUM0,
            }
        ),
    }
)
"""JSON Schema of a memory scenario's repetition (``scenario.kind`` is ``memory``)."""

_RESULT_VALIDATOR = jsonschema.Draft202012Validator(RESULT_SCHEMA)
_MEMORY_VALIDATOR = jsonschema.Draft202012Validator(MEMORY_SCHEMA)
_META_VALIDATOR = jsonschema.Draft202012Validator(META_SCHEMA)
_FAILED_VALIDATOR = jsonschema.Draft202012Validator(FAILED_SCHEMA)


_TEXT = {"type": "string", "minLength": 1}

CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "schema": {"const": 1},
        "captured_utc": {"type": "string"},
        "payload": {"type": "object"},
        "longpoll_request": _TEXT,
        "longpoll_response": _TEXT,
        "websocket_request": _TEXT,
        "websocket_response": _TEXT,
        "websocket_frame": {
            "type": "object",
            "properties": {
                "hex": {"type": "string", "pattern": "^([0-9a-f]{2})+$"},
                "header_bytes": {"type": "integer", "minimum": 2, "maximum": 14},
                "payload": {"type": "string"},
            },
            "required": ["hex", "header_bytes", "payload"],
            "additionalProperties": False,
        },
        "server": {"type": "object", "properties": {"runtime": {"type": "string"}}},
    },
    "required": [
        "schema",
        "payload",
        "longpoll_request",
        "longpoll_response",
        "websocket_request",
        "websocket_response",
        "websocket_frame",
    ],
    "additionalProperties": False,
}
"""JSON Schema of capture.json (docs/results.md, "capture.json"); ``server`` is absent in older files."""

_CAPTURE_VALIDATOR = jsonschema.Draft202012Validator(CAPTURE_SCHEMA)


def validate_capture(obj: object) -> None:
    """Raise :class:`SchemaError` unless ``obj`` is a valid capture.json (the runner checks before writing)."""
    error = _first_error(_CAPTURE_VALIDATOR, obj)
    if error is not None:
        raise error


_WIRE_STEP = {
    "type": "object",
    "properties": {
        "connection": _INT0,
        "direction": {"enum": ["up", "down"]},
        "layer": {"enum": ["http", "websocket"]},
        "text": {"type": "string"},
        "length": {"type": "integer", "minimum": 1},
        "opcode": {"enum": ["continuation", "text", "binary", "close", "ping", "pong"]},
        "header_bytes": {"type": "integer", "minimum": 2, "maximum": 14},
        "hex": {"type": "string", "pattern": "^([0-9a-f]{2})+$"},
    },
    "required": ["connection", "direction", "layer", "text", "length"],
    "additionalProperties": False,
    "if": {"properties": {"layer": {"const": "websocket"}}},
    "then": {"required": ["opcode", "header_bytes", "hex"]},
    "else": {"not": {"anyOf": [{"required": ["opcode"]}, {"required": ["header_bytes"]}, {"required": ["hex"]}]}},
}
"""One HTTP message (its text, as sent) or WebSocket frame (its payload as text, unmasked; its bytes as hex)."""

SOCKETIO_CAPTURE_SCHEMA: dict[str, Any] = _obj(
    {
        "schema": {"const": 1},
        "captured_utc": _UTC_STR,
        "written_after_run": {"type": "boolean"},
        "note": _TEXT,
        "payload": {"type": "object"},
        "channel": _TEXT,
        "client": _obj({"adapter": _TEXT, "mode": {"enum": ["websocket", "polling", "upgrade"]}}),
        "peer": _obj(
            {
                "name": {"const": "flask_socketio"},
                "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                "options": {"type": "object"},
                "command": _TEXT,
            }
        ),
        "exchanges": {"type": "array", "items": _WIRE_STEP, "minItems": 1},
    }
)
"""JSON Schema of socketio-capture.json (docs/results.md): one Socket.IO session, in the order the wire carried it."""

_SOCKETIO_CAPTURE_VALIDATOR = jsonschema.Draft202012Validator(SOCKETIO_CAPTURE_SCHEMA)


def validate_socketio_capture(obj: object) -> None:
    """Raise :class:`SchemaError` unless ``obj`` is a valid socketio-capture.json.

    Beyond the schema: each step's ``length`` is its bytes on the wire, so an HTTP message's is its text's
    UTF-8 length and a frame's is its hex's, and a frame's header is shorter than the frame.
    """
    error = _first_error(_SOCKETIO_CAPTURE_VALIDATOR, obj)
    if error is not None:
        raise error
    assert isinstance(obj, dict)
    for i, step in enumerate(obj["exchanges"]):
        wire = len(step["hex"]) // 2 if step["layer"] == "websocket" else len(step["text"].encode())
        if step["length"] != wire:
            raise SchemaError(f"exchanges[{i}].length", f"{step['length']} is not the {wire} bytes it carried")
        if step["layer"] == "websocket" and step["header_bytes"] > wire:
            raise SchemaError(f"exchanges[{i}].header_bytes", "longer than the frame")


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
    if isinstance(obj, dict) and obj.get("status") == "failed":
        failed = _first_error(_FAILED_VALIDATOR, obj)
        if failed is not None:
            raise failed
        return
    if isinstance(obj, dict) and isinstance(obj.get("scenario"), dict) and obj["scenario"].get("kind") == "memory":
        memory = _first_error(_MEMORY_VALIDATOR, obj)
        if memory is not None:
            raise memory
        return
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
    stolen = "host" in obj and obj["host"]["steal_percent"] > HOST_STEAL_PERCENT
    if stolen != ("host_steal" in flags):
        raise SchemaError(
            "flags", f"'host_steal' must be flagged exactly when host.steal_percent > {HOST_STEAL_PERCENT:g}"
        )
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


MIN_CPU_S = 0.01
"""Least server CPU in a window (seconds) that a per-event figure is drawn from (:attr:`Result.cpu_us_per_event`)."""

PERCENTILE_KEYS = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9}
"""The percentiles a latency block carries, by key."""


def min_samples(percentile: float) -> int:
    """The fewest samples that can support ``percentile``: the rank ``1 - 1/n`` must reach it.

    p50 needs 2 samples, p90 10, p99 100, p99.9 1,000; below that, "p99" is only the maximum under
    another name, and the report does not print it.
    """
    tail = round(100.0 - percentile, 6)
    return max(1, math.ceil(round(100.0 / tail, 6)))


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
    clamped: int = 0
    """Values recorded outside the histogram's range (1 µs to 1 h) and clamped into it."""
    withheld: tuple[str, ...] = ()
    """Percentiles the raw file has but the sample count cannot support: ``None`` here (:func:`min_samples`)."""

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> LatencySummary:
        """The typed view of a raw latency block, percentiles above ``1 - 1/count`` withheld."""
        values = dict(block)
        withheld = tuple(
            key for key, pct in PERCENTILE_KEYS.items() if values[key] is not None and block["count"] < min_samples(pct)
        )
        for key in withheld:
            values[key] = None
        return cls(**values, withheld=withheld)

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

    @property
    def cpu_us_per_event(self) -> float | None:
        """Server CPU per delivered event (µs), or ``None`` when the window's CPU is too little to divide.

        Below :data:`MIN_CPU_S` of server CPU (a few events at a low rate) the figure is mostly what the
        server does anyway (timers, accepts), not what the events cost; the report says so instead.
        """
        if self.raw["server"]["cpu_s"] < MIN_CPU_S:
            return None
        return self.num("server", "cpu_us_per_event")

    def num(self, *path: str) -> float | None:
        """A number from :attr:`raw` by key path (``num("bytes", "per_event", "up")``), ``None`` if null."""
        value: Any = self.raw
        for key in path:
            value = value[key]
        return None if value is None else float(value)


@dataclass(frozen=True)
class MemoryResult:
    """One repetition of a memory scenario: the server's RSS after each step, and when it let a stalled reader go."""

    file: str
    scenario: Scenario
    repetition: int
    steps: tuple[tuple[str, int, int], ...]
    """``(step, events published, RSS bytes after it)``, from ``start`` to ``after_stall``."""
    peak_rss_bytes: int
    stalled_dropped_after_s: float | None
    """Seconds after the stall step until the server dropped the stalled readers; ``None``: not within
    ``drop_timeout_s``."""
    drop_timeout_s: float


@dataclass(frozen=True)
class Failed:
    """A repetition that could not be carried out: its raw file says which and why."""

    file: str
    scenario: Scenario
    repetition: int
    error: str


@dataclass(frozen=True)
class Meta:
    """meta.json: what ran, where and on which commit; written as the run goes."""

    profile: str
    started_utc: str
    finished_utc: str | None
    """``None``: the profile was interrupted before its end (its results so far are all there)."""
    command: str
    commit: str | None
    """``None`` when the run was not made from a git checkout."""
    dirty: bool | None
    python: str
    cpu_model: str
    cores: int
    files: tuple[str, ...]
    planned: tuple[str, ...] | None
    """Every file the profile was to write (``None`` in runs made before it was recorded)."""
    raw: Mapping[str, Any]

    @property
    def provenance(self) -> str:
        """One line of small print for every chart: machine, commit, profile, date."""
        dirty = " (dirty)" if self.dirty else ""
        commit = f"commit {self.commit[:10]}{dirty}" if self.commit else "no git commit"
        return (
            f"{self.cpu_model}, {self.cores} cores · {commit} · "
            f"profile {self.profile} · {self.started_utc} · Python {self.python}"
        )


@dataclass(frozen=True)
class Run:
    """A run directory: its meta, every result that ran (sorted), every one that failed, and what is missing."""

    path: Path
    meta: Meta
    results: tuple[Result, ...]
    failed: tuple[Failed, ...] = ()
    missing: tuple[str, ...] = ()
    memory: tuple[MemoryResult, ...] = ()
    """Repetitions of memory scenarios (no latency: apart from :attr:`results`)."""
    """Files planned in meta.json but never written: the profile was interrupted before them."""


def result_from(file: str, obj: Mapping[str, Any]) -> Result | Failed | MemoryResult:
    """The typed view of one validated raw file."""
    scenario = Scenario.from_block(obj["scenario"])
    if obj.get("status") == "failed":
        return Failed(file=file, scenario=scenario, repetition=obj["repetition"], error=obj["error"])
    if scenario.kind == "memory":
        m = obj["memory"]
        return MemoryResult(
            file=file,
            scenario=scenario,
            repetition=obj["repetition"],
            steps=tuple((s["step"], s["published"], s["rss_bytes"]) for s in m["steps"]),
            peak_rss_bytes=m["peak_rss_bytes"],
            stalled_dropped_after_s=m["stalled_dropped_after_s"],
            drop_timeout_s=m["drop_timeout_s"],
        )
    if obj["idle"] is not None and not scenario.idle:  # files written before ``idle`` was in the block
        scenario = dataclasses.replace(scenario, idle=True)
    return Result(
        file=file,
        scenario=scenario,
        repetition=obj["repetition"],
        counters=Counters(**obj["counters"]),
        end_to_end=LatencySummary.from_block(obj["latency"]["end_to_end"]),
        delivery=LatencySummary.from_block(obj["latency"]["delivery"]),
        valid=obj["valid"],
        flags=tuple(obj["flags"]),
        raw=obj,
    )


def meta_from(obj: Mapping[str, Any]) -> Meta:
    """The typed view of a validated meta.json."""
    planned = obj.get("planned")
    return Meta(
        profile=obj["profile"],
        started_utc=obj["started_utc"],
        finished_utc=obj["finished_utc"],
        command=obj["command"],
        commit=obj["git"]["commit"],
        dirty=obj["git"]["dirty"],
        python=obj["python"],
        cpu_model=obj["machine"]["cpu_model"],
        cores=obj["machine"]["cores"],
        files=tuple(obj["files"]),
        planned=None if planned is None else tuple(planned),
        raw=obj,
    )


def sort_key(r: Result | Failed | MemoryResult) -> tuple[str, int, int]:
    """Scenario, then transport in :data:`TRANSPORTS` order, then repetition."""
    transport = r.scenario.transport or ""
    return (r.scenario.name, TRANSPORTS.index(transport) if transport in TRANSPORTS else 99, r.repetition)
