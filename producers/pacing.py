"""Frame-rate control and reconnect backoff: small, clock-injectable, unit-tested."""

from __future__ import annotations

import random


class RateGate:
    """Admit at most `fps` frames per second of the given clock; 0 admits everything.

    Frames arriving early are refused (dropped by the caller), never queued. A tolerance of a
    fifth of a period absorbs jitter, so a 30 fps source capped at 10 keeps every third frame.
    """

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next: float | None = None

    def admit(self, t: float) -> bool:
        if self.period == 0.0:
            return True
        if self._next is not None and t < self._next - 0.2 * self.period:
            return False
        nxt = (self._next if self._next is not None else t) + self.period
        self._next = nxt if nxt > t - self.period else t + self.period  # no catch-up bursts
        return True


class Clock:
    """Paces a recorded source at its native rate: frame n is due at origin + n / fps.

    When processing falls more than a second behind, the origin moves forward instead of
    bursting to catch up.
    """

    def __init__(self, fps: float, now: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.origin = now
        self.n = 0

    def delay(self, now: float) -> float:
        """Seconds to wait before reading the next frame."""
        if self.period == 0.0:
            return 0.0
        due = self.origin + self.n * self.period
        if now - due > 1.0:
            self.origin = now - self.n * self.period
            due = now
        return max(0.0, due - now)

    def anchor(self, now: float) -> None:
        """Before the first tick: start media time now, when the first frame has arrived
        (opening a source or decoding its first frame may be slow; that is no lag to catch up)."""
        if self.n == 0:
            self.origin = now

    def tick(self) -> float:
        """Count a frame read; return its media time in seconds."""
        t = self.n * self.period
        self.n += 1
        return t


class Backoff:
    """Capped exponential backoff with jitter: base * 2**k, capped, times U(0.5, 1.0)."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        raw = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return float(raw * self._rng.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.attempts = 0
