"""Metric helpers shared by the services; each service defines its own metrics beside its code."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

# Latency buckets in seconds, from sub-millisecond inference to multi-second lag.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry | None = None) -> None:
    """Expose /metrics on a background thread; port 0 means metrics are off."""
    if port:
        if registry is None:
            start_http_server(port, addr)
        else:
            start_http_server(port, addr, registry=registry)
