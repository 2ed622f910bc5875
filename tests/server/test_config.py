"""Tests of server/config.py: defaults, every LAB_ variable, and clear errors."""

from __future__ import annotations

from dataclasses import fields

import pytest

from server.config import Config

MiB = 1 << 20


def test_defaults_are_the_documented_ones() -> None:
    assert Config.from_env({}) == Config(
        bus="memory",
        redis_url="redis://127.0.0.1:6379/0",
        runtime="werkzeug",
        history=10_000,
        max_batch=1_000,
        poll_timeout=25.0,
        poll_timeout_max=30.0,
        max_body=MiB,
        ws_ping_interval=25.0,
        ws_max_message=MiB,
        ws_compression=False,
        history_bytes=8 * MiB,
        history_total_bytes=256 * MiB,
        channel_ttl=900.0,
        allowed_origins="",
        allowed_hosts="",
        publish_token="",
        subscribe_token="",
        max_connections=None,
        max_longpoll=None,
        max_websocket=None,
        header_timeout=10.0,
        sse_heartbeat=15.0,
    )


def test_every_variable_is_read() -> None:
    env = {
        "LAB_BUS": "redis",
        "LAB_REDIS_URL": "redis://127.0.0.1:6380/2",
        "LAB_RUNTIME": "gevent",
        "LAB_HISTORY": "500",
        "LAB_MAX_BATCH": "7",
        "LAB_POLL_TIMEOUT": "2.5",
        "LAB_POLL_TIMEOUT_MAX": "10",
        "LAB_MAX_BODY": "2048",
        "LAB_WS_PING_INTERVAL": "12.5",
        "LAB_WS_MAX_MESSAGE": "4096",
        "LAB_WS_COMPRESSION": "1",
        "LAB_HISTORY_BYTES": "65536",
        "LAB_HISTORY_TOTAL_BYTES": "131072",
        "LAB_CHANNEL_TTL": "60",
        "LAB_ALLOWED_ORIGINS": "https://app.example",
        "LAB_ALLOWED_HOSTS": "lab.example,localhost",
        "LAB_PUBLISH_TOKEN": "p",
        "LAB_SUBSCRIBE_TOKEN": "s",
        "LAB_MAX_CONNECTIONS": "50",
        "LAB_MAX_LONGPOLL": "20",
        "LAB_MAX_WEBSOCKET": "30",
        "LAB_HEADER_TIMEOUT": "3",
        "LAB_WS_WRITE_TIMEOUT": "4.5",
        "LAB_SSE_HEARTBEAT": "0.5",
        "LAB_FAST_PATH": "on",
        "UNRELATED": "x",
    }
    config = Config.from_env(env)
    assert config == Config(
        bus="redis",
        redis_url="redis://127.0.0.1:6380/2",
        runtime="gevent",
        history=500,
        max_batch=7,
        poll_timeout=2.5,
        poll_timeout_max=10.0,
        max_body=2048,
        ws_ping_interval=12.5,
        ws_max_message=4096,
        ws_compression=True,
        history_bytes=65536,
        history_total_bytes=131072,
        channel_ttl=60.0,
        allowed_origins="https://app.example",
        allowed_hosts="lab.example,localhost",
        publish_token="p",
        subscribe_token="s",
        max_connections=50,
        max_longpoll=20,
        max_websocket=30,
        header_timeout=3.0,
        ws_write_timeout=4.5,
        sse_heartbeat=0.5,
        fast_path=True,
    )
    # One variable per field, no field without one.
    assert {"LAB_" + f.name.upper() for f in fields(Config)} == {k for k in env if k.startswith("LAB_")}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("false", False), ("off", False)],
)
def test_ws_compression_booleans(raw: str, expected: bool) -> None:
    assert Config.from_env({"LAB_WS_COMPRESSION": raw}).ws_compression is expected
    assert Config.from_env({"LAB_FAST_PATH": raw}).fast_path is expected


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("0", None), ("none", None), ("OFF", None), ("2", 2.0)])
def test_ws_ping_interval_off_values(raw: str, expected: float | None) -> None:
    assert Config.from_env({"LAB_WS_PING_INTERVAL": raw}).ws_ping_interval == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("LAB_BUS", "mongo", "LAB_BUS"),
        ("LAB_HISTORY", "many", "LAB_HISTORY"),
        ("LAB_HISTORY", "0", "LAB_HISTORY"),
        ("LAB_HISTORY", "1.5", "LAB_HISTORY"),
        ("LAB_MAX_BATCH", "-1", "LAB_MAX_BATCH"),
        ("LAB_MAX_BODY", "0", "LAB_MAX_BODY"),
        ("LAB_MAX_BODY", "1MiB", "LAB_MAX_BODY"),
        ("LAB_POLL_TIMEOUT", "31", "LAB_POLL_TIMEOUT"),
        ("LAB_POLL_TIMEOUT", "-1", "LAB_POLL_TIMEOUT"),
        ("LAB_POLL_TIMEOUT", "nan", "LAB_POLL_TIMEOUT"),
        ("LAB_POLL_TIMEOUT", "soon", "LAB_POLL_TIMEOUT"),
        ("LAB_POLL_TIMEOUT_MAX", "inf", "LAB_POLL_TIMEOUT_MAX"),
        ("LAB_POLL_TIMEOUT_MAX", "nan", "LAB_POLL_TIMEOUT_MAX"),
        ("LAB_WS_PING_INTERVAL", "-5", "LAB_WS_PING_INTERVAL"),
        ("LAB_WS_PING_INTERVAL", "often", "LAB_WS_PING_INTERVAL"),
        ("LAB_WS_MAX_MESSAGE", "0", "LAB_WS_MAX_MESSAGE"),
        ("LAB_WS_COMPRESSION", "maybe", "LAB_WS_COMPRESSION"),
        ("LAB_HISTORY_BYTES", "0", "LAB_HISTORY_BYTES"),
        ("LAB_HISTORY_TOTAL_BYTES", "0", "LAB_HISTORY_TOTAL_BYTES"),
        ("LAB_CHANNEL_TTL", "-1", "LAB_CHANNEL_TTL"),
        ("LAB_CHANNEL_TTL", "inf", "LAB_CHANNEL_TTL"),
        ("LAB_MAX_CONNECTIONS", "-1", "LAB_MAX_CONNECTIONS"),
        ("LAB_MAX_LONGPOLL", "many", "LAB_MAX_LONGPOLL"),
        ("LAB_HEADER_TIMEOUT", "0", "LAB_HEADER_TIMEOUT"),
        ("LAB_SSE_HEARTBEAT", "0", "LAB_SSE_HEARTBEAT"),
        ("LAB_SSE_HEARTBEAT", "inf", "LAB_SSE_HEARTBEAT"),
        ("LAB_SSE_HEARTBEAT", "often", "LAB_SSE_HEARTBEAT"),
        ("LAB_PUBLISH_TOKEN", "two words", "LAB_PUBLISH_TOKEN"),
    ],
)
def test_bad_values_name_their_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config.from_env({name: raw})


