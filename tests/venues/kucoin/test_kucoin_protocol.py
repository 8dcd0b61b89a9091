"""Unit tests for gapless.venues.kucoin.protocol (protocols.md §2.1-§2.6).

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
from gapless.secrets import Secret
from gapless.venues import kucoin
from gapless.venues.base import StreamSpec
from gapless.venues.kucoin import protocol as p
from gapless.venues.kucoin.protocol import (
    Ack,
    Bullet,
    ErrorFrame,
    ErrorKind,
    InstanceServer,
    L2Snapshot,
    L2Update,
    Match,
    Notice,
    Ping,
    Pong,
    RestError,
    TickerMsg,
    UnknownMsg,
    Welcome,
    decode,
    decode_bullet,
    decode_l2_snapshot,
    decode_rest_error,
)

MESSAGE_TYPES = (
    Ack,
    ErrorFrame,
    L2Update,
    Match,
    Notice,
    Ping,
    Pong,
    TickerMsg,
    UnknownMsg,
    Welcome,
)

# protocols.md §2.1-§2.6 examples, verbatim.
TOKEN = (
    "2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZxftpOeh_55i3Ysy2q2LEsEWU64mdzUOPusi34M_wGoSf7iNyEWJ4aBZ"
    "XpWhrmY9jKtqkdWoFa75w3istPvPtiYB9bJiij.ymP9jIr6v-vucrZr8761yA=="
)
DOC_BULLET = (
    '{"code":"200000","data":{"token":"' + TOKEN + '","instanceServers":[{"endpoint":'
    '"wss://ws-api-spot.kucoin.com/","encrypt":true,"protocol":"websocket",'
    '"pingInterval":18000,"pingTimeout":10000}]}}'
)
DOC_WELCOME = '{"id":"hQvf8jkno","type":"welcome"}'
DOC_PONG = '{"id":"1545910590801","type":"pong"}'
DOC_ACK = '{"id":"1545910660739","type":"ack"}'
DOC_ERR_404 = (
    '{"id":"1","type":"error","code":404,"data":"topic /market/level2:BSV-BTC is not found"}'
)
DOC_ERR_509 = (
    '{"id":"2","type":"error","code":509,'
    '"data":"exceed max subscription count limitation of 100 per time"}'
)
DOC_ERR_401 = '{"type":"error","code":401,"data":"token is expired"}'
DOC_L2 = (
    '{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update","data":{'
    '"changes":{"asks":[["18906","0.00331","14103845"],["18907.3","0.58751503","14103844"]],'
    '"bids":[["18891.9","0.15688","14103847"]]},'
    '"sequenceEnd":14103847,"sequenceStart":14103844,"symbol":"BTC-USDT","time":1663747970273}}'
)
DOC_L2_SDK = (
    '{"topic":"/market/level2:BTC-USDT","type":"message","subject":"trade.l2update","data":'
    '{"changes":{"asks":[["67993.3","1.21427407","14701689783"]],"bids":[]},'
    '"sequenceEnd":14701689783,"sequenceStart":14701689783,"symbol":"BTC-USDT",'
    '"time":1729816425625}}'
)
DOC_MATCH = (
    '{"topic":"/market/match:BTC-USDT","type":"message","subject":"trade.l3match","data":'
    '{"makerOrderId":"671b5007389355000701b1d3","price":"67523","sequence":"11067996711960577",'
    '"side":"buy","size":"0.003","symbol":"BTC-USDT","takerOrderId":"671b50161777ff00074c168d",'
    '"time":"1729843222921000000","tradeId":"11067996711960577","type":"match"}}'
)
DOC_TICKER = (
    '{"type":"message","topic":"/market/ticker:BTC-USDT","subject":"trade.ticker","data":'
    '{"sequence":"1545896668986","price":"0.08","size":"0.011","bestAsk":"0.08",'
    '"bestAskSize":"0.18","bestBid":"0.049","bestBidSize":"0.036","time":1704873323416}}'
)
DOC_TICKER_ALL = DOC_TICKER.replace("/market/ticker:BTC-USDT", "/market/ticker:all").replace(
    '"subject":"trade.ticker"', '"subject":"ETH-USDT"'
)
DOC_SNAPSHOT = (
    '{"code":"200000","data":{"time":1729176273859,"sequence":"14610502970",'
    '"bids":[["66976.4","0.69109872"],["66976.3","0.1"]],'
    '"asks":[["66976.5","0.05408199"],["66976.6","2"]]}}'
)
DOC_429 = '{"code":"429000","msg":"Too Many Requests"}'

WS_FRAMES = [
    DOC_WELCOME,
    DOC_PONG,
    DOC_ACK,
    DOC_ERR_404,
    DOC_ERR_509,
    DOC_ERR_401,
    DOC_L2,
    DOC_L2_SDK,
    DOC_MATCH,
    DOC_TICKER,
    DOC_TICKER_ALL,
    '{"id":"7","type":"ping"}',
    '{"type":"notice","topic":"/x","subject":"y"}',
]

# ---------------------------------------------------------------- spec constructors


def test_spec_constructors() -> None:
    assert kucoin.book("BTC-USDT") == StreamSpec("kucoin", "book", "BTC-USDT", None)
    assert kucoin.trades("BTC-USDT") == StreamSpec("kucoin", "trade", "BTC-USDT")
    assert kucoin.ticker("BTC-USDT") == StreamSpec("kucoin", "ticker", "BTC-USDT")
    assert kucoin.book("1INCH-USDT").key == "kucoin:book:1INCH-USDT"


@pytest.mark.parametrize("bad", ["BTCUSDT", "btc-usdt", "BTC/USDT", "BTC-USDT,ETH-USDT", "", 1])
def test_spec_constructors_refuse_bad_symbols(bad: Any) -> None:
    for ctor in (kucoin.book, kucoin.trades, kucoin.ticker):
        with pytest.raises(ConfigError):
            ctor(bad)


def test_topic_of_specs() -> None:
    assert p.topic_of(kucoin.book("BTC-USDT")) == ("/market/level2", "BTC-USDT")
    assert p.topic_of(kucoin.trades("BTC-USDT")) == ("/market/match", "BTC-USDT")
    assert p.topic_of(kucoin.ticker("BTC-USDT")) == ("/market/ticker", "BTC-USDT")
    with pytest.raises(ConfigError):
        p.topic_of(StreamSpec("kucoin", "candles", "BTC-USDT"))
    with pytest.raises(ConfigError):
        p.topic_of(StreamSpec("binance", "book", "BTCUSDT"))


def test_limits_table() -> None:
    assert p.MAX_SYMBOLS_PER_REQUEST == 100
    assert p.MAX_TOPICS_PER_CONNECTION == 300
    assert p.MAX_CONNECTS_PER_MINUTE == 30
    assert p.MAX_UPLINK_MSGS_PER_10S == 100
    assert p.WELCOME_TIMEOUT_S == 5.0
    assert p.SUCCESS_CODE == "200000"
    assert "429000" in p.RATE_LIMIT_CODES


def test_l2_snapshot_path() -> None:
    assert p.l2_snapshot_path("BTC-USDT") == "/api/v3/market/orderbook/level2?symbol=BTC-USDT"
    assert (
        p.l2_snapshot_path("BTC-USDT", 20) == "/api/v1/market/orderbook/level2_20?symbol=BTC-USDT"
    )
    assert p.l2_snapshot_path("BTC-USDT", 100).endswith("level2_100?symbol=BTC-USDT")
    with pytest.raises(ConfigError):
        p.l2_snapshot_path("BTC-USDT", 50)


# ---------------------------------------------------------------- bullet and URL


def test_decode_bullet() -> None:
    bullet = decode_bullet(DOC_BULLET)
    assert isinstance(bullet, Bullet)
    assert isinstance(bullet.token, Secret)
    assert bullet.token.reveal() == TOKEN
    assert TOKEN not in repr(bullet)
    assert bullet.servers == (
        InstanceServer("wss://ws-api-spot.kucoin.com/", True, "websocket", 18000, 10000),
    )
    assert bullet.servers[0].ping_interval_s == 18.0
    assert bullet.servers[0].ping_timeout_s == 10.0


def test_decode_bullet_error_codes() -> None:
    err = decode_bullet(DOC_429)
    assert err == RestError("429000", "Too Many Requests")
    assert isinstance(err, RestError)
    assert err.rate_limited
    other = decode_bullet('{"code":"400003","msg":"KC-API-KEY not exists"}')
    assert isinstance(other, RestError)
    assert not other.rate_limited
    assert decode_bullet('{"code":200002}') == RestError("200002", "")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "[]",
        '{"data":{}}',
        '{"code":"200000"}',
        '{"code":"200000","data":[]}',
        '{"code":"200000","data":{"token":"","instanceServers":[]}}',
        '{"code":"200000","data":{"token":"t","instanceServers":[]}}',
        '{"code":"200000","data":{"token":5,"instanceServers":[{}]}}',
        '{"code":"200000","data":{"token":"t","instanceServers":[5]}}',
        DOC_BULLET.replace('"wss://ws-api-spot.kucoin.com/"', '"https://x"'),
        DOC_BULLET.replace('"encrypt":true', '"encrypt":"yes"'),
        DOC_BULLET.replace('"pingInterval":18000', '"pingInterval":"18000"'),
        DOC_BULLET.replace('"pingInterval":18000', '"pingInterval":0'),
        DOC_BULLET.replace('"pingTimeout":10000', '"pingTimeout":1e30'),
        DOC_BULLET.replace('"code":"200000"', '"code":null'),
    ],
)
def test_hostile_bullets_raise_decode_error(body: str) -> None:
    with pytest.raises(DecodeError):
        decode_bullet(body)


def test_connect_url() -> None:
    url = p.connect_url("wss://ws-api-spot.kucoin.com/", Secret(TOKEN), "hQvf8jkno")
    assert url == f"wss://ws-api-spot.kucoin.com/?token={TOKEN}&connectId=hQvf8jkno"
    assert (
        p.connect_url("ws://127.0.0.1:1/?a=b", "t", "1")
        == "ws://127.0.0.1:1/?a=b&token=t&connectId=1"
    )
    # characters that would change the query's meaning are escaped
    assert p.connect_url("wss://h/", "a+b/c&d", "1") == "wss://h/?token=a%2Bb%2Fc%26d&connectId=1"
    for endpoint, token, cid in [
        ("https://h/", "t", "1"),
        ("wss://h/", "", "1"),
        ("wss://h/", "t", ""),
        ("wss://h/", "t", "a&b"),
        ("wss://h/", "t", "x" * 65),
    ]:
        with pytest.raises(ConfigError):
            p.connect_url(endpoint, token, cid)


# ---------------------------------------------------------------- encoders


def test_encode_subscribe_matches_the_doc_shape() -> None:
    (req,) = p.encode_subscribe("/market/ticker", ["BTC-USDT", "ETH-USDT"], 1545910660739)
    assert req.id == "1545910660739"
    assert req.topic == "/market/ticker:BTC-USDT,ETH-USDT"
    assert req.symbols == ("BTC-USDT", "ETH-USDT")
    assert json.loads(req.text) == {
        "id": "1545910660739",
        "type": "subscribe",
        "topic": "/market/ticker:BTC-USDT,ETH-USDT",
        "privateChannel": False,
        "response": True,
    }
    (unsub,) = p.encode_unsubscribe("/market/level2", ["BTC-USDT"], 9, response=False)
    assert json.loads(unsub.text) == {
        "id": "9",
        "type": "unsubscribe",
        "topic": "/market/level2:BTC-USDT",
        "privateChannel": False,
        "response": False,
    }
    (priv,) = p.encode_subscribe("/spotMarket/tradeOrdersV2", ["BTC-USDT"], 1, private_channel=True)
    assert json.loads(priv.text)["privateChannel"] is True


def test_encode_subscribe_batches_100_symbols_per_message() -> None:
    symbols = [f"C{i}-USDT" for i in range(250)]
    reqs = p.encode_subscribe("/market/level2", [*symbols, "C0-USDT"], 40)
    assert [r.id for r in reqs] == ["40", "41", "42"]
    assert [len(r.symbols) for r in reqs] == [100, 100, 50]
    assert [s for r in reqs for s in r.symbols] == symbols  # order kept, duplicates once
    for r in reqs:
        body = json.loads(r.text)
        assert body["response"] is True
        assert body["topic"] == r.topic
        assert len(body["topic"].split(":")[1].split(",")) <= p.MAX_SYMBOLS_PER_REQUEST


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe("/market/level2", [], 1)
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe("/market/level2", "BTC-USDT", 1)
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe("market/level2", ["BTC-USDT"], 1)
    with pytest.raises(LocalProtocolError):
        p.encode_subscribe("/market/level2", ["BTC-USDT"], -1)
    with pytest.raises(ConfigError):
        p.encode_subscribe("/market/level2", ["BTC-USDT,ETH-USDT"], 1)
    assert p.encode_ping("1545910590801") == '{"id":"1545910590801","type":"ping"}'
    with pytest.raises(LocalProtocolError):
        p.encode_ping("")
    with pytest.raises(LocalProtocolError):
        p.encode_ping('a"b')


# ---------------------------------------------------------------- frames


def test_decode_control_frames() -> None:
    assert decode(DOC_WELCOME) == Welcome("hQvf8jkno")
    assert decode(DOC_PONG) == Pong("1545910590801")
    assert decode('{"type":"pong"}') == Pong(None)
    assert decode(DOC_ACK) == Ack("1545910660739")
    # §2.3: the id is sent as a number and comes back as a string; either way: str
    assert decode('{"id":1545910660739,"type":"ack"}') == Ack("1545910660739")
    assert decode('{"id":"7","type":"ping"}') == Ping("7")
    assert decode('{"type":"notice","topic":"/x","subject":"y"}') == Notice("notice", "/x", "y")
    assert decode('{"type":"command"}') == Notice("command", None, None)
    assert decode('{"type":"openTunnel"}') == UnknownMsg("openTunnel", None, None)


def test_decode_error_frames_and_kinds() -> None:
    e404 = decode(DOC_ERR_404)
    assert e404 == ErrorFrame("1", 404, "topic /market/level2:BSV-BTC is not found")
    assert isinstance(e404, ErrorFrame)
    assert e404.kind is ErrorKind.TOPIC_NOT_FOUND
    assert e404.permanent
    e509 = decode(DOC_ERR_509)
    assert isinstance(e509, ErrorFrame)
    assert e509.kind is ErrorKind.LIMIT_EXCEEDED
    assert not e509.permanent
    e401 = decode(DOC_ERR_401)
    assert e401 == ErrorFrame(None, 401, "token is expired")
    assert isinstance(e401, ErrorFrame)
    assert e401.kind is ErrorKind.TOKEN_EXPIRED
    other = decode('{"type":"error","code":"500"}')
    assert isinstance(other, ErrorFrame)
    assert (other.kind, other.data) == (ErrorKind.OTHER, "")


def test_decode_l2update() -> None:
    msg = decode(DOC_L2)
    assert msg == L2Update(
        symbol="BTC-USDT",
        sequence_start=14103844,
        sequence_end=14103847,
        time_ms=1663747970273,
        bids=(("18891.9", "0.15688", 14103847),),
        asks=(("18906", "0.00331", 14103845), ("18907.3", "0.58751503", 14103844)),
    )
    sdk = decode(DOC_L2_SDK)
    assert isinstance(sdk, L2Update)
    assert (sdk.sequence_start, sdk.sequence_end, sdk.bids) == (14701689783, 14701689783, ())
    no_bids = DOC_L2_SDK.replace(',"bids":[]', "")
    assert decode(no_bids) == sdk


def test_decode_match() -> None:
    assert decode(DOC_MATCH) == Match(
        symbol="BTC-USDT",
        sequence=11067996711960577,
        trade_id="11067996711960577",
        price="67523",
        size="0.003",
        side="buy",
        time_ns=1729843222921000000,
        maker_order_id="671b5007389355000701b1d3",
        taker_order_id="671b50161777ff00074c168d",
    )


def test_decode_ticker() -> None:
    expected = TickerMsg(
        "BTC-USDT", 1545896668986, "0.08", "0.011", "0.08", "0.18", "0.049", "0.036", 1704873323416
    )
    assert decode(DOC_TICKER) == expected
    assert decode(DOC_TICKER.replace('"time"', '"Time"')) == expected  # §2.6 doc typo
    all_msg = decode(DOC_TICKER_ALL)
    assert isinstance(all_msg, TickerMsg)
    assert all_msg.symbol == "ETH-USDT"


def test_decode_unknown_topics() -> None:
    frame = (
        '{"type":"message","topic":"/market/candles:BTC-USDT_1min",'
        '"subject":"trade.candles.update","data":{}}'
    )
    assert decode(frame) == UnknownMsg(
        "message", "/market/candles:BTC-USDT_1min", "trade.candles.update"
    )


def test_decode_rest_snapshot() -> None:
    snap = decode_l2_snapshot(DOC_SNAPSHOT)
    assert snap == L2Snapshot(
        sequence=14610502970,
        time_ms=1729176273859,
        bids=(("66976.4", "0.69109872"), ("66976.3", "0.1")),
        asks=(("66976.5", "0.05408199"), ("66976.6", "2")),
    )
    assert decode_l2_snapshot(DOC_429) == RestError("429000", "Too Many Requests")
    no_time = decode_l2_snapshot(DOC_SNAPSHOT.replace('"time":1729176273859,', ""))
    assert isinstance(no_time, L2Snapshot)
    assert no_time.time_ms is None


def test_rate_limit_recognition() -> None:
    assert p.is_rate_limited(429, None)
    assert p.is_rate_limited(429, b"")
    assert p.is_rate_limited(200, DOC_429)  # overload: code without the headers
    assert p.is_rate_limited(503, '{"code":"1015","msg":"cloudflare"}')
    assert not p.is_rate_limited(400, '{"code":"400005","msg":"signature error"}')
    assert not p.is_rate_limited(500, "<html>oops</html>")
    assert not p.is_rate_limited(200, None)
    assert decode_rest_error('{"code":"400005","msg":null}') == RestError("400005", "")


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{",
        "[]",
        "7",
        "null",
        "{}",
        '{"id":"x"}',
        '{"type":5}',
        '{"type":null}',
        '{"type":"welcome"}',
        '{"type":"welcome","id":[]}',
        '{"type":"ack"}',
        '{"type":"ack","id":1.5}',
        '{"type":"error"}',
        '{"type":"error","code":"x"}',
        '{"type":"error","code":-1}',
        '{"type":"error","code":404,"data":5}',
        b"\xff",
        "\ud800",
        "[" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"type":"message"}',
        '{"type":"message","topic":5,"data":{}}',
        '{"type":"message","topic":"/market/level2:X-Y","subject":"trade.l2update","data":[]}',
        # l2update
        DOC_L2.replace('"sequenceStart":14103844', '"sequenceStart":14103848'),  # start > end
        DOC_L2.replace('"sequenceStart":14103844', '"sequenceStart":-1'),
        DOC_L2.replace('"sequenceStart":14103844', '"sequenceStart":1.5'),
        DOC_L2.replace('"sequenceEnd":14103847', '"sequenceEnd":9223372036854775808'),
        DOC_L2.replace('"sequenceEnd":14103847', '"sequenceEnd":"1x"'),
        DOC_L2.replace('"sequenceEnd":14103847', '"sequenceEnd":1e400'),
        DOC_L2.replace('["18906","0.00331","14103845"]', '["18906","0.00331"]'),
        DOC_L2.replace('["18906","0.00331","14103845"]', "[18906,0.00331,14103845]"),
        DOC_L2.replace('["18906","0.00331","14103845"]', '["18906","-1","14103845"]'),
        DOC_L2.replace('["18906","0.00331","14103845"]', '["18906","0.00331","-5"]'),
        DOC_L2.replace('["18906","0.00331","14103845"]', '["1e5","0.00331","1"]'),
        DOC_L2.replace('["18906","0.00331","14103845"]', '["18906","0.00331","' + "9" * 20 + '"]'),
        DOC_L2.replace('"changes":{', '"changes":5,"x":{'),
        DOC_L2.replace('"bids":[', '"bids":{"a":[').replace("]]},", "]]}},", 1),
        DOC_L2.replace('"symbol":"BTC-USDT"', '"symbol":7'),
        DOC_L2.replace(',"time":1663747970273', ""),
        # match
        DOC_MATCH.replace('"side":"buy"', '"side":"long"'),
        DOC_MATCH.replace('"price":"67523"', '"price":67523'),
        DOC_MATCH.replace('"sequence":"11067996711960577"', '"sequence":"0x10"'),
        DOC_MATCH.replace('"tradeId":"11067996711960577"', '"tradeId":""'),
        DOC_MATCH.replace('"tradeId":"11067996711960577"', '"tradeId":5'),
        DOC_MATCH.replace('"time":"1729843222921000000"', '"time":"-1"'),
        DOC_MATCH.replace('"makerOrderId":"671b5007389355000701b1d3"', '"makerOrderId":1'),
        # ticker
        DOC_TICKER.replace('"bestAsk":"0.08"', '"bestAsk":0.08'),
        DOC_TICKER.replace('"time":1704873323416', '"time":"1704873323416"'),
        DOC_TICKER.replace("/market/ticker:BTC-USDT", "/market/ticker:BTC-USDT,ETH-USDT"),
        DOC_TICKER.replace("/market/ticker:BTC-USDT", "/market/ticker"),
        DOC_TICKER.replace("/market/ticker:BTC-USDT", "/market/ticker:all"),
        DOC_TICKER_ALL.replace('"subject":"ETH-USDT"', '"subject":""'),
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
        '{"data":{}}',
        '{"code":"200000","data":5}',
        DOC_SNAPSHOT.replace('"sequence":"14610502970"', '"sequence":"-1"'),
        DOC_SNAPSHOT.replace('"sequence":"14610502970"', '"sequence":14610502970.0'),
        DOC_SNAPSHOT.replace('["66976.4","0.69109872"]', '["66976.4"]'),
        DOC_SNAPSHOT.replace('["66976.4","0.69109872"]', "[66976.4,0.69109872]"),
        DOC_SNAPSHOT.replace('"time":1729176273859', '"time":"now"'),
    ],
)
def test_hostile_snapshots_raise_decode_error(body: str) -> None:
    with pytest.raises(DecodeError):
        decode_l2_snapshot(body)


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
    {"type": "message"},
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


def _ws_decodes_or_refuses(text: str) -> None:
    try:
        msg = decode(text)
    except DecodeError:
        return
    assert isinstance(msg, MESSAGE_TYPES)
    if isinstance(msg, L2Update):
        assert msg.sequence_start <= msg.sequence_end


def _rest_decodes_or_refuses(text: str) -> None:
    for fn, types in (
        (decode_bullet, (Bullet, RestError)),
        (decode_l2_snapshot, (L2Snapshot, RestError)),
        (decode_rest_error, (RestError,)),
    ):
        try:
            out = fn(text)
        except DecodeError:
            continue
        assert isinstance(out, types)
    assert p.is_rate_limited(200, text) in (True, False)


@pytest.mark.parametrize("frame", WS_FRAMES)
def test_every_ws_field_mutated_or_deleted_gives_a_message_or_decode_error(frame: str) -> None:
    doc = json.loads(frame)
    for path in _paths(doc):
        for value in HOSTILE_VALUES:
            _ws_decodes_or_refuses(json.dumps(_set(doc, path, value)))
        _ws_decodes_or_refuses(json.dumps(_delete(doc, path)))


@pytest.mark.parametrize("body", [DOC_BULLET, DOC_SNAPSHOT, DOC_429])
def test_every_rest_field_mutated_or_deleted_gives_a_result_or_decode_error(body: str) -> None:
    doc = json.loads(body)
    for path in _paths(doc):
        for value in HOSTILE_VALUES:
            _rest_decodes_or_refuses(json.dumps(_set(doc, path, value)))
        _rest_decodes_or_refuses(json.dumps(_delete(doc, path)))


# ---------------------------------------------------------------- property: arbitrary JSON

KEYS = [
    "id",
    "type",
    "topic",
    "subject",
    "data",
    "code",
    "msg",
    "changes",
    "asks",
    "bids",
    "sequenceStart",
    "sequenceEnd",
    "sequence",
    "symbol",
    "time",
    "price",
    "size",
    "side",
    "tradeId",
    "token",
    "instanceServers",
    "endpoint",
    "pingInterval",
    "pingTimeout",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(
        ["message", "trade.l2update", "trade.l3match", "trade.ticker", "200000", "1", "0.5"]
    )
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
    _ws_decodes_or_refuses(text)
    _rest_decodes_or_refuses(text)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_decode_error(blob: bytes) -> None:
    for fn in (decode, decode_bullet, decode_l2_snapshot, decode_rest_error):
        with contextlib.suppress(DecodeError):
            fn(blob)
    assert p.is_rate_limited(200, blob) in (True, False)
