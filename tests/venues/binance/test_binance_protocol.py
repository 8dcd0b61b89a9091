"""Unit tests for gapless.venues.binance.protocol (protocols.md §3.1-§3.7).

The decoder contract: one typed message per frame and, on any bad input
whatsoever, :class:`gapless.errors.DecodeError` and nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.errors import ConfigError, DecodeError, LocalProtocolError
from gapless.venues import binance
from gapless.venues.base import StreamSpec
from gapless.venues.binance import protocol as p
from gapless.venues.binance.protocol import (
    Ack,
    BookTicker,
    Combined,
    DepthSnapshot,
    DepthUpdate,
    ErrorMsg,
    RestError,
    ServerShutdown,
    TradeMsg,
    UnknownMsg,
    decode,
    decode_depth_snapshot,
    decode_rest_error,
)

MESSAGE_TYPES = (
    Ack,
    BookTicker,
    Combined,
    DepthSnapshot,
    DepthUpdate,
    ErrorMsg,
    ServerShutdown,
    TradeMsg,
    UnknownMsg,
)

# protocols.md §3.4-§3.7 examples, verbatim.
DOC_DEPTH = (
    '{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
    '"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
)
DOC_PARTIAL = '{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}'
DOC_TRADE = (
    '{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
    '"T":1672515782136,"m":true,"M":true}'
)
DOC_AGG = (
    '{"e":"aggTrade","E":1,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,"l":105,'
    '"T":1,"m":true,"M":true}'
)
DOC_BOOK_TICKER = (
    '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
    '"a":"25.36520000","A":"40.66000000"}'
)
DOC_SHUTDOWN_RAW = '{"e":"serverShutdown","E":1770123456789}'
DOC_SHUTDOWN_COMBINED = (
    '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
)
DOC_SHUTDOWN_WSAPI = '{"event":{"e":"serverShutdown","E":1770123456789}}'
DOC_ACK = '{"result":null,"id":1}'
DOC_LIST = '{"result":["btcusdt@aggTrade"],"id":3}'
DOC_PROPERTY = '{"result":true,"id":2}'
DOC_ERROR = '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":3}'
DOC_ERROR_NULL_ID = '{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1"},"id":null}'
DOC_WSAPI_ERROR = (
    '{"id":null,"status":401,"error":{"code":-2015,'
    '"msg":"Invalid API-key, IP, or permissions for action."}}'
)
DOC_REST_DEPTH = (
    '{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
    '"asks":[["4.00000200","12.00000000"]]}'
)
DOC_REST_ERROR = '{"code":-1121,"msg":"Invalid symbol."}'


def combined(stream: str, payload: str) -> str:
    return f'{{"stream":"{stream}","data":{payload}}}'


STREAM_FRAMES = [
    DOC_DEPTH,
    DOC_PARTIAL,
    DOC_TRADE,
    DOC_AGG,
    DOC_BOOK_TICKER,
    DOC_SHUTDOWN_RAW,
    DOC_SHUTDOWN_COMBINED,
    DOC_SHUTDOWN_WSAPI,
    DOC_ACK,
    DOC_LIST,
    DOC_PROPERTY,
    DOC_ERROR,
    DOC_ERROR_NULL_ID,
    DOC_WSAPI_ERROR,
    combined("bnbbtc@depth@100ms", DOC_DEPTH),
    combined("bnbbtc@trade", DOC_TRADE),
    combined("bnbusdt@bookTicker", DOC_BOOK_TICKER),
]

# ---------------------------------------------------------------- spec constructors


def test_spec_constructors() -> None:
    assert binance.book("BTCUSDT") == StreamSpec("binance", "book", "BTCUSDT", None)
    assert binance.trades("BTCUSDT") == StreamSpec("binance", "trade", "BTCUSDT", None)
    assert binance.book_ticker("BTCUSDT") == StreamSpec("binance", "book_ticker", "BTCUSDT")
    assert binance.book("BTCUSDT").key == "binance:book:BTCUSDT"
    assert binance.trades("１２３４５６").symbol == "１２３４５６"  # non-ASCII symbols exist


@pytest.mark.parametrize(
    "bad", ["btcusdt", "BTC/USDT", "BTC-USDT", "", "BTC USDT", "A" * 33, "BTC@X", 5]
)
def test_spec_constructors_refuse_bad_symbols(bad: Any) -> None:
    with pytest.raises(ConfigError):
        binance.book(bad)
    with pytest.raises(ConfigError):
        binance.trades(bad)
    with pytest.raises(ConfigError):
        binance.book_ticker(bad)


# ---------------------------------------------------------------- names and URLs


def test_stream_names_are_lower_case() -> None:
    assert p.depth_stream("BNBBTC") == "bnbbtc@depth@100ms"
    assert p.depth_stream("BNBBTC", speed_ms=1000) == "bnbbtc@depth"
    assert p.trade_stream("BNBBTC") == "bnbbtc@trade"
    assert p.book_ticker_stream("BNBUSDT") == "bnbusdt@bookTicker"
    with pytest.raises(ConfigError):
        p.depth_stream("BNBBTC", speed_ms=250)
    with pytest.raises(ConfigError):
        p.trade_stream("BNB/BTC")


def test_stream_name_of_specs() -> None:
    assert p.stream_name(binance.book("BTCUSDT")) == "btcusdt@depth@100ms"
    assert p.stream_name(binance.trades("BTCUSDT")) == "btcusdt@trade"
    assert p.stream_name(binance.book_ticker("BTCUSDT")) == "btcusdt@bookTicker"
    with pytest.raises(ConfigError):
        p.stream_name(StreamSpec("binance", "ohlc", "BTCUSDT"))
    with pytest.raises(ConfigError):
        p.stream_name(StreamSpec("kraken", "book", "BTC/USD", 10))


def test_combined_url() -> None:
    url = p.combined_url(["bnbbtc@depth@100ms", "bnbbtc@trade"])
    assert url == "wss://stream.binance.com:9443/stream?streams=bnbbtc@depth@100ms/bnbbtc@trade"
    assert p.combined_url([], base="ws://127.0.0.1:9000/") == "ws://127.0.0.1:9000/stream"
    assert p.combined_url(["a@trade"], micros=True).endswith(
        "/stream?streams=a@trade&timeUnit=MICROSECOND"
    )
    assert p.combined_url([], micros=True).endswith("/stream?timeUnit=MICROSECOND")
    assert p.raw_url("bnbbtc@depth") == "wss://stream.binance.com:9443/ws/bnbbtc@depth"
    with pytest.raises(LocalProtocolError):
        p.combined_url([f"s{i}@trade" for i in range(p.MAX_STREAMS_PER_CONNECTION + 1)])
    assert p.combined_url([f"s{i}@trade" for i in range(p.MAX_STREAMS_PER_CONNECTION)])
    for bad in ["a/b", "a b", "a?b", "", 'a"b']:
        with pytest.raises(LocalProtocolError):
            p.combined_url([bad])
    with pytest.raises(LocalProtocolError):
        p.combined_url("bnbbtc@trade")


def test_depth_snapshot_path_and_weights() -> None:
    assert p.depth_snapshot_path("BNBBTC") == "/api/v3/depth?symbol=BNBBTC&limit=5000"
    assert p.depth_snapshot_path("bnbbtc", 100) == "/api/v3/depth?symbol=BNBBTC&limit=100"
    for bad in (0, 5001, "5000"):
        with pytest.raises(ConfigError):
            p.depth_snapshot_path("BNBBTC", bad)  # type: ignore[arg-type]
    weights = {1: 5, 100: 5, 101: 25, 500: 25, 501: 50, 1000: 50, 1001: 250, 5000: 250}
    for limit, weight in weights.items():
        assert p.depth_snapshot_weight(limit) == weight
    assert p.depth_snapshot_weight(10_000) == 250  # larger values return 5000
    with pytest.raises(ConfigError):
        p.depth_snapshot_weight(0)


def test_limits_table() -> None:
    assert p.MAX_STREAMS_PER_CONNECTION == 1024
    assert p.MAX_OUTBOUND_MSGS_PER_S == 5
    assert (p.MAX_CONNECTS_PER_WINDOW, p.CONNECT_WINDOW_S) == (300, 300.0)
    assert p.CONNECTION_LIFETIME_S == 86_400.0
    assert (p.SERVER_PING_INTERVAL_S, p.PONG_DEADLINE_S) == (20.0, 60.0)
    assert (p.DEFAULT_DEPTH_LIMIT, p.MAX_DEPTH_LIMIT) == (100, 5000)


def test_to_ns() -> None:
    assert p.to_ns(1672515782136) == 1672515782136_000_000
    assert p.to_ns(1672515782136123, micros=True) == 1672515782136123_000


# ---------------------------------------------------------------- encoders


def test_encoders_match_the_doc() -> None:
    assert json.loads(p.encode_subscribe(["btcusdt@aggTrade", "btcusdt@depth"], 1)) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade", "btcusdt@depth"],
        "id": 1,
    }
    assert json.loads(p.encode_unsubscribe(["btcusdt@depth"], 312)) == {
        "method": "UNSUBSCRIBE",
        "params": ["btcusdt@depth"],
        "id": 312,
    }
    assert p.encode_list_subscriptions(3) == '{"method":"LIST_SUBSCRIPTIONS","id":3}'
    assert json.loads(p.encode_subscribe(["a@trade"], None))["id"] is None
    uuid = "e2a85d9f-07a5-4f94-8d5f-789dc3deb097"
    assert json.loads(p.encode_subscribe(["a@trade"], uuid))["id"] == uuid
    assert json.loads(p.encode_subscribe(["a@trade"], -(2**63)))["id"] == -(2**63)


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, "x" * 37, "a b", "", True, 1.5, "é"])
def test_encoders_refuse_bad_ids(bad: Any) -> None:
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe(["a@trade"], bad)
    with pytest.raises(LocalProtocolError):
        p.encode_list_subscriptions(bad)


def test_encoders_refuse_bad_stream_lists() -> None:
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe([], 1)
    with pytest.raises(LocalProtocolError):
        p.encode_unsubscribe(["ok@trade", "bad/name"], 1)
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe([f"s{i}@trade" for i in range(1025)], 1)


# ---------------------------------------------------------------- decoding: happy paths


def test_decode_depth_update() -> None:
    msg = decode(DOC_DEPTH)
    assert msg == DepthUpdate(
        symbol="BNBBTC",
        event_time=1672515782136,
        first_update_id=157,
        final_update_id=160,
        bids=(("0.0024", "10"),),
        asks=(("0.0026", "100"),),
    )


def test_decode_depth_update_keeps_exact_text_and_accepts_empty_sides() -> None:
    frame = DOC_DEPTH.replace('"b":[["0.0024","10"]]', '"b":[["0.00240000","0.00000000"]]')
    frame = frame.replace('"a":[["0.0026","100"]]', '"a":[]')
    msg = decode(frame)
    assert isinstance(msg, DepthUpdate)
    assert msg.bids == (("0.00240000", "0.00000000"),)
    assert msg.asks == ()


def test_decode_trade() -> None:
    msg = decode(DOC_TRADE)
    assert msg == TradeMsg("BNBBTC", 1672515782136, 12345, "0.001", "100", 1672515782136, True)
    assert isinstance(msg, TradeMsg)
    assert msg.side == "sell"  # buyer is the maker: the taker sold
    flipped = decode(DOC_TRADE.replace('"m":true', '"m":false'))
    assert isinstance(flipped, TradeMsg)
    assert flipped.side == "buy"


def test_decode_book_ticker() -> None:
    assert decode(DOC_BOOK_TICKER) == BookTicker(
        "BNBUSDT", 400900217, "25.35190000", "31.21000000", "25.36520000", "40.66000000"
    )
    with_e = DOC_BOOK_TICKER.replace('{"u"', '{"e":"bookTicker","u"')
    assert isinstance(decode(with_e), BookTicker)


def test_decode_partial_depth_and_unknown_events() -> None:
    assert decode(DOC_PARTIAL) == DepthSnapshot(160, (("0.0024", "10"),), (("0.0026", "100"),))
    assert decode(DOC_AGG) == UnknownMsg("aggTrade")
    assert decode(combined("!miniTicker@arr", "[]")) == Combined(
        "!miniTicker@arr", UnknownMsg(None)
    )
    assert decode('{"event":{"e":"eventStreamTerminated","E":1}}') == UnknownMsg(
        "eventStreamTerminated"
    )


def test_decode_server_shutdown_in_all_three_forms() -> None:
    assert decode(DOC_SHUTDOWN_RAW) == ServerShutdown(1770123456789)
    assert decode(DOC_SHUTDOWN_COMBINED) == Combined(
        "!serverShutdown", ServerShutdown(1770123456789)
    )
    assert decode(DOC_SHUTDOWN_WSAPI) == ServerShutdown(1770123456789)


def test_decode_acks() -> None:
    assert decode(DOC_ACK) == Ack(1, None)
    assert decode(DOC_LIST) == Ack(3, ("btcusdt@aggTrade",))
    assert decode(DOC_PROPERTY) == Ack(2, True)
    assert decode('{"result":null,"id":"abc-1"}') == Ack("abc-1", None)
    assert decode('{"result":null,"id":null}') == Ack(None, None)


def test_decode_errors() -> None:
    assert decode(DOC_ERROR) == ErrorMsg(3, 2, "Invalid request: invalid stream")
    assert decode(DOC_ERROR_NULL_ID) == ErrorMsg(None, 3, "Invalid JSON: expected value at line 1")
    assert decode(DOC_WSAPI_ERROR) == ErrorMsg(
        None, -2015, "Invalid API-key, IP, or permissions for action.", status=401
    )


def test_decode_combined() -> None:
    msg = decode(combined("bnbbtc@depth@100ms", DOC_DEPTH))
    assert isinstance(msg, Combined)
    assert msg.stream == "bnbbtc@depth@100ms"
    assert isinstance(msg.data, DepthUpdate)
    assert msg.data.final_update_id == 160


def test_decode_accepts_bytes() -> None:
    assert decode(DOC_DEPTH.encode()) == decode(DOC_DEPTH)


def test_decode_rest_bodies() -> None:
    assert decode_depth_snapshot(DOC_REST_DEPTH) == DepthSnapshot(
        1027024, (("4.00000000", "431.00000000"),), (("4.00000200", "12.00000000"),)
    )
    assert decode_depth_snapshot(DOC_REST_ERROR) == RestError(-1121, "Invalid symbol.")
    assert decode_rest_error(DOC_REST_ERROR) == RestError(-1121, "Invalid symbol.")
    assert decode_rest_error('{"code":-1003}') == RestError(-1003, "")


# ---------------------------------------------------------------- decoding: hostile input


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{",
        "nul",
        "[]",
        "1",
        '"x"',
        "null",
        "{}",
        '{"foo":1}',
        b"\xff\xfe",
        "\ud800",
        "[" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        # combined
        '{"stream":"x"}',
        '{"stream":1,"data":{}}',
        '{"stream":"x","data":5}',
        '{"stream":"x","data":{"stream":"y","data":{"e":"serverShutdown","E":1}}}',
        # depth
        DOC_DEPTH.replace('"U":157', '"U":161'),  # U > u: malformed
        DOC_DEPTH.replace('"U":157', '"U":-1'),
        DOC_DEPTH.replace('"U":157', '"U":1e3'),
        DOC_DEPTH.replace('"U":157', '"U":"157"'),
        DOC_DEPTH.replace('"u":160', '"u":9223372036854775808'),
        DOC_DEPTH.replace('"u":160', '"u":1' + "0" * 400),
        DOC_DEPTH.replace('"u":160', '"u":1e400'),
        DOC_DEPTH.replace('"u":160', '"u":true'),
        DOC_DEPTH.replace('["0.0024","10"]', "[0.0024,10]"),  # numbers, not strings
        DOC_DEPTH.replace('["0.0024","10"]', '["0.0024"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["0.0024","10","x"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["-0.0024","10"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["1e-3","10"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["NaN","10"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '[".5","10"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["0.0024","1" ]').replace(
            '"1" ', '"' + "9" * 40 + '"'
        ),
        DOC_DEPTH.replace('["0.0024","10"]', '["0.' + "1" * 19 + '","10"]'),
        DOC_DEPTH.replace('["0.0024","10"]', '["０.5","10"]'),
        DOC_DEPTH.replace('"b":[["0.0024","10"]]', '"b":{"0.0024":"10"}'),
        DOC_DEPTH.replace('"b":[["0.0024","10"]]', '"b":null'),
        DOC_DEPTH.replace('"s":"BNBBTC"', '"s":""'),
        DOC_DEPTH.replace('"s":"BNBBTC"', '"s":' + '"' + "A" * 33 + '"'),
        DOC_DEPTH.replace('"s":"BNBBTC"', '"s":["BNBBTC"]'),
        DOC_DEPTH.replace(',"E":1672515782136', ""),
        # trade
        DOC_TRADE.replace('"m":true', '"m":1'),
        DOC_TRADE.replace('"m":true', '"m":"true"'),
        DOC_TRADE.replace('"t":12345', '"t":-5'),
        DOC_TRADE.replace('"p":"0.001"', '"p":0.001'),
        DOC_TRADE.replace('"q":"100"', '"q":null'),
        # book ticker
        DOC_BOOK_TICKER.replace('"b":"25.35190000"', '"b":25.3519'),
        DOC_BOOK_TICKER.replace(',"s":"BNBUSDT"', ""),
        # acks / errors / events
        '{"result":{"a":1},"id":1}',
        '{"result":[1,2],"id":1}',
        '{"result":null}',
        '{"result":null,"id":1.5}',
        '{"result":null,"id":"' + "x" * 37 + '"}',
        '{"result":null,"id":99999999999999999999}',
        '{"error":"bad","id":1}',
        '{"error":{"msg":"no code"},"id":1}',
        '{"error":{"code":"2","msg":"x"},"id":1}',
        '{"error":{"code":2,"msg":5},"id":1}',
        '{"error":{"code":2,"msg":"x"},"id":1,"status":"401"}',
        '{"e":"serverShutdown"}',
        '{"e":"serverShutdown","E":"1"}',
        '{"e":5}',
        '{"event":5}',
        '{"event":{"e":"serverShutdown"}}',
        '{"event":{"e":7}}',
        '{"lastUpdateId":"160","bids":[],"asks":[]}',
        '{"lastUpdateId":160,"bids":[]}',
    ],
)
def test_hostile_frames_raise_decode_error(frame: str | bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[]",
        '{"code":"x","msg":"y"}',
        '{"lastUpdateId":1,"bids":[["1","x"]],"asks":[]}',
        '{"lastUpdateId":-1,"bids":[],"asks":[]}',
        '{"bids":[],"asks":[]}',
        "[" * 50_000,
    ],
)
def test_hostile_rest_bodies_raise_decode_error(body: str) -> None:
    with pytest.raises(DecodeError):
        decode_depth_snapshot(body)
    with pytest.raises(DecodeError):
        decode_rest_error(body)


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    -(2**70),
    1.5,
    "",
    "x",
    "-1",
    "1e5",
    "NaN",
    "9" * 50,
    [],
    [[]],
    {},
    {"e": "depthUpdate"},
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(obj)
    cur = doc
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return doc


def _delete(obj: Any, path: tuple[Any, ...]) -> Any:
    doc = copy.deepcopy(obj)
    cur = doc
    for key in path[:-1]:
        cur = cur[key]
    del cur[path[-1]]
    return doc


def _decodes_or_refuses(text: str) -> None:
    try:
        msg = decode(text)
    except DecodeError:
        return
    assert isinstance(msg, MESSAGE_TYPES)
    if isinstance(msg, Combined):
        assert not isinstance(msg.data, Combined)


@pytest.mark.parametrize("frame", STREAM_FRAMES)
def test_every_field_mutated_or_deleted_gives_a_message_or_decode_error(frame: str) -> None:
    doc = json.loads(frame)
    for path in _paths(doc):
        for value in HOSTILE_VALUES:
            _decodes_or_refuses(json.dumps(_set(doc, path, value)))
        _decodes_or_refuses(json.dumps(_delete(doc, path)))


# ---------------------------------------------------------------- property: arbitrary JSON

KEYS = [
    "stream",
    "data",
    "e",
    "E",
    "s",
    "U",
    "u",
    "b",
    "a",
    "B",
    "A",
    "t",
    "p",
    "q",
    "T",
    "m",
    "result",
    "id",
    "error",
    "code",
    "msg",
    "status",
    "event",
    "lastUpdateId",
    "bids",
    "asks",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(["depthUpdate", "trade", "serverShutdown", "bookTicker", "0.5", "10"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), kids, max_size=8)
    ),
    max_leaves=24,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_arbitrary_json_never_escapes_decode_error(value: Any) -> None:
    text = json.dumps(value)
    _decodes_or_refuses(text)
    for fn in (decode_depth_snapshot, decode_rest_error):
        try:
            out = fn(text)
        except DecodeError:
            continue
        assert isinstance(out, DepthSnapshot | RestError)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_decode_error(blob: bytes) -> None:
    for fn in (decode, decode_depth_snapshot, decode_rest_error):
        with contextlib.suppress(DecodeError):
            fn(blob)
