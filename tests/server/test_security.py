"""Tests of server/security.py: each attack of docs/security.md, refused.

Flask's test client sends what a browser would (``Origin``, ``Host``,
``Content-Type``); the WebSocket cases run against a real server, since an
upgrade is only refused or accepted on a socket.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import simple_websocket
from flask.testing import FlaskClient

from server.app import create_app
from server.config import Config
from server.security import Policy, csp_for, is_loopback
from tests.support import UNIT, receive_json, run_server, ws_connect

JSON = {"Content-Type": "application/json"}


def upgrade_status(port: int, path: str, headers: dict[str, str]) -> int:
    """Send a WebSocket handshake on a raw socket; the answer's status (101: opened)."""
    head = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        **headers,
    }
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(params=[False, True], ids=["flask", "fast-path"])
def client(request: pytest.FixtureRequest) -> FlaskClient:
    return create_app(Config(fast_path=request.param)).test_client()


@pytest.fixture(params=[False, True], ids=["flask", "fast-path"])
def guarded(request: pytest.FixtureRequest) -> FlaskClient:
    config = Config(publish_token="pub-secret", subscribe_token="sub-secret", fast_path=request.param)
    return create_app(config).test_client()


def publish(client: FlaskClient, headers: dict[str, str] | None = None, body: str = '{"x": 1}', **kw: Any) -> Any:
    return client.post("/channels/c/events", data=body, headers=headers or {}, **kw)


# -- Origin (cross-site publishing and WebSocket hijacking) -------------------


