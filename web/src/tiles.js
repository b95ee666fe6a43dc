// One tile per stream: the live frame with boxes, its numbers, and a model selector when the
// stream has results from more than one model. While results keep up, boxes are drawn on the
// frame they were computed on: with several models, the newest frame that every active model
// has answered. When results lag behind the picture (an overloaded processor, drop-stale
// skipping), the tile still shows the newest frame, with each model's newest boxes dashed on it
// and "results N s behind"; "dropping stale frames" when the models' results skip frames.
// Drawing is coalesced to one per animation frame.
import { FrameDecoder, colourOf, drawBitmap, drawBoxes, noteModel } from "./overlay.js";

const KEEP_FRAMES = 48; // recent frames kept per tile, to pair slower models' results
const ACTIVE_MS = 5000; // a model with no result for this long is not waited for
const STALLED_MS = 5000;
const IN_SYNC_MS = 1000; // results this close behind the newest frame are drawn on their own

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
    this.latest = null; // the newest frame received: {ts, header, jpeg}
    this.skipping = 0; // frames the models skipped a second (REST, drop-stale while behind)
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
    this.lagNote = el("div", "lagnote");
    this.behindEl = el("span", "behind");
    this.staleEl = el("span", "stale");
    this.behindEl.hidden = true;
    this.staleEl.hidden = true;
    this.lagNote.append(this.behindEl, this.staleEl);
    view.append(this.canvas, this.placeholder, this.badge, this.lagNote);
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

  // The newest frame stays whatever `recent` lets go of (its results may be long behind it).
  keepLatest(header, jpeg) {
    if (!this.latest || header.ts_ms >= this.latest.ts) {
      this.latest = { ts: header.ts_ms, header, jpeg };
    }
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
    // A result without its picture (its frame left the gateway long ago) only adds boxes to
    // a frame already here; it never takes a place of `recent` from a frame.
    const e = jpeg ? this.entry(header) : this.recent.get(header.ts_ms);
    if (e) {
      e.byModel.set(header.model, header);
      if (jpeg && !e.jpeg) {
        e.jpeg = jpeg;
        e.header = header;
      }
    }
    if (jpeg) this.keepLatest(header, jpeg);
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
    this.keepLatest(header, jpeg);
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
    // Gaps in a model's results while its frames arrive: drop-stale skipping frames to catch up.
    this.skipping = s.models.reduce((a, m) => a + (m.skipped_per_s || 0), 0);
    this.staleEl.hidden = !(this.skipping > 0);
    this.staleEl.textContent = `dropping stale frames · ${this.skipping.toFixed(1)}/s`;
    this.staleEl.title = "frames the processors skipped (drop-stale: too old to be worth " +
      "inferring), over the last 10 s: " +
      s.models.map((m) => `${m.model} ${(m.skipped_per_s || 0).toFixed(1)}/s`).join(" · ");
    this.el.dataset.dropping = this.skipping > 0 ? "1" : "0";
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
    const latest = this.latest;
    const answered = [...this.models.entries()].filter(([n, m]) => m.last && (!want || n === want));
    if (latest && answered.length && (!complete || latest.ts - complete.ts > IN_SYNC_MS)) {
      // Results lag behind the picture: the newest frame, each model's boxes on it if it has
      // answered it, else its newest boxes dashed (computed on an older frame), and how far
      // behind the oldest of those is.
      const here = this.recent.get(latest.ts);
      const layers = answered.map(([name, m]) => {
        const own = here && here.byModel.get(name);
        return { model: name, detections: (own || m.last).detections, colour: colourOf(name),
          prefix: "", dashed: !own, ts: (own || m.last).ts_ms };
      });
      const older = layers.filter((l) => l.dashed).map((l) => l.ts);
      const behindMs = older.length ? latest.ts - Math.min(...older) : 0;
      return { key: `${latest.ts}/${want || "all"}`, header: latest.header, jpeg: latest.jpeg,
        layers, behindMs };
    }
    const pick = complete || newest || (latest && { ts: latest.ts, e: latest });
    if (!pick) return null;
    const layers = [];
    for (const name of this.models.keys()) {
      const h = pick.e.byModel && pick.e.byModel.get(name);
      if (!h || (want && name !== want)) continue;
      layers.push({ model: name, detections: h.detections, colour: colourOf(name), prefix: "" });
    }
    return { key: `${pick.ts}/${want || "all"}`, header: pick.e.header, jpeg: pick.e.jpeg, layers,
      behindMs: 0 };
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
    const { layers, behindMs } = this.decoder.header;
    const boxes = drawBoxes(this.canvas, layers);
    this.placeholder.hidden = true;
    // Frames flow but no result has come since the page opened (a processor far behind on this
    // stream's partition, or none running): say so rather than look like a tile without faces.
    const none = this.models.size === 0;
    this.behindEl.hidden = !(behindMs > IN_SYNC_MS || none);
    this.behindEl.textContent = none ? "no results yet"
      : `results ${(behindMs / 1000).toFixed(1)} s behind`;
    this.el.dataset.behindMs = String(behindMs);
    this.el.dataset.picture = String(src.header ? src.header.ts_ms : 0);
    this.el.dataset.boxes = String(boxes);
    this.el.dataset.colours = layers.map((l) => l.colour).join(" ");
    this.el.dataset.drawn = String(Number(this.el.dataset.drawn || 0) + 1);
  }
}
