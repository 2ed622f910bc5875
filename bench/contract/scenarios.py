"""Scenarios as data: the one definition of a scenario's fields, and the loader of ``scenarios.toml``.

Contract layer of the benchmark: it reads TOML, validates it with a JSON
Schema, expands sweeps, and returns frozen :class:`Scenario` objects. It
starts no process and knows nothing of servers or clients; the runner
(:mod:`bench.run.runner`) does.

Each field of :class:`Scenario` carries its JSON Schema in its metadata, and
that is the only place a field is described: the TOML's schema, the
``scenario`` block of a raw result (:meth:`Scenario.block`), its schema
(:func:`record_schema`) and the report's reading of it
(:meth:`Scenario.from_block`) are all derived from the dataclass.

File layout::

    [defaults]                      # every field of a scenario, the lab's baseline
    [profiles.<name>]
    description = "..."
    defaults = { duration_s = 2 }   # this profile's overrides of [defaults]
    [[profiles.<name>.scenarios]]   # one scenario: name plus any fields
    [profiles.<name>.sweeps.<sweep>]
    param = "rate"                  # the field that varies ("link.one_way_ms" for the link)
    values = [1, 10, 100]           # expands to scenarios "<sweep>-<value>"
    sweep = "other"                 # optional: the ``sweep`` field, when several tables make one sweep
    ...                             # any other field: fixed for this sweep

A field is resolved as: the sweep's value, else the sweep's or scenario's own
field, else the profile's defaults, else the file's ``[defaults]``. Errors name
the file and the field path, e.g.
``scenarios.toml: profiles.quick.sweeps.rate.values[2]: rate must be > 0``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from .names import ARRIVALS, KINDS, LAYOUTS, RUNTIMES, SERVER_TRANSPORTS, SERVERS, TRANSPORTS

__all__ = [
    "DEFAULT_FILE",
    "Link",
    "LinkError",
    "Profile",
    "Scenario",
    "ScenarioError",
    "load_file",
    "load_profile",
    "record_schema",
]

DEFAULT_FILE = Path(__file__).with_name("scenarios.toml")
RUN_OVERHEAD_S = 3.5
"""Seconds a run costs beyond its warm-up and window (processes started and stopped), measured on 2 cores."""
NAME_RE = re.compile(r"[a-z0-9_.-]{1,100}")
"""Scenario names become file names (docs/results.md)."""

_OFF = [{"const": 0}, {"const": False}]
"""TOML has no null: ``0`` or ``false`` turn an optional field off."""


def _spec(
    schema: dict[str, Any], *, toml: dict[str, Any] | None = None, old: Any = dataclasses.MISSING, record: bool = True
) -> Any:
    """A dataclass field described by its JSON Schema.

    ``schema`` is the value's schema in a raw result; ``toml`` its schema in ``scenarios.toml`` when that
    differs (an optional field spelled ``0``); ``old`` the value to assume when a raw result written before
    the field existed lacks it (so older runs still load); ``record=False`` keeps it out of a raw result.
    """
    return field(metadata={"schema": schema, "toml": toml or schema, "old": old, "record": record})


def _int(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum}


_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_NONNEG = {"type": "number", "minimum": 0}


class LinkError(ValueError):
    """A link description that is not valid; the message names the field."""


@dataclass(frozen=True, slots=True)
class Link:
    """The emulated link between the clients and the server (:mod:`bench.link`), the same in both directions.

    ``jitter_ms`` draws each chunk's delay uniformly from ``one_way_ms +- jitter_ms`` (clipped at 0), as
    netem does without a distribution table; release times never decrease, so jitter delays but never
    reorders. ``seed`` makes the jitter of every connection and direction reproducible. All zero: plain
    loopback, where the relay only meters.
    """

    one_way_ms: float = field(default=0.0, metadata={"schema": _NONNEG})
    """Propagation delay of each direction, in milliseconds."""
    jitter_ms: float = field(default=0.0, metadata={"schema": _NONNEG})
    """Half-width of the uniform delay variation, in milliseconds."""
    bandwidth_kbps: int = field(default=0, metadata={"schema": _int(0)})
    """Serialization rate of each direction in kilobits (1000 bits) per second; 0: unlimited."""
    seed: int = field(default=0, metadata={"schema": {"type": "integer"}, "optional": True})
    """Seed of the jitter generators (absent from records written before it was recorded: 0)."""

    def __post_init__(self) -> None:
        for name in ("one_way_ms", "jitter_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise LinkError(f"link.{name} must be a number of milliseconds, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise LinkError(f"link.{name} must be finite and >= 0, not {value!r}")
        for name in ("bandwidth_kbps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LinkError(f"link.{name} must be an integer, not {value!r}")
        if self.bandwidth_kbps < 0:
            raise LinkError(f"link.bandwidth_kbps must be >= 0 (0: unlimited), not {self.bandwidth_kbps!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        """Parse ``{one_way_ms = 50, jitter_ms = 0, bandwidth_kbps = 0, seed = 0}``; missing fields default."""
        if not isinstance(data, Mapping):
            raise LinkError(f"link must be a table of fields, not {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinkError(
                f"link: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    @property
    def is_loopback(self) -> bool:
        """No delay, no jitter, no cap: the relay only meters."""
        return self.one_way_ms == 0 and self.jitter_ms == 0 and self.bandwidth_kbps == 0

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)


LINK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {f.name: f.metadata["schema"] for f in dataclasses.fields(Link)},
    "required": [f.name for f in dataclasses.fields(Link) if not f.metadata.get("optional")],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark scenario, every field resolved and checked; with ``transport`` set, one run's parameters."""

    name: str = _spec({"type": "string", "pattern": r"^[a-z0-9_.-]{1,100}$"})
    sweep: str | None = _spec({"type": ["string", "null"]})
    """The sweep it was expanded from (``None`` for a single scenario); the report groups by it."""
    description: str = _spec({"type": "string"}, record=False)
    transports: tuple[str, ...] = _spec(
        {"type": "array", "items": {"enum": list(TRANSPORTS)}, "minItems": 1, "uniqueItems": True}, record=False
    )
    subscribers: int = _spec(_int(1))
    layout: str = _spec({"enum": list(LAYOUTS)})
    """``broadcast``: one channel, every subscriber gets every event; ``per-subscriber``: one channel each."""
    rate: float = _spec(_NONNEG, toml=_POSITIVE)
    """TOTAL events published per second (per-subscriber: round-robin over the channels)."""
    payload_bytes: int = _spec(_int(1))
    burst: int = _spec(_int(1))
    """Events published back to back per tick (ticks at ``rate / burst`` per second)."""
    burst_gap_ms: float = _spec(_NONNEG)
    """Gap between the events of one burst."""
    arrivals: str = _spec({"enum": list(ARRIVALS)}, old="periodic")
    """When bursts are published: ``periodic`` (ticks ``burst / rate`` apart) or ``poisson`` (exponential
    gaps of mean ``burst / rate``: events arrive at random, as real ones do)."""
    seed: int = _spec({"type": "integer", "minimum": 0}, old=0)
    """Seed of the random arrivals and of the pollers' random phases; repetition ``k`` uses ``seed + k``."""
    runtime: str = _spec({"enum": list(RUNTIMES)})
    threads: int = _spec(_int(1))
    connections: int = _spec(_int(1))
    compression: bool = _spec({"type": "boolean"})
    """permessage-deflate allowed (WebSocket only); pinned per scenario."""
    duration_s: float = _spec(_POSITIVE)
    warmup_s: float = _spec(_NONNEG)
    repetitions: int = _spec(_int(1), old=1)
    client_processes: int = _spec(_int(1))
    poll_interval_s: float | None = _spec(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, toml={"anyOf": [*_OFF, _POSITIVE]}
    )
    """The ``polling`` transport's interval; ``None`` when the scenario has no polling."""
    poll_timeout_s: float = _spec({"type": "number", "minimum": 0, "maximum": 30}, old=25.0)
    """Long-poll hold asked by the clients."""
    ws_ping_s: float | None = _spec(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, toml={"anyOf": [*_OFF, _POSITIVE]}, old=None
    )
    """Server WebSocket ping interval; ``None``: off."""
    idle: bool = _spec({"type": "boolean"}, old=False)
    """No publishing: measures what idle connections cost."""
    throttle: float = _spec({"type": "number", "minimum": 0, "maximum": 0.99}, old=0.0)
    """Fraction of each fleet process's time burnt in a busy loop (0: none). Tests use it to force saturation."""
    kind: str = _spec({"enum": list(KINDS)}, old="transport")
    """``transport``: subscribers receive published events (every other field applies); ``memory``: the
    server's memory under channels, big payloads and stalled readers (:mod:`bench.run.memory`)."""
    idle_channels: int = _spec(_int(0), old=0)
    """Memory scenarios: channels given one small event each (then left idle)."""
    big_events: int = _spec(_int(0), old=0)
    """Memory scenarios: events of ``payload_bytes`` published to one channel, then to the stalled readers'."""
    stalled: int = _spec(_int(0), old=0)
    """Memory scenarios: WebSocket readers that never read (a small receive buffer, nothing consumed)."""
    link: Link = _spec(LINK_SCHEMA)
    server: str = _spec({"enum": list(SERVERS)}, old="lab")
    """The server under test: ``lab`` (this lab's Flask server) or a peer (``peers/<server>/``, docs/peers.md).
    A peer runs with ``runtime`` where it has one (Flask-SocketIO: ``gevent``, or ``werkzeug`` for its
    ``threading`` mode) and delivers the published payload itself, numbered by the publisher."""
    fast_path: bool = _spec({"type": "boolean"}, old=False)
    """The lab's server only: the hot routes (poll, publish) answered by WSGI middleware before Flask's routing
    (``--fast-path on``, docs/performance.md) instead of by the Flask routes, so the report can show what the
    framework costs per event."""
    tcp_nodelay: bool = _spec({"type": "boolean"}, old=True)
    """Flask-SocketIO on gevent only: ``TCP_NODELAY`` on its listening socket (``socketio.run`` sets none)."""
    upgrade: bool = _spec({"type": "boolean"}, old=False)
    """Flask-SocketIO's ``websocket`` only: the official client's default handshake (polling, then upgrade)."""
    workers: int = _spec(_int(0), old=1)
    """Nchan only: nginx worker processes (0: one per core, ``worker_processes auto``)."""
    drop_every_s: float | None = _spec(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, toml={"anyOf": [*_OFF, _POSITIVE]}, old=None
    )
    """Every subscriber's connection is aborted this often (as a network failure would), and it reconnects and
    resumes as its protocol lets it: the resume test (the lab resumes from its cursor; Socket.IO does not)."""
    request_headers: str = _spec({"enum": ["bare", "browser"]}, old="bare")
    """HTTP subscribers' request headers: ``bare`` (``Host`` and what the protocol needs: the lean fleet's) or
    ``browser`` (the headers Chromium sends with ``fetch`` and ``EventSource``), to show what a browser's
    requests cost on the wire."""
    proxy: str = _spec({"enum": ["none", "nginx"]}, old="none")
    """``nginx``: subscribers and publisher reach the lab's server through nginx, configured as
    docs/deployment.md gives it (started by the runner on a free port, its CPU counted apart)."""
    proxy_buffering: bool = _spec({"type": "boolean"}, old=False)
    """Through ``nginx`` only: leave nginx's response buffering on for SSE (the trap docs/deployment.md shows)."""
    http: str = _spec({"enum": ["1.1", "2"]}, old="1.1")
    """HTTP version of the subscribers' requests: ``2`` is HTTP/2 over TLS through the proxy (WebSocket stays
    HTTP/1.1 with an Upgrade)."""
    tls: bool = _spec({"type": "boolean"}, old=False)
    """Subscribers reach the proxy over TLS (a throwaway certificate made at run time); implied by ``http = "2"``."""
    streams_per_connection: int = _spec(_int(1), old=1)
    """HTTP/2 only: subscribers multiplexed on one connection (each its own stream)."""
    transport: str | None = field(default=None, metadata={"schema": {"enum": list(TRANSPORTS)}, "toml": None})
    """The one transport of a run's record (:meth:`for_transport`); ``None`` in a plan."""

    # --- one run's record -----------------------------------------------------------------------------

    def for_transport(self, transport: str) -> Scenario:
        """This scenario as run for ``transport`` (the polling interval only where it applies)."""
        interval = self.poll_interval_s if transport == "polling" else None
        return dataclasses.replace(self, transport=transport, transports=(transport,), poll_interval_s=interval)

    def block(self, transport: str) -> dict[str, Any]:
        """The ``scenario`` block of a raw result (docs/results.md): every record field, nothing dropped."""
        run = self.for_transport(transport)
        out = {f.name: getattr(run, f.name) for f in _record_fields()}
        out["link"] = run.link.as_dict()
        return out

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Scenario:
        """The scenario of a raw result's ``scenario`` block (fields an older file lacks take their ``old``)."""
        values: dict[str, Any] = {}
        for f in _record_fields():
            if f.name in block:
                values[f.name] = block[f.name]
            elif f.metadata.get("old", dataclasses.MISSING) is not dataclasses.MISSING:
                values[f.name] = f.metadata.get("old", dataclasses.MISSING)
            else:
                raise KeyError(f.name)
        values["link"] = Link.from_dict(block["link"])
        return cls(description="", transports=(block["transport"],), **values)

    @property
    def rate_per_subscriber(self) -> float:
        """Events per second each subscriber receives (broadcast: all; per-subscriber: its share)."""
        return self.rate if self.layout == "broadcast" else self.rate / self.subscribers

    @property
    def series(self) -> str:
        """The label of the line a run belongs to in a chart: transport, plus the interval for polling."""
        transport = self.transport or ",".join(self.transports)
        if transport == "polling" and self.poll_interval_s is not None:
            return f"polling {self.poll_interval_s:g} s"
        return transport

    # --- a plan ---------------------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """One channel name per subscriber: all the same (broadcast) or one each (per-subscriber)."""
        if self.layout == "broadcast":
            return ["bench"] * self.subscribers
        return [f"sub-{i}" for i in range(self.subscribers)]


