// The dashboard: one tile per stream from /api/streams, live frames over one multiplexed socket.
import { unpack } from "./protocol.js";
import { drawFrame } from "./overlay.js";

const grid = document.getElementById("grid");
const banner = document.getElementById("banner");
const summary = document.getElementById("summary");
const tiles = new Map(); // stream id -> {el, canvas, stats, frames[]}
let socket = null;
let backoff = 500;

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

function tileFor(stream) {
  let t = tiles.get(stream);
  if (t) return t;
  const el = document.createElement("section");
  el.className = "tile";
  el.dataset.stream = stream;
  el.innerHTML = `<canvas width="640" height="480"></canvas>
    <div class="meta"><span class="name"></span><span class="status"></span>
    <span class="fps"></span><span class="latency"></span><span class="dets"></span></div>`;
  el.querySelector(".name").textContent = stream;
  grid.appendChild(el);
  t = { el, canvas: el.querySelector("canvas"), recent: [], results: 0 };
  tiles.set(stream, t);
  return t;
}

function setText(t, cls, text) { t.el.querySelector("." + cls).textContent = text; }

async function onResult(header, jpeg) {
  const t = tileFor(header.stream);
  const now = performance.now();
  t.recent.push(now);
  while (t.recent.length && t.recent[0] < now - 5000) t.recent.shift();
  t.results += 1;
  t.el.dataset.results = String(t.results);
  t.el.dataset.detections = String(header.detections.length);
  t.el.dataset.seq = String(header.seq);
  setText(t, "fps", `${(t.recent.length / 5).toFixed(1)} fps`);
  setText(t, "latency", `${Math.max(0, Date.now() - header.ts_ms)} ms`);
  setText(t, "dets", `${header.detections.length} ${header.kind}`);
  await drawFrame(t.canvas, jpeg, header);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}/ws/streams?ids=*`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => { backoff = 500; showBanner(""); };
  socket.onmessage = (ev) => {
    const { header, jpeg } = unpack(ev.data);
    if (header.type === "result") onResult(header, jpeg);
    else if (header.type === "stream") updateStream(header.info);
  };
  socket.onclose = () => {
    showBanner("Gateway unreachable — reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

function updateStream(info) {
  const t = tileFor(info.stream);
  const s = t.el.querySelector(".status");
  s.textContent = info.status + (info.message ? `: ${info.message}` : "");
  s.className = `status status-${info.status}`;
}

async function refresh() {
  try {
    const r = await fetch("/api/streams");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const streams = await r.json();
    for (const s of streams) updateStream(s);
    const ready = await fetch("/readyz");
    summary.textContent = `${streams.length} stream(s)` + (ready.ok ? "" : " — Kafka unreachable");
    if (!ready.ok) showBanner("Kafka is unreachable — results will resume when it is back");
  } catch (e) {
    summary.textContent = "gateway unreachable";
  }
}

connect();
refresh();
setInterval(refresh, 2000);
