"""How many websockets may be open at once: in all, and per client address (behind a proxy,
the address uvicorn takes from X-Forwarded-For when the proxy is in `forwarded_allow_ips`)."""

from __future__ import annotations

from collections import Counter


class ConnectionLimits:
    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: Counter[str] = Counter()

    def enter(self, client: str) -> str:
        """Take a place for a connection: "" when there is one, else why not."""
        if self.open >= self.total:
            return f"too many connections ({self.total}): try again later"
        if self._by_client[client] >= self.per_client:
            return f"too many connections from this address ({self.per_client})"
        self.open += 1
        self._by_client[client] += 1
        return ""

    def leave(self, client: str) -> None:
        self.open -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]

    def clients(self) -> int:
        return len(self._by_client)
