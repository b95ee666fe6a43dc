// The scaling panel: per kind, consumer lag over the last minutes, active workers (members of
// the kind's consumer groups) against the replicas KEDA's formula asks for from the same lag
// (the gateway's `desired`: it moves first, the workers follow after the scaler's windows), the
// lag KEDA tolerates with the workers there are (lagThreshold × workers: above it, desired
// exceeds workers) drawn dashed next to the lag, and
// input vs inferred frames per second; below, every consumer group of the kind (one per model
// served: FP32 and INT8 side by side) with its workers and lag.
import { sparkline } from "./sparkline.js";

const LAG = "#ffb300";
const WORKERS = "#40c4ff";
const DESIRED = "#ff6e9c";
const THRESHOLD = "#e0e0e0";
const FPS_IN = "#8a93a6";
const FPS_OUT = "#00e05a";

function card(kind) {
  const c = document.createElement("section");
  c.className = "kind";
  c.dataset.kind = kind;
  c.innerHTML = `
    <header><h3></h3><span class="workers" title="members of the consumer group(s)"></span></header>
    <div class="kv"><span class="lag-now"></span><span class="parts"></span></div>
    <div class="kv"><span class="scaler" title="KEDA's Kafka trigger: lagThreshold per worker, maxReplicaCount"></span></div>
    <div class="chart"><span class="legend"><i style="--c:${LAG}"></i>lag (frames)
      <i class="dashed" style="--c:${THRESHOLD}"></i>threshold × workers
      <i style="--c:${WORKERS}"></i>workers
      <i style="--c:${DESIRED}"></i>desired (KEDA)</span>
      <canvas class="c-lag"></canvas><canvas class="c-workers"></canvas></div>
    <div class="chart"><span class="legend"><i style="--c:${FPS_IN}"></i>input fps
      <i style="--c:${FPS_OUT}"></i>inferred fps</span><canvas class="c-fps"></canvas></div>
    <div class="groups"></div>`;
  c.querySelector("h3").textContent = kind;
  return c;
}

export class ScalingPanel {
  constructor(root) {
    this.root = root;
    this.cards = new Map();
  }

  update(kinds) {
    const seen = new Set();
    for (const k of kinds) {
      seen.add(k.kind);
      let c = this.cards.get(k.kind);
      if (!c) {
        c = card(k.kind);
        this.cards.set(k.kind, c);
        this.root.append(c);
      }
      this.fill(c, k);
    }
    for (const [kind, c] of this.cards) {
      if (!seen.has(kind)) { c.remove(); this.cards.delete(kind); }
    }
    this.root.querySelector(".empty").hidden = kinds.length > 0;
  }

  fill(c, k) {
    const workers = k.workers ?? "?";
    const w = c.querySelector(".workers");
    w.textContent = `${workers} worker${workers === 1 ? "" : "s"}`;
    w.classList.toggle("none", k.workers === 0);
    c.dataset.workers = String(k.workers ?? "");
    c.dataset.lag = String(k.lag ?? "");
    c.dataset.desired = String(k.desired ?? "");
    c.dataset.threshold = String(k.lag_threshold);
    c.dataset.maxReplicas = String(k.max_replicas);
    c.querySelector(".lag-now").textContent =
      k.lag == null ? "lag unknown" : `lag ${k.lag.toLocaleString()} frames`;
    c.querySelector(".scaler").textContent =
      `threshold ${k.lag_threshold.toLocaleString()} frames/worker · ` +
      `desired ${k.desired ?? "?"} of max ${k.max_replicas}`;
    c.querySelector(".parts").textContent =
      `${k.partitions} partitions · ${k.fps_in.toFixed(1)} → ${k.fps_out.toFixed(1)} fps`;
    c.classList.toggle("stale", k.stale);
    const h = k.history;
    sparkline(c.querySelector(".c-lag"), [
      { values: h.map((p) => p.lag), colour: LAG, fill: true },
      { values: h.map((p) => (p.workers == null ? null : p.workers * k.lag_threshold)),
        colour: THRESHOLD, step: true, dash: true },
    ], { minMax: 10 });
    sparkline(c.querySelector(".c-workers"), [
      { values: h.map((p) => p.desired ?? null), colour: DESIRED, step: true },
      { values: h.map((p) => p.workers), colour: WORKERS, step: true },
    ], { minMax: 2 });
    sparkline(c.querySelector(".c-fps"), [
      { values: h.map((p) => p.fps_in), colour: FPS_IN },
      { values: h.map((p) => p.fps_out), colour: FPS_OUT, fill: true },
    ], { minMax: 1 });
    const g = c.querySelector(".groups");
    g.replaceChildren();
    for (const grp of k.groups) {
      const line = document.createElement("div");
      line.dataset.group = grp.group;
      // A kind's default model runs in `<group>`, every other model in `<group>-<model>`.
      const model = grp.group.startsWith(`${k.group}-`) ? grp.group.slice(k.group.length + 1) : "";
      line.dataset.model = model;
      const name = document.createElement("span");
      name.className = "g-name";
      name.textContent = model ? `${k.kind} · ${model}` : `${k.kind} · default model`;
      name.title = `consumer group ${grp.group} (${grp.state})`;
      const nums = document.createElement("span");
      const n = grp.members.length;
      line.dataset.workers = String(n);
      line.classList.toggle("idle", n === 0);
      nums.textContent = `${n} worker${n === 1 ? "" : "s"} · lag ${grp.lag}`;
      line.append(name, nums);
      g.append(line);
    }
  }
}
