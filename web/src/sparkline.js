// Hand-drawn canvas sparklines: a few series sharing one y scale from 0.
// series: [{values: [number|null], colour, fill?: bool, step?: bool, dash?: bool}]
export function sparkline(canvas, series, { max = null, minMax = 1 } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = canvas.clientWidth || 240;
  const cssH = canvas.clientHeight || 40;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  const all = series.flatMap((s) => s.values.filter((v) => v != null));
  const top = max ?? Math.max(minMax, ...all) * 1.15;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const x = (i) => (i / (n - 1)) * (cssW - 2) + 1;
  const y = (v) => cssH - 2 - (v / top) * (cssH - 4);

  ctx.strokeStyle = "rgba(255,255,255,0.06)";
  ctx.lineWidth = 1;
  for (const f of [0.5, 1]) {
    ctx.beginPath();
    ctx.moveTo(0, y(top * f / 1.15));
    ctx.lineTo(cssW, y(top * f / 1.15));
    ctx.stroke();
  }
  for (const s of series) {
    const pts = [];
    s.values.forEach((v, i) => { if (v != null) pts.push([x(i + n - s.values.length), y(v)]); });
    if (!pts.length) continue;
    ctx.beginPath();
    pts.forEach(([px, py], i) => {
      if (i === 0) ctx.moveTo(px, py);
      else if (s.step) { ctx.lineTo(px, pts[i - 1][1]); ctx.lineTo(px, py); }
      else ctx.lineTo(px, py);
    });
    ctx.strokeStyle = s.colour;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.setLineDash(s.dash ? [4, 3] : []);
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.fill) {
      ctx.lineTo(pts[pts.length - 1][0], cssH);
      ctx.lineTo(pts[0][0], cssH);
      ctx.closePath();
      const g = ctx.createLinearGradient(0, 0, 0, cssH);
      g.addColorStop(0, s.colour + "55");
      g.addColorStop(1, s.colour + "05");
      ctx.fillStyle = g;
      ctx.fill();
    }
    const [lx, ly] = pts[pts.length - 1];
    ctx.fillStyle = s.colour;
    ctx.beginPath();
    ctx.arc(lx, ly, 2.2, 0, Math.PI * 2);
    ctx.fill();
  }
}
