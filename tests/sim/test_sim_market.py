"""Market generator sanity and the depth-view update rules (protocols.md §1.7 rules 2-4)."""

from __future__ import annotations

import random

import pytest

from gapless.sim.market import DEFAULT_PAIRS, BookSide, DepthView, PairSpec, SymbolMarket


def _market(pair: PairSpec, seed: int = 1) -> SymbolMarket:
    return SymbolMarket(pair, random.Random(f"{seed}:{pair.symbol}"))


def _check_side(side: BookSide) -> None:
    assert side.keys == sorted(side.keys)
    assert len(side.keys) == len(side.qty)
    assert all(q > 0 for q in side.qty.values())
    assert all(p > 0 for p in side.qty)


@pytest.mark.parametrize("pair", DEFAULT_PAIRS, ids=lambda p: p.symbol)
def test_book_stays_sane(pair: PairSpec) -> None:
    m = _market(pair)
    assert len(m.bids) == 1200
    assert len(m.asks) == 1200
    for _ in range(5000):
        m.tick()
        assert m.bids.best() < m.asks.best(), "crossed book"
        assert len(m.bids) >= 1100
        assert len(m.asks) >= 1100
    _check_side(m.bids)
    _check_side(m.asks)


def test_seed_determinism() -> None:
    def run(seed: int) -> list[int]:
        m = _market(DEFAULT_PAIRS[0], seed)
        return [(m.tick(), m.checksum())[1] for _ in range(500)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_all_ops_and_trades_happen() -> None:
    m = _market(DEFAULT_PAIRS[1])
    fills = 0
    levels_per_trade: set[int] = set()
    for _ in range(3000):
        ch = m.tick()
        if ch.fills:
            fills += len(ch.fills)
            levels_per_trade.add(len(ch.fills))
            assert len({f.side for f in ch.fills}) == 1
    assert fills > 300
    assert levels_per_trade == {1, 2, 3}


@pytest.mark.parametrize("pair", DEFAULT_PAIRS, ids=lambda p: p.symbol)
@pytest.mark.parametrize("depth", [10, 25, 100, 1000])
def test_depth_view_keeps_truncated_client_book_exact(pair: PairSpec, depth: int) -> None:
    """A client applying each diff then truncating to depth always equals the true top-depth."""
    m = _market(pair, seed=depth)
    view = DepthView(m, depth)
    client_bids = dict(m.bids.top(depth))
    client_asks = dict(m.asks.top(depth))
    sent_levels = 0
    for _ in range(1500 if depth < 1000 else 400):
        ch = m.tick()
        bids, asks = view.diff(m, ch)
        for side, upd, touched, book in (
            (client_bids, bids, ch.touched_bids, m.bids),
            (client_asks, asks, ch.touched_asks, m.asks),
        ):
            prices = [p for p, _ in upd]
            assert len(prices) == len(set(prices)), "one price twice in one message"
            for p, q in upd:
                if q == 0:
                    # rule 2: zero only for a level really deleted from the book
                    assert p in touched
                    assert p not in book
                    assert p in side, "removal of a level the client does not have"
                    del side[p]
                else:
                    assert side.get(p) != q, "unchanged level re-sent"
                    side[p] = q
            sent_levels += len(upd)
        client_bids = dict(sorted(client_bids.items(), reverse=True)[:depth])
        client_asks = dict(sorted(client_asks.items())[:depth])
        assert client_bids == dict(m.bids.top(depth))
        assert client_asks == dict(m.asks.top(depth))
    assert sent_levels > 0


def test_pushed_out_level_is_not_sent_and_exposed_level_is() -> None:
    """Rules 3 and 4 on a hand-made book."""
    pair = PairSpec("TST/USD", "100.00", 2, 8)
    m = SymbolMarket(pair, random.Random(0), levels=1200, min_levels=1100)
    view = DepthView(m, 10)
    # rule 3: insert a better bid inside the spread -> the 10th bid leaves the window silently
    from gapless.sim.market import MarketChange

    tenth = m.bids.price_at(9)
    new_price = m.bids.best() + 1
    assert new_price < m.asks.best()
    ch = MarketChange()
    ch.touch(m.bids, new_price, m.bids.set(new_price, 5))
    bids, asks = view.diff(m, ch)
    assert bids == [(new_price, 5)]
    assert asks == []
    assert tenth not in [p for p, _ in bids]
    # rule 4: delete the best ask -> the 11th ask enters the window and is sent
    eleventh = m.asks.price_at(10)
    best = m.asks.best()
    ch = MarketChange()
    ch.touch(m.asks, best, m.asks.remove(best))
    bids, asks = view.diff(m, ch)
    assert bids == []
    assert sorted(asks) == sorted([(best, 0), (eleventh, m.asks.qty[eleventh])])


def test_no_update_when_window_unchanged() -> None:
    pair = DEFAULT_PAIRS[0]
    m = _market(pair)
    view = DepthView(m, 10)
    from gapless.sim.market import MarketChange

    deep = m.bids.price_at(500)
    ch = MarketChange()
    ch.touch(m.bids, deep, m.bids.set(deep, m.bids.qty[deep] + 1))
    assert view.diff(m, ch) == ([], [])


def test_too_low_base_price_rejected() -> None:
    with pytest.raises(ValueError, match="too close to zero"):
        SymbolMarket(PairSpec("X/USD", "0.01", 2), random.Random(0))
