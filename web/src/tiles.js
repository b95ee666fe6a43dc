// One tile per stream: the live frame with boxes, its numbers, and a model selector when the
// stream has results from more than one model. Boxes are always drawn on the frame they were
// computed on: with several models, the newest frame that every active model has answered.
// Drawing is coalesced to one per animation frame.
import { FrameDecoder, colourOf, drawBitmap, drawBoxes, noteModel } from "./overlay.js";

const KEEP_FRAMES = 48; // recent frames kept per tile, to pair slower models' results
const ACTIVE_MS = 5000; // a model with no result for this long is not waited for
const STALLED_MS = 5000;

export function ago(unixMs) {
  if (!unixMs) return "never";
  const s = Math.max(0, (Date.now() - unixMs) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function fmtMs(ms) {
  if (ms == null) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

export class Tile {
  constructor(stream, onOpen) {
    this.stream = stream;
    this.models = new Map(); // model -> {kind, last result header, at: when it came}
    this.recent = new Map(); // capture ts -> {header, jpeg, byModel: Map(model -> header)}
    this.selected = "all";
    this.decoder = new FrameDecoder();
    this.results = 0;
    this.lastAt = 0;
    this.info = null;
    this.stats = null;
    this.queued = false;
    this.visible = true;
    this.listeners = new Set();
    this.build(onOpen);
  }

  build(onOpen) {
    const root = el("article", "tile");
    root.dataset.stream = this.stream;
    root.dataset.results = "0";
    root.dataset.detections = "0";
    root.dataset.boxes = "0";
    root.tabIndex = 0;
    const view = el("div", "view");
    this.canvas = el("canvas");
    this.canvas.width = 640;
    this.canvas.height = 360;
    this.placeholder = el("div", "placeholder", "waiting for frames…");
    this.badge = el("span", "badge status", "…");
    view.append(this.canvas, this.placeholder, this.badge);
    const meta = el("div", "meta");
    const title = el("div", "title");
    this.chips = el("div", "chips");
    title.append(el("span", "name", this.stream), (this.sourceEl = el("span", "source", "")),
      this.chips);
    this.nums = {};
    const dl = el("dl", "nums");
    for (const [key, label] of [["fps", "fps in / out"], ["lat", "latency p50 / p99"],
      ["drops", "drops"], ["dets", "detections"]]) {
      const box = el("div");
      box.append(el("dt", null, label), (this.nums[key] = el("dd", key, "–")));
      dl.append(box);
    }
    meta.append(title, dl);
    root.append(view, meta);
    root.addEventListener("click", (ev) => {
      if (!ev.target.closest(".chips")) onOpen(this);
    });
    root.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onOpen(this); });
    this.el = root;
  }

  modelEntry(header) {
    let m = this.models.get(header.model);
    if (!m) {
      m = { kind: header.kind, last: null, at: 0 };
      noteModel(header.model, header.kind);
      this.models.set(header.model, m);
      this.renderChips();
    }
    return m;
  }

  entry(header) {
    let e = this.recent.get(header.ts_ms);
    if (!e) {
      e = { header: null, jpeg: null, byModel: new Map() };
      this.recent.set(header.ts_ms, e);
      while (this.recent.size > KEEP_FRAMES) this.recent.delete(this.recent.keys().next().value);
    }
    return e;
  }

  onResult(header, jpeg) {
    const m = this.modelEntry(header);
    m.last = header;
    m.at = performance.now();
    const e = this.entry(header);
    e.byModel.set(header.model, header);
    if (jpeg && !e.jpeg) {
      e.jpeg = jpeg;
      e.header = header;
    }
    this.results += 1;
    this.lastAt = performance.now();
    this.el.dataset.results = String(this.results);
    this.el.dataset.seq = String(header.seq);
    this.el.dataset.detections = String(header.detections.length);
    const shown = [...this.models.entries()].filter(([, x]) => x.last);
    this.nums.dets.textContent = shown
      .map(([, x]) => `${x.last.detections.length} ${x.kind}`).join(" · ");
    this.nums.dets.title = shown.map(([name]) => name).join(" · ");
    this.schedule();
  }

  onFrame(header, jpeg) {
    const e = this.entry(header);
    if (!e.jpeg) {
      e.jpeg = jpeg;
      e.header = header;
    }
    this.lastAt = performance.now();
    this.schedule();
  }

  setInfo(info) {
    this.info = info;
    this.sourceEl.textContent = info.source || "";
    this.sourceEl.title = info.source || "";
    this.refreshStatus();
  }

  setStats(view) {
    this.stats = view.stats;
    if (view.registered) this.setInfo(view);
    const s = view.stats;
    if (!s) return;
    // Out is per model (each model answers every frame), so in and out compare directly.
    const active = s.models.filter((m) => m.fps_out > 0);
    const out = active.length ? s.fps_out / active.length : 0;
    this.nums.fps.textContent = `${s.fps_in.toFixed(1)} / ${out.toFixed(1)}`;
    this.nums.fps.title = s.models.map((m) => `${m.model}: ${m.fps_out.toFixed(1)} fps`).join("\n");
    this.nums.lat.textContent = `${fmtMs(s.latency_p50_ms)} / ${fmtMs(s.latency_p99_ms)}`;
    const d = s.drops;
    const total = d.frames + d.results + d.clients;
    this.nums.drops.textContent = String(total);
    this.nums.drops.title = `frames lost ${d.frames} · not inferred ${d.results} · ` +
      `to slow clients ${d.clients} · duplicates removed ${d.duplicates}`;
    this.nums.drops.classList.toggle("warn", total > 0);
    this.el.dataset.drops = String(total);
  }

  refreshStatus() {
    let status = this.info ? this.info.status : "unknown";
    if (status === "live" && this.lastAt && performance.now() - this.lastAt > STALLED_MS) {
      status = "stalled";
    }
    const seen = this.stats && this.stats.last_seen_ms;
    this.badge.textContent = status !== "live" && seen ? `${status} · ${ago(seen)}` : status;
    this.badge.className = `badge status st-${status}`;
    this.badge.title = this.info && this.info.message ? this.info.message : "";
    this.el.dataset.status = status;
  }

  renderChips() {
    this.chips.replaceChildren();
    this.el.dataset.models = String(this.models.size);
    if (this.models.size < 2) return;
    const names = ["all", ...[...this.models.keys()].sort()];
    for (const name of names) {
      const b = el("button", "chip", name);
      b.title = name === "all" ? "every model's boxes on the same frame" : `only ${name}`;
      if (name !== "all") b.style.setProperty("--c", colourOf(name));
      b.classList.toggle("on", name === this.selected);
      b.addEventListener("click", () => {
        this.selected = name;
        this.renderChips();
        this.schedule();
      });
      this.chips.append(b);
    }
  }

  // The frame to show, with the results drawn on it: for one model, its newest answered frame;
  // for all, the newest frame every active model has answered (else simply the newest frame).
  frameSource(only = null) {
    const want = only || (this.selected !== "all" ? this.selected : null);
    const now = performance.now();
    const active = want ? [want]
      : [...this.models.entries()].filter(([, m]) => now - m.at < ACTIVE_MS).map(([n]) => n);
    let newest = null;
    let complete = null;
    for (const [ts, e] of this.recent) {
      if (!e.jpeg) continue;
      if (!want && (!newest || ts > newest.ts)) newest = { ts, e };
      if (active.every((n) => e.byModel.has(n)) && (!complete || ts > complete.ts)) {
        complete = { ts, e };
      }
    }
    const pick = complete || newest;
    if (!pick) return null;
    const layers = [];
    for (const name of this.models.keys()) {
      const h = pick.e.byModel.get(name);
      if (!h || (want && name !== want)) continue;
      layers.push({ model: name, detections: h.detections, colour: colourOf(name), prefix: "" });
    }
    return { key: `${pick.ts}/${want || "all"}`, header: pick.e.header, jpeg: pick.e.jpeg, layers };
  }

  // Off-screen tiles are not drawn (no JPEG decode); they catch up when scrolled into view.
  setVisible(visible) {
    this.visible = visible;
    if (visible) this.schedule();
  }

  schedule() {
    if (this.queued || (!this.visible && !this.listeners.size)) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      if (this.visible) this.draw();
      for (const fn of this.listeners) fn(this);
    });
  }

  async draw() {
    const src = this.frameSource();
    if (!src) return;
    if (!(await this.decoder.load(src.key, src.jpeg, src))) return;
    drawBitmap(this.canvas, this.decoder.bitmap);
    const boxes = drawBoxes(this.canvas, this.decoder.header.layers);
    this.placeholder.hidden = true;
    this.el.dataset.boxes = String(boxes);
    this.el.dataset.drawn = String(Number(this.el.dataset.drawn || 0) + 1);
  }
}
