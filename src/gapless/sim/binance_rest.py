"""Binance Spot REST request weight, 429 and 418 bans (protocols.md §3.7, §3.11). Pure, no I/O.

Rules as the simulator applies them (times on the loop clock):

* Every request has a weight (:func:`depth_weight` for ``/api/v3/depth``,
  :data:`ENDPOINT_WEIGHTS` otherwise). Weight is counted **per IP** in fixed
  windows of ``window_s`` seconds (60: the ``1M`` interval of
  ``X-MBX-USED-WEIGHT-1M``) anchored at the simulator's start, so runs
  under ``looptime`` are reproducible (the live venue uses calendar minutes).
* A request whose weight would take the window over ``limit`` is answered
  **429** with ``Retry-After`` = seconds until the window ends; its weight is
  not added (the header keeps showing the used weight).
* A request that arrives while a 429's ``Retry-After`` has not yet elapsed is
  "continuing after 429" (§3.11): the IP is banned and gets **418** with
  ``Retry-After`` = the ban length. Bans escalate: ``ban_s`` for the first
  one, doubled for each further ban, capped at ``ban_max_s`` (the venue
  escalates "from 2 minutes to 3 days"; the doubling is the simulator's
  choice). Every request during a ban gets 418 with the remaining time and
  does not extend the ban.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ENDPOINT_WEIGHTS", "Decision", "RestLimiter", "depth_weight"]

ENDPOINT_WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
}
"""Request weights of the endpoints other than depth (rest-api.md)."""

DEPTH_MAX_LIMIT = 5000
"""protocols.md §3.7: larger limits return 5000 levels."""


def depth_weight(limit: int) -> int:
    """protocols.md §3.7: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 -> 250."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


@dataclass(frozen=True)
class Decision:
    """What to answer: ``status`` 200 (serve), 429 or 418; ``retry_after_s`` for 429/418;
    ``used`` = weight used in the current window (the usage header); ``new_ban`` is
    True on the request that started a ban."""

    status: int
    used: int
    retry_after_s: int = 0
    new_ban: bool = False


class _IpState:
    __slots__ = ("ban_level", "ban_until", "limited_until", "used", "window")

    def __init__(self) -> None:
        self.window = -1
        self.used = 0
        self.limited_until = -math.inf
        self.ban_until = -math.inf
        self.ban_level = 0


class RestLimiter:
    """Per-IP request-weight accounting with 429 -> 418 escalation (see the module doc)."""

    def __init__(
        self, limit: int, window_s: float, ban_s: float, ban_max_s: float, t0: float
    ) -> None:
        if limit < 1 or window_s <= 0 or ban_s <= 0 or ban_max_s < ban_s:
            raise ValueError("invalid REST limiter settings")
        self.limit = limit
        self.window_s = window_s
        self.ban_s = ban_s
        self.ban_max_s = ban_max_s
        self.t0 = t0
        self._ips: dict[str, _IpState] = {}

    def _state(self, ip: str, now: float) -> tuple[_IpState, float]:
        st = self._ips.get(ip)
        if st is None:
            st = self._ips[ip] = _IpState()
        index = math.floor((now - self.t0) / self.window_s)
        if index != st.window:
            st.window = index
            st.used = 0
        window_end = self.t0 + (index + 1) * self.window_s
        return st, window_end

    def used(self, ip: str, now: float) -> int:
        """Weight used by ``ip`` in the current window."""
        return self._state(ip, now)[0].used

    def check(self, ip: str, weight: int, now: float) -> Decision:
        """Account one request of ``weight`` from ``ip`` at ``now``."""
        st, window_end = self._state(ip, now)
        if now < st.ban_until:
            return Decision(418, st.used, _ceil(st.ban_until - now))
        if now < st.limited_until:
            length = min(self.ban_s * 2.0**st.ban_level, self.ban_max_s)
            st.ban_level += 1
            st.ban_until = now + length
            st.limited_until = -math.inf
            return Decision(418, st.used, _ceil(length), new_ban=True)
        if st.used + weight > self.limit:
            st.limited_until = window_end
            return Decision(429, st.used, _ceil(window_end - now))
        st.used += weight
        return Decision(200, st.used)


def _ceil(seconds: float) -> int:
    """``Retry-After`` is whole seconds, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))
