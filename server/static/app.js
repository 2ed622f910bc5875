// The demo page's client: three subscribers to one channel, one per transport.
//
// Layers, as in the Python clients: a Tracker (cursor, loss, duplicate and
// order accounting, no I/O) is shared by the three panes; LongPollSubscriber,
// WebSocketSubscriber and SSESubscriber are thin I/O loops that feed it and
// reconnect with backoff from its cursor (SSE: the browser's EventSource
// reconnects by itself with Last-Event-ID); Pane renders one subscriber;
// Chart draws the latency series on a <canvas> by hand, with the 1- and
// 3-transit model lines when the page is under a delay; Swimlane draws each
// transport's timeline (polls sent, held, answered; frames pushed) from the
// page's own timestamps; LinkProbe measures the round trip to /healthz.
// Wire format: docs/protocol.md. The delay mode: docs/demo.md.
//
// Safety: event data is shown with textContent only. Nothing received from
// the server is ever parsed as HTML.
"use strict";

const CHANNEL_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const POLL_TIMEOUT_S = 25; // the server's default hold, under RFC 6202's 30 s
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 4000;
const LIST_MAX = 300; // arrivals kept in each list (counters count everything)
const LATENCY_WINDOW = 200; // live events behind the last/median/max figures
const CHART_POINTS = 120; // most recent seqs drawn on the chart
const DATA_PREVIEW = 200; // characters of a payload shown in a list
const AUTO_MAX_IN_FLIGHT = 4; // the auto publisher skips a tick beyond this (a browser opens 6 per host)
const TIMELINE_MAX = 400; // polls and arrivals kept per pane for the swimlane
const PROBES = 5; // sequential GET /healthz per round-trip measurement
const PROBE_EVERY_MS = 30000; // how often the round trip is measured again

/**
 * The emulated link the page is under, as the launcher says (`?delay=<ms one way>`, docs/demo.md); null on a
 * direct connection. The page checks it itself: LinkProbe measures the round trip and shows both.
 */
const LINK_DELAY_MS = parseMs(new URLSearchParams(location.search).get("delay"), 0, 60000, null);
/** The gap between the two events of "publish a pair" (`?gap=<ms>`, default 3). */
const PAIR_GAP_MS = parseMs(new URLSearchParams(location.search).get("gap"), 0, 10000, 3);

function parseMs(text, min, max, fallback) {
  if (text === null || text.trim() === "") return fallback;
  const v = Number(text);
  return Number.isFinite(v) && v >= min && v <= max ? v : fallback;
}

const utf8 = new TextEncoder();

/**
 * Bytes of a server-to-client WebSocket frame carrying ``payload`` bytes (RFC 6455, 5.2): 2 bytes of header up
 * to 125, 4 up to 65,535, 10 beyond; a server's frames are not masked. Exact for the lab's server, which sends
 * each message as one frame, uncompressed unless --ws-compression on.
 */
function wsFrameBytes(payload) {
  return payload + (payload <= 125 ? 2 : payload <= 65535 ? 4 : 10);
}

/**
 * Bytes of an HTTP/1.1 response head as the server sent it: the status line, each header line, the blank line,
 * rebuilt from what the browser exposes. A same-origin fetch sees every response header (Set-Cookie aside,
 * which the lab never sends), and neither a name's case nor the order changes a length. (Resource Timing's
 * transferSize is no measurement of it: the Fetch standard makes it the body plus a flat 300 bytes.)
 */
function responseHeadBytes(resp) {
  let n = utf8Length(`HTTP/1.1 ${resp.status} ${resp.statusText}\r\n`) + 2;
  for (const [name, value] of resp.headers) n += utf8Length(`${name}: ${value}\r\n`);
  return n;
}

/** Bytes of a string as UTF-8: what a body or text frame payload weighed. */
function utf8Length(text) {
  return utf8.encode(text).length;
}

/** Wall clock in ms since the epoch, with sub-millisecond resolution. */
function nowMs() {
  return performance.timeOrigin + performance.now();
}

function backoffMs(failures) {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, failures - 1));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Sans-I/O cursor accounting, the same rules as clients/accounting.py.
 *
 * cursor = highest seq accepted. seq == cursor + 1: accepted. seq <= cursor:
 * out of order if it fills a known hole (accepted), else a duplicate. seq >
 * cursor + 1 without a gap notice: accepted and counted out of order, the
 * skipped seqs become holes (missing until they arrive). A gap notice counts
 * its events as lost. A reset starts the seq space again from 0; holes of the
 * old space stay missing.
 */
