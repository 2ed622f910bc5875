"""peers/nchan/config.py: the generated nginx.conf, read as text (pure), then checked by ``nginx -t`` when installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from peers.nchan.__main__ import find_nginx
from peers.nchan.config import MODULE_PATH, NchanConfig, render
from tests.support import UNIT


def locations(conf: str) -> dict[str, str]:
    """Each ``location`` block's pattern and body."""
    return {m["pattern"]: m["body"] for m in re.finditer(r"location (?P<pattern>[^\n]+?) \{\n(?P<body>[^}]*)\}", conf)}


@pytest.mark.parametrize("workers", ["1", "auto"])
def test_the_config_is_complete_and_self_contained(tmp_path: Path, workers: str) -> None:
    conf = render(NchanConfig(port=18081, prefix=tmp_path, workers=workers))
    assert conf.startswith("# Generated")
    assert f"load_module {MODULE_PATH};" in conf
    assert f"worker_processes {workers};" in conf
    for line in ("daemon off;", "master_process on;", "access_log off;", "listen 127.0.0.1:18081;"):
        assert line in conf
    assert f"pid {tmp_path / 'nginx.pid'};" in conf
    assert f"error_log {tmp_path / 'error.log'} warn;" in conf
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {tmp_path / kind};" in conf
    assert "/etc/" not in conf and "/var/" not in conf and "include" not in conf  # nothing from the system's nginx
    assert "user " not in conf
    assert "nchan_message_buffer_length 10000;" in conf
    assert "nchan_message_timeout 3600s;" in conf
    assert "nchan_subscriber_first_message oldest;" in conf
    assert "keepalive_requests 10000000;" in conf


def test_each_location_does_one_thing(tmp_path: Path) -> None:
    blocks = locations(render(NchanConfig(port=18081, prefix=tmp_path, poll_timeout_s=7, heartbeat_s=9)))
    channel = '"^/channels/([A-Za-z0-9_.-]{1,64})/'
    assert set(blocks) == {
        "= /healthz",
        "= /nchan_status",
        f'~ {channel}events$"',
        f'~ {channel}poll$"',
        f'~ {channel}interval$"',
        f'~ {channel}ws$"',
        f'~ {channel}sse$"',
        "/",
    }
    assert 'return 200 "ok\\n";' in blocks["= /healthz"]
    assert "nchan_stub_status;" in blocks["= /nchan_status"]
    publisher = blocks[f'~ {channel}events$"']
    assert "nchan_publisher http;" in publisher and "nchan_channel_id $1;" in publisher
    for suffix, kind, timeout in [("poll", "longpoll", 7), ("interval", "intervalpoll", 0), ("ws", "websocket", 0)]:
        body = blocks[f'~ {channel}{suffix}$"']
        assert f"nchan_subscriber {kind};" in body  # one subscriber type per location
        assert "nchan_channel_id $1;" in body
        assert f"nchan_subscriber_timeout {timeout};" in body
    sse = blocks[f'~ {channel}sse$"']
    assert "nchan_subscriber eventsource;" in sse and "nchan_eventsource_ping_interval 9;" in sse
    assert "return 404;" in blocks["/"]


def test_options_reach_the_config(tmp_path: Path) -> None:
    conf = render(NchanConfig(port=1, prefix=tmp_path, history=123, message_timeout_s=60, user="root"))
    assert "nchan_message_buffer_length 123;" in conf
    assert "nchan_message_timeout 60s;" in conf
    assert "\nuser root;\n" in conf


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 0},
        {"port": 65536},
        {"workers": "0"},
        {"workers": "two"},
        {"history": 0},
        {"message_timeout_s": 0},
        {"poll_timeout_s": -1},
        {"heartbeat_s": 0},
    ],
)
def test_bad_options_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    options: dict[str, object] = {"port": 18081, "prefix": tmp_path, **bad}
    with pytest.raises(ValueError):
        NchanConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", ["1", "auto"])
def test_nginx_accepts_the_config(tmp_path: Path, workers: str) -> None:
    nginx = find_nginx()
    if nginx is None or not MODULE_PATH.exists():
        reason = "needs nginx and the Nchan module (apt-get install nginx-light libnginx-mod-nchan)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must install them (.ci/system-packages)")
        pytest.skip(reason)
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(NchanConfig(port=18081, prefix=tmp_path, workers=workers)))
    done = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
