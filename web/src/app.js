// The dashboard: a tile per stream over one multiplexed websocket, the scaling panel and the
// health banner from the REST API (polled every 2 s).
import { AuthError, getJSON, hasPendingToken, openSession, socketURL } from "./api.js";
import { Detail } from "./detail.js";
import { Legend } from "./legend.js";
import { ScalingPanel } from "./scaling.js";
import { ReconnectingSocket } from "./socket.js";
import { Tile } from "./tiles.js";

const POLL_MS = 2000;
const RENEW_MS = 3600 * 1000; // the session cookie is renewed hourly while the page is open

const $ = (sel) => document.querySelector(sel);
const grid = $("#grid");
const banner = $("#banner");
const tiles = new Map();
const detail = new Detail($("#detail"));
const panel = new ScalingPanel($("#kinds"));
// A model shown or hidden in the legend: every tile redraws its frame without (or with) it.
new Legend($("#legend"), () => {
  for (const t of tiles.values()) t.schedule();
});
const state = {
  wsOpen: false, attempt: 0, retryAt: 0, gatewayUp: null, kafkaUp: null, auth: false,
  downSince: null,
};

const onScreen = new IntersectionObserver((entries) => {
  for (const e of entries) tiles.get(e.target.dataset.stream)?.setVisible(e.isIntersecting);
});

function tileFor(stream) {
  let t = tiles.get(stream);
  if (t) return t;
  t = new Tile(stream, (tile) => detail.open(tile));
  tiles.set(stream, t);
  onScreen.observe(t.el);
  const after = [...tiles.keys()].sort().find((s) => s > stream);
  grid.insertBefore(t.el, after ? tiles.get(after).el : null);
  $("#empty").hidden = true;
  return t;
}

function removeTile(stream) {
  const t = tiles.get(stream);
  if (!t) return;
  onScreen.unobserve(t.el);
  t.el.remove();
  tiles.delete(stream);
  $("#empty").hidden = tiles.size > 0;
}

function onMessage(h, jpeg) {
  switch (h.type) {
    case "hello":
      state.kafkaUp = h.kafka;
      for (const info of h.info || []) tileFor(info.stream).setInfo(info);
      break;
    case "result": tileFor(h.stream).onResult(h, jpeg); break;
    case "frame": tileFor(h.stream).onFrame(h, jpeg); break;
    case "stream": tileFor(h.info.stream).setInfo(h.info); break;
    case "removed": removeTile(h.stream); break;
    case "status": state.kafkaUp = h.kafka; break;
    default: return;
  }
  if (h.type === "hello" || h.type === "status") render();
}

const socket = new ReconnectingSocket(() => socketURL("/ws/streams?ids=*"), {
  onMessage,
  onState(s) {
    state.wsOpen = s.open;
    state.attempt = s.attempt;
    state.retryAt = s.open ? 0 : Date.now() + s.retryInMs;
    if (s.open) state.auth = false;
    document.body.dataset.ws = s.open ? "open" : "closed";
    render();
  },
});

function setBanner(kind, html) {
  banner.dataset.kind = kind || "";
  banner.hidden = !kind;
  if (kind) banner.innerHTML = html;
  document.body.dataset.banner = kind || "";
}

function since() {
  return state.downSince ? ` since ${new Date(state.downSince).toLocaleTimeString()}` : "";
}

function render() {
  const gatewayDown = state.gatewayUp === false || (!state.wsOpen && state.attempt > 0);
  const down = gatewayDown || state.kafkaUp === false;
  if (down && !state.downSince) state.downSince = Date.now();
  if (!down) state.downSince = null;
  if (state.auth) {
    setBanner("auth", `<b>This gateway needs a token.</b>
      <form id="token-form"><input name="token" type="password" placeholder="token"
      autocomplete="off"><button>Use token</button></form>`);
    $("#token-form").onsubmit = async (ev) => {
      ev.preventDefault();
      const token = ev.target.token.value.trim();
      ev.target.token.value = "";
      await signIn(() => openSession(token));
    };
  } else if (gatewayDown) {
    const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    const retry = state.wsOpen ? "" : ` — reconnecting${secs ? ` in ${secs} s` : "…"}` +
      ` (attempt ${state.attempt})`;
    setBanner("gateway", `<b>Gateway unreachable${since()}</b>${retry}.
      Tiles show the last picture received.`);
  } else if (state.kafkaUp === false) {
    setBanner("kafka", `<b>Kafka is unreachable${since()}.</b> The gateway is up but no new
      frames or results arrive; they resume by themselves when Kafka is back.`);
  } else {
    setBanner("", "");
  }
  if (gatewayDown) state.kafkaUp = null; // unknown while the gateway cannot tell us
  const pill = $("#pill-kafka");
  pill.textContent = state.kafkaUp === false ? "Kafka down" : state.kafkaUp ? "Kafka ok" : "Kafka …";
  pill.className = `pill ${state.kafkaUp === false ? "bad" : state.kafkaUp ? "good" : ""}`;
  const ws = $("#pill-ws");
  ws.textContent = state.wsOpen ? "live" : "offline";
  ws.className = `pill ${state.wsOpen ? "good" : "bad"}`;
}

async function refresh() {
  try {
    const [streams, kinds, ready] = await Promise.all([
      getJSON("/api/streams"), getJSON("/api/kinds?minutes=10"), getJSON("/readyz"),
    ]);
    state.gatewayUp = true;
    state.auth = false;
    state.kafkaUp = ready.ok || (ready.body && ready.body.status !== "waiting for kafka");
    if (streams.ok) {
      for (const v of streams.body) tileFor(v.stream).setStats(v);
      const live = streams.body.filter((v) => v.status === "live").length;
      const fin = streams.body.reduce((a, v) => a + (v.stats ? v.stats.fps_in : 0), 0);
      const fout = streams.body.reduce((a, v) => a + (v.stats ? v.stats.fps_out : 0), 0);
      $("#sum-streams").textContent = `${streams.body.length} streams · ${live} live`;
      $("#sum-fps").textContent = `${fin.toFixed(1)} fps in · ${fout.toFixed(1)} inferred`;
    }
    if (kinds.ok) panel.update(kinds.body);
  } catch (e) {
    if (!(e instanceof AuthError)) state.gatewayUp = false;
    else if (hasPendingToken()) await signIn(() => openSession()); // the link's token
    else needAuth();
  }
  for (const t of tiles.values()) t.refreshStatus();
  detail.update();
  render();
}

// The websocket runs only with a session: without one its handshake is refused (HTTP 401).
function needAuth() {
  state.auth = true;
  state.wsOpen = false;
  document.body.dataset.ws = "closed";
  socket.stop();
}

// true when the session is open (then the socket runs), false when a token is needed.
async function signIn(open) {
  try {
    if (!(await open())) {
      needAuth();
      render();
      return false;
    }
    state.auth = false;
    socket.start();
  } catch {
    state.gatewayUp = false;
    socket.start(); // it retries with backoff and shows the countdown
  }
  refresh();
  return true;
}

async function boot() {
  await signIn(() => openSession());
  setInterval(refresh, POLL_MS);
  setInterval(render, 1000); // the banner's countdown
  setInterval(() => openSession().then((ok) => ok || needAuth(), () => {}), RENEW_MS);
}

boot();
