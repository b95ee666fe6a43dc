// REST calls and the session. The token is never kept by the page: it arrives once in the
// address (`#token=…`, which browsers do not send to servers) or from the banner's form, and is
// traded at once (POST /api/session) for an HttpOnly, SameSite=Strict cookie that the browser
// then sends with every REST call and websocket of this origin. The address is cleaned first.
export class AuthError extends Error {}

let pending = takeTokenFromAddress();

function takeTokenFromAddress() {
  sessionStorage.removeItem("evi.token"); // where older dashboards kept it
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (!m) return "";
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(m[1]);
}

async function timed(path, init, timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    return await fetch(path, { ...init, signal: ctl.signal, cache: "no-store",
      credentials: "same-origin" });
  } finally {
    clearTimeout(timer);
  }
}

// Open (or renew) the session: with `token` when given, else the one from the address if it
// was not traded yet, else the cookie. true: the cookie is set (or the gateway is open);
// false: the gateway wants a token; throws when the gateway cannot be reached.
export async function openSession(token = "", { timeoutMs = 4000 } = {}) {
  const t = token || pending;
  const headers = t ? { Authorization: `Bearer ${t}` } : {};
  const r = await timed("/api/session", { method: "POST", headers }, timeoutMs);
  pending = ""; // an answer came: the address's token was tried (kept only if unreachable)
  if (r.ok) return true;
  if (r.status === 401 || r.status === 403) return false;
  throw new Error(`session: HTTP ${r.status}`);
}

export function hasPendingToken() {
  return pending !== "";
}

export async function getJSON(path, { timeoutMs = 4000 } = {}) {
  const r = await timed(path, {}, timeoutMs);
  if (r.status === 401) throw new AuthError("token required");
  const body = await r.json().catch(() => null);
  return { ok: r.ok, status: r.status, body };
}

// No credentials in the URL: the browser sends the session cookie with the handshake.
export function socketURL(path) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${location.host}${path}`;
}
