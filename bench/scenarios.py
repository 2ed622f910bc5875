"""Scenarios as data: the loader and validator of ``bench/scenarios.toml``.

Pure data layer of the benchmark: it reads TOML, checks every field, expands
sweeps, and returns frozen :class:`Scenario` objects. It starts no process and
knows nothing of servers or clients; the runner (``bench.runner``) does.

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

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_FILE",
    "LAYOUTS",
    "RUNTIMES",
    "TRANSPORTS",
    "LinkSpec",
    "Profile",
    "Scenario",
    "ScenarioError",
    "load_file",
    "load_profile",
]

DEFAULT_FILE = Path(__file__).with_name("scenarios.toml")
TRANSPORTS = ("longpoll", "websocket", "polling", "floor")
LAYOUTS = ("broadcast", "per-subscriber")
RUNTIMES = ("werkzeug", "gthread", "gevent")
RUN_OVERHEAD_S = 3.5
"""Seconds a run costs beyond its warm-up and window (processes started and stopped), measured on 2 cores."""
NAME_RE = re.compile(r"[a-z0-9_.-]{1,100}")
"""Scenario names become file names (docs/results.md)."""


class ScenarioError(ValueError):
    """A scenarios file that is not valid; the message names the file and the field path."""


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """The emulated link between the clients and the server (bench.relay's ``Link``)."""

    one_way_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_kbps: int = 0
    """0: unlimited."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark scenario, every field resolved and checked."""

    name: str
    sweep: str | None
    """The sweep it was expanded from (``None`` for a single scenario); the report groups by it."""
    description: str
    transports: tuple[str, ...]
    subscribers: int
    layout: str
    """``broadcast``: one channel, every subscriber gets every event; ``per-subscriber``: one channel each."""
    rate: float
    """TOTAL events published per second (per-subscriber: round-robin over the channels)."""
    payload_bytes: int
    burst: int
    """Events published back to back per tick (ticks at ``rate / burst`` per second)."""
    burst_gap_ms: float
    """Gap between the events of one burst."""
    runtime: str
    threads: int
    connections: int
    compression: bool
    """permessage-deflate allowed (WebSocket only); pinned per scenario."""
    duration_s: float
    warmup_s: float
    repetitions: int
    client_processes: int
    poll_interval_s: float | None
    """The ``polling`` transport's interval; ``None`` when the scenario has no polling."""
    poll_timeout_s: float
    """Long-poll hold asked by the clients."""
    ws_ping_s: float | None
    """Server WebSocket ping interval; ``None``: off."""
    idle: bool
    """No publishing: measures what idle connections cost."""
    throttle: float
    """Fraction of each fleet process's time burnt in a busy loop (0: none). Tests use it to force saturation."""
    link: LinkSpec

    def block(self, transport: str) -> dict[str, Any]:
        """The ``scenario`` block of a raw result (docs/results.md)."""
        return {
            "name": self.name,
            "sweep": self.sweep,
            "transport": transport,
            "subscribers": self.subscribers,
            "layout": self.layout,
            "rate": self.rate,
            "payload_bytes": self.payload_bytes,
            "burst": self.burst,
            "burst_gap_ms": self.burst_gap_ms,
            "runtime": self.runtime,
            "threads": self.threads,
            "connections": self.connections,
            "compression": self.compression,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "client_processes": self.client_processes,
            "poll_interval_s": self.poll_interval_s if transport == "polling" else None,
            "poll_timeout_s": self.poll_timeout_s,
            "ws_ping_s": self.ws_ping_s,
            "idle": self.idle,
            "repetitions": self.repetitions,
            "link": self.link.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Profile:
    """A named list of scenarios (``smoke``, ``quick``, ``full``)."""

    name: str
    description: str
    scenarios: tuple[Scenario, ...]

    def runs(self) -> int:
        """Scenario x transport x repetition runs in this profile."""
        return sum(len(s.transports) * s.repetitions for s in self.scenarios)

    def estimate_s(self, overhead_s: float = RUN_OVERHEAD_S) -> float:
        """Estimated wall time: every run's warm-up and window, plus ``overhead_s`` per run (start, drain, stop)."""
        return sum(len(s.transports) * s.repetitions * (overhead_s + s.warmup_s + s.duration_s) for s in self.scenarios)


# --- field checks: value -> normalized value, or raise ValueError with the message --------------------------------


def _number(
    field: str, *, minimum: float = 0.0, strict: bool = False, maximum: float | None = None
) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{field} must be a number, got {value!r}")
        if strict and value <= minimum:
            raise ValueError(f"{field} must be > {minimum:g}")
        if not strict and value < minimum:
            raise ValueError(f"{field} must be >= {minimum:g}")
        if maximum is not None and value > maximum:
            raise ValueError(f"{field} must be <= {maximum:g}")
        return float(value)

    return check


def _integer(field: str, minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{field} must be an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"{field} must be >= {minimum}")
        return value

    return check


def _choice(field: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{field} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _boolean(field: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{field} must be true or false, got {value!r}")
        return value

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``0`` or ``false`` mean "off" (TOML has no null)."""

    def wrapped(value: Any) -> Any:
        if value is False or value == 0:
            return None
        return check(value)

    return wrapped


def _text(field: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{field} must be a string, got {value!r}")
        return value

    return check


def _transports(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"transports must be a non-empty list of {', '.join(TRANSPORTS)}")
    for item in value:
        if item not in TRANSPORTS:
            raise ValueError(f"transports: {item!r} is not one of {', '.join(TRANSPORTS)}")
    if len(set(value)) != len(value):
        raise ValueError("transports lists a transport twice")
    return tuple(value)


FIELDS: dict[str, Callable[[Any], Any]] = {
    "description": _text("description"),
    "transports": _transports,
    "subscribers": _integer("subscribers", 1),
    "layout": _choice("layout", LAYOUTS),
    "rate": _number("rate", strict=True),
    "payload_bytes": _integer("payload_bytes", 1),
    "burst": _integer("burst", 1),
    "burst_gap_ms": _number("burst_gap_ms"),
    "runtime": _choice("runtime", RUNTIMES),
    "threads": _integer("threads", 1),
    "connections": _integer("connections", 1),
    "compression": _boolean("compression"),
    "duration_s": _number("duration_s", strict=True),
    "warmup_s": _number("warmup_s"),
    "repetitions": _integer("repetitions", 1),
    "client_processes": _integer("client_processes", 1),
    "poll_interval_s": _optional(_number("poll_interval_s", strict=True)),
    "poll_timeout_s": _number("poll_timeout_s", maximum=30.0),
    "ws_ping_s": _optional(_number("ws_ping_s", strict=True)),
    "idle": _boolean("idle"),
    "throttle": _number("throttle", maximum=0.99),
}
LINK_FIELDS: dict[str, Callable[[Any], Any]] = {
    "one_way_ms": _number("one_way_ms"),
    "jitter_ms": _number("jitter_ms"),
    "bandwidth_kbps": _integer("bandwidth_kbps", 0),
}
SWEEP_KEYS = {"param", "values", "sweep"}


def _fail(file: str, path: str, message: str) -> ScenarioError:
    return ScenarioError(f"{file}: {path}: {message}")


def _table(value: Any, file: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(file, path, "must be a table")
    return value


def _check_fields(raw: Mapping[str, Any], file: str, path: str, extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Check every field of a table; unknown keys are errors (a typo must not pass silently)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else key
        if key in extra:
            continue
        if key == "link":
            out["link"] = _check_link(value, file, where)
        elif key in FIELDS:
            try:
                out[key] = FIELDS[key](value)
            except ValueError as exc:
                raise _fail(file, where, str(exc)) from None
        else:
            raise _fail(file, where, f"unknown field {key!r}")
    return out


def _check_link(value: Any, file: str, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in _table(value, file, path).items():
        if key not in LINK_FIELDS:
            raise _fail(file, f"{path}.{key}", f"unknown field {key!r}")
        try:
            out[key] = LINK_FIELDS[key](item)
        except ValueError as exc:
            raise _fail(file, f"{path}.{key}", str(exc)) from None
    return out


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "link":
                out["link"] = {**out.get("link", {}), **value}
            else:
                out[key] = value
    return out


def _build(fields: dict[str, Any], name: str, sweep: str | None, file: str, path: str) -> Scenario:
    if not NAME_RE.fullmatch(name):
        raise _fail(file, path, f"name {name!r} must match [a-z0-9_.-]{{1,100}}")
    fields = dict(fields)
    link = fields.pop("link", {})
    fields.setdefault("description", "")
    missing = sorted(set(FIELDS) - set(fields))
    if missing:
        raise _fail(file, path, f"missing field(s) {', '.join(missing)} (set them in [defaults])")
    if "polling" in fields["transports"] and fields["poll_interval_s"] is None:
        raise _fail(file, f"{path}.poll_interval_s", "the polling transport needs poll_interval_s > 0")
    if (
        fields["burst"] > 1
        and fields["burst_gap_ms"] * (fields["burst"] - 1) >= 1000 * fields["burst"] / fields["rate"]
    ):
        raise _fail(file, f"{path}.burst_gap_ms", "a burst must end before the next tick (burst_gap_ms too large)")
    missing_link = sorted(set(LINK_FIELDS) - set(link))
    if missing_link:
        raise _fail(file, f"{path}.link", f"missing field(s) {', '.join(missing_link)}")
    return Scenario(name=name, sweep=sweep, link=LinkSpec(**link), **fields)


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
        if sub not in LINK_FIELDS:
            raise _fail(file, f"{path}.param", f"unknown link field {sub!r}")
        check = LINK_FIELDS[sub]
    elif param in FIELDS and param not in {"description", "transports"}:
        check = FIELDS[param]
    else:
        raise _fail(file, f"{path}.param", f"unknown or unsweepable field {param!r}")
    if not isinstance(values, list) or not values:
        raise _fail(file, f"{path}.values", "values must be a non-empty list")
    label = raw.get("sweep", sweep)
    if not isinstance(label, str):
        raise _fail(file, f"{path}.sweep", "sweep must be a string (the sweep these scenarios belong to)")
    own = _check_fields({k: v for k, v in raw.items() if k not in SWEEP_KEYS}, file, path)
    scenarios = []
    for i, value in enumerate(values):
        try:
            checked = check(value)
        except ValueError as exc:
            raise _fail(file, f"{path}.values[{i}]", str(exc)) from None
        layer = {"link": {sub: checked}} if group == "link" else {param: checked}
        name = f"{sweep}-{_format_value(value)}"
        scenarios.append(_build(_merge(base, own, layer), name, label, file, f"{path}.values[{i}]"))
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
    defaults = _check_fields(_table(data.get("defaults", {}), file, "defaults"), file, "defaults")
    profiles: dict[str, Profile] = {}
    for pname, praw in _table(data.get("profiles", {}), file, "profiles").items():
        ppath = f"profiles.{pname}"
        praw = _table(praw, file, ppath)
        for key in praw:
            if key not in {"description", "defaults", "scenarios", "sweeps"}:
                raise _fail(file, f"{ppath}.{key}", f"unknown key {key!r}")
        pdefaults = _check_fields(
            _table(praw.get("defaults", {}), file, f"{ppath}.defaults"), file, f"{ppath}.defaults"
        )
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
            own = _check_fields(sraw, file, spath, extra=frozenset({"name", "sweep"}))
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
