"""Tests of clients.eventstream: the sans-I/O ``text/event-stream`` parser, against the WHATWG rules.

The examples are the HTML standard's own (section 9.2.6) where it gives them;
the property tests serialize arbitrary events with arbitrary line ends and
feed the bytes in arbitrary pieces: what comes out never depends on where
the stream was split.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import EventStreamError, EventStreamParser, ServerSentEvent


def parse(*chunks: bytes) -> tuple[list[ServerSentEvent], EventStreamParser]:
    parser = EventStreamParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events, parser


def test_a_lab_event() -> None:
    events, parser = parse(b'retry: 1000\n\nid: 7\ndata: {"seq":7}\n\n')
    assert events == [ServerSentEvent("message", '{"seq":7}', "7")]
    assert (parser.retry, parser.last_event_id) == (1000, "7")


def test_the_standards_examples() -> None:
    # "data: YHOO / data: +2 / data: 10": one event, lines joined with LF.
    assert parse(b"data: YHOO\ndata: +2\ndata: 10\n\n")[0] == [ServerSentEvent("message", "YHOO\n+2\n10", "")]
    # A comment, then an event with an id, then one that keeps that id, then one with an empty id.
    events, parser = parse(
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    )
    assert events == [
        ServerSentEvent("message", "first event", "1"),
        ServerSentEvent("message", "second event", ""),
        ServerSentEvent("message", " third event", ""),
    ]
    assert parser.comments == 1
    # "data" alone twice: two LFs, the last dropped; "data" then nothing dispatches an empty string.
    assert parse(b"data\n\ndata\ndata\n\ndata:\n")[0] == [
        ServerSentEvent("message", "", ""),
        ServerSentEvent("message", "\n", ""),
    ]
    # "data:test" and "data: test" are the same.
    assert parse(b"data:test\n\ndata: test\n\n")[0] == [ServerSentEvent("message", "test", "")] * 2


def test_event_names_last_one_event_and_empty_means_message() -> None:
    events, _ = parse(b"event: gap\nid: 20\ndata: {}\n\ndata: x\n\nevent:\ndata: y\n\n")
    assert [(e.event, e.data, e.id) for e in events] == [
        ("gap", "{}", "20"),
        ("message", "x", "20"),
        ("message", "y", "20"),
    ]


def test_nothing_is_dispatched_without_data_and_an_unfinished_event_never_is() -> None:
    events, parser = parse(b"event: gap\nid: 3\n\nretry: 5\n\ndata: cut")
    assert events == []
    assert (parser.last_event_id, parser.retry) == ("3", 5)


def test_id_with_nul_and_retry_with_non_digits_are_ignored() -> None:
    _, parser = parse(b"id: 1\nid: 2\x003\nretry: 12a\nretry: -5\nretry: \xd9\xa3\n\n")
    assert (parser.last_event_id, parser.retry) == ("1", None)


def test_unknown_fields_and_lines_without_a_colon() -> None:
    assert parse(b"foo: bar\ndata\nwat\n\n")[0] == [ServerSentEvent("message", "", "")]


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_every_line_end(end: bytes) -> None:
    stream = end.join([b"id: 5", b"data: a", b"data: b", b"", b""])
    assert parse(stream)[0] == [ServerSentEvent("message", "a\nb", "5")]


def test_a_crlf_split_between_two_chunks_is_one_line_end() -> None:
    # Were the LF taken for a second line end, the empty line would dispatch "a" early and lose nothing
    # here, but "data: b" would become a second event: one event proves it is one line end.
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [ServerSentEvent("message", "a\nb", "")]


def test_a_cr_inside_the_input_does_not_swallow_the_next_chunks_lf() -> None:
    # The last line end of the first chunk is a CR, but a partial line follows it: an LF starting the next
    # chunk ends that line (found by hypothesis).
    events, _ = parse(b"data: 0\rdata: x", b"\ndata: y\n\n")
    assert events == [ServerSentEvent("message", "0\nx\ny", "")]


def test_a_leading_bom_is_dropped_once_even_split() -> None:
    bom = b"\xef\xbb\xbf"
    assert parse(bom[:1], bom[1:] + b"data: x\n\n")[0] == [ServerSentEvent("message", "x", "")]
    # A second BOM is data: the field name is then "\ufeffdata", not "data", and is ignored.
    assert parse(bom + bom + b"data: x\n\n")[0] == []


def test_utf8_and_invalid_bytes() -> None:
    text = '{"s":"\u00e9 \u2603 \u2028 \U0001f600"}'
    assert parse(b"data: " + text.encode() + b"\n\n")[0] == [ServerSentEvent("message", text, "")]
    assert parse(b"data: \xff\n\n")[0] == [ServerSentEvent("message", "\ufffd", "")]


def test_a_line_over_the_limit_is_refused() -> None:
    parser = EventStreamParser(max_line=16)
    assert parser.feed(b"data: 0123456789\n\n") == [ServerSentEvent("message", "0123456789", "")]
    with pytest.raises(EventStreamError):
        parser.feed(b"data: 0123456789abcdef")


# -- properties -----------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n\0"), max_size=30)
_event = st.tuples(
    st.one_of(st.none(), _text.filter(lambda t: t != "")),  # event name
    st.lists(_text, min_size=1, max_size=4),  # data lines
    st.one_of(st.none(), _text),  # id
)
_end = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A stream of events (with comments, retries and random line ends) and what it must parse to."""
    out = bytearray()
    expected = []
    last_id = ""
    for name, lines, ident in draw(st.lists(_event, max_size=8)):
        fields: list[bytes] = []
        if draw(st.booleans()):
            fields.append(b": " + draw(_text).encode())
        if name is not None:
            fields.append(b"event: " + name.encode())
        if ident is not None:
            space = draw(st.booleans()) or ident.startswith(" ")  # a reader drops one space after the colon
            fields.append(b"id:" + (b" " if space else b"") + ident.encode())
            last_id = ident
        if draw(st.booleans()):
            fields.append(b"retry: %d" % draw(st.integers(0, 10**6)))
        fields.extend(b"data: " + line.encode() for line in lines)
        for piece in [*fields, b""]:
            end = draw(_end)
            if out.endswith(b"\r") and not piece and end == b"\n":
                end = b"\r\n"  # CR then LF would be one line end (CRLF), not two
            out += piece + end
        expected.append(ServerSentEvent(name or "message", "\n".join(lines), last_id))
    return bytes(out), expected


@settings(max_examples=400)
@given(streams(), st.data())
def test_any_stream_split_anywhere_parses_the_same(
    stream: tuple[bytes, list[ServerSentEvent]], data: st.DataObject
) -> None:
    raw, expected = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    events, parser = parse(*chunks)
    assert events == expected
    assert parser.feed(b"") == []  # a CR as the last byte was a whole line end: nothing is left to dispatch


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_arbitrary_bytes_never_raise_and_splitting_changes_nothing(raw: bytes, cuts: list[int]) -> None:
    whole, _ = parse(raw)
    points = sorted(min(c, len(raw)) for c in cuts)
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert parse(*pieces)[0] == whole
