"""Hostile-input strategies shared by ``test_fuzz_decoders.py`` and ``test_fuzz_sync.py``.

Three sources of hostile frames:

- :data:`json_values`: arbitrary JSON values (``st.recursive`` over null, bools,
  ints of any size, floats, text), biased towards the keys and words the
  three venues use, so that random dicts reach past the first dispatch;
- :func:`mutated`: a *real-shaped* frame (built with the simulator's wire
  helpers, or copied from protocols.md examples) decoded, then mutated 1-4
  times (drop a key, change a value's type, hostile numbers such as ``1e400``,
  ``NaN`` or 40-digit integers inserted verbatim, very long strings, deep
  nesting, field swaps, key renames, list duplication), serialized, and then
  possibly damaged as text (truncation, inserted or flipped bytes);
- :data:`blobs`: arbitrary bytes and text.

Named ``fuzz_kit`` (not ``kit``) because test directories have no
``__init__.py`` and basenames must be unique across the tree.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from gapless.errors import DecodeError

__all__ = [
    "HOSTILE_NUMBERS",
    "HOSTILE_STRINGS",
    "RawToken",
    "assert_decodes_or_decode_error",
    "blobs",
    "dumps",
    "json_paths",
    "json_values",
    "mutated",
]

KEYS = [
    # Kraken
    "channel", "type", "data", "method", "success", "result", "error", "Error", "req_id",
    "symbol", "bids", "asks", "price", "qty", "checksum", "timestamp", "pairs", "trade_id",
    "side", "system", "time_out", "warnings", "depth", "price_precision", "qty_precision",
    "sequence", "order_id", "order_status", "exec_type", "balance", "asset", "amount",
    # Binance
    "stream", "e", "E", "s", "U", "u", "b", "a", "B", "A", "t", "p", "q", "T", "m", "id",
    "lastUpdateId", "code", "msg", "status", "event", "subscriptionId", "X", "x", "z", "i",
    # KuCoin
    "topic", "subject", "changes", "sequenceStart", "sequenceEnd", "time", "tradeId",
    "bestAsk", "bestBid", "size", "token", "instanceServers", "endpoint", "orderId",
    "currency", "total", "available", "hold", "items", "isActive",
]  # fmt: skip
WORDS = [
    "book", "trade", "ticker", "status", "instrument", "heartbeat", "snapshot", "update",
    "subscribe", "unsubscribe", "pong", "ping", "buy", "sell", "BTC/USD", "MATIC/USD",
    "depthUpdate", "bookTicker", "serverShutdown", "executionReport", "BNBBTC", "bnbbtc@depth",
    "message", "welcome", "ack", "error", "trade.l2update", "trade.l3match", "trade.ticker",
    "/market/level2:BTC-USDT", "BTC-USDT", "200000", "orderChange", "account.balance",
    "executions", "balances", "new", "filled", "2023-10-06T17:35:55.440295Z", "0.5", "0",
]  # fmt: skip

#: Number texts put into the JSON verbatim (no serializer would print most of them).
HOSTILE_NUMBERS = [
    "1e400", "-1e400", "1E+999999999", "1e-999999999", "1.5e-400", "NaN", "Infinity",
    "-Infinity", "-0", "-0.0", "0e0", "1.0E2", "-1", "-1.5", "9" * 40, "1" * 400,
    "18446744073709551616", "9223372036854775808", "-9223372036854775809",
    "0." + "0" * 60 + "1", "123456789012345678901234567890.123456789",
]  # fmt: skip
#: Strings that look like numbers, timestamps or ids, and some that are merely odd.
HOSTILE_STRINGS = [
    "", " ", "0", "-1", "-0", "1e5", "1E-8", "NaN", "nan", "inf", "Infinity", "0x10", "1_000",
    " 1", "1 ", "1.", ".5", "1..2", "+1", "１２３", "١٢٣", "²", "0." + "0" * 40 + "1",
    "9" * 37, "1" * 19, "9" * 20, "1E+999999999", "9E+999999", "1e-999999999", "\x00",
    "\u2028", "\U0001f600", "null", "[]", "{}",
    "2023-13-45T25:61:61.000000Z", "0000-00-00T00:00:00Z", "9999-12-31T23:59:60.999999999+23:59",
    "2023-10-06T17:35:55.4402９5Z", "2023-10-06T17:35:55.44029²Z", "2023-10-06 17:35:55-25:00",
    "1696613755.440295", "BTC/USD,ETH/USD", "/market/level2:all", "/market/level2:BTC-USDT,X",
]  # fmt: skip


class RawToken:
    """A value printed verbatim by :func:`dumps` (hostile numbers, deep nesting)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawToken({self.text[:40]!r})"


def dumps(obj: Any) -> str:
    """JSON text of ``obj`` with every :class:`RawToken` inserted verbatim (floats
    that are NaN or infinite print as ``NaN``/``Infinity``: invalid JSON on purpose)."""
    raws: list[str] = []

    def conv(v: Any) -> Any:
        if isinstance(v, RawToken):
            raws.append(v.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    text = json.dumps(conv(obj), ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw, 1)
    return text


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
    | st.sampled_from(HOSTILE_STRINGS)
)
#: Arbitrary JSON-able values, biased towards the venues' keys and words.
json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), kids, max_size=6)
    ),
    max_leaves=25,
)

