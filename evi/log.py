"""One log format for every service: time, level, logger, message (which carries identity)."""

from __future__ import annotations

import logging


def setup(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Faust and aiokafka are chatty at INFO; their warnings still show.
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
