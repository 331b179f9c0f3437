"""The L2 book: absolute sizes, deletes, depth truncation, cumulative top-N, integrity checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.book import BookIntegrityError, OrderBook


def test_top_levels_are_best_first_with_running_cumulative_size() -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(bids=[("99", "1"), ("100", "2"), ("98", "3")], asks=[("102", "4"), ("101", "5")])
    bids, asks = book.top(5)
    assert bids == [(100.0, 2.0, 2.0), (99.0, 1.0, 3.0), (98.0, 3.0, 6.0)]
    assert asks == [(101.0, 5.0, 5.0), (102.0, 4.0, 9.0)]


def test_updates_set_absolute_sizes_and_zero_deletes_in_any_spelling() -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(bids=[("100", "2"), ("99", "1")], asks=[("101", "5")])
    book.apply_update(bids=[("100", "0.5"), ("99", "0.00000000")], asks=[("101.0", "0")])
    assert book.top(5) == ([(100.0, 0.5, 0.5)], [])


def test_equal_decimal_values_are_one_level() -> None:
    book = OrderBook("ETH-BTC")
    book.apply_snapshot(bids=[("0.10", "1")], asks=[])
    book.apply_update(bids=[("0.1", "3")], asks=[])
    assert len(book.bids) == 1
    assert book.bids.top_text(1) == [("0.1", "3")]  # the text of the last update, for checksums


def test_a_price_touched_twice_in_one_message_ends_with_the_last_size() -> None:
    book = OrderBook("X-Y")
    book.apply_update(bids=[("5", "1"), ("5", "0"), ("5", "7")], asks=[])
    assert book.top(1)[0] == [(5.0, 7.0, 7.0)]


def test_depth_truncation_drops_levels_pushed_out_of_the_window() -> None:
    book = OrderBook("BTC-USD", depth=2)
    book.apply_snapshot(bids=[("100", "1"), ("99", "1")], asks=[("101", "1"), ("102", "1")])
    book.apply_update(bids=[("100.5", "1")], asks=[("100.8", "1")])
    assert [p for p, _, _ in book.top(5)[0]] == [100.5, 100.0]
    assert [p for p, _, _ in book.top(5)[1]] == [100.8, 101.0]


def test_crossed_book_is_detected() -> None:
    book = OrderBook("BTC-USD")
    book.apply_snapshot(bids=[("100", "1")], asks=[("101", "1")])
    assert not book.is_crossed()
    book.apply_update(bids=[("101", "1")], asks=[])
    assert book.is_crossed()


@pytest.mark.parametrize("level", [("abc", "1"), ("100", "-1"), ("0", "1"), ("inf", "1"), ("100", "nan")])
def test_levels_that_are_not_prices_and_sizes_are_rejected(level: tuple[str, str]) -> None:
    with pytest.raises(BookIntegrityError):
        OrderBook("BTC-USD").apply_update(bids=[level], asks=[])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=40), st.sampled_from(["0", "1", "2.5", "7"])),
        min_size=1, max_size=120,
    ),
    st.sampled_from([None, 12, 25]),
)
def test_cached_top_and_checksum_text_always_equal_a_fresh_computation(
    operations: list[tuple[bool, int, str]], depth: int | None
) -> None:
    """Random updates on a small price grid hit inside and outside the cached top-10 window."""
    book = OrderBook("X-Y", depth=depth)
    book.apply_snapshot([(str(p), "1") for p in range(1, 30)], [(str(p), "1") for p in range(41, 70)],
                        token=lambda price, size: f"{price}:{size},")
    for is_bid, tick, size in operations:
        price = str(tick) if is_bid else str(tick + 40)
        book.apply_update([(price, size)] if is_bid else [], [] if is_bid else [(price, size)])
        for side, descending in ((book.bids, True), (book.asks, False)):
            expected = sorted(side._levels.items(), key=lambda item: item[0])  # fresh, uncached
            fresh_prices = [abs(key) for key, _ in expected]
            assert [p for p, _, _ in side.top(5)] == fresh_prices[:5]
            assert side.checksum_part(10) == "".join(value[3] for _, value in expected[:10])
            assert [p for p, _, _ in side.top(5)] == sorted(fresh_prices, reverse=descending)[:5]