#: Arbitrary bytes and text, and some frames that are not JSON objects at all.
blobs: st.SearchStrategy[str | bytes] = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.sampled_from(
        [
            "",
            " ",
            "null",
            "[]",
            "{}",
            "\ufeff{}",
            "[" * 5000 + "]" * 5000,
            '{"a":' * 3000 + "1" + "}" * 3000,
            "[" * 200_000,
            '"' + "x" * 200_000 + '"',
            "1" * 5000,
        ]
    ),
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
)


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a decoded JSON value (the root is ``()``)."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(json_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(json_paths(v, (*prefix, i)))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj


def _retyped(draw: st.DrawFn, value: Any) -> Any:
    """The same information in another JSON type (str <-> int <-> null <-> list ...)."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    options: list[Any] = [None, True, False, 0, -1, 1.5, text, [value], {"v": value}, [], {}]
    if isinstance(value, str):
        try:
            options.append(int(value))
        except ValueError:
            options.append(RawToken(value) if value[:1].isdigit() else len(value))
    if isinstance(value, int) and not isinstance(value, bool):
        options += [-value, value * 10**30, value + 2**64, float(value), str(value)]
        options += [value + 1, value - 1, value + 10**6, 2**62]  # sequence ids off a little
    return draw(st.sampled_from(options))


def _mutate(draw: st.DrawFn, obj: Any) -> Any:
    paths = json_paths(obj)
    path = draw(st.sampled_from(paths))
    kind = draw(
        st.sampled_from(
            [
                "drop", "drop", "retype", "retype", "number", "number", "string", "long",
                "deep", "swap", "rename", "dup", "value",
            ]
        )
    )  # fmt: skip
    if kind == "drop" and path:
        parent = _get(obj, path[:-1])
        del parent[path[-1]]
        return obj
    if kind == "swap":
        other = draw(st.sampled_from(paths))
        if path and other and path[: len(other)] != other and other[: len(path)] != path:
            a, b = _get(obj, path), _get(obj, other)
            _set(obj, path, b)
            _set(obj, other, a)
        return obj
    if kind == "rename" and path and isinstance(path[-1], str):
        parent = _get(obj, path[:-1])
        parent[draw(st.sampled_from(KEYS))] = parent.pop(path[-1])
        return obj
    if kind == "dup":
        target = _get(obj, path)
        if isinstance(target, list) and target:
            how = draw(st.sampled_from(["repeat", "reverse", "many"]))
            # copies: a shared node would let a later swap build a cycle
            if how == "repeat":
                target.append(copy.deepcopy(target[draw(st.integers(0, len(target) - 1))]))
            elif how == "reverse":
                target.reverse()
            else:
                target.extend(copy.deepcopy(x) for x in target * draw(st.integers(1, 200)))
        return obj
    value: Any
    if kind == "retype":
        value = _retyped(draw, _get(obj, path))
    elif kind == "number":
        value = RawToken(draw(st.sampled_from(HOSTILE_NUMBERS)))
    elif kind == "string":
        value = draw(st.sampled_from(HOSTILE_STRINGS))
    elif kind == "long":
        value = draw(st.sampled_from(["A", "9", "\u00e9", "["])) * draw(
            st.sampled_from([257, 5000, 70_000])
        )
    elif kind == "deep":
        n = draw(st.sampled_from([40, 500, 5000]))
        value = RawToken("[" * n + dumps(_get(obj, path)) + "]" * n)
    else:
        value = draw(json_values)
    return _set(obj, path, value)


def _damage(draw: st.DrawFn, text: str) -> str | bytes:
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["none", "none", "none", "truncate", "insert", "flip", "str"]))
    if how == "none":
        return data if draw(st.booleans()) else text
    if how == "str":
        return text
    pos = draw(st.integers(0, len(data)))
    if how == "truncate":
        return data[:pos]
    junk = draw(st.binary(min_size=1, max_size=4))
    if how == "insert":
        return data[:pos] + junk + data[pos:]
    return data[:pos] + junk + data[pos + len(junk) :]


@st.composite
def mutated(draw: st.DrawFn, templates: Sequence[str]) -> str | bytes:
    """One of ``templates`` (JSON text), mutated 1-4 times; str or bytes."""
    obj = json.loads(draw(st.sampled_from(list(templates))))
    for _ in range(draw(st.integers(1, 4))):
        obj = _mutate(draw, obj)
    return _damage(draw, dumps(obj))


def assert_decodes_or_decode_error(fn: Callable[[Any], object], arg: Any) -> object | None:
    """The decoder contract: return normally or raise :class:`DecodeError`; any other
    exception fails the test with the input that caused it."""
    try:
        return fn(arg)
    except DecodeError:
        return None
    except Exception as exc:  # the contract is broken: show the input
        shown = arg if len(repr(arg)) < 600 else repr(arg)[:600] + "..."
        raise AssertionError(
            f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__}: {exc!s:.200} on {shown!r}"
        ) from exc
