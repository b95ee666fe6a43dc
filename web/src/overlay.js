// Draws frames and their detections; boxes and keypoints are normalised 0..1 in the wire format.
// Models get colours in order of first appearance: green, magenta, amber, sky blue, then more.
export const MODEL_COLOURS = ["#00e05a", "#ff4fd8", "#ffb300", "#40c4ff", "#ff6e40", "#b388ff",
  "#eeff41", "#1de9b6"];

// Every model seen on the page: its colour, kind and whether its boxes are shown (the legend's
// toggle). Page-wide, so a model looks the same, and is hidden the same, on every tile.
const registry = new Map(); // model -> {colour, kind, shown}
const watchers = new Set();

function notify() {
  for (const fn of watchers) fn();
}

function entryOf(model, kind = "") {
  let m = registry.get(model);
  if (!m) {
    m = { colour: MODEL_COLOURS[registry.size % MODEL_COLOURS.length], kind, shown: true };
    registry.set(model, m);
    notify();
  } else if (kind && !m.kind) {
    m.kind = kind;
    notify();
  }
  return m;
}

export const noteModel = (model, kind) => entryOf(model, kind);
export const colourOf = (model) => entryOf(model).colour;
export const isShown = (model) => !registry.has(model) || registry.get(model).shown;
export const knownModels = () => [...registry.entries()];
export const onModelsChange = (fn) => watchers.add(fn);

export function setShown(model, shown) {
  const m = entryOf(model);
  if (m.shown === shown) return;
  m.shown = shown;
  notify();
}

// Decode only the newest JPEG: while one decode runs, later ones replace the waiting one.
export class FrameDecoder {
  constructor() {
    this.bitmap = null;
    this.header = null; // the header of the frame in `bitmap`
    this.key = null;
    this.busy = false;
    this.next = null;
  }

  // Resolves true when the caller should draw `bitmap` (now the newest frame asked for);
  // false when a decode already running will pick this frame up and its caller draws it.
  async load(key, jpeg, header) {
    if (key === this.key) {
      this.header = header; // same frame, maybe more results on it now
      return true;
    }
    if (this.busy) {
      this.next = { key, jpeg, header };
      return false;
    }
    this.busy = true;
    try {
      let job = { key, jpeg, header };
      while (job) {
        const bitmap = await createImageBitmap(new Blob([job.jpeg], { type: "image/jpeg" }));
        if (this.bitmap) this.bitmap.close();
        this.bitmap = bitmap;
        this.key = job.key;
        this.header = job.header;
        job = this.next;
        this.next = null;
      }
    } catch (e) {
      console.warn("frame decode failed", e);
      this.next = null;
    } finally {
      this.busy = false;
    }
    return this.bitmap !== null;
  }
}

export function drawBitmap(canvas, bitmap, dim = false) {
  const ctx = canvas.getContext("2d");
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  ctx.drawImage(bitmap, 0, 0);
  if (dim) {
    ctx.fillStyle = "rgba(10, 12, 16, 0.55)";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  return ctx;
}

// layers: [{model, detections, colour, prefix, dashed}] — draws the shown models' boxes and
// keypoints; returns the number of boxes drawn (the canvas's data-keypoints counts the points).
// Dashed: boxes of an older frame drawn on a newer one (results behind the picture).
export function drawBoxes(canvas, layers) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const line = Math.max(2, Math.round(w / 220));
  const size = Math.max(12, Math.round(w / 42));
  ctx.lineWidth = line;
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  let n = 0;
  let points = 0;
  const shown = layers.filter((l) => !l.model || isShown(l.model));
  shown.forEach(({ detections, colour, prefix, dashed }, li) => {
    ctx.setLineDash(dashed ? [line * 4, line * 2] : []);
    for (const d of detections) {
      const [x1, y1, x2, y2] = d.box;
      const bx = x1 * w;
      const by = y1 * h;
      const bh = (y2 - y1) * h;
      ctx.strokeStyle = colour;
      ctx.strokeRect(bx, by, (x2 - x1) * w, bh);
      points += drawKeypoints(ctx, d.keypoints, colour, w, h, line);
      const text = `${prefix}${d.label} ${Math.round(d.score * 100)}%`;
      const tw = ctx.measureText(text).width + size * 0.6;
      const th = size * 1.35;
      // The first model's label sits above its box, the next ones below theirs, so labels of
      // models that found the same object do not cover each other.
      const above = by - th >= 0 ? by - th : by;
      const below = by + bh + th <= h ? by + bh : by + bh - th;
      const ty = li % 2 === 0 ? above : below;
      ctx.fillStyle = colour;
      ctx.fillRect(bx - line / 2, ty, tw, th);
      ctx.fillStyle = "#0b0d12";
      ctx.fillText(text, bx + size * 0.3 - line / 2, ty + size * 0.18);
      n += 1;
    }
  });
  ctx.setLineDash([]);
  canvas.dataset.keypoints = String(points);
  return n;
}

// Keypoints as dots in the model's colour with a dark ring (visible on any picture).
function drawKeypoints(ctx, keypoints, colour, w, h, line) {
  if (!keypoints || !keypoints.length) return 0;
  const r = line * 2.5;
  ctx.save();
  ctx.setLineDash([]);
  ctx.fillStyle = colour;
  ctx.strokeStyle = "#0b0d12";
  ctx.lineWidth = Math.max(1, line / 2);
  for (const [x, y] of keypoints) {
    ctx.beginPath();
    ctx.arc(x * w, y * h, r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
  }
  ctx.restore();
  return keypoints.length;
}
