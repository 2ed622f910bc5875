"""Tests of server/__main__.py: ``python -m server`` flags and their refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server.__main__ import parse_args
from server.config import Config
from server.runtimes import ServeOptions
from tests.support import ROOT, UNIT


def test_help_lists_the_fixed_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30 * UNIT
    )
    assert out.returncode == 0
    for flag in (
        "--runtime",
        "--host",
        "--port",
        "--workers",
        "--threads",
        "--connections",
        "--graceful-timeout",
        "--bus",
        "--redis-url",
        "--history",
        "--max-batch",
        "--poll-timeout",
        "--ws-ping-interval",
        "--ws-max-message",
        "--ws-compression",
        "--fast-path",
    ):
        assert flag in out.stdout
    assert "{werkzeug,gthread,gevent,pywsgi}" in out.stdout


def test_no_flags_give_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAB_BUS", "LAB_HISTORY", "LAB_WS_COMPRESSION", "LAB_FAST_PATH"):
        monkeypatch.delenv(name, raising=False)
    config, options = parse_args([])
    assert config == Config.from_env()
    assert options == ServeOptions()


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_HISTORY", "50")
    monkeypatch.setenv("LAB_MAX_BATCH", "9")
    monkeypatch.setenv("LAB_WS_COMPRESSION", "1")
    monkeypatch.setenv("LAB_FAST_PATH", "off")
    config, options = parse_args(
        [
            "--runtime",
            "gevent",
            "--host",
            "0.0.0.0",
            "--port",
            "9001",
            "--connections",
            "50",
            "--graceful-timeout",
            "3",
            "--history",
            "70",
            "--poll-timeout",
            "4",
            "--ws-ping-interval",
            "20",
            "--ws-max-message",
            "512",
            "--ws-compression",
            "off",
            "--fast-path",
            "on",
            "--allow-no-token",
        ]
    )
    assert options == ServeOptions("gevent", "0.0.0.0", 9001, 1, 100, 50, 3)
    assert (config.history, config.max_batch) == (70, 9)  # flag wins; env kept where no flag
    assert (config.poll_timeout, config.ws_ping_interval, config.ws_max_message) == (4.0, 20.0, 512)
    assert config.ws_compression is False
    assert config.fast_path is True


def test_workers_with_a_redis_bus_are_accepted() -> None:
    config, options = parse_args(["--runtime", "gthread", "--workers", "3", "--threads", "8", "--bus", "redis"])
    assert (config.bus, options.workers, options.threads) == ("redis", 3, 8)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runtime", "gthread", "--workers", "2"], "--workers > 1 needs --bus redis"),
        (["--runtime", "gevent", "--workers", "2", "--bus", "memory"], "--workers > 1 needs --bus redis"),
        (["--workers", "2", "--bus", "redis"], "--workers applies to the gunicorn runtimes only"),
        (["--runtime", "tornado"], "invalid choice"),
        (["--port", "http"], "invalid int value"),
        (["--port", "70000"], "--port must be"),
        (["--runtime", "gthread", "--threads", "0"], "--threads must be >= 1"),
        (["--history", "0"], "LAB_HISTORY"),
        (["--poll-timeout", "45"], "LAB_POLL_TIMEOUT"),
        (["--ws-compression", "maybe"], "invalid choice"),
        (["--fast-path", "yes"], "invalid choice"),
    ],
)
def test_bad_flags_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LAB_BUS", raising=False)
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAB_HISTORY", "lots")
    with pytest.raises(SystemExit) as info:
        parse_args([])
    assert info.value.code == 2
    assert "LAB_HISTORY" in capsys.readouterr().err


def test_memory_workers_are_refused_from_the_command_line() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "server", "--runtime", "gthread", "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=30 * UNIT,
    )
    assert out.returncode == 2
    assert "--workers > 1 needs --bus redis" in out.stderr


def test_binding_beyond_loopback_needs_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LAB_PUBLISH_TOKEN", raising=False)
    monkeypatch.delenv("LAB_SUBSCRIBE_TOKEN", raising=False)
    for host in ("0.0.0.0", "192.0.2.7", "::"):
        with pytest.raises(SystemExit) as info:
            parse_args(["--host", host])
        assert info.value.code == 2
        assert "LAB_PUBLISH_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("LAB_PUBLISH_TOKEN", "p")
    with pytest.raises(SystemExit):
        parse_args(["--host", "0.0.0.0"])  # both tokens, not one
    monkeypatch.setenv("LAB_SUBSCRIBE_TOKEN", "s")
    config, options = parse_args(["--host", "0.0.0.0"])
    assert (options.host, config.publish_token, config.subscribe_token) == ("0.0.0.0", "p", "s")
    for host in ("127.0.0.1", "localhost", "::1"):
        assert parse_args(["--host", host])[1].host == host


def test_limit_and_access_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = parse_args(
        [
            "--max-connections",
            "40",
            "--max-longpoll",
            "10",
            "--max-websocket",
            "30",
            "--header-timeout",
            "2",
            "--history-bytes",
            "1000",
            "--history-total-bytes",
            "5000",
            "--channel-ttl",
            "60",
            "--allowed-hosts",
            "lab.example",
            "--allowed-origins",
            "https://app.example",
        ]
    )
    assert (config.max_connections, config.max_longpoll, config.max_websocket) == (40, 10, 30)
    assert (config.header_timeout, config.history_bytes, config.channel_ttl) == (2.0, 1000, 60.0)
    assert config.history_total_bytes == 5000
    assert (config.allowed_hosts, config.allowed_origins) == ("lab.example", "https://app.example")
