"""Property tests: every venue decoder raises only :class:`gapless.errors.DecodeError`.

The contract (gapless/errors.py): a decoder given anything a venue could send
either returns a message or raises ``DecodeError`` (a ``ProtocolError``);
``KeyError``, ``TypeError``, ``ValueError``, ``RecursionError``,
``OverflowError``, ``UnicodeError``... escaping a decoder would crash a session.

Every decode entry point of the three venues is in :data:`DECODERS` (public
stream frames, private/auth frames, and the REST bodies the adapters read),
each with real-shaped templates built with the simulator's wire helpers
(``gapless.sim.wire``, ``binance_wire``, ``kucoin_wire``) or copied from
protocols.md examples. Each is fed arbitrary JSON, mutated templates (see
``fuzz_kit``) and arbitrary bytes/text. The ``classify`` functions (which the
adapters call on JSON they loaded themselves) and the number helpers get
arbitrary decoded values.

Budgets are small and the runs derandomized, so CI is stable and quick; a
longer, randomized local run: ``GAPLESS_FUZZ_SCALE=20 pytest tests/venues/test_fuzz_*.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from fuzz_kit import (
    HOSTILE_NUMBERS,
    HOSTILE_STRINGS,
    assert_decodes_or_decode_error,
    blobs,
    dumps,
    json_values,
    mutated,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gapless.errors import DecodeError, ProtocolError
from gapless.sim import binance_wire as bw
from gapless.sim import kucoin_wire as kw
from gapless.sim import wire as kr
from gapless.sim.market import PairSpec
from gapless.venues import numbers, seqsync
from gapless.venues.binance import private_protocol as bpp
from gapless.venues.binance import protocol as bp
from gapless.venues.kraken import private_protocol as kpp
from gapless.venues.kraken import protocol as kp
from gapless.venues.kucoin import private_protocol as cpp
from gapless.venues.kucoin import protocol as cp

_SCALE = int(os.environ.get("GAPLESS_FUZZ_SCALE", "1"))


def budget(n: int) -> settings:
    """Hypothesis settings for a fuzz test: ``n`` examples times ``GAPLESS_FUZZ_SCALE``,
    no deadline, no example database; derandomized (stable in CI) unless scaled up."""
    return settings(
        max_examples=n * _SCALE,
        deadline=None,
        derandomize=_SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ real-shaped templates

TS = "2023-10-06T17:35:55.440295Z"
TS_US = 1_696_613_755_440_295

KRAKEN_PUBLIC = [
    kr.status_message(13834774380200032777, "online"),
    kr.HEARTBEAT,
    kr.book_message(
        "snapshot", '"BTC/USD"', [(452835, 10000000)], [(452852, 100000)], 2439117997, TS_US, 1, 8
    ),
    kr.book_message("update", '"MATIC/USD"', [(5657, 109839475580)], [], 2114181697, TS_US, 4, 8),
    kr.trade_message(
        "update",
        [
            '{"symbol":"MATIC/USD","side":"sell","price":0.5147,"qty":6423.46326,'
            f'"ord_type":"limit","trade_id":4665846,"timestamp":"{TS}"}}'
        ],
    ),
    '{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":0.10025,'
    '"bid_qty":740.0,"ask":0.10035,"ask_qty":740.0,"last":0.10035,"volume":997038.98383185,'
    '"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17,'
    f'"timestamp":"{TS}"}}]}}',
    kr.dumps(
        {
            "channel": "instrument",
            "type": "snapshot",
            "data": kr.instrument_data([PairSpec("BTC/USD", "45000.0", 1, 8)]),
        }
    ),
    '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,'
    '"symbol":"MATIC/USD","warnings":["x"]},"success":true,'
    f'"time_in":"{TS}","time_out":"{TS}","req_id":5}}',
    '{"error":"Currency pair not supported MATIC/USD","method":"subscribe","req_id":5,'
    f'"success":false,"symbol":"MATIC/USD","time_in":"{TS}","time_out":"{TS}"}}',
    f'{{"method":"pong","req_id":3,"time_in":"{TS}","time_out":"{TS}"}}',
    '{"Error":"Exceeded msg rate"}',
]
_KR_ORDER = (
    '{"order_id":"OK4GJX-KSTLS-7DZZO5","symbol":"BTC/USD","side":"buy","order_type":"limit",'
    '"order_qty":1.5,"limit_price":100.0,"order_status":"partially_filled","cum_qty":0.5,'
    '"cum_cost":50.0,"avg_price":100.0,"cl_ord_id":"c1","exec_type":"trade","exec_id":"E1",'
    '"trade_id":7,"last_qty":0.5,"last_price":100.0,"liquidity_ind":"m",'
    '"fees":[{"asset":"USD","qty":0.1},{"asset":"USD","qty":0.01}],'
    f'"timestamp":"{TS}"}}'
)
KRAKEN_PRIVATE = [
    f'{{"channel":"executions","type":"snapshot","data":[{_KR_ORDER}],"sequence":1}}',
    f'{{"channel":"executions","type":"update","data":[{_KR_ORDER}],"sequence":2}}',
    '{"channel":"balances","type":"snapshot","data":[{"asset":"USD","balance":1000.5},'
    '{"asset":"BTC","balance":1}],"sequence":1}',
    '{"channel":"balances","type":"update","data":[{"asset":"USD","amount":-50.0,'
    '"balance":950.5,"fee":0.1,"ledger_id":"L1","ref_id":"R1","type":"trade",'
    f'"timestamp":"{TS}"}}],"sequence":3}}',
    '{"method":"add_order","req_id":9,"success":true,"result":{"order_id":"OABC","cl_ord_id":"c9"},'
    f'"time_in":"{TS}","time_out":"{TS}"}}',
    '{"method":"cancel_order","req_id":10,"success":true,"result":{"order_id":["OABC"]}}',
    '{"method":"cancel_all","req_id":11,"success":true,"result":{"count":3}}',
    '{"method":"cancel_all_orders_after","req_id":12,"success":true,'
    f'"result":{{"currentTime":"{TS}","triggerTime":"{TS}"}}}}',
    '{"method":"add_order","req_id":13,"success":false,"error":"EOrder:Insufficient funds"}',
    *KRAKEN_PUBLIC[:3],
]
_KR_REST_ORDER = (
    '{"status":"closed","vol":"1.5","vol_exec":"1.5","cost":"150.0","fee":"0.1",'
    '"price":"100.0","opentm":1696613755.4402,"closetm":1696613756.1,"cl_ord_id":"c1",'
    '"descr":{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"100.0"}}'
)
KRAKEN_REST = [
    f'{{"error":[],"result":{{"open":{{"OABC-1":{_KR_REST_ORDER}}}}}}}',
    f'{{"error":[],"result":{{"closed":{{"OABC-1":{_KR_REST_ORDER}}},"count":1}}}}',
    f'{{"error":[],"result":{{"OABC-1":{_KR_REST_ORDER}}}}}',
    '{"error":[],"result":{"token":"tok-ABC","expires":900}}',
    '{"error":["EAPI:Invalid nonce"]}',
]

E_MS = 1_672_515_782_136
BINANCE_PUBLIC = [
    bw.combined(
        "bnbbtc@depth@100ms",
        bw.depth_event(E_MS, "BNBBTC", 157, 160, [(4000000, 43100000)], [(4000002, 1200)], 8, 8),
    ),
    bw.depth_event(E_MS, "BNBBTC", 161, 161, [], [(4000002, 0)], 8, 8),
    bw.combined("bnbbtc@trade", bw.trade_event(E_MS, "BNBBTC", 12345, 1000, 100, E_MS, True, 8, 8)),
    bw.combined(
        "bnbbtc@bookTicker", bw.book_ticker_event(400900217, "BNBUSDT", (1, 2, 3, 4), 2, 2)
    ),
    bw.server_shutdown_event(E_MS, True),
    bw.server_shutdown_event(E_MS, False),
    f'{{"event":{{"e":"serverShutdown","E":{E_MS}}}}}',
    bw.result_frame(None, 1),
    bw.result_frame(["bnbbtc@depth@100ms"], 3),
    bw.result_frame(True, "abc-1"),
    bw.error_frame(2, "Invalid request: invalid stream", None),
    '{"status":400,"error":{"code":-1102,"msg":"Mandatory parameter"},"id":"x1"}',
    bw.combined("!miniTicker@arr", '[{"e":"24hrMiniTicker"}]'),
]
BINANCE_REST = [
    bw.snapshot_body(1027024, [(4000000, 43100000)], [(4000002, 1200000000)], 8, 8),
    '{"code":-1121,"msg":"Invalid symbol."}',
]
_BN_EXEC = {
    "e": "executionReport", "E": 1_700_000_000_001, "s": "BTCUSDT", "c": "c5", "S": "BUY",
    "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "60000.00000000", "x": "TRADE",
    "X": "PARTIALLY_FILLED", "r": "NONE", "i": 5, "l": "0.4", "z": "0.4",
    "L": "60000.00000000", "n": "0.1", "N": "USDT", "T": 1_700_000_000_001, "t": 77,
    "m": True, "Z": "24000.0",
}  # fmt: skip
BINANCE_PRIVATE = [
    json.dumps({"subscriptionId": 0, "event": _BN_EXEC}),
    json.dumps(
        {
            "subscriptionId": 0,
            "event": {
                "e": "outboundAccountPosition",
                "E": 1_700_000_000_001,
                "u": 1_700_000_000_001,
                "B": [{"a": "USDT", "f": "900", "l": "76"}],
            },
        }
    ),
    json.dumps(
        {
            "subscriptionId": 0,
            "event": {"e": "balanceUpdate", "E": 1, "a": "USDT", "d": "-1.5", "T": 2},
        }
    ),
    '{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1700000000001}}',
    '{"event":{"e":"serverShutdown","E":1700000000001}}',
    '{"id":1,"status":200,"result":{"subscriptionId":0}}',
    '{"id":"x","status":429,"error":{"code":-1003,"msg":"Too many",'
    '"data":{"retryAfter":1700000000999}}}',
]
_BN_ORDER = {
    "symbol": "BTCUSDT", "orderId": 5, "clientOrderId": "c5", "price": "60000.00000000",
    "origQty": "1.00000000", "executedQty": "0.4", "cummulativeQuoteQty": "24000.0",
    "status": "PARTIALLY_FILLED", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY",
    "time": 1_700_000_000_000, "updateTime": 1_700_000_000_000,
}  # fmt: skip
_BN_ACCOUNT = {
    "updateTime": 1_700_000_000_000,
    "balances": [{"asset": "USDT", "free": "900", "locked": "100"}],
}
BINANCE_PRIVATE_REST = [json.dumps([_BN_ORDER]), json.dumps(_BN_ORDER), json.dumps(_BN_ACCOUNT)]

KUCOIN_PUBLIC = [
    kw.l2update(
        "BTC-USDT",
        [(189070, 331000, 1545896669106), (0, 0, 1545896669107)],
        [(189040, 3, 1545896669108)],
        1545896669106,
        1545896669108,
        1545896669200,
        1,
        8,
    ),
    kw.match(
        "BTC-USDT",
        maker_order_id="671b5007389355000701b1d3",
        taker_order_id="671b50161777ff00074c168d",
        price="67523.5",
        size="0.003",
        side="buy",
        sequence=11067996711960577,
        trade_id="11067996711960577",
        time_ns=1729843222921000000,
    ),
    kw.ticker(
        "BTC-USDT",
        sequence=1545896668986,
        price="0.08",
        size="0.011",
        best_ask="0.08",
        best_ask_size="0.188",
        best_bid="0.049",
        best_bid_size="0.036",
        time_ms=1545896669200,
    ),
    kw.dumps(
        {
            "type": "message",
            "topic": "/market/ticker:all",
            "subject": "BTC-USDT",
            "data": {
                "sequence": "1",
                "price": "1",
                "size": "1",
                "bestAsk": "1",
                "bestAskSize": "1",
                "bestBid": "1",
                "bestBidSize": "1",
                "Time": 1,
            },
        }
    ),
    kw.error("3", 404, "topic /market/ticker:XYZ is not found"),
    kw.error(None, 401, "token is expired"),
    '{"id":"hQvf8jkno","type":"welcome"}',
    '{"id":"1545910590801","type":"ack"}',
    '{"id":"1545910590801","type":"pong","timestamp":1545910590801}',
    '{"id":"1","type":"ping"}',
    '{"type":"notice","topic":"/x","subject":"y"}',
]
KUCOIN_REST = [
    kw.dumps(
        kw.rest_ok(
            {
                "token": "2neAiuYvAU61ZDXANAGAsiL4",
                "instanceServers": [
                    {
                        "endpoint": "wss://ws-api-spot.kucoin.com/",
                        "encrypt": True,
                        "protocol": "websocket",
                        "pingInterval": 18000,
                        "pingTimeout": 10000,
                    }
                ],
            }
        )
    ),
    kw.dumps(
        kw.rest_ok(
            {
                "sequence": "3262786978",
                "time": 1550653727731,
                "bids": [["6500.12", "0.45054140"], ["6500.11", "0.45054140"]],
                "asks": [["6500.16", "0.57753524"], ["6500.15", "0.57753524"]],
            }
        )
    ),
    '{"code":"429000","msg":"Too Many Requests"}',
]
_KC_CHANGE = {
    "orderId": "o1", "clientOid": "c-o1", "symbol": "BTC-USDT", "side": "buy",
    "orderType": "limit", "type": "match", "status": "match", "size": "1",
    "filledSize": "0.5", "remainSize": "0.5", "price": "100", "matchPrice": "100",
    "matchSize": "0.5", "tradeId": "t1", "liquidity": "taker", "ts": 1_700_000_000_000_000_000,
}  # fmt: skip
KUCOIN_PRIVATE = [
    json.dumps(
        {
            "type": "message",
            "topic": cpp.TOPIC_ORDERS,
            "subject": "orderChange",
            "channelType": "private",
            "userId": "u1",
            "data": _KC_CHANGE,
        }
    ),
    json.dumps(
        {
            "type": "message",
            "topic": cpp.TOPIC_BALANCE,
            "subject": "account.balance",
            "channelType": "private",
            "data": {
                "accountId": "a1",
                "currency": "USDT",
                "total": "1000",
                "available": "900",
                "hold": "100",
                "availableChange": "-100",
                "holdChange": "100",
                "relationEvent": "trade.hold",
                "relationEventId": "o1",
                "time": "1700000000000",
            },
        }
    ),
    *KUCOIN_PUBLIC[:2],
]
_KC_ORDER = {
    "id": "o1", "symbol": "BTC-USDT", "type": "limit", "side": "buy", "price": "100",
    "size": "1", "dealSize": "0.5", "dealFunds": "50", "fee": "0", "clientOid": "c-o1",
    "isActive": True, "cancelExist": False, "createdAt": 1_700_000_000_000,
}  # fmt: skip
KUCOIN_PRIVATE_REST = [
    kw.dumps(kw.rest_ok({"currentPage": 1, "pageSize": 50, "totalPage": 1, "items": [_KC_ORDER]})),
    kw.dumps(kw.rest_ok(_KC_ORDER)),
    kw.dumps(
        kw.rest_ok(
            [
                {
                    "currency": "USDT",
                    "type": "trade",
                    "balance": "1000",
                    "available": "900",
                    "holds": "100",
                },
                {"currency": "BTC", "type": "main", "balance": "1", "available": "1", "holds": "0"},
            ]
        )
    ),
    '{"code":"400100","msg":"Order does not exist"}',
]


# ------------------------------------------------------------------ the decoders


@dataclass(frozen=True)
class Decoder:
    """One decode entry point: ``fn`` takes one frame or body (str or bytes);
    ``templates`` seed the mutations, the ``valid`` ones (all by default) must decode."""

    name: str
    fn: Callable[[str | bytes], object]
    templates: Sequence[str]
    valid: Sequence[int] | None = None

    def __str__(self) -> str:
        return self.name


def _body(frame: str | bytes) -> bytes:
    """REST bodies arrive as bytes (surrogates in fuzzed text become invalid UTF-8)."""
    return frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")


def _kraken_rest_orders(key: str | None) -> Callable[[str | bytes], object]:
    def fn(body: str | bytes) -> object:
        # what KrakenPrivateAdapter.on_rest does with an answer
        return kpp.rest_orders(kpp.decode_rest(_body(body)), key)

    fn.__name__ = f"rest_orders_{key}"
    return fn


def _binance_rest_error(body: str | bytes) -> object:
    return bpp.rest_error(_body(body))


def _kucoin_rate_limited(body: str | bytes) -> object:
    return cp.is_rate_limited(200, body)


DECODERS: list[Decoder] = [
    Decoder("kraken.decode", kp.decode, KRAKEN_PUBLIC),
    Decoder("kraken.decode_json", kp.decode_json, KRAKEN_PUBLIC),
    Decoder("kraken.private.decode", kpp.decode, KRAKEN_PRIVATE),
    Decoder(
        "kraken.private.decode_rest", lambda b: kpp.decode_rest(_body(b)), KRAKEN_REST, [0, 1, 2, 3]
    ),
    Decoder("kraken.private.rest_orders(open)", _kraken_rest_orders("open"), KRAKEN_REST, [0]),
    Decoder("kraken.private.rest_orders(closed)", _kraken_rest_orders("closed"), KRAKEN_REST, [1]),
    Decoder("kraken.private.rest_orders(query)", _kraken_rest_orders(None), KRAKEN_REST, [2]),
    Decoder("binance.decode", bp.decode, BINANCE_PUBLIC),
    Decoder("binance.load", bp.load, BINANCE_PUBLIC),
    Decoder("binance.decode_depth_snapshot", bp.decode_depth_snapshot, BINANCE_REST),
    Decoder("binance.decode_rest_error", bp.decode_rest_error, BINANCE_REST, [1]),
    Decoder("binance.private.decode", bpp.decode, BINANCE_PRIVATE),
    Decoder("binance.private.rest_error", _binance_rest_error, BINANCE_REST),
    Decoder(
        "binance.private.decode_orders",
        lambda b: bpp.decode_orders(_body(b)),
        BINANCE_PRIVATE_REST,
        [0],
    ),
    Decoder(
        "binance.private.decode_order",
        lambda b: bpp.decode_order(_body(b)),
        BINANCE_PRIVATE_REST,
        [1],
    ),
    Decoder(
        "binance.private.decode_account",
        lambda b: bpp.decode_account(_body(b)),
        BINANCE_PRIVATE_REST,
        [2],
    ),
    Decoder("kucoin.decode", cp.decode, KUCOIN_PUBLIC),
    Decoder("kucoin.load", cp.load, KUCOIN_PUBLIC),
    Decoder("kucoin.decode_bullet", cp.decode_bullet, KUCOIN_REST, [0, 2]),
    Decoder("kucoin.decode_l2_snapshot", cp.decode_l2_snapshot, KUCOIN_REST, [1, 2]),
    Decoder("kucoin.decode_rest_error", cp.decode_rest_error, KUCOIN_REST),
    Decoder("kucoin.is_rate_limited", _kucoin_rate_limited, KUCOIN_REST),
    Decoder("kucoin.private.decode", cpp.decode, KUCOIN_PRIVATE),
    Decoder(
        "kucoin.private.decode_orders_page", cpp.decode_orders_page, KUCOIN_PRIVATE_REST, [0, 3]
    ),
    Decoder("kucoin.private.decode_order", cpp.decode_order, KUCOIN_PRIVATE_REST, [1, 3]),
    Decoder("kucoin.private.decode_accounts", cpp.decode_accounts, KUCOIN_PRIVATE_REST, [2, 3]),
]
#: Decoders that never raise, even DecodeError (they answer a default instead).
TOTAL = {"binance.private.rest_error", "kucoin.is_rate_limited"}

#: The classify step of each venue: decoded JSON in (adapters load it themselves).
CLASSIFIERS: list[tuple[str, Callable[[Any], object]]] = [
    ("kraken.classify", kp.classify),
    ("binance.classify", bp.classify),
    ("kucoin.classify", cp.classify),
    ("kraken.private.rest_orders", lambda v: kpp.rest_orders(v, None)),
    ("kraken.private.rest_order", lambda v: kpp.rest_order("OABC-1", v)),
]

ids = [d.name for d in DECODERS]


# ------------------------------------------------------------------ the contract


def test_decode_error_is_the_documented_protocol_error() -> None:
    assert issubclass(DecodeError, ProtocolError)
    for d in DECODERS:
        if d.name in TOTAL:
            continue
        with pytest.raises(DecodeError):
            d.fn("not json")
        with pytest.raises(DecodeError):
            d.fn(b"\xff\xfe")


@pytest.mark.parametrize("decoder", DECODERS, ids=ids)
def test_templates_are_real_shaped(decoder: Decoder) -> None:
    """The mutation seeds decode (else the fuzz would only test the first check)."""
    valid = decoder.valid if decoder.valid is not None else range(len(decoder.templates))
    for i in valid:
        t = decoder.templates[i]
        try:
            decoder.fn(t)
        except DecodeError as exc:
            pytest.fail(f"{decoder.name} refused its template {t[:80]}: {exc}")


@pytest.mark.parametrize("decoder", DECODERS, ids=ids)
@budget(60)
@given(value=json_values, as_bytes=st.booleans())
def test_arbitrary_json(decoder: Decoder, value: Any, as_bytes: bool) -> None:
    text = dumps(value)
    assert_decodes_or_decode_error(decoder.fn, text.encode() if as_bytes else text)


@pytest.mark.parametrize("decoder", DECODERS, ids=ids)
@budget(150)
@given(data=st.data())
def test_mutated_real_frames(decoder: Decoder, data: st.DataObject) -> None:
    frame = data.draw(mutated(decoder.templates), label="frame")
    assert_decodes_or_decode_error(decoder.fn, frame)


@pytest.mark.parametrize("decoder", DECODERS, ids=ids)
@budget(40)
@given(blob=blobs)
def test_arbitrary_bytes_and_text(decoder: Decoder, blob: str | bytes) -> None:
    assert_decodes_or_decode_error(decoder.fn, blob)


@pytest.mark.parametrize(("name", "fn"), CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
@budget(150)
@given(value=json_values)
def test_classify_arbitrary_decoded_values(
    name: str, fn: Callable[[Any], object], value: Any
) -> None:
    assert_decodes_or_decode_error(fn, value)


_number_inputs = st.one_of(
    json_values,
    st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from(HOSTILE_NUMBERS),
    st.from_regex(r"-?[0-9]{0,40}(\.[0-9]{0,40})?([eE][-+]?[0-9]{1,12})?", fullmatch=True),
)


@budget(300)
@given(value=_number_inputs, prec=st.integers(0, 18))
def test_number_helpers(value: Any, prec: int) -> None:
    """The exact-number helpers every decoder uses: DecodeError or a value."""
    for fn in (
        lambda v: numbers.parse_fixed(v, prec),
        lambda v: numbers.parse_fixed_cached({}, v, prec),
        lambda v: numbers.fixed_plain(v, prec),
        numbers.parse_decimal,
        numbers.parse_int,
        seqsync.check_decimal,
        kp.parse_rfc3339_ns,
    ):
        assert_decodes_or_decode_error(fn, value)


# ------------------------------------------------------------------ regressions


@pytest.mark.parametrize("decoder", DECODERS, ids=ids)
@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"book","data":"\ud800"}',  # a lone surrogate: str -> UTF-8 fails
        "[" * 100_000,  # nesting past the decoder's recursion limit
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"U":1e400,"u":-1e400,"lastUpdateId":' + "9" * 5000 + "}",
        # a short number with a huge exponent: Decimal arithmetic on it overflowed
        '{"error":[],"result":{"O1":{"status":"closed","vol":"1","opentm":1E+999999999}}}',
    ],
    ids=["surrogate", "deep-list", "deep-object", "huge-numbers", "huge-exponent"],
)
def test_hostile_frames(decoder: Decoder, frame: str) -> None:
    assert_decodes_or_decode_error(decoder.fn, frame)
