"""`evi gateway`: REST API, websockets and the dashboard on one port."""

from __future__ import annotations

import argparse
import logging
import sys

from evi.errors import ConfigError
from evi.log import setup as setup_logging
from evi.log import tame_librdkafka
from evi.settings import die_on_config_error, load, override
from gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evi gateway", description=__doc__)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--kind", action="append", dest="kinds",
                   help="kinds to serve (repeatable; default: every kind whose topics exist)")
    p.add_argument("--cors-origin", action="append", dest="cors_origins",
                   help="allow this browser origin (repeatable); the token comes from "
                        "EVI_AUTH_TOKEN, never a flag")
    p.add_argument("--client-queue", type=int, help="messages queued per websocket client")
    p.add_argument("--bootstrap-servers")
    p.add_argument("--topic-prefix")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--print-settings", action="store_true")
    a = p.parse_args(argv)
    try:
        base = load(GatewaySettings)
        s = load(
            GatewaySettings, host=a.host, port=a.port, kinds=a.kinds, log_level=a.log_level,
            cors_origins=a.cors_origins, client_queue=a.client_queue,
            kafka=override(base.kafka, bootstrap_servers=a.bootstrap_servers),
            topics=override(base.topics, prefix=a.topic_prefix),
        )
    except ConfigError as e:
        die_on_config_error(e)
    if a.print_settings:
        print(s.printable())
        return 0
    setup_logging(s.log_level)
    # The feed's consumer logs librdkafka's lines to its own logger (gateway/feed.py): the same
    # filter as every other client's, so a broker that is away is the feed's one line.
    tame_librdkafka(logging.getLogger("evi.gateway.feed"))
    import uvicorn

    from gateway.app import create_app

    print(f"evi gateway: dashboard at http://{s.host}:{s.port}/", flush=True)
    # The dashboard polls every 2 s: access lines only when debugging. No per-message deflate:
    # messages are mostly JPEG, which does not compress, and zlib per client per message would
    # cost more CPU than everything else the fan-out does.
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level=s.log_level.lower(),
                access_log=s.log_level == "DEBUG", ws_max_size=1 << 20,
                ws_per_message_deflate=False, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
