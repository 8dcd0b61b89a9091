"""Hostile-input limit on JSON nesting, checked before a decoder recurses (pure).

msgspec (like every recursive JSON parser) descends one C stack frame per
``[`` or ``{``. Its only guard is the interpreter's recursion limit: at
Python's default (1000) a frame nested 1,000 deep raises ``RecursionError``
(which the venue decoders turn into :class:`~gapless.errors.DecodeError`),
but under a raised limit (``sys.setrecursionlimit(100_000)``, which some
applications do) a frame nested 50,000 deep overflows the C stack and kills
the process (measured on CPython 3.11 with msgspec 0.22: segfault). A venue,
a proxy or anyone in the middle of a plain ``ws://`` link must not be able to
do that, so the decoders check the nesting first with :func:`check_json_depth`
and refuse a frame nested deeper than ``max_json_depth`` (venue options,
default :data:`DEFAULT_MAX_JSON_DEPTH`) as a ``DecodeError`` whose text names
the depth and the limit; the adapter reports it as a ``BadFrame`` and resyncs
what the frame could have touched, like any undecodable frame.

The check must cost next to nothing on the hot path (design.md §6), so it is a
chain of sound bounds, each cheaper than the next and each only reached when
the one before cannot decide:

1. **length**: valid JSON nested ``d`` deep has at least ``2 d`` characters. A
   frame shorter than ``2 (limit + 1)`` passes (a truncated one recurses at
   most its length, then fails to decode anyway). Many hot frames are shorter
   than 258 characters (Kraken book updates and trades, Binance trades and book
   tickers), so at the default they cost one ``len``.
2. **openers**: the depth is at most the number of ``[`` and ``{``
   (two ``str.count`` passes: about 1 ns per character together).
3. **siblings**: of two adjacent sibling containers (``],[``, ``},{``, ``],{``,
   ``},[``) at most one encloses the deepest point, so each such pattern takes
   one opener off the bound (inside a JSON string each pattern carries its own
   opener, so strings can only make the bound larger, never unsound). Book
   frames (``[["0.1","2"],["0.2","3"],...]``) pass here however many levels
   they carry.
4. **exact scan**: the brackets outside strings; a run of ``limit + 1``
   openers ends it at once (the usual attack); else innermost pairs are peeled
   one level at a time (``bytes.replace``, a few passes) and the runs of what is
   left summed. Linear: hostile shapes of 2-4 MB take 10-200 ms here, a few
   times what msgspec needs to decode frames that size.

Cost (Python 3.11, ``python -m timeit``, a shared and noisy 2-core box): a
216-character Kraken book update costs the length compare the decoders inline
(under 0.1 µs; its decode: about 1 µs). Past the length bound the two counts
cost about 1 ns per character: 0.84 µs on an 887-character Binance depth update
(decode 2.5 µs, the adapter's whole ``on_frame`` about 24 µs: +3.5 %), 3.5 µs on
a 3.3 KB one with 100 levels (decode 14.6 µs). The exact scan only runs on
frames that are deep or oddly shaped (no venue sends those). Where even this is
too much, ``max_json_depth=None`` turns the check off; the decoder's recursion
guard (about 900 levels at the default recursion limit, a ``DecodeError`` as
well) is then the only bound.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Final

from gapless.errors import DecodeError

__all__ = ["DEFAULT_MAX_JSON_DEPTH", "check_json_depth", "json_depth_over"]

#: 25 times the deepest frame a venue sends (5 levels: a Kraken book message,
#: a KuCoin level2 update), far below the decoder's own recursion guard (about 900 levels at
#: Python's default recursion limit) and below the 258 characters of the
#: typical hot frame, so those skip the check entirely (see the module docstring).
DEFAULT_MAX_JSON_DEPTH: Final = 128

_SIBLINGS: Final = ("],[", "},{", "],{", "},[")
_SIBLINGS_B: Final = tuple(s.encode() for s in _SIBLINGS)
#: keep brackets, quotes and backslashes; fold both bracket kinds into ``[ ]``
_KEEP: Final = b'[]{}"\\'
_DROP: Final = bytes(b for b in range(256) if b not in _KEEP)
_FOLD: Final = bytes.maketrans(b"{}", b"[]")
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_RUNS: Final = re.compile(rb"\[+|\]+")
#: leaf levels peeled before the scan: after k passes every run left stands for a
#: container more than k high, so a frame of n bytes leaves fewer than n / k runs
_PEEL_PASSES: Final = 8


def json_depth_over(data: str | bytes, limit: int) -> int | None:
    """None when ``data`` cannot be nested deeper than ``limit``; else its depth,
    exact or a lower bound, always more than ``limit``."""
    if len(data) < 2 * limit + 2:
        return None
    if isinstance(data, str):
        opens = data.count("[") + data.count("{")
        if opens <= limit:
            return None
        for pattern in _SIBLINGS:
            opens -= data.count(pattern)
            if opens <= limit:
                return None
        raw = data.encode("utf-8", "surrogatepass")
    else:
        raw = bytes(data)
        opens = raw.count(b"[") + raw.count(b"{")
        if opens <= limit:
            return None
        for pattern_b in _SIBLINGS_B:
            opens -= raw.count(pattern_b)
            if opens <= limit:
                return None
    return _scan(raw, limit)


def check_json_depth(data: str | bytes, limit: int) -> None:
    """:class:`DecodeError` if ``data`` is nested deeper than ``limit``."""
    depth = json_depth_over(data, limit)
    if depth is not None:
        raise DecodeError(f"nesting depth {depth} > max_json_depth {limit}")


def _scan(raw: bytes, limit: int) -> int | None:
    """The exact bound: the bracket skeleton outside strings, peeled level by level."""
    skeleton = raw.translate(_FOLD, _DROP)
    if b'"' in skeleton:
        # Without backslashes every quote delimits a string, and string i is
        # quotes 2i and 2i+1: when they are all adjacent, no string holds a
        # bracket and removing the pairs leaves the exact skeleton.
        bare = skeleton.replace(b'""', b"")
        if b"\\" in skeleton or b'"' in bare:
            # escapes, or brackets inside strings: cut the strings out properly
            # (an unterminated string stays; its brackets count, which only
            # overstates the depth of a frame that cannot decode anyway)
            bare = _STRING.sub(b"", raw).translate(_FOLD, _DROP)
            bare = bare.replace(b'"', b"").replace(b"\\", b"")
        skeleton = bare
    start = skeleton.find(b"[" * (limit + 1))
    if start >= 0:  # limit + 1 openers in a row (the usual attack): measure the run
        rest = skeleton[start:]
        return len(rest) - len(rest.lstrip(b"["))
    # A few passes peel the leaves off (book levels, small objects: one level per
    # pass, at memcpy speed), so what remains has fewer runs of brackets; their
    # running sum is then the depth.
    level = 0
    while skeleton and level < _PEEL_PASSES:
        size = len(skeleton)
        skeleton = skeleton.replace(b"[]", b"")  # every innermost pair: one level
        if len(skeleton) == size:
            break  # unbalanced (a truncated frame): the sum counts what is open
        level += 1
    depth = level + _open_depth(skeleton) if skeleton else level
    return depth if depth > limit else None


def _open_depth(skeleton: bytes) -> int:
    """The deepest nesting of a ``[``/``]`` skeleton: the largest running sum of its
    runs. (After an unmatched ``]`` the sum undercounts, but the decoder stops
    there: nothing after it is ever nested into.)"""
    runs = [len(r) if r[0] == 0x5B else -len(r) for r in _RUNS.findall(skeleton)]
    return max(accumulate(runs, initial=0))
