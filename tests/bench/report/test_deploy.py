"""bench.report.deploy: the "Behind a proxy" section, from results made here (synthetic, schema-valid).

Results of a direct point and its nginx HTTP/1.1 + TLS and HTTP/2 + TLS rows, an HTTP/2 row with 10 streams per
connection, and the SSE buffering trap (on, with lumps and events still in the proxy at the end; off), each with a
``proxy`` block of chosen numbers: the section shows exactly those numbers in the right rows (bytes in the clear
and on the wire, nginx's CPU apart from the server's, HPACK's first against later header blocks, the trap's lumps,
the Kaazing table's Mbps), draws its chart, and is empty for a run without a proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from bench.contract.schema import Result, result_from, validate_result
from bench.report.deploy import (
    SECTION_TITLE,
    by_point,
    bytes_figure,
    clear_bytes,
    closing_sentence,
    deploy_results,
    deploy_rows,
    deploy_section,
    events_per_read,
    hpack_rows,
    hpack_table,
    kaazing_picks,
    kaazing_table,
    largest_read,
    mode_label,
    nginx_cpu_us,
    point_table,
    point_title,
    tls_bytes,
    trap_rows,
    trap_table,
    wire_by_http,
    wire_bytes,
)
from bench.report.kaazing import mbps
from tests.bench.fixtures.synthetic import Spec, _result

HPACK = {
    "connections": 2,
    "first_request_bytes": 90,  # 45 each
    "later_request_bytes": 300,  # 30 each
    "later_requests": 10,
    "first_response_bytes": 220,  # 110 each
    "first_responses": 2,
    "later_response_bytes": 1080,  # 108 each
    "later_responses": 10,
}


def make(
    sweep: str,
    transport: str,
    *,
    proxy: str = "none",
    http: str = "1.1",
    tls: bool = False,
    streams: int = 1,
    buffering: bool = False,
    clear: tuple[float, float] = (50.0, 150.0),
    wire: tuple[float, float] | None = None,
    nginx_us: float = 20.0,
    reads: tuple[float, int] = (1.0, 1),
    missing: int = 0,
    hpack: dict[str, int] | None = None,
    rate: float = 10.0,
) -> Result:
    """One schema-valid result with the given proxy fields and numbers."""
    spec = Spec(f"{sweep}-{proxy}-{http}-{streams}-{buffering}", sweep, subscribers=100, rate=rate, reps=1)
    # the synthetic generator has no SSE: a WebSocket result, relabelled (this section reads no latency shape)
    obj: dict[str, Any] = _result(spec, "websocket" if transport == "sse" else transport, 1, np.random.default_rng(3))
    obj["scenario"]["transport"] = transport
    name = f"{sweep}-{'direct' if proxy == 'none' else http}{'-s' + str(streams) if streams > 1 else ''}"
    name += "-on" if buffering else ""
    obj["scenario"].update(
        name=name, proxy=proxy, http=http, tls=tls, streams_per_connection=streams, proxy_buffering=buffering
    )
    if transport == "polling":
        obj["scenario"]["poll_interval_s"] = 1.0
    obj["bytes"]["per_event"] = {"up": clear[0], "down": clear[1]}
    obj["counters"]["missing"] = missing
    obj["counters"]["delivered"] = obj["counters"]["expected"] - missing
    if missing:
        obj["flags"] = sorted({*obj["flags"], "loss"})
    if proxy != "none":
        tls_block = None
        if wire is not None:
            tls_block = {
                "up": 1,
                "down": 1,
                "handshake_up": 0,
                "handshake_down": 0,
                "handshakes": 0,
                "steady": {"up": 1, "down": 1},
                "per_event": {"up": wire[0], "down": wire[1]},
            }
        obj["proxy"] = {
            "name": "nginx",
            "versions": {"nginx": "1.22.1"},
            "options": {
                "http": http,
                "tls": tls,
                "streams_per_connection": streams,
                "sse_buffering": buffering,
                "workers": 1,
                "config": "docs/nginx/lab.conf",
                "publisher": "direct",
            },
            "cpu_s": 0.5,
            "cpu_us_per_event": nginx_us,
            "tls": tls_block,
            "hpack": hpack,
            "reads": {"reads": 10, "events_per_read": reads[0], "largest_read": reads[1]},
        }
    validate_result(obj)
    result = result_from(f"{name}--{transport}--r1.json", obj)
    assert isinstance(result, Result)
    return result


def fixture_results() -> list[Result]:
    out = []
    for transport in ("longpoll", "sse", "websocket"):
        out.append(make("deploy-100x10", transport, clear=(100.0, 300.0)))
        out.append(make("deploy-100x10", transport, proxy="nginx", tls=True, clear=(100.0, 300.0), wire=(130.0, 340.0)))
        h2_hpack = HPACK if transport != "websocket" else None
        out.append(
            make(
                "deploy-100x10",
                transport,
                proxy="nginx",
                http="2",
                tls=True,
                clear=(60.0, 200.0),
                wire=(80.0, 220.0),
                nginx_us=33.0,
                hpack=h2_hpack,
            )
        )
    out.append(
        make(
            "deploy-h2-streams", "longpoll", proxy="nginx", http="2", tls=True, streams=10, wire=(40, 160), hpack=HPACK
        )
    )
    out.append(make("deploy-sse-buffering", "sse", proxy="nginx", buffering=True, reads=(5.0, 12), missing=3))
    out.append(make("deploy-sse-buffering", "sse", proxy="nginx"))
    out.append(make("rate", "longpoll"))  # a sweep without a proxy run: not this section's
    return out


def test_only_sweeps_with_a_proxy_run_and_their_direct_points() -> None:
    results = fixture_results()
    chosen = deploy_results(results)
    assert len(chosen) == len(results) - 1
    assert all(r.scenario.sweep != "rate" for r in chosen)
    assert deploy_section([r for r in results if r.scenario.proxy == "none" and r.scenario.sweep == "rate"]) == []


def test_mode_labels_and_row_order() -> None:
    rows = [row for row in deploy_rows(fixture_results()) if row.point == "deploy-100x10"]
    assert [(row.transport, row.mode) for row in rows] == [
        ("longpoll", "direct"),
        ("longpoll", "nginx HTTP/1.1 + TLS"),
        ("longpoll", "nginx HTTP/2 + TLS"),
        ("sse", "direct"),
        ("sse", "nginx HTTP/1.1 + TLS"),
        ("sse", "nginx HTTP/2 + TLS"),
        ("websocket", "direct"),
        ("websocket", "nginx HTTP/1.1 + TLS"),
        ("websocket", "nginx HTTP/2 + TLS (WebSocket: HTTP/1.1 Upgrade)"),
    ]
    streams = next(r for r in fixture_results() if r.scenario.streams_per_connection == 10)
    assert mode_label(streams) == "nginx HTTP/2 + TLS, 10 streams/conn"


def _row(lines: list[str], *cells: str) -> list[str]:
    """The cells of the one table row that starts with ``cells``."""
    found = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("|") and [c.strip() for c in line.strip("|").split("|")][: len(cells)] == list(cells)
    ]
    assert len(found) == 1, (cells, found)
    return found[0]


def test_section_numbers(tmp_path: Path) -> None:
    lines = deploy_section(fixture_results(), tmp_path / "charts")
    assert lines[0] == f"## {SECTION_TITLE}"
    # transport, way in, loss, p50, p99, B/event clear, B/event TLS, server, nginx, events/read, flags
    h2 = _row(lines, "longpoll", "nginx HTTP/2 + TLS", "0/0/0")
    assert h2[5:7] == ["260", "300"] and h2[8] == "33"
    h1 = _row(lines, "longpoll", "nginx HTTP/1.1 + TLS", "0/0/0")
    assert h1[5:7] == ["400", "470"] and h1[8] == "20"
    direct = _row(lines, "longpoll", "direct", "0/0/0")
    assert direct[5:7] == ["400", "—"] and direct[8] == "—"
    # HPACK: 45 first, 30 later, 110 and 108 for the answers
    hp = _row(lines, "deploy-100x10", "longpoll", "nginx HTTP/2 + TLS")
    assert hp[3:] == ["2", "45", "30", "10", "110", "108"]
    assert not any(line.startswith("| deploy-100x10 | websocket") for line in lines)  # no HPACK over HTTP/1.1
    # the trap: lumps and what never arrived
    on = _row(lines, "on + gzip (X-Accel-Buffering ignored)")
    assert on[1:3] == ["5", "12"] and on[-1] == f"3 of {fixture_results()[-3].counters.expected:,}"
    off = _row(lines, "off (docs/nginx/lab.conf)")
    assert off[1:3] == ["1", "1"] and off[-1].startswith("0 of")
    # Kaazing: the wire bytes (TLS where there is TLS) at one event per second per client
    kz = _row(lines, "sse", "nginx HTTP/2 + TLS", "300")
    assert kz[3] == f"{mbps(300, 1000):.4g}"
    assert _row(lines, "sse", "direct", "400")
    closing = lines[-2]
    assert "longpoll 300 B/event over HTTP/2 (HTTP/1.1: 470)" in closing
    assert "sse 300 B/event over HTTP/2 (HTTP/1.1: 470)" in closing
    assert closing.endswith("WebSocket over TLS: 300 B/event.")
    # the chart
    assert (tmp_path / "charts" / "deploy-bytes.png").stat().st_size > 0
    assert (tmp_path / "charts" / "deploy-bytes.svg").stat().st_size > 0
    assert "![Bytes per event behind a proxy](charts/deploy-bytes.png)" in lines


def test_no_chart_without_a_directory() -> None:
    lines = deploy_section(fixture_results(), None)
    assert not any("deploy-bytes" in line for line in lines)


@pytest.mark.parametrize("buffering", [False])
def test_no_trap_table_without_the_trap(buffering: bool) -> None:
    results = [r for r in fixture_results() if not r.scenario.proxy_buffering]
    assert not any("The SSE buffering trap" in line for line in deploy_section(results))


# --- the public pieces the notebook reads: numbers, and the report's own tables -------------------------------


def test_hpack_rows_are_the_means_of_the_whole_run() -> None:
    rows = hpack_rows(deploy_rows(fixture_results()))
    assert [(h.point, h.transport, h.mode) for h in rows] == [
        ("deploy-100x10", "longpoll", "nginx HTTP/2 + TLS"),
        ("deploy-100x10", "sse", "nginx HTTP/2 + TLS"),
        ("deploy-h2-streams", "longpoll", "nginx HTTP/2 + TLS, 10 streams/conn"),
    ]
    h = rows[0]
    assert (h.connections, h.first_request, h.later_request, h.later_requests) == (2, 45.0, 30.0, 10)
    assert (h.first_response, h.later_response) == (110.0, 108.0)


def test_trap_rows_on_first_and_none_without_the_trap() -> None:
    rows = deploy_rows(fixture_results())
    trap = trap_rows(rows)
    assert [row.group.scenario.proxy_buffering for row in trap] == [True, False]
    assert [row.median(events_per_read) for row in trap] == [5.0, 1.0]
    assert [row.median(largest_read) for row in trap] == [12.0, 1.0]
    assert trap_rows([row for row in rows if not row.group.scenario.proxy_buffering]) == []
    assert trap_table([row for row in rows if not row.group.scenario.proxy_buffering]) == ""


def test_number_getters_of_one_result() -> None:
    results = fixture_results()
    h2 = next(r for r in results if r.scenario.http == "2" and r.scenario.transport == "longpoll")
    direct = next(r for r in results if r.scenario.proxy == "none")
    assert (clear_bytes(h2), tls_bytes(h2), wire_bytes(h2), nginx_cpu_us(h2)) == (260.0, 300.0, 300.0, 33.0)
    assert (clear_bytes(direct), tls_bytes(direct), wire_bytes(direct), nginx_cpu_us(direct)) == (
        400.0,
        None,
        400.0,
        None,
    )
    assert (events_per_read(direct), largest_read(direct)) == (None, None)


def test_wire_by_http_and_kaazing_picks() -> None:
    rows = deploy_rows(fixture_results())
    assert wire_by_http(rows) == {
        ("longpoll", "1.1"): 470.0,
        ("longpoll", "2"): 300.0,
        ("sse", "1.1"): 470.0,
        ("sse", "2"): 300.0,
        ("websocket", "1.1"): 470.0,
        ("websocket", "2"): 300.0,
    }
    picks = kaazing_picks(rows)
    assert [(row.transport, row.mode) for row in picks][:3] == [
        ("longpoll", "direct"),
        ("longpoll", "nginx HTTP/1.1 + TLS"),
        ("longpoll", "nginx HTTP/2 + TLS"),
    ]
    assert all(row.group.scenario.streams_per_connection == 1 for row in picks)
    assert all(not row.group.scenario.proxy_buffering for row in picks)


def test_the_pieces_are_the_sections() -> None:
    """The notebook's tables are REPORT.md's: each piece appears verbatim in deploy_section."""
    results = fixture_results()
    rows = deploy_rows(results)
    text = "\n".join(deploy_section(results))
    points = by_point(rows)
    assert list(points) == ["deploy-100x10", "deploy-h2-streams", "deploy-sse-buffering"]
    for rows_of_point in points.values():
        assert f"### {point_title(rows_of_point)}\n\n{point_table(rows_of_point)}" in text
    for piece in (hpack_table(rows), trap_table(rows), kaazing_table(rows), closing_sentence(rows)):
        assert piece and piece in text


def test_bytes_figure_draws_a_bar_per_transport_and_way_in() -> None:
    rows = deploy_rows(fixture_results())
    fig = bytes_figure(rows)
    assert fig is not None
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "longpoll",
        "sse",
        "websocket\n(HTTP/2 listener:\nHTTP/1.1 Upgrade)",
    ]
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "direct",
        "nginx HTTP/1.1 + TLS",
        "nginx HTTP/2 + TLS",  # WebSocket's HTTP/1.1 Upgrade on that listener in the same slot
    ]
    heights = sorted(round(p.get_height()) for p in ax.patches if isinstance(p, Rectangle))
    # clear: direct and HTTP/1.1 400, HTTP/2 260; TLS: none direct (0), HTTP/1.1 470, HTTP/2 300; 3 transports each
    assert heights == sorted([0] * 3 + [400] * 6 + [470] * 3 + [260] * 3 + [300] * 3)
    assert bytes_figure([]) is None
