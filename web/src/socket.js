// A websocket that reconnects by itself: exponential backoff from 0.5 s to 10 s with ±20 %
// jitter, reset once a connection has stayed open. tests/gateway/wsclient.py mirrors it.
// The URL carries no credentials: the browser sends the session cookie with the handshake.
import { unpack } from "./protocol.js";

export const BACKOFF = { initialMs: 500, factor: 2, maxMs: 10000, jitter: 0.2 };

export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF.maxMs, BACKOFF.initialMs * BACKOFF.factor ** attempt);
  return Math.round(base * (1 - BACKOFF.jitter + 2 * BACKOFF.jitter * random()));
}

export class ReconnectingSocket {
  // handlers: onMessage(header, jpeg), onState({open, attempt, retryInMs, code, reason})
  constructor(urlFn, handlers) {
    this.urlFn = urlFn;
    this.h = handlers;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = true;
  }

  // Idempotent: a running socket keeps its connection.
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
  }

  reconnectNow() {
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "reconnect");
    else this._connect();
  }

  _connect() {
    const ws = new WebSocket(this.urlFn());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.h.onState({ open: true, attempt: 0 });
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return;
      const { header, jpeg } = unpack(ev.data);
      this.h.onMessage(header, jpeg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      const delay = backoffDelay(this.attempt);
      this.attempt += 1;
      this.h.onState({
        open: false, attempt: this.attempt, retryInMs: delay, code: ev.code, reason: ev.reason,
      });
      this.timer = setTimeout(() => this._connect(), delay);
    };
  }
}
