"""Unit tests for gapless.runtime.backoff (design.md §3 "Backoff"; protocols.md §1.2)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.runtime.backoff import Backoff, BackoffPolicy, TokenBucket

# ------------------------------------------------------------------ Backoff


def test_first_retry_is_immediate_then_full_jitter_within_growing_ceilings() -> None:
    policy = BackoffPolicy(base_s=0.5, cap_s=30.0)
    b = Backoff(policy, random.Random(1))
    assert b.failure_delay() == 0.0
    assert b.attempts == 1
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for ceiling in ceilings:
        d = b.failure_delay()
        assert 0.0 <= d <= ceiling
    assert b.attempts == 1 + len(ceilings)


def test_delays_are_full_jitter_from_the_injected_rng() -> None:
    policy = BackoffPolicy(base_s=1.0, cap_s=8.0)
    b = Backoff(policy, random.Random(42))
    got = [b.failure_delay() for _ in range(6)]
    ref = random.Random(42)
    want = [0.0] + [ref.uniform(0.0, c) for c in (1.0, 2.0, 4.0, 8.0, 8.0)]
    assert got == want


def test_full_jitter_spans_the_whole_interval() -> None:
    policy = BackoffPolicy(base_s=1.0, cap_s=4.0)
    samples = []
    for seed in range(400):
        b = Backoff(policy, random.Random(seed))
        b.attempts = 10  # far past the cap
        samples.append(b.failure_delay())
    assert max(samples) <= 4.0
    assert min(samples) >= 0.0
    assert min(samples) < 0.2  # full jitter reaches down to 0 ...
    assert max(samples) > 3.8  # ... and up to the cap


def test_cap_holds_for_huge_attempt_counts() -> None:
    b = Backoff(BackoffPolicy(base_s=0.5, cap_s=30.0), random.Random(3))
    b.attempts = 10_000  # 2**9999 would overflow a float without the exponent clamp
    for _ in range(50):
        assert 0.0 <= b.failure_delay() <= 30.0


def test_without_immediate_first_retry() -> None:
    policy = BackoffPolicy(base_s=2.0, cap_s=100.0, immediate_first_retry=False)
    b = Backoff(policy, random.Random(5))
    ref = random.Random(5)
    assert b.failure_delay() == ref.uniform(0.0, 2.0)
    assert b.failure_delay() == ref.uniform(0.0, 4.0)
    assert b.failure_delay() == ref.uniform(0.0, 8.0)


def test_maintenance_waits_at_least_five_seconds() -> None:
    b = Backoff(BackoffPolicy(), random.Random(0))
    assert b.failure_delay(maintenance=True) == 5.0  # even the "immediate" first retry
    for _ in range(20):
        assert b.failure_delay(maintenance=True) >= 5.0
    custom = Backoff(BackoffPolicy(maintenance_min_delay_s=12.0), random.Random(0))
    assert custom.failure_delay(maintenance=True) == 12.0


def test_retry_after_is_respected() -> None:
    b = Backoff(BackoffPolicy(cap_s=30.0), random.Random(0))
    assert b.failure_delay(retry_after_s=600.0) == 600.0  # above the cap: the venue wins
    assert b.failure_delay(retry_after_s=0.0) <= 0.5
    assert b.failure_delay(maintenance=True, retry_after_s=2.0) == 5.0
    assert b.failure_delay(maintenance=True, retry_after_s=9.0) == 9.0


def test_counter_resets_only_after_a_stable_live_period() -> None:
    b = Backoff(BackoffPolicy(stable_after_s=10.0), random.Random(0))
    for _ in range(5):
        b.failure_delay()
    b.connection_ended(None)  # never became LIVE (e.g. handshake only)
    assert b.attempts == 5
    b.connection_ended(9.99)
    assert b.attempts == 5
    b.connection_ended(10.0)
    assert b.attempts == 0
    assert b.failure_delay() == 0.0  # immediate again


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0.01, 10.0),
    cap=st.floats(0.01, 120.0),
    seed=st.integers(0, 2**32),
    n=st.integers(0, 80),
)
def test_delay_bounds_property(base: float, cap: float, seed: int, n: int) -> None:
    b = Backoff(BackoffPolicy(base_s=base, cap_s=cap), random.Random(seed))
    b.attempts = n
    d = b.failure_delay()
    if n == 0:
        assert d == 0.0
    else:
        assert 0.0 <= d <= min(cap, base * 2.0 ** min(n - 1, 30))


def test_default_rng_is_created() -> None:
    b = Backoff(BackoffPolicy())
    assert isinstance(b.rng, random.Random)


# ------------------------------------------------------------------ TokenBucket


def test_bucket_starts_full_and_takes_until_empty() -> None:
    tb = TokenBucket(capacity=3, rate_per_s=1.0, now=100.0)
    assert tb.wait_time(100.0) == 0.0
    assert [tb.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert tb.wait_time(100.0) == pytest.approx(1.0)


def test_bucket_refills_at_rate_up_to_capacity() -> None:
    tb = TokenBucket(capacity=2, rate_per_s=0.5, now=0.0)
    assert tb.take(0.0)
    assert tb.take(0.0)
    assert not tb.take(1.0)  # 0.5 tokens
    assert tb.wait_time(1.0) == pytest.approx(1.0)
    assert tb.take(2.0)
    tb.wait_time(1000.0)
    assert tb.tokens == 2  # capped at capacity
    assert tb.take(1000.0)
    assert tb.take(1000.0)
    assert not tb.take(1000.0)


def test_bucket_ignores_time_going_backwards() -> None:
    tb = TokenBucket(capacity=1, rate_per_s=1.0, now=10.0)
    assert tb.take(10.0)
    assert not tb.take(5.0)  # no refill from a clock step backwards
    assert tb.wait_time(5.0) == pytest.approx(1.0)
    assert tb.take(11.0)


def test_kraken_connection_attempt_budget() -> None:
    """~150 attempts per rolling 10 minutes (protocols.md §1.2)."""
    tb = TokenBucket(capacity=150, rate_per_s=150 / 600, now=0.0)
    taken = sum(tb.take(0.0) for _ in range(200))
    assert taken == 150
    assert tb.wait_time(0.0) == pytest.approx(4.0)
    # once the burst is spent, refill allows at most 150 more per 10 minutes
    t, count = 0.0, 0
    while t < 600.0:
        if tb.take(t):
            count += 1
        t += 0.5
    assert count <= 150


@pytest.mark.parametrize(("capacity", "rate"), [(0.5, 1.0), (0, 1.0), (1, 0.0), (1, -1.0)])
def test_bucket_rejects_bad_parameters(capacity: float, rate: float) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(capacity=capacity, rate_per_s=rate, now=0.0)