def test_poll_timeout_must_fit_under_its_maximum() -> None:
    assert Config.from_env({"LAB_POLL_TIMEOUT": "5", "LAB_POLL_TIMEOUT_MAX": "5"}).poll_timeout == 5
    with pytest.raises(ValueError, match="LAB_POLL_TIMEOUT"):
        Config.from_env({"LAB_POLL_TIMEOUT_MAX": "10"})  # the default hold of 25 s is above it


def test_with_overrides_skips_none_and_validates() -> None:
    base = Config()
    assert base.with_overrides(history=None, max_batch=5) == Config(max_batch=5)
    with pytest.raises(ValueError, match="LAB_HISTORY"):
        base.with_overrides(history=0)


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_HISTORY", "42")
    assert Config.from_env().history == 42


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("auto", None), ("0", 0), ("12", 12)])
def test_connection_limits_auto_values(raw: str, expected: int | None) -> None:
    assert Config.from_env({"LAB_MAX_CONNECTIONS": raw}).max_connections == expected


@pytest.mark.parametrize(("raw", "expected"), [("", None), ("off", None), ("0", None), ("30", 30.0)])
def test_channel_ttl_off_values(raw: str, expected: float | None) -> None:
    assert Config.from_env({"LAB_CHANNEL_TTL": raw}).channel_ttl == expected