class Tracker {
  constructor() {
    this.cursor = 0;
    this.holes = new Set();
    this.delivered = 0;
    this.duplicate = 0;
    this.outOfOrder = 0;
    this.gapLost = 0;
    this.gaps = 0;
    this.resets = 0;
    this.lostHoles = 0; // holes left behind by a reset
  }

  /** Account for one event; true if it is new (not a duplicate). */
  event(seq) {
    if (seq === this.cursor + 1) {
      this.cursor = seq;
    } else if (seq <= this.cursor) {
      if (!this.holes.delete(seq)) {
        this.duplicate += 1;
        return false;
      }
      this.outOfOrder += 1;
    } else {
      for (let s = this.cursor + 1; s < seq; s += 1) this.holes.add(s);
      this.outOfOrder += 1;
      this.cursor = seq;
    }
    this.delivered += 1;
    return true;
  }

  gap(first, last) {
    this.gapLost += last - first + 1;
    this.gaps += 1;
    for (let s = first; s <= last; s += 1) this.holes.delete(s);
    this.cursor = Math.max(this.cursor, last);
  }

  reset() {
    this.resets += 1;
    this.lostHoles += this.holes.size;
    this.holes.clear();
    this.cursor = 0;
  }

  /** Events this subscriber will not get: holes plus announced gaps. */
  get missing() {
    return this.holes.size + this.lostHoles + this.gapLost;
  }
}

/** One transport's pane: counters, arrivals list, latency figures. */
class Pane {
  constructor(root, onChange) {
    this.root = root;
    this.onChange = onChange;
    this.list = root.querySelector(".arrivals");
    this.conn = root.querySelector(".conn");
    this.clear(nowMs());
  }

  /** Forget everything: a new channel starts at ``since`` (ms since epoch). */
  clear(since) {
    this.since = since;
    this.tracker = new Tracker();
    this.transfers = 0;
    this.bytes = 0;
    this.wire = 0; // bytes down as the wire carries them (docs/demo.md: how, per transport)
    this.reconnects = 0;
    this.polls = []; // long poll only: {sent, answered} page timestamps, for the swimlane
    this.arrivals = []; // {seq, ts, at}: the server's publish stamp and the page's arrival time, ms
    this.latencies = []; // live events only, newest last, LATENCY_WINDOW at most
    this.points = new Map(); // seq -> latency ms, for the chart
    this.list.replaceChildren();
    this.changed();
  }

  changed() {
    this.onChange();
  }

  setState(state, text) {
    this.conn.dataset.state = state;
    this.conn.textContent = text;
  }

  /** One HTTP response body, one WebSocket frame or one SSE event's data, of ``bytes`` bytes. */
  transfer(bytes, wire = 0) {
    this.transfers += 1;
    this.bytes += bytes;
    this.wire += wire;
    this.changed();
  }

  /** A long poll sent now: returns its record, whose ``answered`` the subscriber sets. */
  pollSent() {
    const poll = { sent: nowMs(), answered: null };
    this.polls.push(poll);
    if (this.polls.length > TIMELINE_MAX) this.polls.shift();
    return poll;
  }

  event(ev) {
    const fresh = this.tracker.event(ev.seq);
    const tsMs = ev.ts / 1e6;
    const at = nowMs();
    const latency = at - tsMs;
    const history = tsMs < this.since;
    if (fresh && !history) {
      this.arrivals.push({ seq: ev.seq, ts: tsMs, at });
      if (this.arrivals.length > TIMELINE_MAX) this.arrivals.shift();
      this.latencies.push(latency);
      if (this.latencies.length > LATENCY_WINDOW) this.latencies.shift();
      this.points.set(ev.seq, latency);
      if (this.points.size > CHART_POINTS * 2) {
        const cutoff = this.tracker.cursor - CHART_POINTS;
        for (const seq of this.points.keys()) if (seq < cutoff) this.points.delete(seq);
      }
    }
    const li = document.createElement("li");
    li.className = "event" + (history ? " history" : "") + (fresh ? "" : " duplicate");
    li.dataset.seq = String(ev.seq);
    li.dataset.transfer = String(this.transfers); // which answer, frame or SSE event brought it
    if (!history) li.dataset.latency = latency.toFixed(3);
    li.append(
      span("seq", "#" + ev.seq),
      span("lat", history ? "history" : latency.toFixed(1) + " ms"),
      span("data", preview(ev.data)),
    );
    this.addItem(li);
    this.changed();
  }

