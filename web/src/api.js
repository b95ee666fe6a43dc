// REST calls with the optional bearer token. The token comes from `#token=…` in the address
// (then kept for this tab only) or from the banner's token form.
const KEY = "evi.token";

export class AuthError extends Error {}

export function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

export async function getJSON(path, { timeoutMs = 4000 } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const r = await fetch(path, { headers, signal: ctl.signal, cache: "no-store" });
    if (r.status === 401) throw new AuthError("token required");
    const body = await r.json().catch(() => null);
    return { ok: r.ok, status: r.status, body };
  } finally {
    clearTimeout(timer);
  }
}

export function socketURL(path) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const t = token();
  const sep = path.includes("?") ? "&" : "?";
  return `${proto}://${location.host}${path}${t ? `${sep}token=${encodeURIComponent(t)}` : ""}`;
}
