// The large view of one stream: one canvas per model side by side (or one canvas when the
// stream has one model), and every number the gateway has about the stream.
import { FrameDecoder, colourOf, drawBitmap, drawBoxes } from "./overlay.js";
import { ago, fmtMs } from "./tiles.js";

export class Detail {
  constructor(dialog) {
    this.dialog = dialog;
    this.tile = null;
    this.views = new Map(); // model or "all" -> canvas
    this.decoder = new FrameDecoder(); // one frame for every view: a true side-by-side
    this.onTile = (tile) => this.draw(tile);
    dialog.addEventListener("close", () => this.detach());
    dialog.addEventListener("click", (ev) => { if (ev.target === dialog) dialog.close(); });
    dialog.querySelector(".close").addEventListener("click", () => dialog.close());
  }

  open(tile) {
    this.detach();
    this.tile = tile;
    tile.listeners.add(this.onTile);
    this.dialog.querySelector(".d-name").textContent = tile.stream;
    this.layout();
    this.update();
    if (!this.dialog.open) this.dialog.showModal();
    this.draw(tile);
  }

  detach() {
    if (this.tile) this.tile.listeners.delete(this.onTile);
    this.tile = null;
    this.views.clear();
  }

  layout() {
    const box = this.dialog.querySelector(".d-views");
    box.replaceChildren();
    this.views.clear();
    const models = [...this.tile.models.keys()].sort();
    const names = models.length > 1 ? models : ["all"];
    box.dataset.count = String(names.length);
    for (const name of names) {
      const fig = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.width = 640;
      canvas.height = 360;
      const cap = document.createElement("figcaption");
      if (name === "all") cap.textContent = models[0] || "waiting for results…";
      else {
        cap.textContent = name;
        cap.style.setProperty("--c", colourOf(name));
        cap.classList.add("swatch");
      }
      fig.append(canvas, cap);
      box.append(fig);
      this.views.set(name, canvas);
    }
  }

  async draw(tile) {
    if (tile !== this.tile) return;
    const count = tile.models.size > 1 ? tile.models.size : 1;
    if (count !== this.views.size) this.layout();
    // Every model's view shows the same frame (the newest all of them answered), each with
    // its own boxes: a side-by-side comparison.
    const src = tile.frameSource();
    if (!src || !(await this.decoder.load(src.key, src.jpeg, src))) return;
    const { layers } = this.decoder.header;
    for (const [name, canvas] of this.views) {
      drawBitmap(canvas, this.decoder.bitmap);
      drawBoxes(canvas, name === "all" ? layers : layers.filter((l) => l.model === name));
    }
  }

  // Called with each REST refresh.
  update() {
    const t = this.tile;
    if (!t) return;
    const info = t.info || {};
    const s = t.stats;
    const rows = [
      ["status", `${info.status || "unknown"}${info.message ? ` — ${info.message}` : ""}`],
      ["source", info.source || "–"],
      ["kinds", (info.kinds || []).join(", ") || "–"],
      ["size", info.width ? `${info.width}×${info.height} @ ${info.fps || "?"} fps` : "–"],
      ["producer", info.producer || "–"],
    ];
    if (s) {
      rows.push(
        ["fps in / out per model", `${s.fps_in.toFixed(1)} / ` +
          `${(s.fps_out / Math.max(1, s.models.filter((m) => m.fps_out > 0).length)).toFixed(1)}`],
        ["latency p50 / p95 / p99",
          `${fmtMs(s.latency_p50_ms)} / ${fmtMs(s.latency_p95_ms)} / ${fmtMs(s.latency_p99_ms)}`],
        ["inference p50", fmtMs(s.infer_p50_ms)],
        ["last seen", ago(s.last_seen_ms)],
        ["frames / results seen", `${s.frames_seen} / ${s.results_seen}`],
        ["drops", `frames ${s.drops.frames} · not inferred ${s.drops.results} · ` +
          `slow clients ${s.drops.clients} · duplicates ${s.drops.duplicates}`],
      );
    }
    const dl = this.dialog.querySelector(".d-info");
    dl.replaceChildren();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
    const tbody = this.dialog.querySelector(".d-models tbody");
    tbody.replaceChildren();
    for (const m of (s && s.models) || []) {
      const tr = document.createElement("tr");
      for (const v of [m.model, m.kind, m.fps_out.toFixed(1), m.results_seen,
        fmtMs(m.latency_p50_ms), m.skipped]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.append(td);
      }
      tr.firstChild.classList.add("swatch");
      tr.firstChild.style.setProperty("--c", colourOf(m.model));
      tbody.append(tr);
    }
  }
}