  gap(first, last) {
    this.tracker.gap(first, last);
    this.notice(`gap: events ${first} to ${last} are gone from history`);
  }

  reset(after, lastSeq) {
    this.tracker.reset();
    this.points.clear();
    this.arrivals = [];
    this.notice(`reset: cursor ${after} is ahead of the channel (last seq ${lastSeq}); starting again from 0`);
  }

  notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    this.addItem(li);
    this.changed();
  }

  addItem(li) {
    this.list.prepend(li);
    while (this.list.childElementCount > LIST_MAX) this.list.lastElementChild.remove();
  }

  /** Write the counters into the DOM (called once per animation frame). */
  render() {
    const t = this.tracker;
    const values = {
      events: t.delivered,
      transfers: this.transfers,
      bytes: this.bytes,
      wire: this.wire,
      missing: t.missing,
      duplicate: t.duplicate,
      out_of_order: t.outOfOrder,
      reconnects: this.reconnects,
      cursor: t.cursor,
    };
    for (const [name, value] of Object.entries(values)) {
      const dd = this.root.querySelector(`[data-counter="${name}"]`);
      dd.textContent = value.toLocaleString("en-US");
      dd.classList.toggle("bad", ["missing", "duplicate", "out_of_order"].includes(name) && value > 0);
    }
    const lat = this.latencies;
    const sorted = [...lat].sort((a, b) => a - b);
    const fmt = (v) => (v === undefined ? "–" : v.toFixed(1));
    this.root.querySelector('[data-latency="last"]').textContent = fmt(lat[lat.length - 1]);
    this.root.querySelector('[data-latency="median"]').textContent = fmt(sorted[Math.floor((sorted.length - 1) / 2)]);
    this.root.querySelector('[data-latency="max"]').textContent = fmt(sorted[sorted.length - 1]);
  }
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

/** A payload as text: its JSON, cut to DATA_PREVIEW characters. */
function preview(data) {
  const text = JSON.stringify(data);
  return text.length > DATA_PREVIEW ? text.slice(0, DATA_PREVIEW) + "…" : text;
}

/** Long polling: held GETs, one after another, each from the cursor. */
class LongPollSubscriber {
  constructor(pane, channel) {
    this.pane = pane;
    this.channel = channel;
    this.abort = new AbortController();
    this.stopped = false;
  }

  start() {
    this.run();
  }

  stop() {
    this.stopped = true;
    this.abort.abort();
  }

