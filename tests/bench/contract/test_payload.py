"""bench.contract.payload: what the publisher puts in each event's data, and how a subscriber reads it."""

from __future__ import annotations

import json

import pytest

from bench.contract.payload import BenchPayload, decode_payload, encode_payload


@pytest.mark.parametrize("size", [32, 100, 1024, 65536])
def test_payload_is_padded_to_size_and_parses_back(size: int) -> None:
    body = encode_payload(123, 9_876_543_210_123, True, size, number=62)
    assert len(body) == size
    assert decode_payload(json.loads(body)) == (123, 9_876_543_210_123, True, 62)


def test_payload_smaller_than_its_fields_is_as_small_as_possible() -> None:
    body = encode_payload(7, 12_345_678_901_234, False, 1)
    assert body == b'[7,12345678901234,0,0,""]'
    with pytest.raises(ValueError, match="not a benchmark payload"):
        decode_payload({"hello": 1})


def test_a_decoded_payload_names_its_fields() -> None:
    decoded = decode_payload(json.loads(encode_payload(5, 42, False, 64, number=3)))
    assert decoded == BenchPayload(position=5, intended_mono_ns=42, warm=False, number=3)
    assert decode_payload(json.loads(encode_payload(5, 42, False, 64))).number == 0
