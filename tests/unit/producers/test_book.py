"""The L2 book: absolute sizes, deletes, depth truncation, cumulative top-N, integrity checks."""

from __future__ import annotations

import pytest

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
