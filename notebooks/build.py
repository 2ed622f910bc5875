"""Write ``long-polling-vs-websocket.ipynb`` from the cell sources below.

The notebook's text and code live here, as reviewable Python, and the
``.ipynb`` is generated from them: ``python -m notebooks.build`` writes it
without outputs, ``python -m notebooks.execute`` (``make notebook``) runs it
in place against ``results/latest`` or ``results/reference`` (and, for its
peers and "Behind a proxy" sections, ``results/peers`` and ``results/deploy``).

The notebook reads a run through :mod:`bench.report` only (``load_run``,
``load_capture`` and the tables the report draws from), so the notebook and
``REPORT.md`` cannot disagree on the same question. Its Markdown cells quote
no measured number: a sentence that cites one is written by a code cell from
the run being read (``IPython.display.Markdown``). The constants they do quote
are definitions (RFC 6455's frame header sizes, the Kaazing paper's inputs),
said as such; tests/notebooks/test_build.py holds the list and checks it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).resolve().parent / "long-polling-vs-websocket.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Long polling vs WebSocket, measured

You know Flask. You have a page that must learn *now* that something happened on the server (a payment
was confirmed, a message arrived). This notebook explains the two classic ways to push that news to a
browser, **HTTP long polling** and **WebSocket**, and grounds every claim in numbers this lab measured.

- Every number below is read from a benchmark run's raw files, through `bench.report` (the same loader and
  tables as the run's `REPORT.md`): `results/latest` if you ran `make bench`, else the committed
  `results/reference`, or the run named by the `LAB_RUN` environment variable; sections 5 to 7 read a peers run
  and section 8 a run through nginx, each named where it is read. The notebook never runs a benchmark itself,
  and its prose quotes no number it did not just compute from the run it reads.
- The lab's server delivers *the same events, with the same cursors, serialized to the same bytes* over both
  transports (docs/protocol.md), so a difference you see here is the transport's.
- Re-execute it with `make notebook`.""",
    ),
    (
        "code",
        """import os
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from bench.report import (
    PAPER_CLIENTS,
    by_series,
    byte_parts,
    bytes_per_event,
    cost_rows,
    find_sweeps,
    format_number,
    idle_rows,
    load_capture,
    load_run,
    longpoll_batching,
    loss_totals,
    markdown_table,
    measured_table,
    paper_table,
    percentile_spectrum,
    spectrum_scenario,
    transits,
)

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()


def given(variable):
    \"\"\"The run directory an environment variable names; a relative path is the project's if not the kernel's.\"\"\"
    path = Path(os.environ[variable])
    return path if path.is_absolute() or path.exists() else ROOT / path


if os.environ.get("LAB_RUN"):
    CANDIDATES = [given("LAB_RUN")]
else:
    CANDIDATES = [ROOT / "results" / "latest", ROOT / "results" / "reference"]
FOUND = [p for p in CANDIDATES if (p / "meta.json").exists()]
if not FOUND:
    raise FileNotFoundError(f"no run in {', '.join(map(str, CANDIDATES))}: run `make bench` or set LAB_RUN")
RUN_DIR = FOUND[0]
RUN = load_run(RUN_DIR)  # validated, typed: RUN.meta, RUN.results (bench.contract.schema.Result), RUN.failed
TOTALS = loss_totals(RUN)
COLORS = {"longpoll": "tab:orange", "websocket": "tab:blue", "polling": "tab:purple", "sse": "tab:green", "floor": "black"}

print(f"run: {RUN_DIR.resolve().name}, profile {RUN.meta.profile}")
print(RUN.meta.provenance)
print(
    f"{TOTALS.results} repetitions ran; with loss: {len(TOTALS.lossy)}; "
    f"invalid (clients saturated or publisher behind): {len(TOTALS.invalid)}; "
    f"failed: {len(TOTALS.failed)}; planned but never run: {len(TOTALS.not_run)}"
)""",
    ),
    (
        "code",
        """def ms(us):
    \"\"\"A latency statistic in microseconds, in milliseconds; None (not measured) stays None.\"\"\"
    return None if us is None else us / 1000.0


def n(value, digits=3):
    \"\"\"A number as the prose quotes it (bench.report.format_number); a dash when not measured.\"\"\"
    return format_number(value, digits)


def color(series):
    return COLORS.get(series.split(" ")[0], "tab:gray")


def mark(r):
    \"\"\"A label suffix that makes loss and invalid repetitions impossible to miss.\"\"\"
    text = " [LOSS]" if r.lossy else ""
    return text + ("" if r.valid else " [INVALID: " + ", ".join(r.flags) + "]")


def show(text):
    \"\"\"Markdown written from this run's numbers.\"\"\"
    display(Markdown(text))


def small_print(fig):
    fig.text(0.01, 0.005, f"{RUN.meta.provenance} · {RUN_DIR.resolve().name}", fontsize=7, color="gray")""",
    ),
    (
        "md",
        """## 1. Two ways to push

**Long polling is a technique on top of plain HTTP.** The client sends an ordinary `GET`; the server *holds*
it open until it has something to say (or a timeout passes), then answers like any HTTP response; the client
immediately asks again, carrying the cursor of the last event it saw. Every answer is a complete HTTP
response with its headers; every new request carries its own. Nothing about HTTP changed: proxies, caches,
load balancers and cookies work as they always do (RFC 6202 calls it "HTTP long polling").

**WebSocket is a protocol of its own, started by an HTTP Upgrade handshake.** The client sends one `GET`
with `Upgrade: websocket`; the server answers `101 Switching Protocols`, and from then on the TCP connection
carries WebSocket frames in both directions, for as long as it lives (RFC 6455). By that RFC's definition a
frame's header is 2 to 14 bytes; there are no per-message HTTP headers. Either side may send at any moment.

The diagrams below are drawn from the lab's own routes (`/channels/<c>/poll` and `/channels/<c>/ws`), with
the hold time this run's long-poll clients asked for.""",
    ),
    (
        "code",
        """def sequence(ax, title, steps, height):
    \"\"\"A two-lane sequence diagram: steps are (t0, t1, direction, label, style).\"\"\"
    ax.set_xlim(0, 10)
    ax.set_ylim(height, -1.2)
    ax.axis("off")
    ax.set_title(title, loc="left")
    for x, name in ((1.5, "client (browser)"), (8.5, "Flask server")):
        ax.plot([x, x], [-0.4, height], color="gray", lw=1)
        ax.text(x, -0.7, name, ha="center", fontsize=10, weight="bold")
    for t0, t1, direction, label, style in steps:
        if direction == "note":
            ax.text(8.7, t0, label, fontsize=8, color="tab:green", va="center")
            continue
        x0, x1 = (1.5, 8.5) if direction == ">" else (8.5, 1.5)
        ax.annotate("", xy=(x1, t1), xytext=(x0, t0), arrowprops=dict(arrowstyle="->", color=style, lw=1.6))
        ax.text(5, (t0 + t1) / 2 - 0.12, label, ha="center", fontsize=8, color=style,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5))


holds = Counter(r.scenario.poll_timeout_s for r in RUN.results if r.scenario.transport == "longpoll")
_captured = load_capture(RUN_DIR)  # the run's captured frame says how long its header is (2 up to 125 B, 4 beyond)
FRAME_HEADER = f"{_captured.websocket_frame.header_bytes}-byte header" if _captured else "a header of 2 to 14 bytes"
HOLD = f"{holds.most_common(1)[0][0]:g}" if holds else "T"  # the hold most of this run's long polls asked for
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 6.2))
sequence(a, "Long polling: held requests", [
    (0, 1, ">", f"GET /channels/pay/poll?after=0&timeout={HOLD}", "tab:orange"),
    (1.2, 0, "note", "held... (no event yet)", None),
    (3.0, 0, "note", "event seq 1 published", None),
    (3.0, 4, "<", "200 OK  {events:[seq 1], next:1}  + headers", "tab:orange"),
    (4.2, 5.2, ">", "GET ...poll?after=1  (new request, full headers)", "tab:orange"),
    (5.4, 0, "note", "held...", None),
    (6.5, 0, "note", f"timeout ({HOLD} s)", None),
    (6.5, 7.5, "<", "200 OK  {events:[], next:1}", "tab:orange"),
    (7.7, 8.7, ">", "GET ...poll?after=1", "tab:orange"),
], 9.2)
sequence(b, "WebSocket: one upgraded connection", [
    (0, 1, ">", "GET /channels/pay/ws?after=0  Upgrade: websocket", "tab:blue"),
    (1.2, 2.2, "<", "101 Switching Protocols", "tab:blue"),
    (2.6, 0, "note", "(HTTP ends here: frames from now on)", None),
    (3.4, 0, "note", "event seq 1 published", None),
    (3.4, 4.4, "<", f"text frame {{seq 1}}  ({FRAME_HEADER}, as captured)", "tab:blue"),
    (4.6, 5.6, ">", "masked frame {type: publish}  (header + 4-byte mask)", "tab:blue"),
    (5.8, 6.8, "<", "frame {type: ack, seq 2}", "tab:blue"),
    (7.0, 8.0, "<", "frame {seq 2} ... and so on, both ways", "tab:blue"),
], 9.2)
small_print(fig)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## 2. Latency

*Delivery latency* is the subscriber's receive time minus the bus's publish time (`ts`); *end-to-end latency*
is the receive time minus the time the open-loop publisher *intended* to send the event (so a publisher that
fell behind cannot hide latency: no coordinated omission). Both are recorded in HdrHistograms; see
docs/metrics.md. Below, the full percentile spectrum of end-to-end latency, HdrHistogram style, one line per
repetition: the x axis is `1/(1-p)`, so each added nine of the percentile gets the same width and the tail
gets the room it deserves. The scenario is the loopback one of this run that compares the most transports at
the heaviest load (`bench.report.spectrum_scenario`).""",
    ),
    (
        "code",
        """SPECTRUM = spectrum_scenario(RUN)
fig, ax = plt.subplots(figsize=(9, 4.5))
for group in SPECTRUM:
    for r in group.results:
        x, y = percentile_spectrum(r.end_to_end.histogram())
        style = ":" if not r.valid else ("--" if group.series == "floor" else "-")
        ax.plot(x, y / 1000.0, style, color=color(group.series) if r.valid else "#9a9a9a",
                label=f"{group.series} r{r.repetition}{mark(r)}" + ("" if r.valid else " (INVALID: grey)"))
ax.set_xscale("log")
ax.set_yscale("log")
ticks = [t for t in (2, 10, 100, 1000, 10000, 100000) if t <= max(10, ax.get_xlim()[1])]
ax.set_xticks(ticks, [f"{100 * (1 - 1 / t):g}%" for t in ticks])
ax.set_xlabel("percentile (the last point of each line is the max)")
ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
ax.set_ylabel("end-to-end latency (ms, log)")
if SPECTRUM:
    sc = SPECTRUM[0].scenario
    ax.set_title(f"Latency percentile spectrum: {sc.name} ({sc.subscribers} subscriber(s) x {sc.rate:g} events/s, loopback)")
    ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")
small_print(fig)
plt.tight_layout()
plt.show()

if SPECTRUM:
    parts = []
    for group in SPECTRUM:
        p50 = group.median(lambda r: ms(r.end_to_end.p50_us))
        p99 = group.median(lambda r: ms(r.end_to_end.p99_us))
        valid = f"{len(group.valid)}/{len(group.results)} valid"
        parts.append(f"**{group.series}** {n(p50)} ms at p50 and {n(p99)} ms at p99 ({valid})")
    text = (
        f"In `{sc.name}` ({sc.subscribers} subscriber(s), {sc.rate:g} events/s in all, {sc.payload_bytes}-byte "
        f"payload, runtime {sc.runtime}, loopback), medians of the valid repetitions: " + "; ".join(parts) + "."
    )
    p99 = {g.series: g.median(lambda r: ms(r.end_to_end.p99_us)) for g in SPECTRUM}
    if p99.get("longpoll") and p99.get("websocket"):
        (lo, shorter), (hi, longer) = sorted(((p99["longpoll"], "long polling"), (p99["websocket"], "WebSocket")))
        text += (
            f" The shorter tail here is {shorter}'s: {longer}'s p99 is {n(hi / lo, 2)} times as long. On loopback that is "
            "software cost (server, clients, scheduling on a shared machine), not the network's."
        )
    show(text)
else:
    show("_This run has no loopback scenario measuring both long polling and WebSocket: no spectrum to compare._")""",
    ),
    (
        "md",
        """On loopback a network transit takes microseconds, so the spectra above mostly show *software* cost:
Python, the WSGI server, the HTTP parser, greenlet switches. The loopback *floor* (a bare asyncio TCP server
pushing the same bytes, measured in the same run, where the run has it) is how fast this machine can go at all.

### Transits: why long polling's worst case is three

Put a real distance between client and server (the lab's link emulator delays each direction by a one-way
delay `d`) and the structure of each technique shows (RFC 6202 section 2.2):

- **WebSocket**: the server writes the event on an open connection: **one transit** (`d`), as long as no
  packet is lost (a lost TCP segment waits for its retransmission, on any transport: TCP is under both).
- **Long polling, client waiting**: the held request is answered: **one transit**.
- **Long polling, event arrives while the client is between polls** (it just got an answer, its next request
  is still on the wire): the answer travels back (one), the new request travels out (two), the answer to it
  travels back (three). RFC 6202 (section 2.2, "Maximal Latency") puts it as "over three network transit
  times": three transits plus the server's time to answer. Events that come back to back can pay it, which is
  what the *pairs* scenario (events published in pairs, a few milliseconds apart) provokes; events arriving at
  random pay it when they land in the gap, and the chart after the table shows how often.
- **Interval polling** every `T` seconds waits on average `T/2` for the next poll, plus its round trip.

The table and chart below divide this run's *delivery* latency by the one-way delay: they are in transits.""",
    ),
    (
        "code",
        """TRANSITS = transits(RUN, kind="delivery")
show(markdown_table(
    ("technique", "one-way delay (ms)", "valid reps", "p50", "p99", "max"),
    [(t.technique, f"{t.one_way_ms:g}", f"{t.valid_reps}/{t.reps}", n(t.p50), n(t.p99), n(t.max)) for t in TRANSITS],
) if TRANSITS else "_No scenario of this run has an emulated delay._")

fig, ax = plt.subplots(figsize=(9, 4.8))
drawn = False
for tech in sorted({t.technique for t in TRANSITS}):
    rows = [t for t in TRANSITS if t.technique == tech and t.p50 is not None]
    if not rows:
        continue
    drawn = True
    xs = [t.one_way_ms for t in rows]
    c = color(rows[0].series)
    if rows[0].burst > 1:
        ax.scatter(xs, [t.p99 for t in rows], marker="*", s=180, color=c, label=tech + ": p99", zorder=3)
        continue
    ax.plot(xs, [t.p50 for t in rows], marker="o", color=c, label=tech + ": p50",
            alpha=1.0 if rows[0].rate_per_subscriber == min(t.rate_per_subscriber for t in TRANSITS) else 0.5)
    ax.plot(xs, [t.p99 for t in rows], marker="_", ls=":", color=c, label=tech + ": p99")
ax.axhline(1, ls="--", color="tab:green", label="model: one transit (push)")
ax.axhline(3, ls="--", color="tab:red", label="model: three transits (RFC 6202 long-poll worst case)")
ax.set_xlabel("emulated one-way delay (ms)")
ax.set_ylabel("delivery latency in transits (÷ one-way delay)")
values = [v for t in TRANSITS for v in (t.p50, t.p99) if v]
if values and max(values) / min(values) > 8:  # a log axis only where the range needs one
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
else:
    ax.set_ylim(0, None)
ax.set_title("Delivery latency in network transits")
ax.legend(fontsize=7, ncol=2)
ax.grid(alpha=0.3)
small_print(fig)
plt.tight_layout()
if drawn:
    plt.show()
else:  # no empty panel: the sentence below says why
    plt.close(fig)


def span(rows, attr):
    \"\"\"'a' or 'a to b': the range of one statistic over rows; None when no row has it.\"\"\"
    values = [getattr(t, attr) for t in rows if getattr(t, attr) is not None]
    if not values:
        return None
    lo, hi = n(min(values)), n(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def tail(rows):
    \"\"\"The tail of rows in words: their p99, or their slowest event where too few samples support a p99.\"\"\"
    p99 = span(rows, "p99")
    return f"p99 {p99}" if p99 is not None else f"slowest event {span(rows, 'max')} (too few samples for a p99)"


def sparsest(series, bursts=False):
    \"\"\"The valid rows of one series at its lowest rate per subscriber, with or without bursts.\"\"\"
    rows = [t for t in TRANSITS if t.series == series and (t.burst > 1) == bursts and t.p50 is not None]
    if not rows:
        return []
    rate = min(t.rate_per_subscriber for t in rows)
    return [t for t in rows if t.rate_per_subscriber == rate]


def delays(rows):
    return ", ".join(f"{t.one_way_ms:g}" for t in rows)


said = []
ws, lp = sparsest("websocket"), sparsest("longpoll")
if ws:
    said.append(
        f"WebSocket's median delivery latency is {span(ws, 'p50')} transits at {ws[0].rate_per_subscriber:g} "
        f"events/s per subscriber over one-way delays of {delays(ws)} ms (the model: one)."
    )
if lp:
    said.append(
        f"Long polling's median at {lp[0].rate_per_subscriber:g} events/s is {span(lp, 'p50')} transits and its "
        f"{tail(lp)}: with events this sparse the client was waiting for nearly every one."
    )
busy = [t for t in TRANSITS if t.series == "longpoll" and t.burst == 1 and t.p50 is not None and lp
        and t.rate_per_subscriber > lp[0].rate_per_subscriber]
if busy:
    said.append(
        f"At {busy[-1].rate_per_subscriber:g} events/s over {busy[-1].one_way_ms:g} ms its median is "
        f"{n(busy[-1].p50)} transits and its {tail(busy[-1:])}: events published while a poll travels "
        "wait for the next one (section 4, batching)."
    )
lp_b, ws_b = sparsest("longpoll", bursts=True), sparsest("websocket", bursts=True)
if lp_b:
    said.append(
        f"With events in bursts ({lp_b[0].technique}), long polling's {tail(lp_b)} transits, "
        "against the model's worst case of three"
        + (f"; WebSocket's {tail(ws_b)} in the same scenario" if ws_b else "")
        + ": the second event of each burst waits for a fresh request to cross the link."
    )
polls = [t for t in TRANSITS if t.series.startswith("polling") and t.p50 is not None]
if polls:
    said.append(
        f"Interval polling's median spans {span(polls, 'p50')} transits: governed by its interval, not by the network."
    )
show(" ".join(said) or "_This run has no valid repetition under an emulated delay: no transit to quote. "
     "A profile with the delay sweep (`make bench`) measures them._")""",
    ),
    (
        "md",
        """### One event at a time: how often long polling pays the extra transits

Percentiles hide the mechanism; the whole distribution shows it. Below, for the scenarios of this run with
events arriving at random (Poisson) over an emulated link, the share of events delivered within `x` transits,
one line per repetition. WebSocket's line rises at one transit. Long polling's rises at one transit for the
events that found a poll held at the server, then climbs toward three for those that arrived while the
previous answer and the next poll were on the wire. The Kaazing white paper's headline, latency cut "from
150 ms to 50 ms" at 50 ms one way, is this picture's three transits against one.""",
    ),
    (
        "code",
        """from bench.report.hero import MIN_ONE_WAY_MS, draw_hero, hero_caption

HERO = draw_hero(RUN)
if HERO is not None:
    display(HERO)
    show(hero_caption(RUN))  # names the run, its profile and commit: the figure's small print
else:
    show("_This run has no scenario with random arrivals under a delay of at least "
         f"{MIN_ONE_WAY_MS:g} ms: the `full` profile's `delay-poisson` sweep measures it._")""",
    ),
    (
        "md",
        """## 3. Overhead: bytes on the wire

The relay in front of the server counts TCP payload bytes in each direction (not IP/TCP headers). For long
polling every delivered batch costs a full HTTP response *and* the next request; for WebSocket a delivered
event costs its frame. RFC 6455's definitions: 2 bytes of header up to 125 bytes of payload, 4 up to 64 KiB,
10 beyond; frames from client to server add a 4-byte mask. The WebSocket handshake is paid once per
connection and reported apart.""",
    ),
    (
        "code",
        """from wsproto.frame_protocol import FrameProtocol

print("WebSocket frame header sizes, computed by wsproto itself (server frame, unmasked / client frame, masked):")
for size in (16, 125, 126, 1024, 65535, 65536, 1 << 20):
    server = len(FrameProtocol(client=False, extensions=[]).send_data(b"x" * size)) - size
    client = len(FrameProtocol(client=True, extensions=[]).send_data(b"x" * size)) - size
    print(f"  payload {size:>8} B: server->client {server:2d} B, client->server {client:2d} B")

COST = cost_rows(RUN)
show(markdown_table(
    ("scenario", "transport", "payload (B)", "down B/event", "up B/event", "overhead B/event", "req/event",
     "handshake down/up (B)", "valid reps"),
    [
        (c.scenario + (" (compressed)" if c.compression else "") + (" [LOSS]" if c.lossy else ""), c.series, c.payload_bytes, n(c.down), n(c.up), n(c.overhead),
         n(c.requests_per_event), f"{n(c.handshake_down)}/{n(c.handshake_up)}", f"{c.valid_reps}/{c.reps}")
        for c in COST
    ],
) if COST else "_No loopback scenario of this run delivered events._")""",
    ),
    (
        "md",
        """### The HTTP headers of one real long poll

Below, one request and one response of the lab, captured at the socket by the benchmark (`capture.json` of the
run, read with `bench.report.load_capture`), dissected line by line. Browsers send more (cookies,
`User-Agent`, `Accept-Language`...): the Kaazing paper's example, below, counts 871 bytes of headers per poll,
request and response together.""",
    ),
    (
        "code",
        """CAPTURE = load_capture(RUN_DIR)
if CAPTURE is None:
    print("this run has no capture.json")
else:
    for name, message in CAPTURE.messages().items():
        print(f"--- {name}: {message.size} bytes ({message.head_size} of head, {message.body_size} of body)")
        for size, line in message.lines():
            print(f"  {size:4d} B | {line}")
        if message.body:
            print(f"  {message.body_size:4d} B | body: {message.body[:100]}{'...' if len(message.body) > 100 else ''}")
    frame = CAPTURE.websocket_frame
    print(f"--- websocket_frame: {frame.size} bytes ({frame.header_bytes} of header: {frame.header_hex})")
    print(f"       payload: {frame.payload[:100]}{'...' if len(frame.payload) > 100 else ''}")
    request, response = CAPTURE.longpoll_request, CAPTURE.longpoll_response
    show(
        f"One long poll costs **{request.head_size + response.head_size} bytes of HTTP heads** here "
        f"({request.head_size} in the request, {response.head_size} in the response) around a "
        f"{response.body_size}-byte JSON body. The same event reached the WebSocket client as a {frame.size}-byte "
        f"frame, {frame.header_bytes} of them header; the Upgrade request and its answer "
        f"({CAPTURE.websocket_request.size} + {CAPTURE.websocket_response.size} bytes) are paid once per connection."
    )
    agent = next((line.split(":", 1)[1].strip() for _, line in request.lines() if line.lower().startswith("user-agent:")),
                 "no User-Agent")
    lean = [c for c in COST if c.series == "longpoll" and c.requests_per_event and c.up is not None]
    if lean:
        per_request = lean[0].up / lean[0].requests_per_event
        show(
            f"That request is the one a person's client sends (`{agent}`). The benchmark's own clients send less: "
            f"in `{lean[0].scenario}` their requests averaged {n(per_request)} bytes up each (a bare `GET` with "
            "`Host` and nothing else), and a browser sends several times more (section 3's decomposition below)."
        )""",
    ),
    (
        "md",
        """### The Kaazing table, then and now

The 2010 white paper *HTML5 Web Sockets: A Quantum Leap in Scalability for the Web* (Kaazing) compared
polling with WebSocket for clients receiving one message per second. Its inputs, which are the paper's
definitions and not measurements of this lab: 871 bytes of HTTP headers per poll versus a 2-byte frame
header; Mbps there means 2^20 bits per second.

Below: the paper's table recomputed from those inputs, beside the figures it printed (to check we read it
right), then the same table from the bytes per event *this run measured*, both directions, with the lab's
real headers and JSON envelopes. Both are `bench.report`'s `paper_table` and `measured_table`, the tables of
this run's `REPORT.md`.""",
    ),
    (
        "code",
        """CLIENTS = [f"{c:,} clients" for c in PAPER_CLIENTS]
show("**From the paper's own inputs** (Mbps recomputed, the paper's printed figure in brackets):")
show(markdown_table(
    ("transport", "bytes per message", *CLIENTS),
    [(row.transport, f"{row.bytes_per_message:g}", *(f"{v:.4g} ({p})" for v, p in zip(row.mbps, row.printed)))
     for row in paper_table()],
))
KAAZING = measured_table(RUN)
show("**From this run's measured bytes per delivered event** (up + down, the event itself included; overhead "
     "= wire bytes minus payload bytes), each from the scenario closest to one event per second per subscriber:")
show(markdown_table(
    ("transport", "bytes per event", "overhead", *CLIENTS, "measured in"),
    [(row.transport, n(row.bytes_per_event), n(row.overhead_bytes), *(n(v, 4) for v in row.mbps), row.source)
     for row in KAAZING],
) if KAAZING else "_No polling, long-poll or WebSocket result with bytes per event in this run._")""",
    ),
    (
        "code",
        """by_transport = {row.transport: row for row in KAAZING}
BATCHING = longpoll_batching(RUN)
measured_batching = [b for b in BATCHING if b.requests_per_event is not None]
said = ["Two things separate the lab's table from the paper's."]
ws = by_transport.get("websocket")
if ws:
    said.append(
        f"First, the lab counts **everything** on the wire per delivered event, the event itself included: "
        f"WebSocket's {n(ws.bytes_per_event)} bytes per event are the event's JSON envelope (`channel`, `seq`, "
        f"`ts`) around its {ws.payload_bytes}-byte payload plus the frame header, where the paper counted only "
        "the overhead (headers and framing)."
    )
said.append("Second, HTTP's cost per event depends on **how many events each request carries**:")
bullets = []
for group in by_series(r for r in RUN.results if r.scenario.transport == "polling" and r.scenario.link.is_loopback):
    per_request = group.median(lambda r: r.num("http", "requests_per_event"))
    if not per_request:
        continue
    per_poll = 1 / per_request
    sc = group.scenario
    text = (
        f"interval polling every {sc.poll_interval_s:g} s at {sc.rate_per_subscriber:g} events/s (`{sc.name}`) "
        f"brings back {n(per_poll)} events per poll and costs {n(group.median(bytes_per_event))} bytes per event"
    )
    if per_poll > 1:
        text += "; its headers are shared among the events, and the price is latency (half the interval on average)"
    else:
        text += "; there are more polls than events: every empty poll still pays headers both ways, the paper's case"
    bullets.append(text + ";")
if measured_batching:
    sparse = min(measured_batching, key=lambda b: (b.rate_per_subscriber, b.one_way_ms))
    batched = min(measured_batching, key=lambda b: b.requests_per_event)
    text = (
        "long polling answers as soon as there is news, so while events are sparse it pays about one request and "
        f"one response per event ({n(sparse.requests_per_event)} requests per event in `{sparse.scenario}`, "
        f"{sparse.rate_per_subscriber:g} events/s per subscriber)"
    )
    if batched.requests_per_event < sparse.requests_per_event:
        where = f"over a {batched.one_way_ms:g} ms one-way link" if batched.one_way_ms else "on loopback"
        text += (
            f"; once events arrive faster than a round trip it batches them ({n(batched.requests_per_event)} "
            f"requests per event, {n(batched.events_per_response)} events per response, in `{batched.scenario}`: "
            f"{batched.rate_per_subscriber:g} events/s per subscriber {where})"
        )
    bullets.append(text + ";")
ws_cost = [c for c in COST if c.series == "websocket" and c.handshake_per_connection is not None]
bullets.append(
    "WebSocket pays its frame header (by RFC 6455, 2 bytes up to 125 bytes of payload) on top of the event, and "
    "nothing per request: there are none after the handshake"
    + (f" ({n(ws_cost[0].handshake_per_connection)} bytes both ways per connection in `{ws_cost[0].scenario}`, "
       "reported apart)." if ws_cost else ".")
)
show(" ".join(said) + "".join(f"\\n- {b}" for b in bullets))""",
    ),
    (
        "md",
        """### What one event's bytes carry

The same measured bytes per event, split by what they carry: the payload, the lab's JSON envelope around it
(`channel`, `seq`, `ts`: the same bytes on every transport), the HTTP response head, the framing (WebSocket's
frame header, SSE's `id:`/`data:` lines, the long-poll answer's JSON wrapper) and the bytes sent up (a long
poll's request; nothing per event on a WebSocket or an SSE stream). Rows marked *browser headers* come from a
scenario whose clients send the request headers Chromium sends with `fetch`, `EventSource` and `new WebSocket`
(`bench/contract/browser_headers.json`, recorded from a real Chromium).""",
    ),
    (
        "code",
        """PARTS = byte_parts(RUN)
if PARTS:
    fig, ax = plt.subplots(figsize=(11, 1.4 + 0.45 * len(PARTS)))
    left = [0.0] * len(PARTS)
    for attr, label, c in (("payload", "payload", "#4d4d4d"), ("envelope", "JSON envelope", "#9e9e9e"),
                           ("response_head", "HTTP response head", "#e6550d"), ("framing", "framing", "#fdae6b"),
                           ("up", "up: HTTP request", "#3182bd")):
        widths = [max(0.0, getattr(p, attr)) for p in PARTS]
        ax.barh(range(len(PARTS)), widths, left=left, color=c, label=label)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(PARTS)), [p.label for p in PARTS])
    ax.invert_yaxis()
    ax.set_xlabel("bytes per delivered event, up + down")
    ax.legend(fontsize=8, loc="lower right")
    small_print(fig)
    plt.tight_layout()
    plt.show()
    show(markdown_table(
        ("transport", "scenario", "payload", "envelope", "response head", "framing", "up", "total", "req/event",
         "handshake per connection"),
        [(p.label, p.scenario, n(p.payload), n(p.envelope), n(p.response_head), n(p.framing), n(p.up), n(p.total),
          n(p.requests_per_event) if p.requests_per_event else "", n(p.handshake)) for p in PARTS],
    ))
    said = []
    ws = next((p for p in PARTS if p.series == "websocket" and not p.browser), None)
    if ws:
        said.append(
            f"WebSocket's overhead per event, {n(ws.total - ws.payload)} bytes here beside the Kaazing paper's 2, is "
            f"mostly the lab's envelope ({n(ws.envelope)} bytes); its frame header is {n(ws.framing)} bytes."
        )
    for series in ("longpoll", "sse", "websocket"):
        bare = next((p for p in PARTS if p.series == series and not p.browser), None)
        browser = next((p for p in PARTS if p.series == series and p.browser), None)
        if bare and browser:
            text = (f"With a browser's request headers, {series} costs {n(browser.total)} bytes per event against "
                    f"{n(bare.total)} with the bare client ({n(browser.up)} against {n(bare.up)} up)")
            if browser.handshake is not None and bare.handshake is not None:
                text += (f"; its handshake, paid once per connection, {n(browser.handshake)} bytes against "
                         f"{n(bare.handshake)}")
            said.append(text + ".")
    if not any(p.browser for p in PARTS):
        said.append("This run has no scenario with a browser's request headers (`request_headers = 'browser'`, "
                    "in the `quick` and `full` profiles).")
    show(" ".join(said))
else:
    show("_This run has no payload sweep with WebSocket to size the event's JSON from: no decomposition._")""",
    ),
    (
        "md",
        """## 4. Cost: CPU, memory, batching

Server CPU per delivered event is the server process's CPU time (all workers) during the measurement window
divided by events delivered. RSS per connection comes from the idle scenarios: open N connections, publish
nothing, compare memory. Every repetition is a point; lines join the medians of the valid ones, and an invalid
repetition (clients saturated or publisher behind) is a hollow point: its latency is the clients', not the
server's.""",
    ),
    (
        "code",
        """SUBSCRIBER_SWEEPS = [s for s in find_sweeps(RUN.results) if s.axis == "subscribers"]
METRICS = (
    ("server CPU per delivered event (µs)", lambda r: r.cpu_us_per_event),
    ("end-to-end p99 (ms)", lambda r: ms(r.end_to_end.p99_us)),
)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
if SUBSCRIBER_SWEEPS:
    sweep = SUBSCRIBER_SWEEPS[0]
    groups = by_series(sweep.results)
    for ax, (label, get) in zip(axes, METRICS):
        for series in sorted({g.series for g in groups}):
            line = sorted((g for g in groups if g.series == series), key=lambda g: g.scenario.subscribers)
            for g in line:
                for r in g.results:
                    if get(r) is not None:
                        ax.scatter(g.scenario.subscribers, get(r), s=30, color=color(series) if r.valid else "none",
                                   edgecolors=color(series), alpha=0.6)
            points = [(g.scenario.subscribers, g.median(get)) for g in line if g.median(get) is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", color=color(series), label=series)
        ax.scatter([], [], s=30, color="none", edgecolors="gray", label="invalid repetition (hollow)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers on log axes: 10, 100, 1000, not 10^1, 10^2
            axis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"subscribers ({sweep.label})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_title("Cost per event as subscribers grow")
    axes[1].set_title("Tail latency as subscribers grow")
else:  # no subscriber sweep in this run: the transports of the spectrum scenario, side by side
    for ax, (label, get) in zip(axes, METRICS):
        for i, group in enumerate(SPECTRUM):
            for r in group.results:
                if get(r) is not None:
                    ax.bar(i, get(r), color=color(group.series) if r.valid else "none", edgecolor=color(group.series),
                           alpha=0.6)
        ax.set_xticks(range(len(SPECTRUM)), [g.series for g in SPECTRUM])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    if SPECTRUM:
        axes[0].set_title(f"Cost per event in {SPECTRUM[0].name}")
        axes[1].set_title(f"Tail latency in {SPECTRUM[0].name}")
small_print(fig)
plt.tight_layout()
plt.show()

said = []
cpu = {g.series: g.median(lambda r: r.cpu_us_per_event) for g in SPECTRUM}
if cpu.get("longpoll") and cpu.get("websocket"):
    said.append(
        f"In `{SPECTRUM[0].name}` the server spent {n(cpu['longpoll'])} µs of CPU per delivered event on long "
        f"polling and {n(cpu['websocket'])} µs on WebSocket: {n(cpu['longpoll'] / cpu['websocket'], 2)} times as much"
        + (f" (the bare floor: {n(cpu['floor'])} µs)." if cpu.get("floor") else ".")
    )
if SUBSCRIBER_SWEEPS:
    groups = by_series(SUBSCRIBER_SWEEPS[0].results)
    counts = sorted({g.scenario.subscribers for g in groups})
    measured = [c for c in counts if any(g.valid for g in groups if g.scenario.subscribers == c)]
    if measured:
        said.append(
            f"At {measured[-1]} subscribers, the most with valid repetitions in this sweep: "
            + "; ".join(
                f"{g.series} {n(g.median(lambda r: r.num('server', 'cpu_us_per_event')))} µs per event, "
                f"p99 {n(g.median(lambda r: ms(r.end_to_end.p99_us)))} ms"
                for g in groups
                if g.scenario.subscribers == measured[-1] and g.valid
            )
            + "."
        )
    for c in counts:
        invalid = [g.series for g in groups if g.scenario.subscribers == c and not g.valid]
        if invalid:
            said.append(
                f"At {c} subscribers every repetition of {' and '.join(invalid)} is invalid (clients saturated or "
                "publisher behind): those hollow points measure the clients or the publisher, not the server, and no "
                "number is quoted."
            )
if said:
    show(" ".join(said))""",
    ),
    (
        "md",
        """Long polling's requests per event, scenario by scenario: one request per event while events are sparse,
fewer once events pile up during a round trip (a response then carries several). Then what idle connections
cost: long polling re-polls at every hold timeout, WebSocket sends nothing unless pings are on.""",
    ),
    (
        "code",
        """show(markdown_table(
    ("scenario", "subscribers", "events/s per subscriber", "one-way delay (ms)", "req/event", "events/response",
     "valid reps"),
    [(b.scenario, b.subscribers, f"{b.rate_per_subscriber:g}", f"{b.one_way_ms:g}", n(b.requests_per_event),
      n(b.events_per_response), f"{b.valid_reps}/{b.reps}") for b in BATCHING],
) if BATCHING else "_No long-poll scenario of this run delivered events._")
IDLE = idle_rows(RUN)
show(markdown_table(
    ("idle scenario", "transport", "connections", "RSS per connection (KiB)", "bytes per connection per minute",
     "valid reps"),
    [(i.scenario, i.series, i.connections,
      n(None if i.rss_per_connection_bytes is None else i.rss_per_connection_bytes / 1024),
      n(i.bytes_per_connection_per_min), f"{i.valid_reps}/{i.reps}") for i in IDLE],
) if IDLE else "_No idle scenario in this run._")""",
    ),
    (
        "md",
        """### Reading those tables

Five things the numbers above say that are easy to misread, each computed below from this run: long polling
*batches under load* (RFC 6202, section 2.2, calls it graceful degradation: when the server or the client falls
behind, events queue and the next answer carries them all, trading latency for fewer requests); a count of
requests per event a little under one at low event counts is a fencepost, not batching; interval polling's
real interval is the longer of its interval and its round trip; CPU per delivered event falls as one channel's
subscribers grow; and an idle WebSocket holds more memory than an idle long poll, while an idle long poll
still sends bytes every hold.""",
    ),
    (
        "code",
        """from bench.report.kaazing import BATCHED_BELOW

said = []
by_name = {}
for r in RUN.results:
    by_name.setdefault(r.scenario.name, []).append(r)
batched = [b for b in BATCHING if b.requests_per_event is not None and b.requests_per_event < BATCHED_BELOW]
if batched:
    said.append(
        "**Batching under load.** "
        + "; ".join(
            f"`{b.scenario}` ({b.subscribers} subscribers, {b.rate_per_subscriber:g} events/s each"
            + (f", {b.one_way_ms:g} ms one way" if b.one_way_ms else ", loopback")
            + f"): {n(b.requests_per_event, 2)} requests per event, {n(b.events_per_response, 2)} events per answer"
            for b in sorted(batched, key=lambda b: b.requests_per_event)[:4]
        )
        + ". The answers carry what piled up while the previous one and the next poll were on the way, or while "
        "the server was busy: fewer requests, each event later."
    )
near = [b for b in BATCHING if b.requests_per_event is not None and BATCHED_BELOW <= b.requests_per_event < 1]
if near:
    b = min(near, key=lambda b: b.requests_per_event)
    sc = by_name[b.scenario][0].scenario
    events = b.rate_per_subscriber * sc.duration_s
    said.append(
        f"**A fencepost, not batching.** `{b.scenario}` shows {n(b.requests_per_event, 2)} requests per event, "
        f"with about {events:g} events per subscriber in its {sc.duration_s:g} s window: requests and events are "
        "counted over the same window, and at its edges one poll can fall outside it while its event falls inside "
        f"(or the reverse), so E events can show E - 1 requests ({n((events - 1) / events, 2) if events > 1 else '-'} "
        f"for E = {events:g}). Still one request per event."
    )
polling = [r for r in RUN.results if r.scenario.transport == "polling" and r.valid and r.num("http", "requests")]
rows = []
short = []
for name in sorted({r.scenario.name for r in polling}, key=lambda k: (by_name[k][0].scenario.poll_interval_s or 0,
                                                                   by_name[k][0].scenario.link.one_way_ms)):
    group = [r for r in polling if r.scenario.name == name]
    sc = group[0].scenario
    per_sub = float(np.median([r.num("http", "requests") / r.scenario.subscribers for r in group]))
    rtt = 2 * sc.link.one_way_ms / 1000
    beat = sc.poll_interval_s * (int(rtt // sc.poll_interval_s) + 1)  # the first beat after the answer is back
    rows.append((name, f"{sc.poll_interval_s:g}", f"{1000 * rtt:g}", n(max(sc.poll_interval_s, rtt), 3), n(beat, 3),
                 n(sc.duration_s / per_sub, 3), n(per_sub, 3), n(sc.duration_s / beat, 3)))
    if sc.duration_s / beat < 10:
        short.append(name)
if rows:
    show("**Interval polling's effective interval** is at least the longer of its interval and its round trip: a "
         "poll is not sent before the previous answer is back. The lab's client keeps a fixed beat (its phase, then "
         "every interval), so an answer that comes back after a beat waits for the next one: the interval times "
         "(1 + round trip // interval). Measured: window / polls per subscriber.")
    show(markdown_table(("scenario", "interval (s)", "round trip (ms)", "max of both (s)", "next beat (s)",
                         "measured (s)", "polls per subscriber", "window / next beat"), rows))
    if short:
        show(f"In {', '.join(f'`{k}`' for k in short)} the window holds fewer than ten beats, and a subscriber's count "
             "depends on its phase (a window of W seconds holds W / T or W / T + 1 polls): the same fencepost as long "
             "polling's, so there the measured interval reads shorter than the beat.")
SUBS = [s for s in find_sweeps(RUN.results) if s.axis == "subscribers" and not s.split]
if SUBS:
    groups = [g for g in by_series(SUBS[0].results) if g.series in ("longpoll", "websocket")]
    parts = []
    for series in ("websocket", "longpoll"):
        line = sorted((g for g in groups if g.series == series and g.median(lambda r: r.cpu_us_per_event)),
                      key=lambda g: g.scenario.subscribers)
        if len(line) >= 2:
            lo, hi = line[0], line[-1]
            parts.append(
                f"{series} {n(lo.median(lambda r: r.cpu_us_per_event))} µs at {lo.scenario.subscribers} subscribers, "
                f"{n(hi.median(lambda r: r.cpu_us_per_event))} µs at {hi.scenario.subscribers}"
            )
    if parts:
        said.append(
            "**CPU per event falls with fan-out**: " + "; ".join(parts) + ". A publish costs its HTTP request, its "
            "serialization and the bus once, whatever the number of subscribers; divided by more deliveries, each "
            "delivered event carries less of it (the lab serializes an event once for all its subscribers)."
        )
idle = {}
for i in IDLE:
    if i.rss_per_connection_bytes is not None:
        idle.setdefault(i.series, []).append(i)
if idle.get("websocket") and idle.get("longpoll"):
    def kib(rows):
        values = [r.rss_per_connection_bytes / 1024 for r in rows]
        lo, hi = n(min(values), 2), n(max(values), 2)
        return lo if lo == hi else f"{lo} to {hi}"

    said.append(
        f"**Idle memory**: an idle WebSocket held {kib(idle['websocket'])} KiB of server memory per connection, an "
        f"idle long poll {kib(idle['longpoll'])} KiB: the WebSocket keeps its connection's reader, buffers and "
        "protocol state for its whole life, a held poll only a waiting request."
    )
lp_idle = [i for i in IDLE if i.series == "longpoll" and i.bytes_per_connection_per_min]
if lp_idle:
    i = lp_idle[0]
    hold = by_name[i.scenario][0].scenario.poll_timeout_s
    said.append(
        f"**Idle long polling is not free on the wire**: {n(i.bytes_per_connection_per_min)} bytes per connection per "
        f"minute in `{i.scenario}`, one empty answer and a new request every {hold:g} s hold; an idle WebSocket "
        "sends nothing unless pings are on."
    )
show("\\n\\n".join(said) if said else "_This run has none of the scenarios these paragraphs read._")""",
    ),
    (
        "md",
        """### The runtime under the transport (and Flask-SocketIO's `async_mode`)

The same server code ran under three runtimes: Werkzeug's threads, gunicorn's `gthread` (a thread per
request or connection, simple-websocket adding a reader thread per WebSocket) and gunicorn with `gevent`
(greenlets: one small stack per held poll or open socket). Flask-SocketIO's `async_mode` is the same choice
(`threading`, `eventlet`, `gevent`): below, what it costs in this run.""",
    ),
    (
        "code",
        """RUNTIMES = [s for s in find_sweeps(RUN.results) if s.axis == "runtime"]
if RUNTIMES:
    groups = by_series(RUNTIMES[0].results)
    show(markdown_table(
        ("runtime", "transport", "CPU per event (µs)", "end-to-end p99 (ms)", "valid reps"),
        [(g.scenario.runtime, g.series, n(g.median(lambda r: r.cpu_us_per_event)),
          n(g.median(lambda r: ms(r.end_to_end.p99_us))), f"{len(g.valid)}/{len(g.results)}")
         for g in sorted(groups, key=lambda g: (g.scenario.runtime, g.series))],
    ))
    sc = RUNTIMES[0].results[0].scenario
    show(
        f"At {sc.subscribers} subscribers and {sc.rate:g} events/s each runtime is within reach; what separates "
        "them is how connections are held. A thread per held poll or per WebSocket (two with simple-websocket's "
        "reader) caps a threaded server at its thread count (`threads`: the gthread runs here used "
        f"{sc.threads}), where gevent's greenlets hold thousands: that is what Flask-SocketIO's `async_mode` picks "
        "(`threading` runs on threads, `gevent` and `eventlet` on greenlets), and why the lab's default is gevent."
    )
else:
    show("_This run has no runtime sweep: the `quick` and `full` profiles have one._")""",
    ),
    (
        "md",
        """## 5. What Flask-SocketIO does with these two transports

The course's stack for "push" in Flask is usually Flask-SocketIO. It does not pick long polling *or*
WebSocket: it speaks **Socket.IO** (v5) on top of **Engine.IO** (v4), and Engine.IO uses both. A session starts
over long polling (plain HTTP, which passes every proxy), then *upgrades* to a WebSocket when one gets through,
and the session (its `sid`) moves from one transport to the other. The lab measured Flask-SocketIO beside its
own server (docs/peers.md); this section shows what its protocol puts on the wire, from a real session the
benchmark captured through the same relay that counts the bytes (`socketio-capture.json` of the peers run:
the fleet's Socket.IO client in the official client's default mode, against the Flask-SocketIO peer, read with
`bench.report.load_socketio_capture`), and reads the peers run's resume test.""",
    ),
    (
        "code",
        """import json

from bench.report import (
    load_socketio_capture,
    peer_points,
    peer_ratios,
    peer_results,
    peer_resume_rows,
    resume_sentence,
)

# The peers run: LAB_PEERS_RUN if set, else results/peers, else the main run if it measured peers.
if os.environ.get("LAB_PEERS_RUN"):
    PEERS_DIR = given("LAB_PEERS_RUN")
    if not (PEERS_DIR / "meta.json").exists():
        raise FileNotFoundError(f"LAB_PEERS_RUN={PEERS_DIR} is not a run directory (no meta.json)")
elif (ROOT / "results" / "peers" / "meta.json").exists():
    PEERS_DIR = ROOT / "results" / "peers"
elif peer_results(RUN):
    PEERS_DIR = RUN_DIR
else:
    PEERS_DIR = None
if PEERS_DIR is None:
    PEERS = None
elif PEERS_DIR.resolve() == RUN_DIR.resolve():
    PEERS = RUN
else:
    PEERS = load_run(PEERS_DIR)
if PEERS is not None and not peer_results(PEERS):
    PEERS = None  # a run without a single peer result has nothing to say here
SIO_DIR = next((d for d in (PEERS_DIR, RUN_DIR) if d is not None and (d / "socketio-capture.json").exists()), None)
SIO = load_socketio_capture(SIO_DIR) if SIO_DIR is not None else None
LAB_CAPTURE = load_capture(SIO_DIR) if SIO_DIR is not None else None
if LAB_CAPTURE is None:
    LAB_CAPTURE = load_capture(RUN_DIR)
NO_PEERS = ("_No peers run is available: set `LAB_PEERS_RUN` to a run of the `peers` profile "
            "(`python -m bench run --profile peers`), or commit one as `results/peers`._")

if PEERS is not None:
    print(f"peers run: {PEERS_DIR.resolve().name}, profile {PEERS.meta.profile}")
    print(PEERS.meta.provenance)
else:
    show(NO_PEERS)
if SIO is not None:
    print(f"Socket.IO capture: {SIO_DIR.resolve().name}/socketio-capture.json, captured {SIO.captured_utc}"
          + (", added to the run after it ended" if SIO.written_after_run else ""))
    print("peer:", SIO.command)
    print("packages:", ", ".join(f"{k} {v}" for k, v in SIO.versions.items()))
    print("note:", SIO.note)""",
    ),
    (
        "code",
        """SEPARATOR = "\\x1e"  # Engine.IO's separator of packets in one long-polling body
ARROW = {"up": "client → server", "down": "server → client"}


def wire_text(step, limit=110):
    \"\"\"A step's bytes as a table cell: an HTTP message's start line and body, a frame's text.\"\"\"
    if step.layer == "http":
        body = step.http.body
        text = step.start_line + (f" ⏎⏎ {body}" if body else "")
    else:
        text = step.text if step.opcode == "text" else f"({step.opcode}: {step.text})"
    text = text.replace(SEPARATOR, "\\\\x1e")
    return "`" + (text if len(text) <= limit else text[: limit - 1] + "…") + "`"


if SIO is None:
    show("_This run has no `socketio-capture.json` (a run whose profile has a Flask-SocketIO scenario writes one; "
         "`python -m bench.run.capture socketio RUN_DIR` adds one to a finished run)._")
else:
    show(markdown_table(
        ("#", "connection", "direction", "bytes", "the bytes (HTTP: start line ⏎⏎ body)", "what it is"),
        [(i, s.connection, ARROW[s.direction], s.length, wire_text(s), s.what) for i, s in enumerate(SIO.steps, 1)],
    ))
    opened = next(s for s in SIO.steps if any(p.startswith("0{") for p in s.packets))
    upgrade = next(s for s in SIO.steps if s.layer == "http" and s.direction == "up" and "transport=websocket" in s.start_line)
    for title, step in (("the Engine.IO open (long polling)", opened), ("the WebSocket Upgrade", upgrade)):
        print(f"--- {title}: {step.length} bytes, connection {step.connection}, {ARROW[step.direction]}")
        print(step.text.replace("\\r\\n", "\\n"))
        print()""",
    ),
    (
        "code",
        """if SIO is not None:
    o = SIO.open
    steps = list(SIO.steps)
    upgraded_at = steps.index(SIO.first("5"))
    before = steps[: upgraded_at + 1]
    said = [
        f"**The handshake.** The first `GET` carries no session; the answer is Engine.IO's OPEN packet (`0` and a "
        f"JSON object): the session id `sid` (`{o['sid']}`), the transports it may upgrade to "
        f"({', '.join(o['upgrades'])}), `pingInterval` {o['pingInterval']:,} ms and `pingTimeout` "
        f"{o['pingTimeout']:,} ms. The client then `POST`s `40` (Engine.IO MESSAGE `4`, Socket.IO CONNECT `0`) "
        "on a second keep-alive connection, and the next `GET` brings the connect ack `40{\\"sid\\":...}`: the "
        "Socket.IO session's own id, beside the Engine.IO one.",
        f"**The upgrade.** The client opens a WebSocket on a new connection, naming the same `sid` in its URL, and "
        "sends `2probe` (a PING with the data `probe`); the server answers `3probe`; the client sends `5` "
        "(UPGRADE) and from then on the session lives on the WebSocket and polling stops. Up to that `5` the "
        f"session took {len(before)} messages on {len({s.connection for s in before})} TCP connections and "
        f"{sum(s.length for s in before):,} bytes both ways, before a single event.",
    ]
    event = SIO.event
    data = json.dumps(dict(SIO.payload), separators=(",", ":"))
    text = (
        f"**The event.** The payment arrives as one text frame of {event.length} bytes: a {event.header_bytes}-byte "
        f"header and `{event.text}`. `4` is Engine.IO's MESSAGE, `2` Socket.IO's EVENT, then a JSON array of the "
        f"event's name (`\\"e\\"`, the peer's) and its data: {len(event.text) - len(data)} bytes of envelope around "
        f"the {len(data)}-byte payload."
    )
    if LAB_CAPTURE is not None and json.loads(LAB_CAPTURE.websocket_frame.payload).get("data") == dict(SIO.payload):
        lab = LAB_CAPTURE.websocket_frame
        text += (
            f" The lab's WebSocket frame for the same payment (`capture.json`) is {lab.size} bytes, its envelope "
            f"{len(lab.payload) - len(data)} bytes: `{lab.payload}`. The lab's envelope is longer because it "
            "carries the event's cursor (`seq`) and publish time (`ts`); Socket.IO's carries neither, so a client "
            "has nothing to resume from."
        )
    said.append(text)
    show("\\n\\n".join(said))""",
    ),
    (
        "md",
        """**Heartbeats.** Engine.IO's server sends PING (`2`) every `pingInterval` and expects PONG (`3`) within
`pingTimeout`, else it closes the session; a client that hears no PING for that long gives up too. Socket.IO's
default `pingInterval` is 25 s (python-engineio's and the JavaScript server's), so an idle Socket.IO connection is never
silent for long: a heartbeat is part of the protocol, where the lab's WebSocket pings only when told to
(`--ws-ping-interval`). The benchmark's capture runs the peer with a shorter interval, so that a heartbeat
comes soon after the event, and its file says so.""",
    ),
    (
        "code",
        """if SIO is not None:
    steps = list(SIO.steps)
    ping = next(i for i in range(steps.index(SIO.event), len(steps)) if steps[i].packets == ["2"])
    pong = next(i for i in range(ping, len(steps)) if steps[i].packets == ["3"])
    show(f"In this capture the peer ran with `pingInterval` {SIO.open['pingInterval']:,} ms and `pingTimeout` "
         f"{SIO.open['pingTimeout']:,} ms; the heartbeat after the event is steps {ping + 1} (PING, "
         f"{steps[ping].length} bytes) and {pong + 1} (PONG, {steps[pong].length} bytes: the client's frames carry "
         f"a mask). The file's note: _{SIO.note}_")""",
    ),
    (
        "md",
        """**Why long polling needs sticky sessions.** The `sid` names a session that lives in the memory of *one* server
process: its queue of packets, its pending `GET`, its heartbeat. With several workers behind a load balancer,
a polling request that reaches another worker finds no such session: python-engineio answers `400` ("Invalid
session"; the JavaScript server says "Session ID unknown"), and the client starts over. So every request of a
session must reach the worker that opened it: sticky sessions (by cookie or client address). Flask-SocketIO's
message queue (Redis) lets any worker *emit*; it does not share sessions. The lab's long poll keeps nothing
between requests: its cursor is in the URL (`?after=<seq>`), so any worker connected to the shared bus can
answer any poll (tests/server/test_bus_redis.py runs two gunicorn workers over Redis and loses nothing).

**What is lost on reconnect.** A Socket.IO reconnect is a new session with a new `sid`; python-socketio has no
connection-state recovery, and the event frame has no cursor to ask from. Whatever was emitted while the client
was away went to the old session and is gone. The lab, Nchan and the `websockets` peer resume from a cursor (the
lab's `after` and `Last-Event-ID`; Nchan's own headers). The peers run's resume test drops every subscriber's
connection at a fixed interval and counts what arrived:""",
    ),
    (
        "code",
        """RESUME = peer_resume_rows(PEERS) if PEERS is not None else []
if RESUME:
    show(markdown_table(
        ("server", "transport", "subscribers x rate, dropped every", "reps", "delivered/expected", "missing",
         "duplicate", "out of order", "reconnects"),
        [(row.variant + row.group.marks, row.series,
          f"{row.scenario.subscribers:,} x {row.scenario.rate:g} ev/s, {row.scenario.drop_every_s:g} s",
          len(row.results), f"{row.total('delivered'):,}/{row.total('expected'):,}", f"{row.total('missing'):,}",
          f"{row.total('duplicate'):,}", f"{row.total('out_of_order'):,}", f"{row.total('reconnects'):,}")
         for row in RESUME],
    ))
    show(resume_sentence(RESUME) + " Counted over every repetition, valid or not.")
elif PEERS is not None:
    show("_This peers run has no resume test (no scenario drops its connections, `drop_every_s`): the `peers` "
         "profile's `peers-resume` sweep measures it._")
else:
    show(NO_PEERS)""",
    ),
    (
        "md",
        """## 6. Server-Sent Events

Server-Sent Events (SSE, the WHATWG HTML standard's `EventSource`) is the third way, and the lab serves it
too (`GET /channels/<c>/sse?after=<seq>`, docs/protocol.md). It is plain HTTP, like long polling, but the
answer never ends: a `text/event-stream` into which the server writes each event as it is published. Its
format, from docs/protocol.md (the lab's event objects as `data`, their `seq` as `id`):

```
HTTP/1.1 200 OK
Content-Type: text/event-stream; charset=utf-8
Cache-Control: no-store
X-Accel-Buffering: no

retry: 1000

id: 41
data: {"channel":"payments","seq":41,"ts":1795800000123456789,"data":{"amount":10}}

id: 42
data: {"channel":"payments","seq":42,"ts":1795800000223456789,"data":{"amount":12}}

: heartbeat

```

- **`Last-Event-ID` is the lab's cursor.** Each event's `id` is its `seq`. When the stream breaks, the
  browser's `EventSource` reconnects *by itself* (after `retry` milliseconds) and sends the last `id` it saw
  in a `Last-Event-ID` header; the lab resumes after it, exactly as it does for a long poll's `after` or a
  WebSocket's. The reconnect and the cursor cost the page no code: it is the one transport where resuming is
  the browser's job. Nchan's EventSource resumes the same way, from its own ids.
- **One way, text only.** The server talks, the client listens: a client that publishes does it with a
  separate `POST`. The stream is UTF-8 text, line-oriented (a payload's line breaks become several `data:`
  lines; a CR cannot be carried). Binary data needs an encoding (base64), where a WebSocket has binary frames.
- **Plain HTTP.** No Upgrade, so it passes where long polling passes, provided the proxy does not buffer
  the answer (`X-Accel-Buffering: no` asks nginx not to); an idle stream needs a comment (`: heartbeat`) now
  and then so that proxies do not close it. Over HTTP/1.1 each stream holds a connection, and browsers allow
  only a handful per host.

Where it sits beside long polling and WebSocket, in the peers run: the lab's own server, the same load, in the
same run (medians of the valid repetitions).""",
    ),
    (
        "code",
        """LAB_TRANSPORTS = ("longpoll", "websocket", "sse")
NAMES = {"longpoll": "long polling", "websocket": "WebSocket", "sse": "SSE"}


def lab_points(run):
    \"\"\"The lab's continuous scenarios of a run that measured SSE and another transport at the same load.\"\"\"
    groups = by_series(r for r in run.results if r.scenario.server == "lab" and r.scenario.transport in LAB_TRANSPORTS
                       and not r.scenario.idle and r.scenario.drop_every_s is None and r.scenario.link.is_loopback)
    by_scenario = {}
    for g in groups:
        by_scenario.setdefault(g.name, []).append(g)
    return {name: gs for name, gs in by_scenario.items() if {g.series for g in gs} >= {"sse"} and len(gs) > 1}


SSE_POINTS = lab_points(PEERS) if PEERS is not None else {}
SSE_ROWS = []
for name, groups in SSE_POINTS.items():
    for g in sorted(groups, key=lambda g: LAB_TRANSPORTS.index(g.series)):
        SSE_ROWS.append((name, g.scenario, g.series, g.median(lambda r: r.cpu_us_per_event),
                         g.median(lambda r: ms(r.end_to_end.p99_us)), g.median(bytes_per_event),
                         g.median(lambda r: r.num("bytes", "per_event", "down")), len(g.valid), len(g.results)))
if SSE_ROWS:
    show(markdown_table(
        ("scenario", "subscribers x ev/s", "transport", "server µs/event", "p99 ms", "bytes/event (up+down)",
         "bytes/event down", "valid reps"),
        [(name, f"{sc.subscribers:,} x {sc.rate:g}", series, n(cpu), n(p99), n(b), n(down), f"{v}/{k}")
         for name, sc, series, cpu, p99, b, down, v, k in SSE_ROWS],
    ))
    said = []
    for name, groups in SSE_POINTS.items():
        by = {g.series: g for g in groups}
        sse = by["sse"]
        cpu_sse = sse.median(lambda r: r.cpu_us_per_event)
        parts = []
        for other in ("longpoll", "websocket"):
            if other not in by:
                continue
            o = by[other]
            cpu_o = o.median(lambda r: r.cpu_us_per_event)
            b_sse, b_o = sse.median(bytes_per_event), o.median(bytes_per_event)
            p_sse, p_o = sse.median(lambda r: ms(r.end_to_end.p99_us)), o.median(lambda r: ms(r.end_to_end.p99_us))
            bits = []
            if cpu_sse and cpu_o:
                bits.append(f"{n(cpu_sse / cpu_o, 2)} times {NAMES[other]}'s server CPU per event")
            if p_sse and p_o:
                bits.append(f"{n(p_sse / p_o, 2)} times its p99")
            if b_sse and b_o:
                bits.append(f"{n(b_sse / b_o, 2)} times its bytes per event")
            if bits:
                parts.append(", ".join(bits))
        if parts:
            sc = sse.scenario
            said.append(f"In `{name}` ({sc.subscribers:,} subscribers x {sc.rate:g} ev/s) SSE costs "
                        + "; and ".join(parts) + ".")
    show(" ".join(said) + (" A ratio is left out where either side has no valid value (too few samples for a "
                           "p99, or too little CPU in the window to divide)." if said else
                           "_No scenario of this run has valid values for SSE and another transport together._"))
elif PEERS is not None:
    show("_This peers run has no scenario where the lab served SSE beside long polling or WebSocket._")
else:
    show(NO_PEERS)""",
    ),
    (
        "md",
        """## 7. Where a C push server sits

Nchan is a push module for nginx, written in C: the same channels, long poll, WebSocket and EventSource, with
nginx's event loop and HTTP parser doing per request what Flask, the WSGI server and Python do in the lab. The
peers run measured it (and Flask-SocketIO, and the `websockets` library) with the same publisher, the same fleet
and the same accounting as the lab, at the points of the performance targets, in the same run: the tables below
are `bench.report`'s (`peer_points`, `peer_ratios`), the numbers of the peers run's `REPORT.md`. A cell is the
median of the valid repetitions [range]; latency is end-to-end (Nchan and Flask-SocketIO do not stamp events).""",
    ),
    (
        "code",
        """POINTS = peer_points(PEERS) if PEERS is not None else []
for point in POINTS:
    show(f"**{point.title}** (sweep `{point.name}`)")
    show(markdown_table(
        ("server", "transport", "reps", "delivered/expected", "missing/dup/ooo", "p50 ms", "p99 ms",
         "server µs/event", "bytes/event down", "req/event", "flags"),
        [(row.variant + row.group.marks, row.series, len(row.results),
          f"{row.group.total('delivered'):,}/{row.group.total('expected'):,}", row.group.loss_cell,
          row.group.cell(lambda r: r.end_to_end.p50_us, 1e-3), row.group.cell(lambda r: r.end_to_end.p99_us, 1e-3),
          row.group.cell(lambda r: r.cpu_us_per_event), row.group.cell(lambda r: r.num("bytes", "per_event", "down")),
          row.group.cell(lambda r: r.num("http", "requests_per_event")), row.group.flags_cell)
         for row in point.rows],
    ))
RATIOS = peer_ratios(PEERS) if PEERS is not None else []
if RATIOS:
    titles = {p.name: p.title for p in POINTS}
    show("**Lab / peer, same run** (below 1 the lab spends less CPU per event, or has the shorter p99; — where "
         "either side has no valid value):")
    show(markdown_table(
        ("point", "transport", "lab", "peer", "CPU/event lab/peer", "µs/event (lab / peer)", "p99 lab/peer",
         "p99 ms (lab / peer)"),
        [(titles.get(r.point, r.point), r.series, r.lab, r.peer, n(r.cpu, 2), f"{n(r.lab_cpu_us)} / {n(r.peer_cpu_us)}",
          n(r.p99, 2), f"{n(ms(r.lab_p99_us))} / {n(ms(r.peer_p99_us))}") for r in RATIOS],
    ))
elif PEERS is not None:
    show("_No point of this peers run has both the lab and a peer on one transport: no same-run ratio._")
else:
    show(NO_PEERS)

if POINTS:
    fig, axes = plt.subplots(2, len(POINTS), figsize=(max(6, 3.6 * len(POINTS)), 7.5), squeeze=False)
    for j, point in enumerate(POINTS):
        for i, (label, get) in enumerate((("server CPU per event (µs)", lambda r: r.cpu_us_per_event),
                                          ("end-to-end p99 (ms)", lambda r: ms(r.end_to_end.p99_us)))):
            ax = axes[i][j]
            names = []
            for k, row in enumerate(point.rows):
                names.append(f"{row.variant}\\n{row.series}")
                value = row.median(get)
                if value is not None:
                    ax.bar(k, value, color=color(row.series), alpha=0.35 if row.server != "lab" else 0.8,
                           edgecolor=color(row.series), hatch="" if row.server == "lab" else "//")
                for r in row.results:
                    if get(r) is not None:
                        ax.scatter(k, get(r), s=14, zorder=3, color="black" if r.valid else "none", edgecolors="black")
            ax.set_xticks(range(len(names)), names, rotation=70, fontsize=6)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3, axis="y")
            if i == 0:
                ax.set_title(f"{point.title}\\n({point.name})", fontsize=9)
    fig.suptitle("The lab (solid) beside its peers (hatched): median of valid repetitions, each repetition a dot "
                 "(hollow: invalid); no bar where no valid value", fontsize=9)
    fig.text(0.01, 0.005, f"{PEERS.meta.provenance} · {PEERS_DIR.resolve().name}", fontsize=7, color="gray")
    plt.tight_layout()
    plt.show()""",
    ),
    (
        "code",
        """def cpu_by_load(server):
    \"\"\"{(subscribers, rate): {series: median CPU µs/event}} of a server's plain variant (its shortest label).\"\"\"
    out = {}
    for point in POINTS:
        rows = [row for row in point.rows if row.server == server]
        plain = min((row.variant for row in rows), key=len, default=None)
        for row in rows:
            if row.variant == plain and row.cpu_us_per_event is not None:
                out.setdefault((point.subscribers, point.rate), {})[row.series] = row.cpu_us_per_event
    return out


said = []
lab, nchan = cpu_by_load("lab"), cpu_by_load("nchan")
for load in sorted(set(lab) & set(nchan)):
    l, c = lab[load], nchan[load]
    if not all(t in l and t in c for t in ("longpoll", "websocket")):
        continue
    lab_ratio, nchan_ratio = l["longpoll"] / l["websocket"], c["longpoll"] / c["websocket"]
    text = (
        f"At {load[0]:,} subscribers x {load[1]:g} ev/s the lab's long poll costs {n(l['longpoll'])} µs of server "
        f"CPU per event against {n(l['websocket'])} µs for its WebSocket: {n(lab_ratio, 2)} times as much. Nchan's "
        f"long poll costs {n(c['longpoll'])} µs against {n(c['websocket'])} µs for its own WebSocket: "
        f"{n(nchan_ratio, 2)} times. "
    )
    if nchan_ratio < lab_ratio:
        text += (
            f"Nchan's ratio is what long polling costs beside a WebSocket when each request is cheap (nginx parses it "
            f"in C); the lab's is {n(lab_ratio / nchan_ratio, 2)} times that: the excess is what the lab's "
            "request path (Flask, the WSGI server, Python per request) adds beyond what the technique costs."
        )
    else:
        text += ("Here a C server pays as much for long polling, relative to its WebSocket, as the lab does: "
                 "at this load the extra cost is the technique's (a request and an answer per event), not Python's.")
    said.append(text)
lp_ratios = [r for r in RATIOS if r.series == "longpoll" and r.peer.startswith("Nchan") and r.cpu is not None]
ws_ratios = [r for r in RATIOS if r.series == "websocket" and r.peer.startswith("Nchan") and r.cpu is not None]
if lp_ratios or ws_ratios:
    said.append(
        "Against Nchan directly, the lab spends "
        + "; ".join(f"{n(r.cpu, 2)} times its CPU per event over {r.series} ({r.peer}, at "
                    f"{next((p.title for p in POINTS if p.name == r.point), r.point)})" for r in lp_ratios + ws_ratios)
        + ": on the same transport, at the same load, the whole distance between this Python server and a C one."
    )
if said:
    show(" ".join(said))
elif PEERS is not None:
    show("_This peers run has no load where the lab and Nchan both have a valid CPU per event on long polling and "
         "on WebSocket, so it cannot separate the technique's cost from the request path's: the `peers` profile "
         "measures both at the same load._")""",
    ),
    (
        "md",
        """## 8. Behind a proxy: nginx, TLS and HTTP/2

In production nobody reaches the Flask app directly: a reverse proxy (here nginx) terminates TLS, speaks
HTTP/2 to browsers and HTTP/1.1 to the app. That changes the comparison in ways the classic write-ups leave
out:

- **Header compression (HPACK).** Over HTTP/2, headers repeated on one connection (the path, `Host`,
  `Accept`, cookies) are sent as indexes into a table both ends keep: a connection's first request pays its
  headers in full, later ones a few bytes. Long polling and interval polling, which send a request per
  answer, have the most to gain; an SSE stream or a WebSocket pays its headers once anyway.
- **Multiplexing.** One HTTP/2 connection carries every request of a page as streams. Over HTTP/1.1 a browser
  opens at most six connections per host, and a held long poll holds one for its whole hold: RFC 6202
  section 5.1 discusses that limit and the held requests that exhaust it. Over HTTP/2 it no longer bites (up to
  nginx's concurrent streams per connection).
- **WebSocket stays HTTP/1.1.** nginx 1.22 does not carry WebSockets over HTTP/2 (RFC 8441's extended
  `CONNECT`), so a `wss://` socket is an HTTP/1.1 connection over TLS with its `Upgrade`, even on the
  listener that speaks HTTP/2 to everything else.
- **Traps.** A proxy ends a held request after its read timeout, and it can hold a stream's bytes back.

The numbers below come from a run of the `deploy` profile (`python -m bench run --profile deploy`): the runner
starts nginx on [docs/nginx/lab.conf](../docs/nginx/lab.conf) (the configuration
[docs/deployment.md](../docs/deployment.md) explains directive by directive) in front of the lab's server, and
the same fleet reaches the server direct, through nginx over TLS with HTTP/1.1, and through nginx over TLS with
HTTP/2, at the same points, in the same run. The publisher publishes straight to the server, so end-to-end
latency holds one proxy hop. The section reads `LAB_DEPLOY_RUN` if it is set, else `results/deploy`, else the
main run if that went through a proxy. A cell of its tables is the median of the valid repetitions [range], as
in `REPORT.md`'s "Behind a proxy" section, whose tables these are (`bench.report.deploy`).""",
    ),
    (
        "code",
        """from bench.report.deploy import (
    by_point,
    bytes_figure,
    clear_bytes,
    closing_sentence,
    deploy_rows,
    events_per_read,
    hpack_rows,
    hpack_table,
    kaazing_picks,
    kaazing_table,
    largest_read,
    nginx_cpu_us,
    point_table,
    point_title,
    tls_bytes,
    trap_rows,
    trap_table,
    wire_by_http,
    wire_bytes,
)
import dataclasses

from bench.report import median_of_valid

TRANSPORT_NAMES = {"longpoll": "long polling", "polling": "interval polling", "sse": "SSE", "websocket": "WebSocket"}
# The deploy run: LAB_DEPLOY_RUN if set, else results/deploy, else the main run if it went through a proxy.
if os.environ.get("LAB_DEPLOY_RUN"):
    DEPLOY_DIR = given("LAB_DEPLOY_RUN")
    if not (DEPLOY_DIR / "meta.json").exists():
        raise FileNotFoundError(f"LAB_DEPLOY_RUN={DEPLOY_DIR} is not a run directory (no meta.json)")
elif (ROOT / "results" / "deploy" / "meta.json").exists():
    DEPLOY_DIR = ROOT / "results" / "deploy"
elif deploy_rows(RUN.results):
    DEPLOY_DIR = RUN_DIR
else:
    DEPLOY_DIR = None
if DEPLOY_DIR is None:
    DEPLOY = None
elif DEPLOY_DIR.resolve() == RUN_DIR.resolve():
    DEPLOY = RUN
else:
    DEPLOY = load_run(DEPLOY_DIR)
DEPLOY_ROWS = deploy_rows(DEPLOY.results) if DEPLOY is not None else []
NO_DEPLOY_SHORT = "_No run through a proxy: nothing to show (above)._"
NO_DEPLOY = ("_No run through a proxy is available"
             + (f" (`{DEPLOY_DIR.resolve().name}` has no result through nginx)" if DEPLOY_DIR is not None else "")
             + ": set `LAB_DEPLOY_RUN` to a run of the `deploy` profile (`python -m bench run --profile deploy`), "
             "or commit one as `results/deploy`. This section shows nothing without one._")


def valid_median(row, get):
    # the median over the valid repetitions only (a saturated fleet measures itself); None when none is valid
    return median_of_valid(row.group.all, get)


def between(values, digits=3):
    # "a" or "a to b": the range of some numbers as the prose quotes them
    lo, hi = n(min(values), digits), n(max(values), digits)
    return lo if lo == hi else f"{lo} to {hi}"


def caveat(*rows):
    # what the prose must say when a number comes from repetitions none of which is valid
    flags = sorted({f for row in rows if row is not None and row.group.only_invalid for r in row.group.all
                    for f in r.flags})
    return f" (no valid repetition: {', '.join(flags)})" if flags else ""


def find(rows, transport, mode):
    # the row of one transport and way in ("direct", "nginx HTTP/1.1 + TLS", "nginx HTTP/2 + TLS"...), or None
    return next((row for row in rows if row.transport == transport and row.mode.startswith(mode)), None)


if DEPLOY_ROWS:
    print(f"deploy run: {DEPLOY_DIR.resolve().name}, profile {DEPLOY.meta.profile}")
    print(DEPLOY.meta.provenance)
    fair = [r for row in DEPLOY_ROWS if not row.group.scenario.proxy_buffering for r in row.group.all]
    lost = sum(r.counters.missing + r.counters.duplicate + r.counters.out_of_order for r in fair)
    show(
        f"**Correctness first.** Over the {len(fair)} repetitions of this section's points (direct and through "
        "nginx; the buffering trap's buffered row apart, below), missing / duplicate / out of order: "
        f"{sum(r.counters.missing for r in fair):,} / {sum(r.counters.duplicate for r in fair):,} / "
        f"{sum(r.counters.out_of_order for r in fair):,} of {sum(r.counters.expected for r in fair):,} events "
        "expected" + (" (**loss**: the rows marked ✗ say where)." if lost else ": nothing lost through the proxy.")
    )
    for rows in by_point(DEPLOY_ROWS).values():
        show(f"**{point_title(rows)}**")
        show(point_table(rows))
else:
    show(NO_DEPLOY)""",
    ),
    (
        "md",
        """### What a delivered event costs on the wire, direct and through nginx

Two counts of the same traffic. *In the clear*: the bytes of HTTP/1.1, or over HTTP/2 the frame bytes after
decryption (frame headers, HPACK header blocks, `DATA` payloads), both directions, per delivered event: what
the protocol costs. *On the wire*: the TLS bytes, the TCP payload the network carries (TLS records, each with
its header and authentication tag). Direct, there is no TLS: the wire carries the clear bytes. In the chart the
solid bar is the clear count and the hatched bar behind it the TLS count.""",
    ),
    (
        "code",
        """if DEPLOY_ROWS:
    FIG = bytes_figure(DEPLOY_ROWS)
    if FIG is not None:
        display(FIG)
        show(f"_Run `{DEPLOY_DIR.resolve().name}`: {DEPLOY.meta.provenance}._")
    PICKS = kaazing_picks(DEPLOY_ROWS)  # per transport and way in: loopback, one stream, the lowest rate
    said = []
    for transport in ("longpoll", "polling", "sse", "websocket"):
        direct, h1, h2 = (find(PICKS, transport, mode) for mode in ("direct", "nginx HTTP/1.1 + TLS", "nginx HTTP/2"))
        if h1 is None or h2 is None:
            continue
        c1, c2 = h1.median(clear_bytes), h2.median(clear_bytes)
        w1, w2 = h1.median(tls_bytes), h2.median(tls_bytes)
        text = (f"**{TRANSPORT_NAMES[transport]}** (`{h2.point}`): "
                + (f"{n(direct.median(clear_bytes))} bytes per event direct; " if direct is not None else "")
                + f"through nginx over HTTP/1.1 {n(c1)} in the clear and {n(w1)} on the wire, over HTTP/2 "
                f"{n(c2)} and {n(w2)}")
        if transport == "websocket":
            text += ("; its HTTP/2 row is the same HTTP/1.1 Upgrade over TLS, on the listener that offers HTTP/2 "
                     "(nginx does not carry WebSockets over HTTP/2)")
        elif c1 and c2:
            text += f": in the clear, HTTP/2's bytes are {n(c2 / c1)} times HTTP/1.1's"
        said.append(text + caveat(direct, h1, h2) + ".")
    if said:
        show("\\n".join(f"- {s}" for s in said))
    ws = find(PICKS, "websocket", "nginx HTTP/1.1 + TLS")
    if ws is not None and ws.median(clear_bytes) and ws.median(tls_bytes):
        show(f"TLS adds its own framing (a record header and an authentication tag per record): through nginx over "
             f"HTTP/1.1, WebSocket's event takes {n(ws.median(tls_bytes))} bytes on the wire for "
             f"{n(ws.median(clear_bytes))} in the clear, {n(ws.median(tls_bytes) - ws.median(clear_bytes))} more.")
else:
    show(NO_DEPLOY_SHORT)""",
    ),
    (
        "md",
        """### HPACK: the first request on a connection against the later ones

The fleet's HTTP/2 client records the header block (the `HEADERS` frame's payload) of every request it sends
and every answer it gets, per connection. The first request on a connection carries its headers as literals
and fills the connection's dynamic table; a later one names the same headers by index, and only what changes
(the cursor in the path) as a literal. nginx's answers go through its own encoder. The fleet sends bare
requests (section 3): a browser's cookies, `User-Agent` and `Accept-*` headers would give HPACK more to index.""",
    ),
    (
        "code",
        """HPACK = hpack_rows(DEPLOY_ROWS)
if HPACK:
    show(hpack_table(DEPLOY_ROWS))
    said = []
    for h in HPACK:
        if "streams/conn" in h.mode or h.first_request is None or h.later_request is None:
            continue
        text = (f"{TRANSPORT_NAMES[h.transport][0].upper()}{TRANSPORT_NAMES[h.transport][1:]} in `{h.point}`: a connection's first request took "
                f"{n(h.first_request)} bytes of header block, each of the {h.later_requests:,} later ones "
                f"{n(h.later_request)} on average ({n(h.later_request / h.first_request, 2)} of the first)")
        if h.first_response is not None and h.later_response is not None:
            text += f"; nginx's answers {n(h.first_response)} bytes first, {n(h.later_response)} later"
        said.append(text + ".")
    if said:
        show("Over HTTP/2:\\n" + "\\n".join(f"- {s}" for s in said))
    multi = [h for h in HPACK if "streams/conn" in h.mode]
    for h in multi:
        row = next(row for row in DEPLOY_ROWS if row.point == h.point and row.transport == h.transport
                   and row.mode == h.mode)
        one = find(PICKS, h.transport, "nginx HTTP/2")
        sc = row.group.scenario
        text = (f"**Multiplexed** (`{h.point}`): {sc.subscribers} {TRANSPORT_NAMES[h.transport]} "
                f"subscribers per repetition, {sc.streams_per_connection} streams per connection: "
                f"{h.connections} connections over the whole run, {n(row.median(tls_bytes))} bytes per event on the "
                f"wire and {n(row.median(clear_bytes))} in the clear")
        if one is not None:
            text += (f", against {n(one.median(tls_bytes))} and {n(one.median(clear_bytes))} with one stream per "
                     f"connection (`{one.point}`)")
            rpe, rpe1 = row.median(lambda r: r.num("http", "requests_per_event")), one.median(
                lambda r: r.num("http", "requests_per_event"))
            if rpe is not None and rpe1 is not None:
                text += f"; requests per event {n(rpe, 2)} against {n(rpe1, 2)}"
        show(text + caveat(row, one) + ".")
elif DEPLOY_ROWS:
    show("_This run has no HTTP/2 row with header blocks recorded._")
else:
    show(NO_DEPLOY_SHORT)""",
    ),
    (
        "md",
        """### What the proxy hop costs

nginx sits between the server and every subscriber: each event crosses one more process, one more pair of
sockets, and on TLS one more encryption. Below, per point and transport, the latency through nginx minus the
latency direct (medians of the valid repetitions, end to end), the server's CPU per event and nginx's own CPU
per event (its master and worker, measured apart from the server's), and what nginx costs beside the server.""",
    ),
    (
        "code",
        """HOP = []
for point, rows in by_point(DEPLOY_ROWS).items():
    for row in rows:
        sc = row.group.scenario
        if sc.proxy == "none" or sc.proxy_buffering or sc.streams_per_connection > 1:
            continue
        HOP.append((point, row, find(rows, row.transport, "direct")))


def latency(row, key):
    # (median over the repetitions a table shows, True when none of them is valid); (None, False) without a row
    if row is None:
        return None, False
    value = median_of_valid([dataclasses.replace(r, valid=True) for r in row.group.shown],
                            lambda r: ms(getattr(r.end_to_end, key)))
    return value, row.group.only_invalid


def arrow(row, direct, key):
    # "direct → through nginx" in ms, a value of no valid repetition in italics (as REPORT.md's cells)
    cells = []
    for value, invalid in (latency(direct, key), latency(row, key)):
        cells.append(f"*{n(value)}*" if invalid and value is not None else n(value))
    return " → ".join(cells)


def share(row):
    # nginx's CPU per event over the server's (in italics when no repetition is valid, as the cells beside it)
    proxy, cpu = row.median(nginx_cpu_us), row.median(lambda r: r.cpu_us_per_event)
    if not proxy or not cpu:
        return "—"
    return f"*{n(proxy / cpu, 2)}*" if row.group.only_invalid else n(proxy / cpu, 2)


if HOP:
    show(markdown_table(
        ("point", "transport", "way in", "p50 ms: direct → nginx", "p99 ms: direct → nginx", "server µs/event",
         "nginx µs/event", "nginx / server"),
        [(point, row.transport + row.group.marks, row.mode, arrow(row, direct, "p50_us"), arrow(row, direct, "p99_us"),
          row.group.cell(lambda r: r.cpu_us_per_event), row.group.cell(nginx_cpu_us),
          share(row))
         for point, row, direct in HOP],
    ))
    added, shares, transits = [], [], []
    for point, row, direct in HOP:
        p50 = valid_median(row, lambda r: ms(r.end_to_end.p50_us))
        d50 = valid_median(direct, lambda r: ms(r.end_to_end.p50_us)) if direct is not None else None
        if p50 is not None and d50 is not None and row.transport != "polling":  # polling's: its interval's
            added.append(p50 - d50)
        cpu, proxy = valid_median(row, lambda r: r.cpu_us_per_event), valid_median(row, nginx_cpu_us)
        if cpu and proxy:
            shares.append(proxy / cpu)
        one_way = row.group.scenario.link.one_way_ms
        if one_way > 0 and p50 is not None:
            way = row.mode.removeprefix("nginx ").replace(" (WebSocket: HTTP/1.1 Upgrade)", " listener")
            transits.append(f"{TRANSPORT_NAMES[row.transport]} {way} {n(p50 / one_way, 2)}"
                            + (f" (direct {n(d50 / one_way, 2)})" if d50 is not None else ""))
            transits_over = one_way
    said = []
    if added:
        lo, hi = min(added), max(added)
        moved = f"{lo:+.3g} ms" if f"{lo:+.3g}" == f"{hi:+.3g}" else f"{lo:+.3g} to {hi:+.3g} ms"
        said.append(f"Through nginx the median end-to-end latency of long polling, SSE and WebSocket moved by {moved} "
                    "against the same transport direct, at the same point and in the same run (valid repetitions on "
                    "both sides; interval polling's latency is its interval's).")
    else:
        said.append("No push transport has valid repetitions both direct and through nginx at one point: no latency "
                    "difference is quoted (the table's italics are from repetitions with a saturated fleet or a "
                    "publisher behind).")
    if shares:
        said.append(f"nginx's own CPU per delivered event was {between(shares, 2)} times the server's (valid "
                    "repetitions), spent on top of it: on another core here, or on another machine.")
    if transits:
        said.append(f"Over the {transits_over:g} ms one-way link (clients to nginx) the medians are, in transits: "
                    + "; ".join(transits) + ".")
    show(" ".join(said))
elif DEPLOY_ROWS:
    show("_No point of this run has a transport through nginx with one stream per connection._")
else:
    show(NO_DEPLOY_SHORT)""",
    ),
    (
        "md",
        """### The three traps, and the configuration that avoids each

Each trap is a test (`tests/bench/run/test_proxy_traps.py`) that runs nginx on docs/nginx/lab.conf with the
one or two lines that make the trap, asserts the failure, then asserts its absence with the shipped file. The
tests assert counts and orders, never durations; the one-off numbers they print are in docs/deployment.md,
with the command that printed them (`.venv/bin/python -m pytest -q -s tests/bench/run/test_proxy_traps.py`).

1. **A held long poll longer than the proxy's read timeout.** nginx waits `proxy_read_timeout` between two
   reads from the server; a held poll writes nothing until it answers, so with a timeout below the hold nginx
   answers `504 Gateway Time-out` in the server's place. The test lowers the timeout below the hold: some
   answers are `504`, and every event still arrives exactly once and in order, because the lab's client takes a
   `5xx` as "try again" and polls again from its cursor, which only moves with events received. **Avoided by** a
   read timeout above the server's longest hold in the long-poll location (nginx's default is above it; many
   guides and load balancers set less), and by a client that resumes from a cursor.
2. **SSE through a buffering proxy.** With `proxy_buffering on`, the lab's `X-Accel-Buffering: no` ignored
   and `text/event-stream` compressed (what a generic "compress everything textual" block does), nothing
   reaches the browser, not even the response head, until nginx's buffers fill; then a lump of events in one
   read. **Avoided by** `proxy_buffering off` and `gzip off` in the SSE location; the lab's
   `X-Accel-Buffering: no` keeps buffering off even where a location forgets it, unless a proxy ignores the
   header. The deploy run measures this one (below).
3. **Seven long-polling tabs over HTTP/1.1.** Seven pages of one Chromium, each holding a `fetch` long poll:
   over HTTP/1.1 the browser's per-host limit lets six polls reach the server and the seventh is not even sent
   until one of them answers (RFC 6202 section 5.1); over HTTP/2 all seven are held, as streams of one
   connection. **Avoided by** serving the page and its polls over HTTP/2 (`http2` on the TLS listener).

The directives, as docs/nginx/lab.conf ships them:""",
    ),
    (
        "code",
        """import re

CONF = ROOT / "docs" / "nginx" / "lab.conf"


def block(text, opening):
    # the lines of one `location ... {` block of the file, its comments left out
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(opening))
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return [line for line in lines[start : end + 1] if not line.strip().startswith("#")]


if CONF.exists():
    text = CONF.read_text()
    print("# trap 1: the long poll's read timeout above the longest hold")
    print("\\n".join(block(text, "location ~ ^/channels/[^/]+/poll$")))
    print("# trap 2: SSE neither buffered nor compressed")
    print("\\n".join(block(text, "location ~ ^/channels/[^/]+/sse$")))
    print("# trap 3: HTTP/2 offered on the TLS listener")
    print("\\n".join(line for line in text.splitlines() if re.match(r"\\s*listen .*http2", line)))
else:
    print(f"{CONF} is not here: this notebook was copied without the project's docs/")""",
    ),
    (
        "md",
        """**The buffering trap, measured.** The deploy run's `deploy-sse-buffering` point runs SSE through nginx's
plain listener twice: with buffering on and the stream compressed (the trap), and with the shipped SSE location.
Its subscribers send a browser's request headers (`Accept-Encoding: gzip` among them). *Events per read*: how
many events one read of a subscriber's socket delivered; *never arrived*: events still in nginx's buffers
when the measurement window closed (counted missing, so the buffered row is marked with loss on purpose).""",
    ),
    (
        "code",
        """TRAP = trap_rows(DEPLOY_ROWS)
if TRAP:
    show(trap_table(DEPLOY_ROWS))
    on, off = TRAP[0], next((row for row in TRAP[1:] if not row.group.scenario.proxy_buffering), None)

    def facts(row):
        g = row.group
        return dict(per_read=row.median(events_per_read), lump=row.median(largest_read),
                    p50=valid_median(row, lambda r: ms(r.end_to_end.p50_us)),
                    top=row.median(lambda r: ms(r.end_to_end.max_us)), missing=g.total("missing"),
                    expected=sum(r.counters.expected for r in g.all), clear=row.median(clear_bytes))

    a = facts(on)
    sc = on.group.scenario
    text = (f"At {sc.subscribers} subscribers x {sc.rate:g} ev/s, with buffering on and the stream compressed a "
            f"read brought {n(a['per_read'])} events on average and up to {n(a['lump'])} at once; the slowest event "
            f"arrived {n(a['top'])} ms after it was due, and {a['missing']:,} of {a['expected']:,} never arrived "
            f"within the window{caveat(on)}.")
    if off is not None:
        b = facts(off)
        text += (f" With the shipped configuration: {n(b['per_read'])} events per read, at most {n(b['lump'])}, the "
                 f"slowest {n(b['top'])} ms, {b['missing']:,} missing{caveat(off)}.")
        if a["clear"] and b["clear"] and a["clear"] < b["clear"]:
            text += (f" What makes the trap tempting: compressed, the stream cost {n(a['clear'])} bytes per event "
                     f"against {n(b['clear'])}. With buffering off nginx flushes the compressor at every read from the "
                     "server, so a compressed stream still arrives event by event (docs/deployment.md's table; what "
                     "that saves in bytes is not measured here).")
    show(text)
elif DEPLOY_ROWS:
    show("_This run has no buffering trap (`deploy-sse-buffering`, in the `deploy` profile)._")
else:
    show(NO_DEPLOY_SHORT)""",
    ),
    (
        "md",
        """### The Kaazing table over HTTP/2

Section 3's table again, from the bytes each transport put on the wire per delivered event through nginx (TLS
bytes where there is TLS), direct / HTTP/1.1 / HTTP/2. One published comparison (aquil.io, 2017, on Node)
found that over HTTP/2 SSE costs almost as few bytes per update as WebSocket; below, what this lab measured for
Flask, and for long polling with resume.""",
    ),
    (
        "code",
        """KAAZING_H2 = kaazing_table(DEPLOY_ROWS)
if KAAZING_H2:
    show(KAAZING_H2)
    said = [closing_sentence(DEPLOY_ROWS)]
    wire = wire_by_http(DEPLOY_ROWS)
    ws = wire.get(("websocket", "2")) or wire.get(("websocket", "1.1"))
    for transport in ("sse", "longpoll", "polling"):
        h2 = wire.get((transport, "2"))
        if h2 is not None and ws:
            said.append(f"Over HTTP/2 {TRANSPORT_NAMES[transport]} costs {n(h2 / ws, 2)} times "
                        "WebSocket's bytes on the wire per event" + (
                            f" (over HTTP/1.1: {n(wire[(transport, '1.1')] / ws, 2)} times)."
                            if wire.get((transport, "1.1")) else "."))
    show(" ".join(s for s in said if s))
elif DEPLOY_ROWS:
    show("_No loopback point of this run has bytes on the wire per event through nginx._")
else:
    show(NO_DEPLOY_SHORT)""",
    ),
    (
        "md",
        """## 9. Operations (RFC 6202, section 2.2 and 5)

| concern | long polling | WebSocket | in this lab |
|---|---|---|---|
| header overhead | full HTTP headers on every answer and every new request | a frame header (RFC 6455: 2 to 14 bytes) after a one-time handshake | measured above, per event and per handshake |
| maximal latency | "over three network transit times" (section 2.2): an event that arrives while no poll is held waits for the answer to travel back, the next poll to travel out and its answer back, plus the server's time | one transit, while no packet is lost (a loss costs TCP's retransmission on either) | the random-arrival delay sweep (section 2's distribution) and the pairs scenario |
| connection establishment | reuses keep-alive connections; a new TCP connection if the proxy closed it | one handshake per connection, then none | handshake bytes reported apart |
| allocated resources | a held request ties up a worker thread or a greenlet | a connection ties up a greenlet (gevent) or two threads (gthread: handler + simple-websocket's reader) | RSS per idle connection; gthread runs out of threads |
| graceful degradation | under load (a slow server or client), events queue and the next answer carries them all: fewer requests per event, each event later (section 2.2 means this, not proxies) | no batching by the protocol: every event is its own frame, a slow reader's frames queue in its socket | long polling's requests per event under bursts and delay (section 4, "Batching under load"); the lab drops a WebSocket reader that stops reading |
| timeouts | intermediaries close requests held too long: hold less than the 30 s that RFC 6202 section 5.5 names as safe (the lab's default hold, `LAB_POLL_TIMEOUT`, is under it) | idle connections need pings to survive NATs and proxies | `--ws-ping-interval`, `timeout=`; a proxy's own read timeouts: section 8 |
| caching | a cache must never replay a held answer | not cacheable | `Cache-Control: no-store` on every poll |

**The RFC's own mitigations.** RFC 6202 does not leave these open: its section 5 gives best practices for
long polling and HTTP streaming: limit the connections a client opens to a server (browsers cap them per host),
do not rely on pipelining, expect proxies and intermediaries to buffer or close held requests (hold less than
their timeouts), answer with headers that forbid caching, and pick the hold timeout with the intermediaries in
mind. The lab does each: one held request per subscriber on a keep-alive connection, a hold under the common
intermediary timeouts, `Cache-Control: no-store` on every answer, and cursors so that a closed request loses
nothing. Batching under load (section 4) is the mitigation the protocol does by itself.

**Why nothing is lost here.** Every event has a per-channel `seq`; every subscriber keeps a cursor and resumes
from it, on either transport, after any disconnect; the bus retains a bounded history per channel
(`LAB_HISTORY`, docs/configuration.md) and, when a cursor is older than that, says exactly which events are
gone (a gap notice) rather than skipping them silently. Each benchmark run counts missing, duplicate and
out-of-order events and marks any repetition that has them. The cost is memory for the history and a cursor in
every request or connection URL. This run's count:""",
    ),
    (
        "code",
        """verdict = "no loss" if not TOTALS.lossy else f"**LOSS in {len(TOTALS.lossy)} repetition(s)**: " + ", ".join(
    f"`{f}`" for f in TOTALS.lossy
)
show(
    f"{TOTALS.results} repetitions, {TOTALS.expected:,} events expected, {TOTALS.delivered:,} delivered; "
    f"missing / duplicate / out-of-order: {TOTALS.missing} / {TOTALS.duplicate} / {TOTALS.out_of_order} "
    f"({verdict}). Loss is counted over every repetition, valid or not."
    + (f" Failed repetitions (no measurement): {', '.join(TOTALS.failed)}." if TOTALS.failed else "")
    + (f" Planned but never run: {', '.join(TOTALS.not_run)}." if TOTALS.not_run else "")
)
for r in RUN.results:
    if r.lossy:
        print("  LOSS in", r.file, r.counters)""",
    ),
    (
        "md",
        """## 10. Which one?

| if... | choose | because (see the measurements above) |
|---|---|---|
| events are rare (a payment confirmation, a job finished) and must pass any proxy | **long polling** | one held request per page; latency near one transit when the client is waiting; plain HTTP |
| events are frequent or bursty, or latency across a real network matters | **WebSocket** | one transit while no packet is lost, where long polling's worst case is over three (section 2); no header bytes per event; CPU per event: section 4 |
| the client also sends often (chat, collaborative editing, games) | **WebSocket** | bidirectional on one connection |
| thousands of mostly idle clients on a threaded server | **either, on gevent** | a held poll or an open socket each costs a greenlet; with threads both run out |
| you cannot rely on Upgrade passing (some corporate proxies) | **long polling as a fallback** | same events, same cursors: switching transports loses nothing |
| the page only listens, and should reconnect and resume by itself | **Server-Sent Events** | plain HTTP, one stream per page; the browser resends its cursor (`Last-Event-ID`) on reconnect (section 6) |
| once a minute is fast enough | **interval polling** | simplest; latency is half the interval; every empty poll still costs headers |

Numbers move with hardware, payloads and proxies: run `make bench` on your own machine and re-execute this
notebook (`make notebook`) to read your own.""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs."""
    nb: nbformat.NotebookNode = new_notebook()  # type: ignore[no-untyped-call]  # nbformat has no annotations
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        new_markdown_cell(src) if kind == "md" else new_code_cell(src)  # type: ignore[no-untyped-call]
        for kind, src in CELLS
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main() -> None:
    nbformat.write(build(), NOTEBOOK)  # type: ignore[no-untyped-call]
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
