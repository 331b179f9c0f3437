"""Triangle maths with hand-computed expectations; the arithmetic is written out in each test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.detector.evaluate import (
    Book,
    max_executable_notional,
    round_down,
    top_of_book,
    walk,
)
from consumers.detector.graph import Leg, Market, Triangle, enumerate_triangles, index_by_market
from schemas.market import Side

FEE = 0.004  # Kraken's lowest taker tier


def market(symbol: str, fee: float = FEE, increment: float = 1e-8, min_size: float = 0.0) -> Market:
    base, quote = symbol.split("-")
    return Market("kraken", symbol, base, quote, increment, min_size, fee)


BTC_USD, ETH_BTC, ETH_USD = market("BTC-USD"), market("ETH-BTC"), market("ETH-USD")
# USD -> BTC (buy BTC-USD) -> ETH (buy ETH-BTC) -> USD (sell ETH-USD)
FORWARD = Triangle("kraken", (Leg(BTC_USD, Side.BUY), Leg(ETH_BTC, Side.BUY), Leg(ETH_USD, Side.SELL)))
# USD -> ETH (buy ETH-USD) -> BTC (sell ETH-BTC) -> USD (sell BTC-USD)
REVERSE = Triangle("kraken", (Leg(ETH_USD, Side.BUY), Leg(ETH_BTC, Side.SELL), Leg(BTC_USD, Side.SELL)))

def with_markets(triangle: Triangle, **changes: float) -> Triangle:
    """The same cycle on markets with other fees, increments or minimums."""
    first, second, third = (Leg(market(leg.market.symbol, **changes), leg.side) for leg in triangle.legs)
    return Triangle(triangle.venue, (first, second, third))


BOOKS: dict[str, Book] = {
    "BTC-USD": ([(59_990.0, 1.0, 1.0)], [(60_000.0, 0.5, 0.5), (60_100.0, 1.0, 1.5)]),
    "ETH-BTC": ([(0.0499, 10.0, 10.0)], [(0.05, 4.0, 4.0), (0.051, 10.0, 14.0)]),
    "ETH-USD": ([(3_100.0, 2.0, 2.0), (3_000.0, 10.0, 12.0)], [(3_101.0, 5.0, 5.0)]),
}


def test_top_of_book_forward_cycle_gross_and_net() -> None:
    # 1 USD / 60000 = 1.6667e-5 BTC; / 0.05 = 3.3333e-4 ETH; * 3100 = 1.033333 USD
    gross, net = top_of_book(FORWARD, BOOKS)  # type: ignore[misc]
    assert gross == pytest.approx(3100 / 3000, rel=1e-12)
    # three taker fees: 1.033333 * 0.996^3 = 1.033333 * 0.988047936 = 1.0209829...
    assert net == pytest.approx(3100 / 3000 * 0.996**3, rel=1e-12)


def test_top_of_book_reverse_cycle_loses_the_spread() -> None:
    # 1 USD / 3101 ETH; * 0.0499 BTC; * 59990 USD = 0.965345...
    gross, net = top_of_book(REVERSE, BOOKS)  # type: ignore[misc]
    assert gross == pytest.approx(0.0499 * 59_990 / 3_101, rel=1e-12)
    assert net < gross < 1


def test_depth_walk_crosses_levels_and_pays_fees_on_each_leg() -> None:
    # 36,010 USD buys 0.5 BTC @60000 (30,000) + 0.1 BTC @60100 (6,010) = 0.6 BTC; fee 0.4% -> 0.5976 BTC
    # 0.5976 BTC buys ETH: 4 ETH @0.05 (0.2 BTC) + 0.3976/0.051 = 7.796078 ETH -> 11.796078 ETH; fee -> 11.748894
    # sells 2 ETH @3100 + 9.748894 @3000 = 6,200 + 29,246.68 = 35,446.68 USD; fee -> 35,304.89 USD
    fill = walk(FORWARD, BOOKS, 36_010.0)
    assert fill.feasible
    btc, eth, usd = (leg.amount_out for leg in fill.legs)
    assert btc == pytest.approx(0.6 * 0.996, rel=1e-9)
    eth_bought = 4 + (0.6 * 0.996 - 0.2) / 0.051
    assert eth == pytest.approx(eth_bought * 0.996, rel=1e-9)
    proceeds = 2 * 3100 + (eth_bought * 0.996 - 2) * 3000
    assert usd == pytest.approx(proceeds * 0.996, rel=1e-9)
    # sizes are rounded down to 1e-8: at most 1e-8 ETH x 3,000 = 3e-5 USD of 36,010 (~1e-9) is lost
    assert fill.roi == pytest.approx(proceeds * 0.996 / 36_010 - 1, abs=2e-9)
    assert fill.roi < top_of_book(FORWARD, BOOKS)[1] - 1  # type: ignore[index]  # depth costs


def test_walk_beyond_visible_depth_is_infeasible() -> None:
    # BTC-USD asks hold 0.5*60000 + 1.0*60100 = 90,100 USD in total
    fill = walk(FORWARD, BOOKS, 100_000.0)
    assert not fill.feasible
    assert "not enough ask depth" in (fill.reason or "")


def test_sizes_round_down_to_the_increment_and_respect_the_minimum() -> None:
    coarse = Triangle("kraken", (Leg(market("BTC-USD", increment=0.01, min_size=0.02), Side.BUY),
                                 Leg(ETH_BTC, Side.BUY), Leg(ETH_USD, Side.SELL)))
    # 1,000 USD buys 0.016667 BTC: rounded down to 0.01, below the 0.02 minimum
    assert not walk(coarse, BOOKS, 1_000.0).feasible
    # 1,500 USD buys 0.025 BTC -> 0.02 BTC (1,200 USD spent; the 300 USD left over is counted as lost)
    fill = walk(coarse, BOOKS, 1_500.0)
    assert fill.feasible and fill.legs[0].size == pytest.approx(0.02)


def test_largest_executable_notional_clears_the_threshold_and_a_bit_more_does_not() -> None:
    best = max_executable_notional(FORWARD, BOOKS, min_roi=0.0)
    assert best > 0
    assert walk(FORWARD, BOOKS, best).roi >= 0.0
    assert not (walk(FORWARD, BOOKS, best * 1.01).feasible and walk(FORWARD, BOOKS, best * 1.01).roi >= 0.0)


@pytest.mark.parametrize(("amount", "increment", "expected"), [(0.3, 0.1, 0.3), (0.29999, 0.1, 0.2),
                                                               (5.0, 1.0, 5.0), (1e-9, 1e-8, 0.0)])
def test_round_down(amount: float, increment: float, expected: float) -> None:
    assert round_down(amount, increment) == pytest.approx(expected)
    assert round_down(amount, increment) <= amount * (1 + 1e-12)  # float noise only (3 x 0.1 > 0.3)


def test_enumeration_finds_both_directions_once_and_indexes_markets() -> None:
    triangles = enumerate_triangles([BTC_USD, ETH_BTC, ETH_USD], anchors=("USD", "BTC"))
    assert {t.cycle_id for t in triangles} == {FORWARD.cycle_id, REVERSE.cycle_id}
    index = index_by_market(triangles)
    assert sorted(index) == ["BTC-USD", "ETH-BTC", "ETH-USD"] and all(len(v) == 2 for v in index.values())


fair = st.floats(min_value=0.01, max_value=100_000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(usd_btc=fair, usd_eth=fair)
def test_consistent_market_without_fees_has_zero_roi(usd_btc: float, usd_eth: float) -> None:
    free = [market(s, fee=0.0) for s in ("BTC-USD", "ETH-BTC", "ETH-USD")]
    price = {"BTC-USD": usd_btc, "ETH-BTC": usd_eth / usd_btc, "ETH-USD": usd_eth}
    books: dict[str, Book] = {s: ([(p, 1e9, 1e9)], [(p, 1e9, 1e9)]) for s, p in price.items()}
    for triangle in enumerate_triangles(free, anchors=("USD",)):
        gross, net = top_of_book(triangle, books)  # type: ignore[misc]
        assert gross - 1 == pytest.approx(0, abs=1e-12)
        assert net == gross


@settings(max_examples=300, deadline=None)
@given(fee=st.floats(min_value=1e-6, max_value=0.05), notional=st.floats(min_value=10, max_value=80_000))
def test_fees_strictly_lower_the_roi(fee: float, notional: float) -> None:
    with_fees, without = with_markets(FORWARD, fee=fee), with_markets(FORWARD, fee=0.0)
    assert top_of_book(with_fees, BOOKS)[1] < top_of_book(without, BOOKS)[1]  # type: ignore[index]
    paid, free = walk(with_fees, BOOKS, notional), walk(without, BOOKS, notional)
    if paid.feasible and free.feasible:
        assert paid.roi < free.roi


@settings(max_examples=300, deadline=None)
@given(notional=st.floats(min_value=1, max_value=95_000), increment=st.sampled_from([1e-8, 1e-4, 0.01, 0.1]))
def test_rounding_never_trades_more_than_the_book_shows_nor_ends_with_more(notional: float, increment: float) -> None:
    exact = walk(FORWARD, BOOKS, notional)
    rounded = walk(with_markets(FORWARD, increment=increment), BOOKS, notional)
    if notional > 90_100:  # beyond the first leg's visible asks (0.5 x 60,000 + 1 x 60,100): never feasible
        assert not exact.feasible and not rounded.feasible
    if rounded.feasible:
        for fill in rounded.legs:
            bids, asks = BOOKS[fill.symbol]
            assert fill.size <= sum(size for _, size, _ in (asks if fill.side is Side.BUY else bids)) * (1 + 1e-12)
        if exact.feasible:
            assert rounded.final_amount <= exact.final_amount * (1 + 1e-12)