def _record_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Scenario) if f.metadata.get("record", True)]


def record_schema() -> dict[str, Any]:
    """JSON Schema of a raw result's ``scenario`` block, derived from :class:`Scenario`."""
    fields = _record_fields()
    return {
        "type": "object",
        "properties": {f.name: f.metadata["schema"] for f in fields},
        "required": [f.name for f in fields if f.metadata.get("old", dataclasses.MISSING) is dataclasses.MISSING],
        "additionalProperties": False,
    }


def _toml_schema() -> dict[str, Any]:
    """JSON Schema of one layer of fields in ``scenarios.toml`` (no field required: layers merge)."""
    properties = {
        f.name: f.metadata.get("toml", f.metadata["schema"])
        for f in dataclasses.fields(Scenario)
        if f.metadata.get("toml", f.metadata["schema"]) is not None and f.name not in ("name", "sweep", "link")
    }
    link = {**LINK_SCHEMA, "required": []}
    return {"type": "object", "properties": {**properties, "link": link}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class Profile:
    """A named list of scenarios (``smoke``, ``quick``, ``full``, ...)."""

    name: str
    description: str
    scenarios: tuple[Scenario, ...]

    def runs(self) -> int:
        """Scenario x transport x repetition runs in this profile."""
        return sum(len(s.transports) * s.repetitions for s in self.scenarios)

    def estimate_s(self, overhead_s: float = RUN_OVERHEAD_S) -> float:
        """Estimated wall time: every run's warm-up and window, plus ``overhead_s`` per run (start, drain, stop)."""
        return sum(len(s.transports) * s.repetitions * (overhead_s + s.warmup_s + s.duration_s) for s in self.scenarios)


# --- validation ------------------------------------------------------------------------------------------------

_LAYER = jsonschema.Draft202012Validator(_toml_schema())
SCENARIO_FIELDS = frozenset(_toml_schema()["properties"])
"""Field names a TOML layer may set (``link`` included)."""
SWEEP_KEYS = frozenset({"param", "values", "sweep"})


class ScenarioError(ValueError):
    """A scenarios file that is not valid; the message names the file and the field path."""


def _fail(file: str, path: str, message: str) -> ScenarioError:
    return ScenarioError(f"{file}: {path}: {message}")


def _describe(error: Any) -> tuple[list[str | int], str]:
    """A jsonschema error as (the path below the layer, a sentence naming the field)."""
    parts: list[str | int] = list(error.absolute_path)
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    name = dotted.rsplit(".", 1)[-1] or "field"
    kind, limit, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        extra = sorted(k for k in value if k not in error.schema.get("properties", {}))
        return [*parts, extra[0]], f"unknown field {extra[0]!r}"
    if kind == "minimum":
        return parts, f"{name} must be >= {limit:g}"
    if kind == "exclusiveMinimum":
        return parts, f"{name} must be > {limit:g}"
    if kind == "maximum":
        return parts, f"{name} must be <= {limit:g}"
    if kind == "enum":
        return parts, f"{name} must be one of {', '.join(map(str, limit))}, got {value!r}"
    if kind == "uniqueItems":
        return parts, f"{name} lists an item twice"
    if kind == "minItems":
        return parts, f"{name} must not be empty"
    if kind == "anyOf":
        return parts, f"{name} must be a number > 0, or 0 or false for off, got {value!r}"
    if kind == "type":
        article = "an" if str(limit)[0] in "aeiou" else "a"
        return parts, f"{name} must be {article} {limit}, got {value!r}"
    return parts, f"{name}: {error.message}"


def _not_finite(value: Any, path: list[str | int]) -> list[str | int] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _not_finite(item, [*path, key])
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _not_finite(item, [*path, i])
            if found is not None:
                return found
    return None


def _check_layer(raw: Mapping[str, Any], file: str, path: str) -> dict[str, Any]:
    """Validate one layer of fields against the schema; unknown keys are errors (a typo must not pass)."""
    error = next(iter(sorted(_LAYER.iter_errors(dict(raw)), key=lambda e: len(e.absolute_path))), None)
    if error is not None:
        parts, message = _describe(error)
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
        raise _fail(file, where, message)
    bad = _not_finite(dict(raw), [])
    if bad is not None:
        raise _fail(file, ".".join([path, *map(str, bad)]), f"{'.'.join(map(str, bad))} must be a finite number")
    out = dict(raw)
    for key in ("poll_interval_s", "ws_ping_s", "drop_every_s"):
        if key in out and (out[key] is False or out[key] == 0):
            out[key] = None
    for key, value in list(out.items()):
        if key == "transports":
            out[key] = tuple(value)
        elif isinstance(value, float) and key in {"subscribers", "payload_bytes", "burst", "threads"}:
            out[key] = int(value)
    return out


def _table(value: Any, file: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(file, path, "must be a table")
    return value


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = {**out.get("link", {}), **value} if key == "link" else value
    return out


def _build(fields: dict[str, Any], name: str, sweep: str | None, file: str, path: str) -> Scenario:
    if not NAME_RE.fullmatch(name):
        raise _fail(file, path, f"name {name!r} must match [a-z0-9_.-]{{1,100}}")
    fields = dict(fields)
    link = fields.pop("link", {})
    fields.setdefault("description", "")
    for f in dataclasses.fields(Scenario):  # a field with an ``old`` value may be left out: it takes that
        old = f.metadata.get("old", dataclasses.MISSING)
        if f.name in SCENARIO_FIELDS and f.name not in fields and old is not dataclasses.MISSING:
            fields[f.name] = old
    missing = sorted(SCENARIO_FIELDS - {"link"} - set(fields))
    if missing:
        raise _fail(file, path, f"missing field(s) {', '.join(missing)} (set them in [defaults])")
    server = fields.get("server", "lab")
    foreign = [t for t in fields["transports"] if t not in SERVER_TRANSPORTS[server]]
    if foreign:
        raise _fail(
            file,
            f"{path}.transports",
            f"server {server!r} has no {', '.join(foreign)} (it has {', '.join(SERVER_TRANSPORTS[server])})",
        )
    if "polling" in fields["transports"] and fields["poll_interval_s"] is None:
        raise _fail(file, f"{path}.poll_interval_s", "the polling transport needs poll_interval_s > 0")
    if (
        fields["burst"] > 1
        and fields["burst_gap_ms"] * (fields["burst"] - 1) >= 1000 * fields["burst"] / fields["rate"]
    ):
        raise _fail(file, f"{path}.burst_gap_ms", "a burst must end before the next tick (burst_gap_ms too large)")
    missing_link = sorted(set(LINK_SCHEMA["required"]) - set(link))
    if missing_link:
        raise _fail(file, f"{path}.link", f"missing field(s) {', '.join(missing_link)}")
    return Scenario(name=name, sweep=sweep, link=Link.from_dict(link), **fields)


def _format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


def _expand_sweep(sweep: str, raw: Mapping[str, Any], base: dict[str, Any], file: str, path: str) -> list[Scenario]:
    param = raw.get("param")
    values = raw.get("values")
    if not isinstance(param, str):
        raise _fail(file, f"{path}.param", 'param must name a field, e.g. "rate" or "link.one_way_ms"')
    group, _, sub = param.partition(".")
    if group == "link":
        if sub not in LINK_SCHEMA["properties"]:
            raise _fail(file, f"{path}.param", f"unknown link field {sub!r}")
    elif param not in SCENARIO_FIELDS or param in {"description", "transports", "link"}:
        raise _fail(file, f"{path}.param", f"unknown or unsweepable field {param!r}")
    if not isinstance(values, list) or not values:
        raise _fail(file, f"{path}.values", "values must be a non-empty list")
    label = raw.get("sweep", sweep)
    if not isinstance(label, str):
        raise _fail(file, f"{path}.sweep", "sweep must be a string (the sweep these scenarios belong to)")
    own = _check_layer({k: v for k, v in raw.items() if k not in SWEEP_KEYS}, file, path)
    scenarios = []
    for i, value in enumerate(values):
        where = f"{path}.values[{i}]"
        layer = {"link": {sub: value}} if group == "link" else {param: value}
        try:
            checked = _check_layer(layer, file, where)
        except ScenarioError as exc:  # name the value, not the field inside it
            raise _fail(file, where, str(exc).rsplit(": ", 1)[-1]) from None
        name = f"{sweep}-{_format_value(value)}"
        fields = _merge(base, own, checked)
        if param == "server":  # a sweep over servers runs each on the transports it has (names.SERVER_TRANSPORTS)
            fields["transports"] = tuple(t for t in fields["transports"] if t in SERVER_TRANSPORTS[value])
            if not fields["transports"]:
                raise _fail(file, where, f"server {value!r} has none of this sweep's transports")
        scenarios.append(_build(fields, name, label, file, where))
    return scenarios


def load_file(path: Path | str = DEFAULT_FILE) -> dict[str, Profile]:
    """Load and check every profile of a scenarios file."""
    path = Path(path)
    file = path.name
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read: {exc}") from None
    for key in data:
        if key not in {"defaults", "profiles"}:
            raise _fail(file, key, f"unknown top-level table {key!r} (expected defaults, profiles)")
    defaults = _check_layer(_table(data.get("defaults", {}), file, "defaults"), file, "defaults")
    profiles: dict[str, Profile] = {}
    for pname, praw in _table(data.get("profiles", {}), file, "profiles").items():
        ppath = f"profiles.{pname}"
        praw = _table(praw, file, ppath)
        for key in praw:
            if key not in {"description", "defaults", "scenarios", "sweeps"}:
                raise _fail(file, f"{ppath}.{key}", f"unknown key {key!r}")
        pdefaults = _check_layer(_table(praw.get("defaults", {}), file, f"{ppath}.defaults"), file, f"{ppath}.defaults")
        base = _merge(defaults, pdefaults)
        scenarios: list[Scenario] = []
        raw_list = praw.get("scenarios", [])
        if not isinstance(raw_list, list):
            raise _fail(file, f"{ppath}.scenarios", "must be an array of tables ([[...scenarios]])")
        for i, sraw in enumerate(raw_list):
            spath = f"{ppath}.scenarios[{i}]"
            sraw = _table(sraw, file, spath)
            name = sraw.get("name")
            if not isinstance(name, str):
                raise _fail(file, f"{spath}.name", "every scenario needs a name")
            sweep = sraw.get("sweep")
            if sweep is not None and not isinstance(sweep, str):
                raise _fail(file, f"{spath}.sweep", "sweep must be a string")
            own = _check_layer({k: v for k, v in sraw.items() if k not in ("name", "sweep")}, file, spath)
            scenarios.append(_build(_merge(base, own), name, sweep, file, spath))
        for sname, sraw in _table(praw.get("sweeps", {}), file, f"{ppath}.sweeps").items():
            spath = f"{ppath}.sweeps.{sname}"
            scenarios.extend(_expand_sweep(sname, _table(sraw, file, spath), base, file, spath))
        seen: set[str] = set()
        for s in scenarios:
            if s.name in seen:
                raise _fail(file, ppath, f"two scenarios are named {s.name!r}")
            seen.add(s.name)
        if not scenarios:
            raise _fail(file, ppath, "a profile needs at least one scenario or sweep")
        description = praw.get("description", "")
        if not isinstance(description, str):
            raise _fail(file, f"{ppath}.description", "description must be a string")
        profiles[pname] = Profile(pname, description, tuple(scenarios))
    return profiles


def load_profile(name: str, path: Path | str = DEFAULT_FILE) -> Profile:
    """One profile of a scenarios file; a clear error when there is no such profile."""
    profiles = load_file(path)
    if name not in profiles:
        raise ScenarioError(f"{Path(path).name}: profiles.{name}: no such profile (have {', '.join(profiles)})")
    return profiles[name]
