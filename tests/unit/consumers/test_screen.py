"""The log-rate screen selects exactly the triangles whose top-of-book net ROI clears the threshold."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.detector.evaluate import Book, top_of_book
from consumers.detector.graph import Market, enumerate_triangles
from consumers.detector.screen import VECTOR_THRESHOLD, TopOfBookScreen

ASSETS = ["USD", "BTC", "ETH", "SOL", "EUR", "USDT"]


def graph(fee: float) -> list[Market]:
    return [Market("kraken", f"{b}-{q}", b, q, 1e-8, 0.0, fee)
            for i, q in enumerate(ASSETS) for b in ASSETS[i + 1:]]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000), fee=st.sampled_from([0.0, 0.004, 0.012]),
    min_roi=st.sampled_from([-0.01, 0.0, 0.002]),
)
def test_screen_matches_a_brute_force_top_of_book_check(seed: int, fee: float, min_roi: float) -> None:
    rng = random.Random(seed)
    markets = graph(fee)
    triangles = enumerate_triangles(markets, ("USD", "BTC"))
    screen = TopOfBookScreen(triangles)
    books: dict[str, Book] = {}
    for market in markets:  # noisy, sometimes mispriced books
        mid = rng.uniform(0.5, 2.0)
        bid, ask = mid * (1 - rng.uniform(0, 0.02)), mid * (1 + rng.uniform(0, 0.02))
        books[market.symbol] = ([(bid, 1.0, 1.0)], [(ask, 1.0, 1.0)])
        screen.update(market.symbol, bid, ask)
    threshold = math.log1p(min_roi)
    for market in markets:
        expected = sorted(row for row, t in enumerate(triangles) if market.symbol in t.symbols
                          and math.log(top_of_book(t, books)[1]) >= threshold)  # type: ignore[index]
        assert sorted(screen.candidates(market.symbol, threshold)) == expected


def test_hub_markets_take_the_vector_path_and_agree() -> None:
    markets = graph(0.004) + [Market("kraken", f"X{i}-USD", f"X{i}", "USD", 1e-8, 0.0, 0.004) for i in range(40)] \
        + [Market("kraken", f"X{i}-BTC", f"X{i}", "BTC", 1e-8, 0.0, 0.004) for i in range(40)]
    triangles = enumerate_triangles(markets, ("USD",))
    screen = TopOfBookScreen(triangles)
    assert screen.affected_count("BTC-USD") > VECTOR_THRESHOLD
    for market in markets:
        screen.update(market.symbol, 0.999, 1.001)
    assert screen.candidates("BTC-USD", 0.0) == []  # spreads and fees: nothing clears zero
    assert len(screen.candidates("BTC-USD", -1.0)) == screen.affected_count("BTC-USD")