  async run() {
    const pane = this.pane;
    let failures = 0;
    pane.setState("connecting", "connecting");
    while (!this.stopped) {
      const url = `/channels/${this.channel}/poll?after=${pane.tracker.cursor}&timeout=${POLL_TIMEOUT_S}${tokenQuery()}`;
      let body;
      const poll = pane.pollSent();
      try {
        const resp = await fetch(url, { signal: this.abort.signal, cache: "no-store" });
        const text = await resp.text();
        poll.answered = nowMs();
        if (this.stopped) return;
        const size = utf8Length(text); // the body is sent as is: no content coding, Content-Length framing
        pane.transfer(size, responseHeadBytes(resp) + size);
        if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${text.slice(0, 120)}`);
        body = JSON.parse(text);
      } catch (err) {
        if (this.stopped) return;
        if (poll.answered === null) poll.answered = nowMs();
        failures += 1;
        pane.reconnects += 1;
        const wait = backoffMs(failures);
        pane.setState("retrying", `retrying in ${(wait / 1000).toFixed(2)} s (${err.message})`);
        await sleep(wait);
        continue;
      }
      failures = 0;
      // The server checks for a reset before computing a gap (server/bus/core.py).
      if (body.reset) pane.reset(body.reset.after, body.reset.last_seq);
      if (body.gap) pane.gap(body.gap.first, body.gap.last);
      for (const ev of body.events) pane.event(ev);
      pane.setState("open", "request held on the server");
    }
  }
}

/** WebSocket: one upgraded connection; the server pushes a frame per event. */
class WebSocketSubscriber {
  constructor(pane, channel) {
    this.pane = pane;
    this.channel = channel;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "normal");
  }

  connect() {
    const pane = this.pane;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    // A browser's WebSocket cannot send an Authorization header: the token rides in the URL.
    const url = `${scheme}//${location.host}/channels/${this.channel}/ws?after=${pane.tracker.cursor}${tokenQuery()}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    pane.setState("connecting", "connecting");
    ws.onopen = () => {
      this.failures = 0;
      pane.setState("open", "connection open, server pushes frames");
    };
    ws.onmessage = (msg) => {
      if (this.stopped || typeof msg.data !== "string") return;
      const size = utf8Length(msg.data);
      pane.transfer(size, wsFrameBytes(size));
      const obj = JSON.parse(msg.data);
      if (!("type" in obj)) pane.event(obj);
      else if (obj.type === "gap") pane.gap(obj.first, obj.last);
      else if (obj.type === "reset") pane.reset(obj.after, obj.last_seq);
    };
    ws.onclose = (e) => {
      if (this.stopped) return;
      this.failures += 1;
      pane.reconnects += 1;
      const wait = backoffMs(this.failures);
      pane.setState("retrying", `closed (${e.code}), retrying in ${(wait / 1000).toFixed(2)} s`);
      pane.changed();
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }
}

/**
 * Server-Sent Events: one EventSource, one held GET whose answer never ends.
 *
 * The server sends every event as `id: <seq>` and `data: <event object>`, and
 * gap and reset notices as named events. The EventSource reconnects by itself
 * when the stream ends or the network fails, sending the last id as
 * Last-Event-ID (the server resumes from it); it gives up only when an answer
 * is not a 200 event stream (a 503 at capacity, a 4xx): then this loop opens a
 * new one from the cursor, with backoff.
 */
class SSESubscriber {
  constructor(pane, channel) {
    this.pane = pane;
    this.channel = channel;
    this.es = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
  }

  connect() {
    const pane = this.pane;
    // An EventSource cannot send an Authorization header either: the token rides in the URL.
    const es = new EventSource(`/channels/${this.channel}/sse?after=${pane.tracker.cursor}${tokenQuery()}`);
    this.es = es;
    pane.setState("connecting", "connecting");
    es.onopen = () => {
      this.failures = 0;
      pane.setState("open", "stream open, server pushes events");
    };
    // The stream's bytes for one dispatched event, as the server frames it (server/sse.py): `event: <type>\n`
    // for a notice, `id: <id>\n`, `data: <data>\n`, and a blank line (the lab's data is one line of JSON).
    const received = (msg) => {
      if (this.stopped) return null;
      const size = utf8Length(msg.data);
      const named = msg.type === "message" ? 0 : utf8Length(`event: ${msg.type}\n`);
      pane.transfer(size, named + utf8Length(`id: ${msg.lastEventId}\n`) + 6 + size + 2);
      return JSON.parse(msg.data);
    };
    es.onmessage = (msg) => {
      const obj = received(msg);
      if (obj) pane.event(obj);
    };
    es.addEventListener("gap", (msg) => {
      const obj = received(msg);
      if (obj) pane.gap(obj.first, obj.last);
    });
    es.addEventListener("reset", (msg) => {
      const obj = received(msg);
      if (obj) pane.reset(obj.after, obj.last_seq);
    });
    es.onerror = () => {
      if (this.stopped) return;
      this.failures += 1;
      pane.reconnects += 1;
      if (es.readyState === EventSource.CLOSED) {
        // Refused (not a 200 event stream): the EventSource will not retry; this loop does, from the cursor.
        const wait = backoffMs(this.failures);
        pane.setState("retrying", `refused, retrying in ${(wait / 1000).toFixed(2)} s`);
        this.timer = setTimeout(() => this.connect(), wait);
      } else {
        pane.setState("retrying", "stream lost, the browser reconnects with Last-Event-ID");
      }
      pane.changed();
    };
  }
}

/** A canvas sized to its CSS box at the device's pixel ratio: its 2D context and size in CSS pixels. */
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/**
 * Every pane's latency, one line per transport, x = seq, drawn by hand. Under a delay (``transit``: the
 * one-way delay in ms), dashed model lines at 1 transit (a push on an open connection) and 3 transits (an
 * event that reaches the server while no poll is held: the answer travels back, the next poll comes, its
 * answer travels back; RFC 6202, section 2.2).
 */
class Chart {
  constructor(canvas, series, transit) {
    this.canvas = canvas;
    this.series = series; // [{pane, color}]
    this.transit = transit; // ms one way, or null
  }

  draw() {
    const { ctx, width, height } = fitCanvas(this.canvas);
    const pad = { left: 48, right: this.transit ? 122 : 12, top: 10, bottom: 26 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;

    const lastSeq = Math.max(0, ...this.series.map((s) => Math.max(0, ...s.pane.points.keys())));
    const firstSeq = Math.max(1, lastSeq - CHART_POINTS + 1);
    let maxLatency = 0;
    for (const s of this.series) {
      for (const [seq, v] of s.pane.points) if (seq >= firstSeq) maxLatency = Math.max(maxLatency, v);
    }
    if (this.transit) maxLatency = Math.max(maxLatency, 3.3 * this.transit);
    const step = niceStep(Math.max(maxLatency, 1) / 4);
    const ticks = Math.max(1, Math.ceil(maxLatency / step));
    const top = ticks * step;
    const x = (seq) => pad.left + (lastSeq === firstSeq ? plotW : ((seq - firstSeq) / (lastSeq - firstSeq)) * plotW);
    const y = (v) => pad.top + plotH - (Math.max(0, v) / top) * plotH;

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.strokeStyle = "#e5e7eb";
    ctx.lineWidth = 1;
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= ticks; i += 1) {
      const v = step * i;
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(v)) + 0.5);
      ctx.lineTo(width - pad.right, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillText(formatMs(v), pad.left - 6, y(v));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (lastSeq > 0) {
      ctx.fillText(`seq ${firstSeq}`, pad.left + 24, height - pad.bottom + 8);
      ctx.fillText(`seq ${lastSeq}`, width - pad.right - 24, height - pad.bottom + 8);
    } else {
      ctx.fillText("publish something: each event's latency appears here, once per transport", pad.left + plotW / 2,
        pad.top + plotH / 2);
    }
    ctx.save();
    ctx.translate(12, pad.top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText("ms", 0, -6);
    ctx.restore();

    if (this.transit) {
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.strokeStyle = "#374151";
      ctx.fillStyle = "#374151";
      ctx.lineWidth = 1;
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      for (const n of [1, 3]) {
        const yy = Math.round(y(n * this.transit)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(pad.left, yy);
        ctx.lineTo(width - pad.right, yy);
        ctx.stroke();
        ctx.fillText(`${n} transit${n > 1 ? "s" : ""} (${formatMs(n * this.transit)} ms)`, width - pad.right + 4, yy);
      }
      ctx.restore();
    }

    for (const s of this.series) {
      const pts = [...s.pane.points].filter(([seq]) => seq >= firstSeq).sort((a, b) => a[0] - b[0]);
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach(([seq, v], i) => (i === 0 ? ctx.moveTo(x(seq), y(v)) : ctx.lineTo(x(seq), y(v))));
      ctx.stroke();
      for (const [seq, v] of pts) {
        ctx.beginPath();
        ctx.arc(x(seq), y(v), 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
}

/**
 * A swimlane timeline per transport, drawn from the page's own timestamps (its wall clock, which is the
 * server's: one host). Lane "published": a tick at each event's server stamp (``ts``). Lane "long polling":
 * each poll as a bar from the moment the page sent it to the moment its answer was read; under a delay the bar's
 * darker middle, from sent + delay to answered - delay, is the time it was held on the server (inferred from
 * the configured delay, not measured). Lanes "WebSocket" and "SSE": the open connection, and a dot per event
 * pushed. A thin line joins each event's publish tick to its arrival on every lane: its slope is the latency.
 */
class Swimlane {
  constructor(canvas, lanes, transit) {
    this.canvas = canvas;
    this.lanes = lanes; // [{label, pane, color, polls: bool}]
    this.transit = transit;
  }

  /** The time window drawn: ``span`` ms up to the newest timestamp (the axis counts back from it). */
  window() {
    const span = this.transit ? Math.max(800, 9 * this.transit) : 300;
    let end = 0;
    for (const lane of this.lanes) {
      for (const a of lane.pane.arrivals) end = Math.max(end, a.at);
      for (const p of lane.pane.polls) end = Math.max(end, p.answered ?? p.sent);
    }
    return { start: end - span, end, span };
  }

  draw() {
    const { ctx, width, height } = fitCanvas(this.canvas);
    const left = 150;
    const right = 12;
    const top = 8;
    const axis = 22;
    const rows = this.lanes.length + 1; // + the publish lane
    const laneH = (height - top - axis) / rows;
    const { start, end, span } = this.window();
    const x = (t) => left + ((t - start) / (span * 1.04)) * (width - left - right); // 4% room after the newest
    const mid = (row) => top + laneH * (row + 0.5);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.fillStyle = "#374151";
    const labels = ["published (server ts)", ...this.lanes.map((l) => l.label)];
    labels.forEach((label, row) => {
      ctx.fillText(label, left - 8, mid(row));
      ctx.strokeStyle = "#f3f4f6";
      ctx.beginPath();
      ctx.moveTo(left, Math.round(top + laneH * (row + 1)) + 0.5);
      ctx.lineTo(width - right, Math.round(top + laneH * (row + 1)) + 0.5);
      ctx.stroke();
    });

    const step = niceStep(span / 8);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#6b7280";
    for (let k = 0; k * step <= span; k += 1) {
      const t = end - k * step;
      ctx.strokeStyle = "#e5e7eb";
      ctx.beginPath();
      ctx.moveTo(Math.round(x(t)) + 0.5, top);
      ctx.lineTo(Math.round(x(t)) + 0.5, height - axis);
      ctx.stroke();
      ctx.fillText(k === 0 ? "newest" : `−${formatMs(k * step)} ms`, x(t), height - axis + 5);
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, 0, width - left - right, height - axis);
    ctx.clip();

    const published = new Map(); // seq -> ts
    for (const lane of this.lanes) for (const a of lane.pane.arrivals) published.set(a.seq, a.ts);
    ctx.fillStyle = "#111827";
    ctx.strokeStyle = "#111827";
    ctx.textBaseline = "bottom";
    ctx.textAlign = "center";
    for (const [seq, ts] of published) {
      if (ts < start || ts > end) continue;
      ctx.beginPath();
      ctx.moveTo(Math.round(x(ts)) + 0.5, mid(0) - 7);
      ctx.lineTo(Math.round(x(ts)) + 0.5, mid(0) + 7);
      ctx.lineWidth = 2;
      ctx.stroke();
      ctx.lineWidth = 1;
    }

    this.lanes.forEach((lane, i) => {
      const row = i + 1;
      const y = mid(row);
      ctx.strokeStyle = lane.color;
      ctx.fillStyle = lane.color;
      if (lane.polls) {
        const h = Math.min(14, laneH * 0.5);
        for (const p of lane.pane.polls) {
          const done = p.answered ?? end;
          if (done < start || p.sent > end) continue;
          ctx.globalAlpha = 0.25;
          ctx.fillRect(x(p.sent), y - h / 2, Math.max(1, x(done) - x(p.sent)), h);
          if (this.transit && p.answered !== null && done - p.sent > 2 * this.transit) {
            ctx.globalAlpha = 0.6; // held on the server: inferred as sent + delay to answered - delay
            ctx.fillRect(x(p.sent + this.transit), y - h / 2, x(done - this.transit) - x(p.sent + this.transit), h);
          }
          ctx.globalAlpha = 1;
          ctx.strokeRect(x(p.sent) + 0.5, y - h / 2 + 0.5, Math.max(1, x(done) - x(p.sent)), h);
          if (p.answered !== null) {
            ctx.beginPath();
            ctx.moveTo(x(done), y - h / 2 - 3);
            ctx.lineTo(x(done), y + h / 2 + 3);
            ctx.lineWidth = 2;
            ctx.stroke();
            ctx.lineWidth = 1;
          }
        }
      } else {
        ctx.globalAlpha = 0.35;
        ctx.beginPath();
        ctx.moveTo(left, y + 0.5);
        ctx.lineTo(width - right, y + 0.5);
        ctx.stroke();
        ctx.globalAlpha = 1;
      }
      for (const a of lane.pane.arrivals) {
        if (a.at < start || a.at > end) continue;
        ctx.globalAlpha = 0.35;
        ctx.beginPath();
        ctx.moveTo(x(a.ts), mid(0) + 7);
        ctx.lineTo(x(a.at), y);
        ctx.stroke();
        ctx.globalAlpha = 1;
        ctx.beginPath();
        ctx.arc(x(a.at), y, 3.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
    ctx.restore();
  }
}

/**
 * Measures the page's own round trip to the server, so the delay the page claims is one it checked:
 * ``PROBES`` sequential ``GET /healthz`` (not cached), the median of their fetch-to-answer times.
 */
class LinkProbe {
  constructor(onResult) {
    this.onResult = onResult;
    this.timer = null;
  }

  start() {
    this.measure();
    this.timer = setInterval(() => this.measure(), PROBE_EVERY_MS);
  }

  async measure() {
    const times = [];
    for (let i = 0; i < PROBES; i += 1) {
      const started = performance.now();
      try {
        const resp = await fetch(`/healthz?probe=${i}`, { cache: "no-store" });
        await resp.text();
        if (!resp.ok) continue;
      } catch {
        continue;
      }
      times.push(performance.now() - started);
    }
    if (times.length === 0) return;
    times.sort((a, b) => a - b);
    this.onResult(times[Math.floor((times.length - 1) / 2)], times.length);
  }
}

/** The smallest of 1, 2, 5 x 10^n that is >= v: a round tick step. */
function niceStep(v) {
  const base = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5]) if (m * base >= v) return m * base;
  return 10 * base;
}

function formatMs(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** The publish body for what was typed: JSON if it parses, else a JSON string. */
function publishBody(text) {
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify(text);
  }
}

/**
 * The access token (docs/security.md), when the server asks for one: typed into the page or
 * given as `#token=...` (a fragment never reaches a server or its logs); kept for this tab only.
 */
let labToken = "";

function loadToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("token")) {
    sessionStorage.setItem("lab-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  labToken = sessionStorage.getItem("lab-token") || "";
}

function tokenQuery() {
  return labToken ? `&token=${encodeURIComponent(labToken)}` : "";
}

/** The page: wires the controls to three subscribers, a chart, a publisher. */
class Demo {
  constructor() {
    this.channel = "demo";
    this.subscribers = [];
    this.frame = 0;
    this.autoTimer = null;
    this.autoCount = 0;
    this.inFlight = 0;
    const schedule = () => this.schedule();
    this.longpoll = new Pane(document.querySelector('[data-pane="longpoll"]'), schedule);
    this.websocket = new Pane(document.querySelector('[data-pane="websocket"]'), schedule);
    this.sse = new Pane(document.querySelector('[data-pane="sse"]'), schedule);
    const css = getComputedStyle(document.documentElement);
    const colors = ["--lp", "--ws", "--sse"].map((name) => css.getPropertyValue(name).trim());
    this.chart = new Chart(
      document.getElementById("chart"),
      [
        { pane: this.longpoll, color: colors[0] },
        { pane: this.websocket, color: colors[1] },
        { pane: this.sse, color: colors[2] },
      ],
      LINK_DELAY_MS,
    );
    this.swimlane = new Swimlane(
      document.getElementById("swimlane"),
      [
        { label: "long polling", pane: this.longpoll, color: colors[0], polls: true },
        { label: "WebSocket", pane: this.websocket, color: colors[1], polls: false },
        { label: "SSE", pane: this.sse, color: colors[2], polls: false },
      ],
      LINK_DELAY_MS,
    );
    this.pairs = 0;
    this.status = document.getElementById("publish-status");
    window.addEventListener("resize", schedule);
  }

  init() {
    loadToken();
    this.showLink();
    new LinkProbe((rtt, n) => this.showRoundTrip(rtt, n)).start();
    document.getElementById("pair").addEventListener("click", () => this.publishPair());
    const tokenInput = document.getElementById("token");
    tokenInput.value = labToken;
    document.getElementById("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      labToken = tokenInput.value.trim();
      sessionStorage.setItem("lab-token", labToken);
      this.subscribe(this.channel);
    });
    const requested = new URLSearchParams(location.search).get("channel");
    const channelInput = document.getElementById("channel");
    document.getElementById("channel-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.subscribe(channelInput.value.trim());
    });
    const payload = document.getElementById("payload");
    document.getElementById("publish-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (payload.value.trim() === "") return;
      this.publish(publishBody(payload.value)).then((ok) => ok && payload.select());
    });
    const rate = document.getElementById("rate");
    rate.addEventListener("input", () => this.setRate(Number(rate.value)));
    this.setRate(Number(rate.value));
    if (requested && CHANNEL_RE.test(requested)) channelInput.value = requested;
    this.subscribe(channelInput.value.trim());
  }

  subscribe(channel) {
    if (!CHANNEL_RE.test(channel)) {
      this.say(`bad channel name ${JSON.stringify(channel)}: use 1 to 64 of A-Z a-z 0-9 _ . -`, true);
      return;
    }
    for (const sub of this.subscribers) sub.stop();
    this.channel = channel;
    for (const el of document.querySelectorAll(".ch")) el.textContent = channel;
    const url = new URL(location.href);
    url.searchParams.set("channel", channel);
    history.replaceState(null, "", url);
    const since = nowMs();
    this.longpoll.clear(since);
    this.websocket.clear(since);
    this.sse.clear(since);
    this.subscribers = [
      new LongPollSubscriber(this.longpoll, channel),
      new WebSocketSubscriber(this.websocket, channel),
      new SSESubscriber(this.sse, channel),
    ];
    for (const sub of this.subscribers) sub.start();
    this.say(`subscribed to "${channel}"`);
  }

  /** POST one event over HTTP (every pane receives it from the bus). */
  async publish(body) {
    this.inFlight += 1;
    try {
      // application/json is required (docs/security.md): a form-like body type is refused with 415.
      const headers = { "Content-Type": "application/json" };
      if (labToken) headers.Authorization = `Bearer ${labToken}`;
      const resp = await fetch(`/channels/${this.channel}/events`, { method: "POST", body, headers });
      const answer = await resp.json();
      if (!resp.ok) {
        this.say(`publish refused: ${answer.error}: ${answer.detail}`, true);
        return false;
      }
      this.say(`published seq ${answer.seq} to "${answer.channel}"` + (this.autoTimer ? ` · auto: ${this.autoCount}` : ""));
      return true;
    } catch (err) {
      this.say(`publish failed: ${err.message}`, true);
      return false;
    } finally {
      this.inFlight -= 1;
    }
  }

  /**
   * Two events ``PAIR_GAP_MS`` apart, over HTTP like every publish of the page. Their latency is measured
   * from the server's stamp (``ts``, set when the publish reaches the server), so the publish leg's delay
   * is not in it.
   */
  async publishPair() {
    this.pairs += 1;
    const pair = this.pairs;
    const first = this.publish(JSON.stringify({ pair, n: 1 }));
    await sleep(PAIR_GAP_MS);
    const second = this.publish(JSON.stringify({ pair, n: 2 }));
    const [a, b] = await Promise.all([first, second]);
    if (a && b) this.say(`published pair ${pair} (two events ${formatMs(PAIR_GAP_MS)} ms apart)`);
  }

  /** The delay the launcher says the page is under (docs/demo.md). */
  showLink() {
    document.getElementById("pair-gap").textContent = formatMs(PAIR_GAP_MS);
    const el = document.getElementById("link-delay");
    el.dataset.ms = LINK_DELAY_MS === null ? "" : String(LINK_DELAY_MS);
    el.textContent =
      LINK_DELAY_MS === null
        ? "no delay set (a direct connection; make demo DELAY=100 puts the lab's relay in front)"
        : `${formatMs(LINK_DELAY_MS)} ms each way (the lab's relay, make demo DELAY=${formatMs(LINK_DELAY_MS)}): ` +
          `1 transit = ${formatMs(LINK_DELAY_MS)} ms, a round trip ${formatMs(2 * LINK_DELAY_MS)} ms`;
  }

  /** The round trip the page measured itself, beside what it was told. */
  showRoundTrip(rtt, n) {
    const el = document.getElementById("link-rtt");
    el.dataset.ms = rtt.toFixed(3);
    const transits = LINK_DELAY_MS ? ` = ${(rtt / LINK_DELAY_MS).toFixed(2)} transits` : "";
    el.textContent = `${rtt.toFixed(1)} ms${transits} (median of ${n} GET /healthz)`;
  }

  setRate(perSecond) {
    document.getElementById("rate-out").textContent = perSecond > 0 ? `${perSecond} events/s` : "off";
    clearInterval(this.autoTimer);
    this.autoTimer = null;
    if (perSecond > 0) {
      this.autoTimer = setInterval(() => {
        if (this.inFlight >= AUTO_MAX_IN_FLIGHT) return;
        this.autoCount += 1;
        this.publish(JSON.stringify({ auto: this.autoCount }));
      }, 1000 / perSecond);
    }
  }

  say(text, bad = false) {
    this.status.textContent = text;
    this.status.classList.toggle("bad", bad);
  }

  /** Render counters and chart at most once per animation frame. */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.longpoll.render();
      this.websocket.render();
      this.sse.render();
      this.chart.draw();
      this.swimlane.draw();
    });
  }
}

new Demo().init();
