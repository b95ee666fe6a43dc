"""How long and with which seed the fuzz tests run.

CI runs every fuzz test in a bounded time (seconds, not minutes); `EVI_FUZZ_SECONDS` scales the
budgets up for a long local run (`EVI_FUZZ_SECONDS=600 pytest tests/fuzz`), `EVI_FUZZ_SEED`
replays a run: each test prints the seed it used.
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, Phase, settings

CI_SECONDS = 60.0


def scale() -> float:
    """How many times the CI budget this run gets (EVI_FUZZ_SECONDS / 60 s, at least a tenth)."""
    raw = os.environ.get("EVI_FUZZ_SECONDS")
    return max(0.1, float(raw) / CI_SECONDS) if raw else 1.0


def seconds(ci: float) -> float:
    """A test's time budget: `ci` seconds in CI, scaled by EVI_FUZZ_SECONDS."""
    return ci * scale()


def seed() -> int:
    """EVI_FUZZ_SEED, or a fresh one; printed by the test that uses it so a run can be replayed."""
    raw = os.environ.get("EVI_FUZZ_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(2**32)


def shrink() -> bool:
    """Shrink failing examples only when asked (EVI_FUZZ_SHRINK=1): shrinking big generated
    documents can take minutes, past a CI budget; the failing input is printed either way."""
    return os.environ.get("EVI_FUZZ_SHRINK", "") not in ("", "0")


def examples(ci: int) -> settings:
    """Hypothesis settings for `ci` examples in CI: no deadline (2 shared cores are noisy), no
    example database in the work tree, no health checks about big or slow generated data."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    return settings(
        max_examples=max(10, int(ci * scale())),
        phases=[*phases, Phase.shrink] if shrink() else phases,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )
