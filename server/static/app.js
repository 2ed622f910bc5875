// The demo page's client: three subscribers to one channel, one per transport.
//
// Layers, as in the Python clients: a Tracker (cursor, loss, duplicate and
// order accounting, no I/O) is shared by the three panes; LongPollSubscriber,
// WebSocketSubscriber and SSESubscriber are thin I/O loops that feed it and
// reconnect with backoff from its cursor (SSE: the browser's EventSource
// reconnects by itself with Last-Event-ID); Pane renders one subscriber;
// Chart draws the latency series on a <canvas> by hand. Wire format:
// docs/protocol.md.
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

const utf8 = new TextEncoder();

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
    this.reconnects = 0;
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
  transfer(bytes) {
    this.transfers += 1;
    this.bytes += bytes;
    this.changed();
  }

  event(ev) {
    const fresh = this.tracker.event(ev.seq);
    const tsMs = ev.ts / 1e6;
    const latency = nowMs() - tsMs;
    const history = tsMs < this.since;
    if (fresh && !history) {
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
      try {
        const resp = await fetch(url, { signal: this.abort.signal, cache: "no-store" });
        const text = await resp.text();
        if (this.stopped) return;
        pane.transfer(utf8Length(text));
        if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${text.slice(0, 120)}`);
        body = JSON.parse(text);
      } catch (err) {
        if (this.stopped) return;
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
      pane.transfer(utf8Length(msg.data));
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
    const received = (msg) => {
      if (this.stopped) return null;
      pane.transfer(utf8Length(msg.data));
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

/** Every pane's latency, one line per transport, x = seq, drawn by hand. */
class Chart {
  constructor(canvas, series) {
    this.canvas = canvas;
    this.series = series; // [{pane, color}]
  }

  draw() {
    const canvas = this.canvas;
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
    const pad = { left: 48, right: 12, top: 10, bottom: 26 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;

    const lastSeq = Math.max(0, ...this.series.map((s) => Math.max(0, ...s.pane.points.keys())));
    const firstSeq = Math.max(1, lastSeq - CHART_POINTS + 1);
    let maxLatency = 0;
    for (const s of this.series) {
      for (const [seq, v] of s.pane.points) if (seq >= firstSeq) maxLatency = Math.max(maxLatency, v);
    }
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
    this.chart = new Chart(document.getElementById("chart"), [
      { pane: this.longpoll, color: css.getPropertyValue("--lp").trim() },
      { pane: this.websocket, color: css.getPropertyValue("--ws").trim() },
      { pane: this.sse, color: css.getPropertyValue("--sse").trim() },
    ]);
    this.status = document.getElementById("publish-status");
    window.addEventListener("resize", schedule);
  }

  init() {
    loadToken();
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
    });
  }
}

new Demo().init();
