"""Who may read the gateway: the token (a bearer header or the session cookie made from it) and,
for browsers, the page's origin. Pure logic; the routes and the websocket handshake ask `Auth`.

The session cookie is `v1.<expiry>.<HMAC-SHA256 of the expiry, keyed by the token>`: nothing is
kept in the gateway, so every replica that has the token accepts it (no sticky sessions), and
changing the token ends every session. It never holds the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.settings import GatewaySettings

COOKIE = "evi_session"
_LABEL = b"evi-session.v1."


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.lower(), port or _default_port(scheme)


def served_over_https(scheme: str, headers: Mapping[str, str]) -> bool:
    """Here or at a TLS proxy in front (X-Forwarded-Proto: it only ever makes a check
    stricter or a cookie Secure, so a client that lies about it only hurts itself)."""
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return scheme in ("https", "wss") or proto == "https"


class Auth:
    def __init__(self, s: GatewaySettings) -> None:
        self.required = s.auth_required
        self._key = s.auth_token.get_secret_value().encode() if s.auth_token else b""
        self.ttl_s = s.session_ttl_s
        self.allowed_origins = frozenset(s.allowed_origins)

    def token_ok(self, given: str | None) -> bool:
        if not self._key or given is None:
            return False
        return hmac.compare_digest(self._key, given.encode("utf-8", "replace"))

    def bearer_ok(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def _sign(self, expiry: int) -> str:
        mac = hmac.new(self._key, _LABEL + str(expiry).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def new_session(self, now: float | None = None) -> tuple[str, int]:
        """A session cookie value and when it expires (epoch seconds)."""
        expiry = int(now if now is not None else time.time()) + self.ttl_s
        return f"v1.{expiry}.{self._sign(expiry)}", expiry

    def session_ok(self, cookie: str | None, now: float | None = None) -> bool:
        if not cookie or len(cookie) > 100:
            return False
        version, _, rest = cookie.partition(".")
        expiry, _, sig = rest.partition(".")
        if version != "v1" or not expiry.isdigit() or len(expiry) > 12:
            return False
        if int(expiry) <= (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._sign(int(expiry)).encode(), sig.encode())

    def allows(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """A request may read: auth is off, or its bearer token or session cookie is good."""
        if not self.required:
            return True
        return self.bearer_ok(headers.get("authorization")) or self.session_ok(cookies.get(COOKIE))

    def origin_ok(self, origin: str | None, host: str | None, https: bool = False) -> bool:
        """No Origin (not a browser) is fine; else the gateway's own origin (the Host the
        browser asked for; https when the gateway knows it is served so) or one of
        `allowed_origins`."""
        if origin is None:
            return True
        o = origin.strip().lower().rstrip("/")
        if o in self.allowed_origins:
            return True
        parts = urlsplit(o)
        if parts.scheme not in ("http", "https") or not host:
            return False  # also Origin: null (a sandboxed frame, a file: page)
        if https and parts.scheme != "https":
            return False
        mine = _host_port(host, parts.scheme)
        theirs = _host_port(parts.netloc, parts.scheme)
        return mine is not None and mine == theirs