def test_forged_origin_cannot_publish(client: FlaskClient) -> None:
    resp = publish(client, {**JSON, "Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "forbidden_origin"
    assert client.get("/channels/c/poll?timeout=0").get_json()["events"] == []


@pytest.mark.parametrize(
    "origin",
    ["http://localhost", "http://localhost:8000", "http://127.0.0.1:3000", "http://[::1]:8000"],
)
def test_loopback_and_own_origins_publish(client: FlaskClient, origin: str) -> None:
    resp = publish(client, {**JSON, "Origin": origin})
    assert resp.status_code == 201
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in resp.headers["Vary"]


def test_own_origin_on_a_public_name_is_allowed() -> None:
    app = create_app(Config(allowed_hosts="lab.example"))
    resp = app.test_client().post(
        "/channels/c/events",
        data="1",
        headers={**JSON, "Origin": "http://lab.example:8000"},
        base_url="http://lab.example:8000",
    )
    assert resp.status_code == 201
    other_port = app.test_client().post(
        "/channels/c/events",
        data="1",
        headers={**JSON, "Origin": "http://lab.example:9000"},
        base_url="http://lab.example:8000",
    )
    assert other_port.status_code == 403


def test_null_origin_is_refused(client: FlaskClient) -> None:
    assert publish(client, {**JSON, "Origin": "null"}).status_code == 403


def test_listed_origin_is_allowed() -> None:
    c = create_app(Config(allowed_origins="https://app.example")).test_client()
    assert publish(c, {**JSON, "Origin": "https://app.example"}).status_code == 201
    assert publish(c, {**JSON, "Origin": "https://app.example.evil"}).status_code == 403


def test_forged_origin_cannot_open_a_websocket() -> None:
    with run_server("werkzeug") as srv:
        assert upgrade_status(srv.port, "/channels/c/ws", {"Origin": "https://evil.example"}) == 403
        ws = ws_connect(f"{srv.ws_url}/channels/c/ws", headers={"Origin": f"http://127.0.0.1:{srv.port}"})
        try:
            httpx.post(f"{srv.url}/channels/c/events", content="1", headers=JSON, timeout=5 * UNIT)
            assert receive_json(ws, 1)[0]["seq"] == 1
        finally:
            ws.close()


# -- Content-Type (a form or text/plain POST needs no preflight) ---------------


@pytest.mark.parametrize(
    "ctype", ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_simple_request_content_types_are_refused(client: FlaskClient, ctype: str) -> None:
    resp = publish(client, {"Content-Type": ctype})
    assert resp.status_code == 415
    assert resp.get_json()["error"] == "unsupported_media_type"
    assert client.get("/channels/c/poll?timeout=0").get_json()["events"] == []


@pytest.mark.parametrize("headers", [JSON, {"Content-Type": "application/json; charset=utf-8"}, {}])
def test_json_or_no_content_type_publishes(client: FlaskClient, headers: dict[str, str]) -> None:
    assert publish(client, headers).status_code == 201


# -- Host (DNS rebinding) -----------------------------------------------------


def test_rebinding_host_is_refused_on_every_route(client: FlaskClient) -> None:
    evil = "http://evil.example:8000"
    for resp in (
        client.post("/channels/c/events", data="1", headers=JSON, base_url=evil),
        client.get("/channels/c/poll?timeout=0", base_url=evil),
        client.get("/stats", base_url=evil),
        client.get("/", base_url=evil),
    ):
        assert resp.status_code == 403
        assert resp.get_json()["error"] == "forbidden_host"
    assert client.get("/channels/c/poll?timeout=0").get_json()["events"] == []


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000"])
def test_loopback_hosts_are_served(client: FlaskClient, host: str) -> None:
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


def test_rebinding_host_cannot_open_a_websocket() -> None:
    with run_server("werkzeug") as srv:
        assert upgrade_status(srv.port, "/channels/c/ws", {"Host": f"evil.example:{srv.port}"}) == 403
        assert upgrade_status(srv.port, "/channels/c/ws", {}) == 101


# -- Tokens ---------------------------------------------------------------------


def test_missing_publish_token_is_refused(guarded: FlaskClient) -> None:
    for headers in (JSON, {**JSON, "Authorization": "Bearer wrong"}, {**JSON, "Authorization": "Bearer sub-secret"}):
        resp = publish(guarded, headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert publish(guarded, {**JSON, "Authorization": "Bearer pub-secret"}).status_code == 201


def test_missing_subscribe_token_is_refused(guarded: FlaskClient) -> None:
    for url in ("/channels/c/poll?timeout=0", "/channels/c/poll?timeout=0&token=wrong", "/stats"):
        assert guarded.get(url).status_code == 401
    assert guarded.get("/channels/c/poll?timeout=0&token=sub-secret").status_code == 200
    assert guarded.get("/stats", headers={"Authorization": "Bearer sub-secret"}).status_code == 200
    assert guarded.get("/healthz").status_code == 200  # a load balancer has no token


def test_websocket_tokens() -> None:
    env = {"LAB_PUBLISH_TOKEN": "pub-secret", "LAB_SUBSCRIBE_TOKEN": "sub-secret"}
    with run_server("werkzeug", env=env) as srv:
        assert upgrade_status(srv.port, "/channels/t/ws", {}) == 401
        assert upgrade_status(srv.port, "/channels/t/ws", {"Authorization": "Bearer sub-secret"}) == 101
        # Subscribe token in the URL (a browser's WebSocket cannot set headers): reads, cannot publish.
        reader = ws_connect(f"{srv.ws_url}/channels/t/ws?token=sub-secret")
        reader.send('{"type": "publish", "data": 1}')
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            reader.receive(timeout=10 * UNIT)
        assert closed.value.reason == 4403
        # Both tokens: may publish too.
        both = ws_connect(f"{srv.ws_url}/channels/t/ws?token=sub-secret&token=pub-secret")
        try:
            both.send('{"type": "publish", "data": 2, "id": "a"}')
            got = receive_json(both, 2)
            assert {m.get("type") for m in got} == {"ack", None}
        finally:
            both.close()


# -- CORS and the demo page ---------------------------------------------------------


def test_preflight_from_an_allowed_origin(client: FlaskClient) -> None:
    resp = client.options(
        "/channels/c/events",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]


def test_preflight_from_another_origin_is_refused(client: FlaskClient) -> None:
    resp = client.options(
        "/channels/c/events", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert resp.status_code == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_same_origin_answers_carry_no_cors_grant_for_others(client: FlaskClient) -> None:
    resp = client.get("/channels/c/poll?timeout=0")
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_demo_page_has_a_content_security_policy(client: FlaskClient) -> None:
    resp = client.get("/", headers={"Host": "127.0.0.1:8000"})
    assert resp.status_code == 200
    csp = resp.headers["Content-Security-Policy"]
    assert csp == csp_for("127.0.0.1:8000")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "ws://127.0.0.1:8000" in csp
    resp.close()


# -- the policy alone ----------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = Policy.from_config(Config())
    assert policy.host_allowed("localhost:1") and policy.host_allowed("[::1]")
    assert not policy.host_allowed("evil.example") and not policy.host_allowed("")
    assert Policy.from_config(Config(allowed_hosts="*")).host_allowed("anything.example")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]") and not is_loopback("10.0.0.1")
    assert Policy.token_matches("", []) and not Policy.token_matches("t", []) and Policy.token_matches("t", ["x", "t"])
