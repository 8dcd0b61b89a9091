"""Reconnect pacing: capped full-jitter backoff and a connection-attempt token bucket.

design.md §3 "Backoff": the first retry after an unexpected drop is immediate
(Kraken's advice, protocols.md §1.2); later ones wait ``uniform(0, min(cap,
base * 2**(n-1)))`` (full jitter); the attempt counter resets only after the
connection stayed LIVE for a stability period; after a maintenance status
every attempt waits at least ``maintenance_min_delay_s`` (Kraken: 5 s).

The token bucket bounds connection attempts per venue so a flapping network
can never get the user's IP banned (Kraken ~150 attempts / 10 min / IP).
Both take time as arguments; the caller sleeps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 0.5
    cap_s: float = 30.0
    stable_after_s: float = 10.0
    maintenance_min_delay_s: float = 5.0
    immediate_first_retry: bool = True


class Backoff:
    """Counts consecutive failed attempts and proposes the next delay."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.attempts = 0

    def failure_delay(
        self, *, maintenance: bool = False, retry_after_s: float | None = None
    ) -> float:
        """Register one more failed/ended attempt and return how long to wait."""
        p = self.policy
        n = self.attempts
        self.attempts += 1
        if n == 0 and p.immediate_first_retry:
            delay = 0.0
        else:
            exp = max(0, n - 1 if p.immediate_first_retry else n)
            ceiling = min(p.cap_s, p.base_s * (2.0 ** min(exp, 30)))
            delay = self.rng.uniform(0.0, ceiling)
        if maintenance:
            delay = max(delay, p.maintenance_min_delay_s)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def connection_ended(self, live_for_s: float | None) -> None:
        """A connection ended; reset the counter only if it was LIVE long enough."""
        if live_for_s is not None and live_for_s >= self.policy.stable_after_s:
            self.attempts = 0


class TokenBucket:
    """``capacity`` attempts at once, refilled at ``rate_per_s``."""

    def __init__(self, capacity: float, rate_per_s: float, now: float) -> None:
        if capacity < 1 or rate_per_s <= 0:
            raise ValueError("token bucket needs capacity >= 1 and a positive rate")
        self.capacity = capacity
        self.rate = rate_per_s
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 if available now)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
