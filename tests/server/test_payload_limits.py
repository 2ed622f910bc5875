"""The JSON limits of server/bus/core.py: nesting depth and number length, for publish bodies and WebSocket messages.

docs/protocol.md documents both: at most :data:`MAX_DEPTH` levels of arrays
and objects, and number literals of at most :data:`MAX_NUMBER` characters.
Beyond them the answer is a named error, never Python's ``RecursionError``
or its 4,300-digit ``ValueError`` (which were 500s).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.bus.core import MAX_DEPTH, MAX_NUMBER, InvalidPayload, loads_message, nesting_depth, parse_payload

values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner),
    max_leaves=30,
)


def reference_depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@given(values, st.booleans())
def test_nesting_depth_counts_brackets_outside_strings_only(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(text) == reference_depth(value)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_only_json_white_space_is_stripped() -> None:
    assert parse_payload(b" \t\r\n[1]\n ") == b"[1]"


def test_the_deepest_payload_allowed_is_kept_as_sent() -> None:
    assert parse_payload(nested(MAX_DEPTH)) == nested(MAX_DEPTH)
    mixed = b'{"a":' * (MAX_DEPTH - 1) + b'["[[[["]' + b"}" * (MAX_DEPTH - 1)
    assert parse_payload(mixed) == mixed


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deeper_is_too_deep(depth: int) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_payload(nested(depth))
    assert caught.value.error == "too_deep"
    assert str(caught.value) == f"a payload nested {depth} levels deep: at most {MAX_DEPTH} are allowed"


@pytest.mark.parametrize(
    "literal",
    ["1" * MAX_NUMBER, "-" + "1" * (MAX_NUMBER - 1), "0." + "5" * (MAX_NUMBER - 2), "1e999"],
)
def test_numbers_up_to_the_limit_are_kept_as_sent(literal: str) -> None:
    body = ("[" + literal + "]").encode()
    assert parse_payload(body) == body


@pytest.mark.parametrize(
    "literal", ["1" * (MAX_NUMBER + 1), "1" * 5000, "-" + "1" * MAX_NUMBER, "1." + "0" * MAX_NUMBER]
)
def test_longer_numbers_are_refused(literal: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_payload(('{"n": ' + literal + "}").encode())
    assert caught.value.error == "number_too_long"


def test_bad_json_is_still_bad_json() -> None:
    for body in (b"", b"{", b"NaN", b"\xff", b"[1] [2]", "\u00850".encode(), "1\u2028".encode(), b"\x0c1"):
        with pytest.raises(InvalidPayload) as caught:
            parse_payload(body)
        assert caught.value.error == "bad_json"


def test_a_message_may_wrap_the_deepest_payload_but_no_deeper() -> None:
    inner = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_message('{"type": "publish", "data": ' + inner + "}")["data"] == json.loads(inner)
    with pytest.raises(InvalidPayload) as caught:
        loads_message('{"type": "publish", "data": [' + inner + "]}")
    assert caught.value.error == "too_deep"
    assert f"nested {MAX_DEPTH + 1} levels" in str(caught.value)


def test_a_message_parses_numbers_within_the_limit_and_refuses_longer() -> None:
    assert loads_message('{"n": ' + "9" * MAX_NUMBER + "}")["n"] == int("9" * MAX_NUMBER)
    assert loads_message('{"n": 1.5}')["n"] == 1.5
    for literal in ("9" * (MAX_NUMBER + 1), "0." + "1" * MAX_NUMBER):
        with pytest.raises(InvalidPayload) as caught:
            loads_message('{"n": ' + literal + "}")
        assert caught.value.error == "number_too_long"
    with pytest.raises(InvalidPayload) as caught:
        loads_message('{"n": NaN}')
    assert caught.value.error == "bad_json"
