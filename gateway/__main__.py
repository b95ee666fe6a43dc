"""`evi gateway`: REST API, websockets and the dashboard on one port; /metrics on another."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Annotated

import typer

from evi.command import help_text, printed_settings, run, typer_app
from evi.errors import ConfigError
from evi.log import setup as setup_logging
from evi.log import tame_librdkafka
from evi.metrics import serve as serve_metrics
from evi.settings import die_on_config_error, load
from gateway.auth import is_loopback
from gateway.settings import GatewaySettings

log = logging.getLogger("evi.gateway")
# Clients send the gateway nothing it needs (the app closes 1009 past ws_client_max_bytes):
# uvicorn refuses a bigger frame before buffering it, and keeps at most a few unread messages.
WS_MAX_SIZE = 64 << 10
WS_MAX_QUEUE = 4


cli = typer_app()
Repeated = list[str] | None


@cli.command(help=help_text(__doc__ or ""))
def gateway(
    host: Annotated[str | None, typer.Option(
        help="address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(
        help="port of the dashboard and API (default 8000)")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Prometheus /metrics (default 9103; 0 = off)")] = None,
    kinds: Annotated[Repeated, typer.Option(
        "--kind", help="kinds to serve (repeatable; default: every kind whose topics exist)",
    )] = None,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="run open, without a token (a warning unless on loopback); the token "
                          "comes from EVI_AUTH_TOKEN, never a flag")] = False,
    allowed_origins: Annotated[Repeated, typer.Option(
        "--allowed-origin", help="a browser origin besides the gateway's own that may open "
                                 "websockets and sessions (repeatable)")] = None,
    cors_origins: Annotated[Repeated, typer.Option(
        "--cors-origin", help="allow this browser origin to call the API with a bearer token "
                              "(repeatable)")] = None,
    client_queue: Annotated[int | None, typer.Option(
        help="messages queued per websocket client")] = None,
) -> int:
    return serve(argparse.Namespace(**locals()))


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv, "evi gateway")


def settings(a: argparse.Namespace) -> GatewaySettings:
    opened = False if a.no_auth else None
    return load(
        GatewaySettings, host=a.host, port=a.port, metrics_port=a.metrics_port, kinds=a.kinds,
        auth_required=opened, allowed_origins=a.allowed_origins, cors_origins=a.cors_origins,
        client_queue=a.client_queue,
    )


def say_how_open(s: GatewaySettings) -> None:
    if s.auth_required:
        return
    if is_loopback(s.host):
        log.info("auth is off (--no-auth): no token asked, on loopback (%s) only", s.host)
    else:
        log.warning("auth is off (--no-auth) on %s: anyone who reaches port %d sees every "
                    "stream and every number; set EVI_AUTH_TOKEN instead", s.host, s.port)


def serve(a: argparse.Namespace) -> int:
    try:
        s = settings(a)
    except ConfigError as e:
        die_on_config_error(e)
    if printed_settings(s):
        return 0
    setup_logging(s.log_level)
    # The feed's consumer logs librdkafka's lines to its own logger (gateway/feed.py): the same
    # filter as every other client's, so a broker that is away is the feed's one line.
    tame_librdkafka(logging.getLogger("evi.gateway.feed"))
    say_how_open(s)
    try:
        serve_metrics(s.metrics_port, s.host)
    except OSError as e:
        print(f"evi gateway: cannot serve /metrics on {s.host}:{s.metrics_port}: {e.strerror}",
              file=sys.stderr)
        return 1
    import uvicorn

    from gateway.app import create_app

    how = "open, no token" if not s.auth_required else "token required: open the link with #token="
    print(f"evi gateway: dashboard at http://{s.host}:{s.port}/ ({how})", flush=True)
    # The dashboard polls every 2 s: access lines only when debugging. No per-message deflate:
    # messages are mostly JPEG, which does not compress, and zlib per client per message would
    # cost more CPU than everything else the fan-out does.
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level=s.log_level.lower(),
                access_log=s.log_level == "DEBUG", ws_max_size=WS_MAX_SIZE,
                ws_max_queue=WS_MAX_QUEUE, ws_per_message_deflate=False,
                forwarded_allow_ips=s.forwarded_allow_ips, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
