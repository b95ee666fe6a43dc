// Draws a frame and its detections on a canvas; boxes are normalised 0..1 in the wire format.
export async function drawFrame(canvas, jpeg, header) {
  const ctx = canvas.getContext("2d");
  if (jpeg) {
    const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
  }
  drawBoxes(ctx, canvas.width, canvas.height, header.detections || []);
}

export function drawBoxes(ctx, w, h, detections) {
  ctx.lineWidth = Math.max(2, Math.round(w / 240));
  ctx.font = `${Math.max(12, Math.round(w / 40))}px system-ui, sans-serif`;
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box;
    ctx.strokeStyle = "#0f0";
    ctx.strokeRect(x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h);
    const text = `${d.label} ${(d.score * 100).toFixed(0)}%`;
    ctx.fillStyle = "#0f0";
    ctx.fillText(text, x1 * w + 2, Math.max(12, y1 * h - 4));
  }
}
