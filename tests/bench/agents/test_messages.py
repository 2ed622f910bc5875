"""bench.agents.messages: the lab's messages pass through; a peer's payload is numbered by the publisher's number."""

from __future__ import annotations

import json

import pytest

from bench.agents.messages import lab_message, numbered_by_publisher
from bench.contract.payload import encode_payload


def test_a_lab_message_is_its_own_json() -> None:
    text = '{"channel":"c","seq":7,"ts":12,"data":[1]}'
    assert lab_message("c", text) == {"channel": "c", "seq": 7, "ts": 12, "data": [1]}
    assert lab_message("c", '{"type":"gap","first":1,"last":4}')["type"] == "gap"


def test_a_peer_message_takes_its_cursor_from_the_payload_number() -> None:
    body = encode_payload(41, 99, False, 64, number=11).decode()
    obj = numbered_by_publisher("room", body)
    assert obj == {"channel": "room", "seq": 11, "ts": None, "data": json.loads(body)}


def test_a_foreign_peer_message_is_refused() -> None:
    with pytest.raises(ValueError, match="not a benchmark payload"):
        numbered_by_publisher("room", '{"amount": 10}')
