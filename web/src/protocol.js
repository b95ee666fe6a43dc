// Binary websocket messages: u32 big-endian header length, UTF-8 JSON header, JPEG bytes.
// See docs/wire-format.md ("Websocket messages").
const decoder = new TextDecoder();

export function unpack(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0);
  const header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, n)));
  const jpeg = buffer.byteLength > 4 + n ? new Uint8Array(buffer, 4 + n) : null;
  return { header, jpeg };
}
