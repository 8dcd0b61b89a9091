"""Hostile input: JSON nesting depth (issue 6; :mod:`gapless.venues.limits`).

A frame nested deeper than ``max_json_depth`` (venue options, default 128) is
refused *before* msgspec recurses into it: a ``BadFrame`` naming the depth and
the limit, a resync of what the frame could have touched, and the session goes
on. Without the check the decoder's only guard is the interpreter's recursion
limit, and under a raised one a deep frame kills the process (the last test
shows both sides in a subprocess).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from hostile_kit import VENUES, of
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.errors import DecodeError
from gapless.events import BadFrame, Gap, GapCause, Trade
from gapless.venues.binance import private_protocol as bpp
from gapless.venues.binance import protocol as bp
from gapless.venues.kraken import private_protocol as kpp
from gapless.venues.kraken import protocol as kp
from gapless.venues.kucoin import private_protocol as cpp
from gapless.venues.kucoin import protocol as cp
from gapless.venues.limits import DEFAULT_MAX_JSON_DEPTH, check_json_depth, json_depth_over


def deep(shape: str, depth: int) -> str:
    if shape == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def depth_of(text: str) -> int:
    """Reference: the deepest nesting outside strings (a character scan)."""
    level = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level -= 1
    return deepest


# strings that try to fool a bracket count: brackets, quotes and escapes inside them
tricky = st.sampled_from(
    ["]", "[", "}", "{", "],[", "\\", '"', '\\"]', "a]b", '"[', "é[", "\\u005b"]
)
texts = st.lists(tricky | st.text(max_size=3), max_size=3).map("".join)
leaves = st.none() | st.booleans() | st.integers() | texts
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(value=values, wraps=st.lists(st.booleans(), max_size=12), compact=st.booleans())
def test_the_bound_is_exact_against_a_character_scan(
    value: Any, wraps: list[bool], compact: bool
) -> None:
    """Never a false alarm, never a miss: None exactly when the depth is within the
    limit, else a depth between the limit and the real one (str and bytes alike)."""
    for as_list in wraps:
        value = [value] if as_list else {"w": value}
    text = json.dumps(value, separators=(",", ":") if compact else None, ensure_ascii=compact)
    real = depth_of(text)
    for limit in range(1, 12):
        for data in (text, text.encode()):
            got = json_depth_over(data, limit)
            if real <= limit:
                assert got is None, (limit, real, text)
            else:
                assert got is not None, (limit, real, text)
                assert limit < got <= real


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=values, wraps=st.integers(0, 12), cut=st.floats(0.0, 1.0))
def test_a_truncated_frame_is_never_underestimated(value: Any, wraps: int, cut: float) -> None:
    """A truncated frame makes the decoder recurse as deep as its prefix goes before it
    fails: the bound covers that too (frames of at least 2 (limit + 1) characters)."""
    for _ in range(wraps):
        value = [value]
    text = json.dumps(value, separators=(",", ":"))
    text = text[: round(len(text) * cut)]
    real = depth_of(text)
    for limit in range(1, 10):
        if len(text) >= 2 * limit + 2 and real > limit:
            assert json_depth_over(text, limit) is not None, (limit, real, text)


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object"])
def test_the_reason_names_the_depth_and_the_limit(shape: str, depth: int) -> None:
    with pytest.raises(DecodeError) as info:
        check_json_depth(deep(shape, depth), 64)
    assert str(info.value) == f"nesting depth {depth} > max_json_depth 64"
    # an unterminated nest, and one hidden behind closed siblings and strings
    for frame in ("[" * depth, '["]",' * depth + "1" + "]" * depth, "[[]," * depth + "]" * depth):
        assert json_depth_over(frame, 64) is not None


def test_wide_frames_pass_however_many_levels_they_carry() -> None:
    """Book frames have thousands of ``[`` but are 3-6 deep: no false alarm."""
    levels = [[f"{100 + i}.5", "1.0"] for i in range(5000)]
    wide = json.dumps({"lastUpdateId": 1, "bids": levels, "asks": levels}, separators=(",", ":"))
    objects = json.dumps({"data": [{"bids": [{"price": i, "qty": 1} for i in range(5000)]}]})
    for frame, depth in ((wide, 3), (wide.encode(), 3), (objects, 5)):
        assert json_depth_over(frame, depth) is None
        assert json_depth_over(frame, depth - 1) == depth  # and the limit still bites


DECODERS: dict[str, Callable[[str], object]] = {
    "kraken.decode": kp.decode,
    "kraken.decode_json": kp.decode_json,
    "kraken.private.decode": kpp.decode,
    "kraken.private.decode_rest": lambda t: kpp.decode_rest(t.encode()),
    "binance.decode": bp.decode,
    "binance.load": bp.load,
    "binance.decode_depth_snapshot": bp.decode_depth_snapshot,
    "binance.private.decode": bpp.decode,
    "binance.private.decode_orders": lambda t: bpp.decode_orders(t.encode()),
    "kucoin.decode": cp.decode,
    "kucoin.load": cp.load,
    "kucoin.decode_l2_snapshot": cp.decode_l2_snapshot,
    "kucoin.decode_bullet": cp.decode_bullet,
    "kucoin.private.decode": cpp.decode,
    "kucoin.private.decode_accounts": lambda t: cpp.decode_accounts(t.encode()),
}


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object"])
def test_every_json_entry_point_refuses_deep_input_before_decoding(
    name: str, shape: str, depth: int
) -> None:
    """WebSocket frames, REST bodies and private frames of every venue."""
    with pytest.raises(DecodeError, match=f"nesting depth {depth} > max_json_depth 128"):
        DECODERS[name](deep(shape, depth))


@pytest.mark.parametrize(
    "load", [kp.decode_json, bp.load, cp.load], ids=["kraken", "binance", "kucoin"]
)
def test_the_decoders_take_the_limit_as_an_argument(load: Callable[..., Any]) -> None:
    five = '{"a":[{"b":[{"c":1}]}]}'
    assert load(five, 5) == json.loads(five)
    with pytest.raises(DecodeError, match="nesting depth 5 > max_json_depth 4"):
        load(five, 4)
    # None: no pre-check; the decoder's own recursion guard still refuses (a DecodeError)
    with pytest.raises(DecodeError, match="invalid JSON"):
        load(deep("array", 100_000), None)


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object"])
def test_a_deep_frame_is_a_bad_frame_and_the_session_goes_on(
    venue: str, shape: str, depth: int
) -> None:
    """Through each venue's live adapter: one BadFrame with the reason, nothing
    delivered before it changes, what it could have touched is resynced (a declared
    gap), and the same connection carries on."""
    h = VENUES[venue]()
    h.frame(h.trade())
    h.frame(h.book_update())
    delivered = list(h.delivered())
    frame = deep(shape, depth)
    step = h.frame(frame)
    (bad,) = of(step.events, BadFrame)
    assert bad.reason == f"nesting depth {depth} > max_json_depth {DEFAULT_MAX_JSON_DEPTH}"
    assert bad.size == len(frame)
    assert not step.reconnect
    h.settle()
    assert h.delivered()[: len(delivered)] == delivered  # nothing received is lost
    assert any(g.cause is GapCause.BAD_FRAME for g in of(h.events, Gap))
    assert of(h.frame(h.trade()).events, Trade)
    assert of(h.frame(h.book_update()).events, type(delivered[-1]))


@pytest.mark.parametrize("venue", list(VENUES))
def test_the_limit_is_a_venue_option(venue: str) -> None:
    """``max_json_depth=6``: the venue's own frames (5 deep at most) pass, a 7-deep
    frame is refused with that limit; ``None`` turns the pre-check off."""
    h = VENUES[venue](max_json_depth=6)
    assert of(h.frame(h.trade()).events, Trade)
    (bad,) = of(h.frame(deep("array", 7)).events, BadFrame)
    assert bad.reason == "nesting depth 7 > max_json_depth 6"
    off = VENUES[venue](max_json_depth=None)
    (bad,) = of(off.frame(deep("array", 100_000)).events, BadFrame)
    assert "max_json_depth" not in bad.reason  # the decoder's recursion guard refused it


_CRASH = """
import sys
sys.setrecursionlimit(1_000_000)  # what some applications do
from gapless.venues.base import Now
from gapless.venues.kraken.adapter import KrakenAdapter, KrakenOptions
adapter = KrakenAdapter([], KrakenOptions(max_json_depth={limit}))
step = adapter.on_frame("[" * 300_000 + "]" * 300_000, Now(0.0, 0))
print(step.events[0].reason)
"""


def test_a_raised_recursion_limit_cannot_turn_a_deep_frame_into_a_crash() -> None:
    """With the check (the default) the frame is a BadFrame; without it (None) the
    same frame overflows the C stack and kills the process (CPython 3.11: msgspec's
    guard is the interpreter's recursion limit; 3.12 has a separate C limit)."""
    run = [sys.executable, "-c"]
    guarded = subprocess.run(
        [*run, textwrap.dedent(_CRASH.format(limit=128))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert guarded.returncode == 0, guarded.stderr
    assert guarded.stdout.strip() == "nesting depth 300000 > max_json_depth 128"
    stack_soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    if sys.version_info >= (3, 12) or stack_soft == resource.RLIM_INFINITY:
        return  # no C stack to overflow this way: the control run proves nothing
    bare = subprocess.run(
        [*run, textwrap.dedent(_CRASH.format(limit=None))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bare.returncode < 0, (bare.returncode, bare.stdout, bare.stderr[-500:])
