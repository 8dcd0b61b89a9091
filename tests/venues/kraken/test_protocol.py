"""Unit tests for gapless.venues.kraken.protocol (protocols.md §1.3-1.9).

The contract under test: ``decode()`` returns one typed message per frame and,
on any bad input whatsoever, raises :class:`gapless.errors.DecodeError` and
nothing else.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kraken_frames import (
    BASE_NS,
    ack,
    ack_error,
    book_frame,
    heartbeat,
    instrument_snapshot,
    instrument_update,
    iso,
    json_paths,
    json_set,
    json_values,
    pong,
    ticker_frame,
    trade_frame,
)

from gapless.errors import DecodeError
from gapless.venues.kraken import protocol as p
from gapless.venues.kraken.protocol import (
    Ack,
    BookMsg,
    Heartbeat,
    InstrumentMsg,
    Pong,
    StatusMsg,
    TickerMsg,
    TradeMsg,
    UnknownMsg,
    decode,
    encode_ping,
    encode_subscribe,
    encode_unsubscribe,
    parse_rfc3339_ns,
)

MESSAGE_TYPES = (
    StatusMsg,
    Heartbeat,
    Ack,
    Pong,
    BookMsg,
    TradeMsg,
    TickerMsg,
    InstrumentMsg,
    UnknownMsg,
)

# protocols.md §1.5 / §1.7 doc examples, verbatim.
DOC_ACK = (
    '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
    '"symbol":"ALGO/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z",'
    '"time_out":"2023-10-06T17:35:55.219067Z","req_id":1234}'
)
DOC_UPDATE = (
    '{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,'
    '"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
    '"timestamp":"2023-10-06T17:35:55.440295Z"}]}'
)
DOC_TRADE = (
    '{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",'
    '"price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,'
    '"timestamp":"2023-09-25T07:49:37.708706Z"}]}'
)
DOC_TICKER = (
    '{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":0.10025,'
    '"bid_qty":740.0,"ask":0.10035,"ask_qty":740.0,"last":0.10035,"volume":997038.98383185,'
    '"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17,'
    '"timestamp":"2023-09-25T09:04:31.742648Z"}]}'
)
DOC_PONG = (
    '{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z",'
    '"time_out":"2023-09-24T14:10:23.799703Z"}'
)
DOC_STATUS = (
    '{"channel":"status","type":"update","data":[{"api_version":"v2",'
    '"connection_id":13834774380200032777,"system":"online","version":"2.0.0"}]}'
)

T_440295 = parse_rfc3339_ns("2023-10-06T17:35:55.440295Z")


def _ns(text: str) -> int:
    """Independent reference for RFC 3339 → ns (via datetime, microseconds at most)."""
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return calendar.timegm(d.utctimetuple()) * 1_000_000_000 + d.microsecond * 1000


def _decode_obj(obj: Any) -> p.Message:
    return decode(json.dumps(obj))


# ------------------------------------------------------------------ encoders


def test_encode_subscribe_shape() -> None:
    text = encode_subscribe("book", ["ALGO/USD", "MATIC/USD"], 1234, depth=10, snapshot=True)
    assert json.loads(text) == {
        "method": "subscribe",
        "params": {
            "channel": "book",
            "symbol": ["ALGO/USD", "MATIC/USD"],
            "depth": 10,
            "snapshot": True,
        },
        "req_id": 1234,
    }
    # the exact protocols.md §1.5 request text, key order included
    assert text == (
        '{"method":"subscribe","params":{"channel":"book","symbol":["ALGO/USD","MATIC/USD"],'
        '"depth":10,"snapshot":true},"req_id":1234}'
    )


def test_encode_subscribe_without_symbols() -> None:
    text = encode_subscribe("instrument", None, 79, snapshot=True)
    assert json.loads(text) == {
        "method": "subscribe",
        "params": {"channel": "instrument", "snapshot": True},
        "req_id": 79,
    }


def test_encode_unsubscribe_shape() -> None:
    obj = json.loads(encode_unsubscribe("book", ["BTC/USD"], 7, depth=25))
    assert obj == {
        "method": "unsubscribe",
        "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 25},
        "req_id": 7,
    }
    obj = json.loads(encode_unsubscribe("trade", ["BTC/USD"], 8))
    assert obj == {
        "method": "unsubscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD"]},
        "req_id": 8,
    }


def test_encode_ping_shape() -> None:
    assert encode_ping(101) == '{"method":"ping","req_id":101}'
    assert json.loads(encode_ping(2**63)) == {"method": "ping", "req_id": 2**63}


def test_encoded_requests_are_not_decoded_as_messages_we_handle() -> None:
    # our own ping echoed back would be an unknown method, never a crash
    msg = decode(encode_ping(5))
    assert msg == UnknownMsg(channel=None, method="ping")


# ------------------------------------------------------------------ status / heartbeat


def test_status_doc_example() -> None:
    msg = decode(DOC_STATUS)
    assert msg == StatusMsg(
        system="online",
        api_version="v2",
        connection_id=13834774380200032777,  # > 2**53: kept exact
        version="2.0.0",
    )


def test_status_minimal_and_odd_connection_ids() -> None:
    base: dict[str, Any] = {
        "channel": "status",
        "type": "update",
        "data": [{"system": "maintenance"}],
    }
    assert _decode_obj(base) == StatusMsg("maintenance", None, None, None)
    big = copy.deepcopy(base)
    big["data"][0]["connection_id"] = 15113583034416118705
    msg = _decode_obj(big)
    assert isinstance(msg, StatusMsg)
    assert msg.connection_id == 15113583034416118705
    as_text = copy.deepcopy(base)
    as_text["data"][0]["connection_id"] = "123"
    msg = _decode_obj(as_text)
    assert isinstance(msg, StatusMsg)
    assert msg.connection_id is None


@pytest.mark.parametrize(
    "data",
    [[], {}, "online", None, [{"system": 1}], [{"api": "v2"}], [["online"]], ["online"], [None]],
)
def test_status_bad_shapes(data: object) -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "status", "type": "update", "data": data})


def test_status_wrong_type_optional_field() -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "status", "data": [{"system": "online", "api_version": 2}]})


def test_heartbeat() -> None:
    assert decode(heartbeat()) == Heartbeat()
    assert decode(b'{"channel":"heartbeat"}') == Heartbeat()


# ------------------------------------------------------------------ acks (§1.5)


def test_subscribe_ack_doc_example() -> None:
    msg = decode(DOC_ACK)
    assert msg == Ack(
        method="subscribe",
        success=True,
        req_id=1234,
        channel="book",
        symbol="ALGO/USD",
        depth=10,
        error=None,
        time_in_ns=parse_rfc3339_ns("2023-10-06T17:35:55.219022Z"),
        time_out_ns=_ns("2023-10-06T17:35:55.219067Z"),
    )


def test_unsubscribe_ack() -> None:
    msg = decode(ack("trade", "BTC/USD", 9, BASE_NS, method="unsubscribe"))
    assert isinstance(msg, Ack)
    assert (msg.method, msg.success, msg.channel, msg.symbol, msg.req_id) == (
        "unsubscribe",
        True,
        "trade",
        "BTC/USD",
        9,
    )
    assert msg.depth is None
    assert msg.time_out_ns == BASE_NS


def test_ack_without_req_id_and_times() -> None:
    msg = _decode_obj({"method": "subscribe", "success": True, "result": {"channel": "ticker"}})
    assert msg == Ack("subscribe", True, None, "ticker", None, None, None, None, None)


def test_instrument_ack_with_warnings() -> None:
    msg = decode(
        ack(
            "instrument",
            None,
            79,
            BASE_NS,
            warnings=["tick_size is deprecated, use price_increment"],
        )
    )
    assert isinstance(msg, Ack)
    assert msg.channel == "instrument"
    assert msg.symbol is None
    assert msg.warnings == ("tick_size is deprecated, use price_increment",)


def test_ack_warnings_are_bounded_and_stringified() -> None:
    msg = _decode_obj(
        {
            "method": "subscribe",
            "success": True,
            "result": {"channel": "instrument", "warnings": [1, "x" * 1000, *["w"] * 20]},
        }
    )
    assert isinstance(msg, Ack)
    assert len(msg.warnings) == 10
    assert msg.warnings[0] == "1"
    assert len(msg.warnings[1]) == 200
    not_a_list = _decode_obj(
        {"method": "subscribe", "success": True, "result": {"channel": "x", "warnings": "w"}}
    )
    assert isinstance(not_a_list, Ack)
    assert not_a_list.warnings == ()


def test_error_ack_with_symbol() -> None:
    msg = decode(ack_error("Currency pair not supported xxx/USD", 69, BASE_NS, symbol="xxx/USD"))
    assert msg == Ack(
        method="subscribe",
        success=False,
        req_id=69,
        channel=None,
        symbol="xxx/USD",
        depth=None,
        error="Currency pair not supported xxx/USD",
        time_in_ns=BASE_NS - 1000,
        time_out_ns=BASE_NS,
    )


def test_error_ack_without_symbol_or_req_id() -> None:
    # protocols.md §1.5 [OBS]: depth 27 refused with neither symbol nor req_id
    text = (
        '{"error":"Subscription depth not supported","method":"subscribe","success":false,'
        '"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}'
    )
    msg = decode(text)
    assert isinstance(msg, Ack)
    assert not msg.success
    assert msg.symbol is None
    assert msg.req_id is None
    assert msg.channel is None
    assert msg.error == "Subscription depth not supported"


def test_error_ack_odd_error_values() -> None:
    msg = _decode_obj({"method": "subscribe", "success": False, "error": {"code": 1}})
    assert isinstance(msg, Ack)
    assert msg.error == "{'code': 1}"
    long = _decode_obj({"method": "unsubscribe", "success": False, "error": "e" * 5000})
    assert isinstance(long, Ack)
    assert long.error is not None
    assert len(long.error) == 500
    none = _decode_obj({"method": "subscribe", "success": False})
    assert isinstance(none, Ack)
    assert none.error is None


def test_rate_error_without_method() -> None:
    # protocols.md §1.2 [OBS]
    msg = decode('{"Error":"Exceeded msg rate"}')
    assert msg == Ack(
        method="",
        success=False,
        req_id=None,
        channel=None,
        symbol=None,
        depth=None,
        error="Exceeded msg rate",
        time_in_ns=None,
        time_out_ns=None,
    )
    lower = decode('{"error":"Exceeded msg rate","req_id":42}')
    assert isinstance(lower, Ack)
    assert lower.req_id == 42
    assert lower.error == "Exceeded msg rate"


@pytest.mark.parametrize(
    "obj",
    [
        {"method": "subscribe"},  # no success
        {"method": "subscribe", "success": "true", "result": {}},
        {"method": "subscribe", "success": 1, "result": {}},
        {"method": "subscribe", "success": True},  # no result
        {"method": "subscribe", "success": True, "result": []},
        {"method": "subscribe", "success": True, "result": {"channel": 5}},
        {"method": "subscribe", "success": True, "result": {"symbol": ["BTC/USD"]}},
        {"method": "subscribe", "success": True, "result": {"depth": "10"}},
        {"method": "subscribe", "success": True, "result": {"depth": True}},
        {"method": "subscribe", "success": True, "result": {}, "req_id": True},  # bool as int
        {"method": "subscribe", "success": True, "result": {}, "req_id": 1.5},
        {"method": "subscribe", "success": True, "result": {}, "req_id": "1"},
        {"method": "subscribe", "success": True, "result": {}, "req_id": 2**64},
        {"method": "subscribe", "success": True, "result": {}, "req_id": -(2**63) - 1},
        {"method": "subscribe", "success": True, "result": {}, "time_out": "yesterday"},
        {"method": "subscribe", "success": True, "result": {}, "time_in": 1696613755},
        {"method": "subscribe", "success": False, "symbol": 7},
        {"error": "x", "req_id": "abc"},
    ],
)
def test_ack_wrong_types(obj: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        _decode_obj(obj)


def test_ack_req_id_signed_range_accepted() -> None:
    msg = _decode_obj({"method": "subscribe", "success": True, "result": {}, "req_id": -(2**63)})
    assert isinstance(msg, Ack)
    assert msg.req_id == -(2**63)


# ------------------------------------------------------------------ pong / methods


def test_pong_doc_example() -> None:
    msg = decode(DOC_PONG)
    assert msg == Pong(req_id=101, time_out_ns=_ns("2023-09-24T14:10:23.799703Z"))
    assert msg.success


def test_pong_failure_and_bare() -> None:
    msg = _decode_obj({"method": "pong", "success": False, "error": "boom", "req_id": 3})
    assert msg == Pong(req_id=3, time_out_ns=None, success=False, error="boom")
    assert decode(pong(None)) == Pong(req_id=None, time_out_ns=BASE_NS)
    assert _decode_obj({"method": "pong"}) == Pong(req_id=None, time_out_ns=None)


@pytest.mark.parametrize(
    "obj",
    [
        {"method": "pong", "req_id": "101"},
        {"method": "pong", "time_out": "2023"},
        {"method": "pong", "error": 5, "success": False},
    ],
)
def test_pong_wrong_types(obj: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        _decode_obj(obj)


def test_unknown_method() -> None:
    assert _decode_obj({"method": "cancel_all_orders_after", "success": True}) == UnknownMsg(
        channel=None, method="cancel_all_orders_after"
    )
    # an unknown method wins over an error field: it is a well-formed response
    assert _decode_obj({"method": "add_order", "success": False, "error": "x"}) == UnknownMsg(
        None, "add_order"
    )


def test_unknown_channel() -> None:
    assert _decode_obj({"channel": "executions", "type": "update", "data": []}) == UnknownMsg(
        channel="executions", method=None
    )
    assert _decode_obj({"channel": ""}) == UnknownMsg("", None)


@pytest.mark.parametrize("channel", [5, True, ["book"], {"c": "book"}])
def test_channel_not_a_string(channel: object) -> None:
    with pytest.raises(DecodeError, match="channel"):
        _decode_obj({"channel": channel, "type": "update", "data": []})


@pytest.mark.parametrize(
    "obj",
    [{}, {"type": "update"}, {"channel": None}, {"method": None}, {"method": 5}, {"data": []}],
)
def test_neither_channel_nor_method(obj: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match="neither channel nor method"):
        _decode_obj(obj)


# ------------------------------------------------------------------ book (§1.7)


def test_book_update_doc_example_keeps_exact_text() -> None:
    msg = decode(DOC_UPDATE)
    assert isinstance(msg, BookMsg)
    assert not msg.snapshot
    (entry,) = msg.entries
    assert entry.symbol == "MATIC/USD"
    assert entry.bids == [("0.5657", "1098.3947558")]
    assert entry.asks == []
    assert entry.checksum == 2114181697
    assert entry.ts_ns == _ns("2023-10-06T17:35:55.440295Z")


def test_book_snapshot_full_precision_text_and_ints() -> None:
    text = book_frame(
        "snapshot",
        "BTC/USD",
        [("62807.0", "0.00000000"), ("62806", "1")],
        [("0.50930100", "32828.24000000")],
        0,
        iso(BASE_NS),
    )
    msg = decode(text)
    assert isinstance(msg, BookMsg)
    assert msg.snapshot
    (entry,) = msg.entries
    # floats arrive as their exact wire text, integers as int
    assert entry.bids == [("62807.0", "0.00000000"), (62806, 1)]
    assert entry.asks == [("0.50930100", "32828.24000000")]
    assert entry.checksum == 0
    assert entry.ts_ns == BASE_NS


def test_book_multiple_entries_and_optional_fields() -> None:
    obj = {
        "channel": "book",
        "type": "update",
        "data": [
            {"symbol": "A/USD", "timestamp": iso(BASE_NS)},
            {
                "symbol": "B/USD",
                "bids": [],
                "checksum": 0xFFFFFFFF,
                "timestamp": iso(BASE_NS + 1000),
            },
        ],
    }
    msg = _decode_obj(obj)
    assert isinstance(msg, BookMsg)
    assert [e.symbol for e in msg.entries] == ["A/USD", "B/USD"]
    assert msg.entries[0].checksum is None
    assert msg.entries[0].bids == []
    assert msg.entries[0].asks == []
    assert msg.entries[1].checksum == 0xFFFFFFFF
    empty = _decode_obj({"channel": "book", "type": "update", "data": []})
    assert empty == BookMsg(snapshot=False, entries=[])


def _book_obj(**item_overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "symbol": "MATIC/USD",
        "bids": [{"price": 0.5657, "qty": 1098.3947558}],
        "asks": [],
        "checksum": 2114181697,
        "timestamp": "2023-10-06T17:35:55.440295Z",
    }
    item.update(item_overrides)
    return {"channel": "book", "type": "update", "data": [item]}


@pytest.mark.parametrize(
    "overrides",
    [
        {"symbol": 5},
        {"symbol": None},
        {"symbol": ["MATIC/USD"]},
        {"checksum": 2**32},  # > uint32
        {"checksum": -1},
        {"checksum": "2114181697"},
        {"checksum": 2114181697.0},
        {"checksum": True},
        {"timestamp": None},
        {"timestamp": 1696613755},
        {"timestamp": "not a time"},
        {"bids": {"price": 1, "qty": 1}},
        {"bids": "[]"},
        {"asks": None},
        {"bids": [{"price": 1}]},
        {"bids": [{"qty": 1}]},
        {"bids": [[1, 2]]},
        {"bids": ["1"]},
        {"bids": [None]},
    ],
)
def test_book_wrong_types(overrides: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        _decode_obj(_book_obj(**overrides))


def test_book_missing_keys() -> None:
    for key in ("symbol", "timestamp"):
        obj = _book_obj()
        del obj["data"][0][key]
        with pytest.raises(DecodeError):
            _decode_obj(obj)
    for key in ("type", "data"):
        obj = _book_obj()
        del obj[key]
        with pytest.raises(DecodeError):
            _decode_obj(obj)


@pytest.mark.parametrize("typ", ["snap", None, 1, "Snapshot", ["update"]])
def test_book_unknown_type(typ: object) -> None:
    obj = _book_obj()
    obj["type"] = typ
    with pytest.raises(DecodeError):
        _decode_obj(obj)


@pytest.mark.parametrize("data", [{}, "x", None, 5, ["x"], [5], [[]], [None]])
def test_book_bad_data(data: object) -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "book", "type": "snapshot", "data": data})


def test_book_level_values_are_not_validated_by_the_decoder() -> None:
    """Prices are validated at the book's precision by the adapter (parse_fixed);
    the decoder passes whatever JSON value it found through unchanged."""
    msg = _decode_obj(_book_obj(bids=[{"price": {"x": 1}, "qty": [1]}]))
    assert isinstance(msg, BookMsg)
    assert msg.entries[0].bids == [({"x": 1}, [1])]


# ------------------------------------------------------------------ trade / ticker (§1.8)


def test_trade_doc_example() -> None:
    msg = decode(DOC_TRADE)
    assert isinstance(msg, TradeMsg)
    assert not msg.snapshot
    (t,) = msg.trades
    assert t == p.TradeItem(
        symbol="MATIC/USD",
        side="sell",
        price="0.5117",
        qty="40.0",
        ord_type="market",
        trade_id=4665906,
        ts_ns=_ns("2023-09-25T07:49:37.708706Z"),
    )


def test_trade_snapshot_batch_and_optional_ord_type() -> None:
    text = trade_frame(
        "BTC/USD", [(1, BASE_NS, "1.0", "2"), (2, BASE_NS + 1000, "1.5", "0.1")], typ="snapshot"
    )
    msg = decode(text)
    assert isinstance(msg, TradeMsg)
    assert msg.snapshot
    assert [(t.trade_id, t.ts_ns, t.price, t.qty) for t in msg.trades] == [
        (1, BASE_NS, "1.0", 2),
        (2, BASE_NS + 1000, "1.5", "0.1"),
    ]
    obj = json.loads(DOC_TRADE)
    del obj["data"][0]["ord_type"]
    no_ord = _decode_obj(obj)
    assert isinstance(no_ord, TradeMsg)
    assert no_ord.trades[0].ord_type is None


def _trade_obj(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(DOC_TRADE)
    obj["data"][0].update(overrides)
    return obj


@pytest.mark.parametrize(
    "overrides",
    [
        {"trade_id": -1},  # negative trade_id
        {"trade_id": True},  # bool where int expected
        {"trade_id": 4665906.0},
        {"trade_id": "4665906"},
        {"trade_id": 2**64},
        {"trade_id": None},
        {"side": "BUY"},
        {"side": None},
        {"side": 1},
        {"symbol": 42},  # symbol as int
        {"ord_type": 1},
        {"timestamp": "2023-09-25"},
        {"timestamp": None},
    ],
)
def test_trade_wrong_types(overrides: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        _decode_obj(_trade_obj(**overrides))


@pytest.mark.parametrize("key", ["symbol", "side", "price", "qty", "trade_id", "timestamp"])
def test_trade_missing_required_key(key: str) -> None:
    obj = _trade_obj()
    del obj["data"][0][key]
    with pytest.raises(DecodeError):
        _decode_obj(obj)


@pytest.mark.parametrize("data", [{}, "x", None, [None], [[1]], ["trade"]])
def test_trade_bad_data(data: object) -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "trade", "type": "update", "data": data})


def test_trade_missing_type() -> None:
    obj = _trade_obj()
    del obj["type"]
    with pytest.raises(DecodeError):
        _decode_obj(obj)


def test_ticker_doc_example() -> None:
    msg = decode(DOC_TICKER)
    assert isinstance(msg, TickerMsg)
    assert not msg.snapshot
    (item,) = msg.items
    assert item.symbol == "ALGO/USD"
    assert item.ts_ns == _ns("2023-09-25T09:04:31.742648Z")
    assert item.values == {
        "bid": "0.10025",
        "bid_qty": "740.0",
        "ask": "0.10035",
        "ask_qty": "740.0",
        "last": "0.10035",
        "volume": "997038.98383185",
        "vwap": "0.10148",
        "low": "0.09979",
        "high": "0.10285",
        "change": "-0.00017",
        "change_pct": "-0.17",
    }


def test_ticker_snapshot_and_missing_timestamp() -> None:
    msg = decode(ticker_frame("BTC/USD", BASE_NS, typ="snapshot"))
    assert isinstance(msg, TickerMsg)
    assert msg.snapshot
    assert msg.items[0].ts_ns == BASE_NS
    obj = json.loads(DOC_TICKER)
    del obj["data"][0]["timestamp"]
    no_ts = _decode_obj(obj)
    assert isinstance(no_ts, TickerMsg)
    assert no_ts.items[0].ts_ns == 0


@pytest.mark.parametrize("key", ["symbol", "bid", "ask_qty", "change_pct"])
def test_ticker_missing_key(key: str) -> None:
    obj = json.loads(DOC_TICKER)
    del obj["data"][0][key]
    with pytest.raises(DecodeError):
        _decode_obj(obj)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["data"][0].__setitem__("symbol", 1),
        lambda o: o["data"][0].__setitem__("timestamp", "garbage-timestamp-xx"),
        lambda o: o.__setitem__("data", {}),
        lambda o: o.__setitem__("data", [None]),
    ],
)
def test_ticker_wrong_types(mutate: Any) -> None:
    obj = json.loads(DOC_TICKER)
    mutate(obj)
    with pytest.raises(DecodeError):
        _decode_obj(obj)


# ------------------------------------------------------------------ instrument (§1.9)


def test_instrument_snapshot() -> None:
    msg = decode(instrument_snapshot([("BTC/USD", 1, 8), ("MATIC/GBP", 4, 8)]))
    assert msg == InstrumentMsg(
        snapshot=True,
        pairs=[
            p.PairInfo("BTC/USD", 1, 8, "online"),
            p.PairInfo("MATIC/GBP", 4, 8, "online"),
        ],
    )


def test_instrument_update_and_defaults() -> None:
    msg = decode(instrument_update([("ETH/USD", 2, 8)]))
    assert msg == InstrumentMsg(snapshot=False, pairs=[p.PairInfo("ETH/USD", 2, 8, "online")])
    no_pairs = _decode_obj({"channel": "instrument", "type": "update", "data": {"assets": []}})
    assert no_pairs == InstrumentMsg(snapshot=False, pairs=[])
    no_status = _decode_obj(
        {
            "channel": "instrument",
            "type": "snapshot",
            "data": {"pairs": [{"symbol": "X/Y", "price_precision": 0, "qty_precision": 18}]},
        }
    )
    assert no_status == InstrumentMsg(True, [p.PairInfo("X/Y", 0, 18, "online")])


@pytest.mark.parametrize(
    "pair",
    [
        {"symbol": 1, "price_precision": 1, "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": 19, "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": -1, "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": True, "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": 1.0, "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": "1", "qty_precision": 8},
        {"symbol": "X/Y", "price_precision": 1},
        {"price_precision": 1, "qty_precision": 8},
        "X/Y",
        None,
    ],
)
def test_instrument_bad_pairs(pair: object) -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "instrument", "type": "snapshot", "data": {"pairs": [pair]}})


@pytest.mark.parametrize("data", [[], "x", None, {"pairs": 5}, {"pairs": {"a": 1}}])
def test_instrument_bad_data(data: object) -> None:
    with pytest.raises(DecodeError):
        _decode_obj({"channel": "instrument", "type": "snapshot", "data": data})


# ------------------------------------------------------------------ parse_rfc3339_ns


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2023-10-06T17:35:55.440295Z", _ns("2023-10-06T17:35:55.440295Z")),
        ("2023-10-06T17:35:55Z", _ns("2023-10-06T17:35:55Z")),
        ("2023-10-06t17:35:55z", _ns("2023-10-06T17:35:55Z")),
        ("2023-10-06 17:35:55Z", _ns("2023-10-06T17:35:55Z")),
        ("2023-10-06T17:35:55.5", _ns("2023-10-06T17:35:55.5Z")),  # no offset: taken as UTC
        ("2023-10-06T19:35:55+02:00", _ns("2023-10-06T17:35:55Z")),
        ("2023-10-06T12:05:55.5-05:30", _ns("2023-10-06T17:35:55.5Z")),
        ("2023-10-06T17:35:55+00:00", _ns("2023-10-06T17:35:55Z")),
        ("2023-10-06T17:35:55-00:00", _ns("2023-10-06T17:35:55Z")),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999999999Z", -1),
        ("2024-02-29T00:00:00Z", _ns("2024-02-29T00:00:00Z")),
        ("2016-12-31T23:59:60Z", _ns("2017-01-01T00:00:00Z")),  # leap second is accepted
    ],
)
def test_parse_rfc3339(text: str, want: int) -> None:
    assert parse_rfc3339_ns(text) == want


@pytest.mark.parametrize("digits", range(10))
def test_parse_rfc3339_fraction_digits(digits: int) -> None:
    frac = "123456789"[:digits]
    text = "2023-10-06T17:35:55" + ("." + frac if digits else "") + "Z"
    base = _ns("2023-10-06T17:35:55Z")
    want = base + (int(frac.ljust(9, "0")) if digits else 0)
    assert parse_rfc3339_ns(text) == want


def test_parse_rfc3339_fraction_beyond_ns_is_truncated() -> None:
    base = _ns("2023-10-06T17:35:55Z")
    assert parse_rfc3339_ns("2023-10-06T17:35:55.1234567899Z") == base + 123456789
    assert parse_rfc3339_ns("2023-10-06T17:35:55.Z") == base  # empty fraction


def test_parse_rfc3339_exact_ns_not_float() -> None:
    # 2023 * 1e9 ns does not fit a float's 53 bits; the result is exact
    assert parse_rfc3339_ns("2023-10-06T17:35:55.000000001Z") == _ns("2023-10-06T17:35:55Z") + 1


@pytest.mark.parametrize(
    "value",
    [
        None,
        1696613755,
        1696613755.0,
        b"2023-10-06T17:35:55Z",
        ["2023-10-06T17:35:55Z"],
        "",
        "2023-10-06",
        "2023-10-06T17:35",  # too short
        "2023-10-06T17:35:55",  # no offset and no fraction: 19 characters
        "2023-10-06T17:35:55." + "1" * 30 + "Z",  # too long
        "2023/10/06T17:35:55Z",
        "2023-10-06X17:35:55Z",
        "2023-10-06T17-35:55Z",
        "2023-13-06T17:35:55Z",  # month 13
        "2023-00-06T17:35:55Z",
        "0000-10-06T17:35:55Z",
        "2023-10-06T24:00:00Z",
        "2023-10-06T23:60:00Z",
        "2023-10-06T23:59:61Z",
        "2023-10-06T-1:35:55Z",
        "2023-10-06Tab:35:55Z",
        "2023-10-06T17:35:5xZ",
        "abcd-10-06T17:35:55Z",
        "2023-10-06T17:35:55+0200",
        "2023-10-06T17:35:55+02:0x",
        "2023-10-06T17:35:55+02-00",
        "2023-10-06T17:35:55 UTC",
        "2023-10-06T17:35:55.44Zjunk",
        "2023-10-06T17:35:55ZZ",
        "2023-10-06T17:35:55.12a4Z",
    ],
)
def test_parse_rfc3339_rejects(value: object) -> None:
    with pytest.raises(DecodeError):
        parse_rfc3339_ns(value)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.none()
    ),
    offset_min=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_parse_rfc3339_matches_datetime(moment: dt.datetime, offset_min: int) -> None:
    want = calendar.timegm(moment.timetuple()) * 1_000_000_000 + moment.microsecond * 1000
    assert parse_rfc3339_ns(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == want
    local = moment + dt.timedelta(minutes=offset_min)
    sign = "+" if offset_min >= 0 else "-"
    hh, mm = divmod(abs(offset_min), 60)
    text = local.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{sign}{hh:02d}:{mm:02d}"
    assert parse_rfc3339_ns(text) == want


def test_format_rfc3339_round_trip() -> None:
    assert p.format_rfc3339_ns(BASE_NS + 440295000) == "2023-10-06T17:35:55.440295Z"
    assert parse_rfc3339_ns(p.format_rfc3339_ns(BASE_NS + 123000)) == BASE_NS + 123000


# ------------------------------------------------------------------ hostile inputs


@pytest.mark.parametrize(
    "frame",
    [
        "",
        " ",
        "{",
        "}",
        '{"channel":"book"',
        "not json",
        "NaN",
        '{"channel":"ticker","data":[{"bid":NaN}]}',
        '{"channel":"ticker","data":[{"bid":Infinity}]}',
        '{"channel":"ticker","data":[{"bid":-Infinity}]}',
        "{'channel':'heartbeat'}",
        '{"channel":"heartbeat",}',
        '{"channel":"heartbeat"} {"channel":"heartbeat"}',
        b"\xff\xfe\x00",
        b'{"channel":"\xff"}',
        "\x00",
        '{"channel":"heartbeat"}\x00',
    ],
)
def test_invalid_json(frame: str | bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


@pytest.mark.parametrize(
    "frame", ["[]", "[1,2]", "1", "-1", '"heartbeat"', "null", "true", "1.5", "[{}]", "1" * 400]
)
def test_non_object_top_level(frame: str) -> None:
    with pytest.raises(DecodeError, match="expected a JSON object"):
        decode(frame)


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 10_000 + "]" * 10_000,
        "[" * 10_000,
        '{"a":' * 10_000 + "1" + "}" * 10_000,
        '{"channel":"book","type":"update","data":' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"method":"subscribe","success":true,"result":{"warnings":'
        + "[" * 10_000
        + "]" * 10_000
        + "}}",
    ],
)
def test_deep_nesting(frame: str) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


def test_huge_numbers() -> None:
    big = "9" * 400
    # 400-digit integers as trade_id, checksum, precision, req_id: refused
    with pytest.raises(DecodeError):
        decode(DOC_TRADE.replace("4665906", big))
    with pytest.raises(DecodeError):
        decode(DOC_UPDATE.replace("2114181697", big))
    with pytest.raises(DecodeError):
        decode(
            instrument_snapshot([("BTC/USD", 1, 8)]).replace(
                '"price_precision":1', f'"price_precision":{big}'
            )
        )
    with pytest.raises(DecodeError):
        decode(DOC_ACK.replace("1234", big))
    # a 400-digit connection_id is not an id we can use, but the status still counts
    msg = decode(DOC_STATUS.replace("13834774380200032777", big))
    assert isinstance(msg, StatusMsg)
    # a 400-digit / huge-exponent price passes the decoder as text; parse_fixed refuses it
    huge = decode(DOC_UPDATE.replace("0.5657", big + ".5"))
    assert isinstance(huge, BookMsg)
    assert huge.entries[0].bids[0][0] == big + ".5"
    exp = decode(DOC_UPDATE.replace("0.5657", "1e999999999"))
    assert isinstance(exp, BookMsg)
    assert exp.entries[0].bids[0][0] == "1e999999999"
    # an unrelated huge field is ignored
    assert isinstance(decode('{"channel":"heartbeat","x":' + big + "}"), Heartbeat)


def test_nan_ish_texts_in_string_fields() -> None:
    # strings that merely look like numbers are kept as text; parse_* refuses them later
    msg = decode(DOC_TRADE.replace("0.5117", '"NaN"'))
    assert isinstance(msg, TradeMsg)
    assert msg.trades[0].price == "NaN"
    with pytest.raises(DecodeError):
        decode(DOC_TRADE.replace("4665906", '"NaN"'))
    with pytest.raises(DecodeError):
        decode(DOC_UPDATE.replace("2114181697", '"Infinity"'))


def test_bytes_and_str_decode_identically() -> None:
    for frame in (DOC_ACK, DOC_UPDATE, DOC_TRADE, DOC_TICKER, DOC_PONG, DOC_STATUS):
        assert decode(frame) == decode(frame.encode())


# ------------------------------------------------------------------ fuzzing


def _ok_or_decode_error(frame: str | bytes) -> None:
    try:
        msg = decode(frame)
    except DecodeError:
        return
    assert isinstance(msg, MESSAGE_TYPES)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    _ok_or_decode_error(json.dumps(value))


REAL_FRAMES: list[str] = [
    DOC_ACK,
    DOC_UPDATE,
    DOC_TRADE,
    DOC_TICKER,
    DOC_PONG,
    DOC_STATUS,
    '{"Error":"Exceeded msg rate"}',
    ack_error("Currency pair not supported X/Y", 1, BASE_NS, symbol="X/Y"),
    ack("instrument", None, 79, BASE_NS, warnings=["tick_size is deprecated"]),
    instrument_snapshot([("BTC/USD", 1, 8), ("MATIC/USD", 4, 8)]),
    book_frame(
        "snapshot",
        "BTC/USD",
        [("45283.5", "0.10000000")],
        [("45285.2", "0.00100000")],
        1,
        iso(BASE_NS),
    ),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_real_frames(data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(REAL_FRAMES))
    obj = json.loads(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(obj)
        path = data.draw(st.sampled_from(paths))
        delete = bool(path) and data.draw(st.booleans())
        value = None if delete else data.draw(json_values)
        obj = json_set(obj, path, value, delete)
    _ok_or_decode_error(json.dumps(obj))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_byte_level_mutations(data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(REAL_FRAMES)).encode()
    pos = data.draw(st.integers(0, len(frame)))
    kind = data.draw(st.sampled_from(["truncate", "insert", "replace"]))
    junk = data.draw(st.binary(min_size=1, max_size=4))
    if kind == "truncate":
        mutated = frame[:pos]
    elif kind == "insert":
        mutated = frame[:pos] + junk + frame[pos:]
    else:
        mutated = frame[:pos] + junk + frame[pos + len(junk) :]
    _ok_or_decode_error(mutated)
