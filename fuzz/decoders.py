"""Coverage-guided fuzzing (atheris / libFuzzer) of every venue decoder.

The contract (gapless/errors.py): a decoder fed anything returns a message or
raises :class:`gapless.errors.DecodeError`; any other exception is a crash,
which libFuzzer reports (non-zero exit, the input saved as ``crash-*``).

Input layout: the first byte picks the decoder (``data[0] % len(DECODERS)``)
and whether the rest is passed as ``bytes`` or as ``str`` (``data[0] //
len(DECODERS)`` odd: decoded with ``surrogateescape``, so lone surrogates
reach the decoders too); the rest is the frame or REST body.

Run it for a bounded time::

    python fuzz/decoders.py -max_total_time=60 -artifact_prefix=/tmp/ fuzz/corpus
    python fuzz/decoders.py --write-seeds fuzz/corpus   # real-shaped seed frames first

``tests/test_fuzz_harness.py`` runs it for a few seconds in CI.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

# coverage instrumentation of the decoders, only when this file is the fuzzer (a test
# importing it for its routing must not leave instrumented modules behind)
_instrumented: Any = (
    atheris.instrument_imports(include=["gapless.venues", "gapless.errors"])
    if __name__ == "__main__"
    else contextlib.nullcontext()
)
with _instrumented:
    from gapless.errors import DecodeError
    from gapless.venues.binance import private_protocol as bpp
    from gapless.venues.binance import protocol as bp
    from gapless.venues.kraken import private_protocol as kpp
    from gapless.venues.kraken import protocol as kp
    from gapless.venues.kucoin import private_protocol as cpp
    from gapless.venues.kucoin import protocol as cp


def _body(frame: str | bytes) -> bytes:
    return frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogateescape")


def _kraken_rest_orders(frame: str | bytes) -> object:
    result = kpp.decode_rest(_body(frame))
    return [kpp.rest_orders(result, key) for key in ("open", "closed", None) if key in result]


def _kraken_rest_query(frame: str | bytes) -> object:
    return kpp.rest_orders(kpp.decode_rest(_body(frame)), None)


def _binance_rest_error(frame: str | bytes) -> object:
    return bpp.rest_error(_body(frame))


def _binance_orders(frame: str | bytes) -> object:
    return bpp.decode_orders(_body(frame))


def _binance_order(frame: str | bytes) -> object:
    return bpp.decode_order(_body(frame))


def _binance_account(frame: str | bytes) -> object:
    return bpp.decode_account(_body(frame))


def _kucoin_rate_limited(frame: str | bytes) -> object:
    return cp.is_rate_limited(200, frame)


#: (name, decoder, real-shaped seed frames) for every decode entry point.
DECODERS: list[tuple[str, Callable[[str | bytes], object], list[str]]] = [
    (
        "kraken.decode",
        kp.decode,
        [
            '{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":'
            '[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
            '"timestamp":"2023-10-06T17:35:55.440295Z"}]}',
            '{"channel":"status","type":"update","data":[{"api_version":"v2",'
            '"connection_id":13834774380200032777,"system":"online","version":"2.0.0"}]}',
            '{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell",'
            '"price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,'
            '"timestamp":"2023-10-06T17:35:55.440295Z"}]}',
            '{"method":"subscribe","result":{"channel":"book","depth":10,"symbol":"BTC/USD"},'
            '"success":true,"time_in":"2023-10-06T17:35:55.440295Z","req_id":5}',
            '{"channel":"instrument","type":"snapshot","data":{"pairs":[{"symbol":"BTC/USD",'
            '"price_precision":1,"qty_precision":8,"status":"online"}]}}',
        ],
    ),
    (
        "kraken.private.decode",
        kpp.decode,
        [
            '{"channel":"executions","type":"update","data":[{"order_id":"O1","symbol":"BTC/USD",'
            '"order_status":"new","order_qty":1.5,"cum_qty":0,"fees":[{"asset":"USD","qty":0.1}],'
            '"timestamp":"2023-10-06T17:35:55.440295Z"}],"sequence":2}',
            '{"channel":"balances","type":"update","data":[{"asset":"USD","amount":-50.0,'
            '"balance":950.5,"timestamp":"2023-10-06T17:35:55.440295Z"}],"sequence":3}',
            '{"method":"cancel_all_orders_after","req_id":12,"success":true,"result":'
            '{"currentTime":"2023-10-06T17:35:55Z","triggerTime":"2023-10-06T17:36:55Z"}}',
        ],
    ),
    (
        "kraken.private.rest_orders",
        _kraken_rest_orders,
        [
            '{"error":[],"result":{"open":{"O1":{"status":"open","vol":"1.5","vol_exec":"0.5",'
            '"opentm":1696613755.44,"descr":{"pair":"XBTUSD","type":"buy","price":"100"}}}}}',
            '{"error":["EAPI:Invalid nonce"]}',
        ],
    ),
    (
        "kraken.private.rest_query",
        _kraken_rest_query,
        ['{"error":[],"result":{"O1":{"status":"closed","vol":"1","vol_exec":"1","fee":"0.1"}}}'],
    ),
    (
        "binance.decode",
        bp.decode,
        [
            '{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1672515782136,'
            '"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}',
            '{"stream":"bnbbtc@trade","data":{"e":"trade","E":1,"s":"BNBBTC","t":12345,'
            '"p":"0.001","q":"100","T":1,"m":true,"M":true}}',
            '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
            '"a":"25.36520000","A":"40.66000000"}',
            '{"error":{"code":2,"msg":"Invalid request"},"id":null}',
            '{"result":null,"id":1}',
        ],
    ),
    (
        "binance.decode_depth_snapshot",
        bp.decode_depth_snapshot,
        [
            '{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],'
            '"asks":[["4.00000200","12.00000000"]]}',
            '{"code":-1121,"msg":"Invalid symbol."}',
        ],
    ),
    (
        "binance.private.decode",
        bpp.decode,
        [
            '{"subscriptionId":0,"event":{"e":"executionReport","E":1,"s":"BTCUSDT","c":"c5",'
            '"S":"BUY","o":"LIMIT","f":"GTC","q":"1","p":"60000","x":"TRADE",'
            '"X":"PARTIALLY_FILLED","r":"NONE","i":5,"l":"0.4","z":"0.4","L":"60000","n":"0.1",'
            '"N":"USDT","T":1,"t":77,"m":true,"Z":"24000"}}',
            '{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1,"u":1,'
            '"B":[{"a":"USDT","f":"900","l":"76"}]}}',
            '{"id":1,"status":200,"result":{"subscriptionId":0}}',
        ],
    ),
    ("binance.private.rest_error", _binance_rest_error, ['{"code":-2013,"msg":"x"}']),
    (
        "binance.private.decode_orders",
        _binance_orders,
        [
            '[{"symbol":"BTCUSDT","orderId":5,"price":"1","origQty":"1","executedQty":"0",'
            '"status":"NEW","type":"LIMIT","side":"BUY","updateTime":1}]'
        ],
    ),
    (
        "binance.private.decode_order",
        _binance_order,
        [
            '{"symbol":"BTCUSDT","orderId":5,"price":"1","origQty":"1","executedQty":"1",'
            '"status":"FILLED","type":"LIMIT","side":"BUY"}'
        ],
    ),
    (
        "binance.private.decode_account",
        _binance_account,
        ['{"updateTime":1,"balances":[{"asset":"USDT","free":"900","locked":"100"}]}'],
    ),
    (
        "kucoin.decode",
        cp.decode,
        [
            '{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update",'
            '"data":{"changes":{"asks":[["18906","0.00331","14103845"]],"bids":[]},'
            '"sequenceEnd":14103845,"sequenceStart":14103845,"symbol":"BTC-USDT",'
            '"time":1663747970273}}',
            '{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match",'
            '"data":{"price":"67523.5","sequence":"11067996711960577","side":"buy",'
            '"size":"0.003","symbol":"BTC-USDT","time":"1729843222921000000",'
            '"tradeId":"11067996711960577"}}',
            '{"id":"hQvf8jkno","type":"welcome"}',
            '{"id":"1","type":"error","code":401,"data":"token is expired"}',
        ],
    ),
    (
        "kucoin.decode_bullet",
        cp.decode_bullet,
        [
            '{"code":"200000","data":{"token":"abc","instanceServers":[{"endpoint":'
            '"wss://ws-api-spot.kucoin.com/","encrypt":true,"protocol":"websocket",'
            '"pingInterval":18000,"pingTimeout":10000}]}}'
        ],
    ),
    (
        "kucoin.decode_l2_snapshot",
        cp.decode_l2_snapshot,
        [
            '{"code":"200000","data":{"sequence":"3262786978","time":1550653727731,'
            '"bids":[["6500.12","0.45054140"]],"asks":[["6500.16","0.57753524"]]}}'
        ],
    ),
    ("kucoin.is_rate_limited", _kucoin_rate_limited, ['{"code":"429000","msg":"Too Many"}']),
    (
        "kucoin.private.decode",
        cpp.decode,
        [
            '{"type":"message","topic":"/spotMarket/tradeOrdersV2","subject":"orderChange",'
            '"channelType":"private","data":{"orderId":"o1","symbol":"BTC-USDT","type":"open",'
            '"status":"open","ts":1700000000000000000,"size":"1","filledSize":"0"}}',
            '{"type":"message","topic":"/account/balance","subject":"account.balance",'
            '"data":{"currency":"USDT","total":"1000","available":"900","hold":"100",'
            '"time":"1700000000000"}}',
        ],
    ),
    (
        "kucoin.private.decode_orders_page",
        cpp.decode_orders_page,
        [
            '{"code":"200000","data":{"currentPage":1,"totalPage":1,"items":[{"id":"o1",'
            '"symbol":"BTC-USDT","isActive":true,"size":"1","dealSize":"0"}]}}'
        ],
    ),
    (
        "kucoin.private.decode_order",
        cpp.decode_order,
        ['{"code":"200000","data":{"id":"o1","symbol":"BTC-USDT","isActive":false}}'],
    ),
    (
        "kucoin.private.decode_accounts",
        cpp.decode_accounts,
        [
            '{"code":"200000","data":[{"currency":"USDT","type":"trade","balance":"1",'
            '"available":"1","holds":"0"}]}'
        ],
    ),
]


def route(data: bytes) -> tuple[str, Callable[[str | bytes], object], str | bytes]:
    """The decoder ``data`` is for and the frame it carries (see the module docstring)."""
    n = len(DECODERS)
    name, fn, _ = DECODERS[data[0] % n]
    payload = data[1:]
    if (data[0] // n) % 2:
        return name, fn, payload.decode("utf-8", "surrogateescape")
    return name, fn, payload


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    _name, fn, frame = route(data)
    # the contract: DecodeError is the only exception a decoder may raise
    with contextlib.suppress(DecodeError):
        fn(frame)


def write_seeds(directory: Path) -> int:
    """Write every decoder's seed frames (with their routing byte) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, (_name, _fn, seeds) in enumerate(DECODERS):
        for j, seed in enumerate(seeds):
            json.loads(seed)  # seeds are real JSON
            (directory / f"seed-{i:02d}-{j}").write_bytes(bytes([i]) + seed.encode())
            count += 1
    return count


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--write-seeds":
        print(f"wrote {write_seeds(Path(argv[2]))} seeds to {argv[2]}")
        return
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
