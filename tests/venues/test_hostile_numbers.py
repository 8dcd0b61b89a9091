"""Hostile input: numbers out of range, per venue (issue 6).

The accepted range, per field (refused values are a ``BadFrame`` and a resync
of what the frame could have touched; nothing is delivered from the frame):

- **prices and quantities** (books, trades): finite, never negative (``-0``
  refused too), at most 36 characters. Binance and KuCoin send decimal strings:
  ASCII digits with at most one dot and 18 decimals, no sign, no exponent
  (``check_decimal``, in the decoder). Kraken sends JSON numbers: any form is
  accepted that lands exactly on the pair's precision grid below 10^35 scaled
  units (``parse_fixed(..., signed=False)`` for books, ``parse_decimal(...,
  signed=False)`` for trades: exponent within -36..35), in the adapter, since
  the precision is per pair.
- **sequence and trade ids** (Binance ``U``/``u``/``t``/``lastUpdateId``, KuCoin
  ``sequenceStart``/``sequenceEnd``/change and trade ``sequence``, Kraken
  ``trade_id``): integers 0..2^63-1.

Raw ``NaN``/``Infinity`` are not JSON: the decoder refuses the frame. A bare JSON
``-0`` (Kraken) decodes to the integer 0 and is accepted as zero; ``-0.0`` and
``"-0"`` keep their sign and are refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hostile_kit import VENUES, BinanceLive, KucoinLive, Live, of

from gapless.errors import DecodeError
from gapless.events import BadFrame, BookSnapshot, BookUpdate, Trade
from gapless.venues.binance import protocol as bp
from gapless.venues.kucoin import protocol as cp

I63 = 2**63 - 1

HOSTILE = [
    "1e400",
    "-1",
    "-0.5",
    "-0",
    "-0.0",
    str(10**40),
    "1e999999",
    "1e-999999",
    "9" * 400,
    "NaN",
    "Infinity",
    "-Infinity",
    "0x10",
    "1.2.3",
    "",
]
FIELDS = ["book price", "book qty", "trade price", "trade qty"]


def sane(h: Live) -> None:
    """Every number delivered is finite, non-negative and in range."""
    for e in h.delivered():
        if isinstance(e, Trade):
            numbers = [e.price, e.qty]
        else:
            assert isinstance(e, BookSnapshot | BookUpdate)
            numbers = [x for lv in (*e.bids, *e.asks) for x in lv]
        for n in numbers:
            assert isinstance(n, Decimal)
            assert n.is_finite()
            assert not n.is_signed(), e
            assert n < 10**35, e


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_an_out_of_range_number_is_a_bad_frame_and_nothing_is_delivered(
    venue: str, field: str, value: str
) -> None:
    h = VENUES[venue]()
    h.frame(h.trade())
    frames = h.number_frames(field, value)
    if venue == "kraken" and value == "-0":
        frames = frames[1:]  # a bare JSON -0 decodes to the integer 0: no sign is left
    for frame in frames:
        delivered = list(h.delivered())
        book = h.book_levels()
        step = h.frame(frame)
        assert len(of(step.events, BadFrame)) == 1, (frame, step.events)
        assert not of(step.events, Trade), frame
        assert not of(step.events, BookUpdate), frame
        if field.startswith("book"):
            assert h.book_levels() == book or not h.book_valid()  # applied nowhere
        h.settle()
        assert h.delivered()[: len(delivered)] == delivered  # nothing received is lost
    assert of(h.frame(h.trade()).events, Trade)  # the session goes on
    sane(h)


@pytest.mark.parametrize("value", ["1e400", "-1", "1e999999", "1e-999999", "9" * 400])
@pytest.mark.parametrize(
    ("decode", "template"),
    [
        (bp.decode, '{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":%s,"q":"1","T":1,"m":true}'),
        (bp.decode, '{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[[%s,"1"]],"a":[]}'),
        (bp.decode, '{"u":1,"s":"BTCUSDT","b":%s,"B":"1","a":"2","A":"1"}'),
        (
            cp.decode,
            '{"type":"message","topic":"/market/level2:BTC-USDT","subject":"trade.l2update",'
            '"data":{"changes":{"asks":[],"bids":[["1",%s,"2"]]},"sequenceStart":2,'
            '"sequenceEnd":2,"symbol":"BTC-USDT","time":1}}',
        ),
        (
            cp.decode,
            '{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match",'
            '"data":{"price":%s,"size":"1","sequence":"5","side":"buy","symbol":"BTC-USDT",'
            '"time":"1","tradeId":"5","type":"match"}}',
        ),
    ],
    ids=["binance-trade", "binance-depth", "binance-bookTicker", "kucoin-l2", "kucoin-match"],
)
def test_binance_and_kucoin_decoders_refuse_them_as_text_and_as_json_numbers(
    decode: Any, template: str, value: str
) -> None:
    for wire in (json.dumps(value), value):
        with pytest.raises(DecodeError):
            decode(template % wire)


# ------------------------------------------------------------------ sequence and trade ids

BAD_IDS: list[Any] = [-1, 2**63, 2**64, 10**40, 1.5, True, "x"]


@pytest.mark.parametrize("venue", list(VENUES))
@pytest.mark.parametrize("trade_id", BAD_IDS, ids=repr)
def test_a_trade_id_out_of_range_is_a_bad_frame(venue: str, trade_id: Any) -> None:
    h = VENUES[venue]()
    h.frame(h.trade())
    if venue == "kucoin" and type(trade_id) is int:
        trade_id = str(trade_id)  # KuCoin's sequence is a decimal string (§2.6)
    raw = json.dumps(trade_id) if venue == "kraken" else trade_id
    step = h.frame(h.trade(trade_id=raw, record=False))
    assert len(of(step.events, BadFrame)) == 1
    assert not of(step.events, Trade)
    h.settle()
    assert of(h.frame(h.trade()).events, Trade)


@pytest.mark.parametrize("venue", list(VENUES))
def test_the_largest_signed_64_bit_id_is_accepted(venue: str) -> None:
    h = VENUES[venue]()
    h.frame(h.trade())
    last = str(I63) if venue == "kucoin" else I63
    step = h.frame(h.trade(trade_id=last))
    (trade,) = of(step.events, Trade)
    if venue != "kucoin":  # KuCoin's id is ``tradeId``; the sequence is what was set
        assert trade.trade_id == I63
    assert not of(step.events, BadFrame)


@pytest.mark.parametrize("seq", [-1, 2**63, 10**40, "5"], ids=repr)
def test_binance_update_ids_out_of_range_are_bad_frames(seq: Any) -> None:
    h = BinanceLive()
    for first, last in ((seq, seq), (1, seq)):
        frame = h.depth([["98.00000000", "1.00000000"]], first, last)
        step = h.frame(frame)
        assert len(of(step.events, BadFrame)) == 1
        assert not of(step.events, BookUpdate)
        h.settle()
    with pytest.raises(DecodeError):
        bp.decode_depth_snapshot(json.dumps({"lastUpdateId": seq, "bids": [], "asks": []}))


@pytest.mark.parametrize("seq", [-1, 2**63, 10**40, "-1", "9223372036854775808", "1e3"], ids=repr)
def test_kucoin_sequences_out_of_range_are_bad_frames(seq: Any) -> None:
    h = KucoinLive()
    for start, end, change in ((seq, seq, "101"), (1, seq, "101"), (None, None, seq)):
        frame = h.l2([["100.1", "1", change]], start, end)
        step = h.frame(frame)
        assert len(of(step.events, BadFrame)) == 1, frame
        assert not of(step.events, BookUpdate)
        h.settle()
    body = json.dumps({"code": "200000", "data": {"sequence": seq, "bids": [], "asks": []}})
    with pytest.raises(DecodeError):
        cp.decode_l2_snapshot(body)
