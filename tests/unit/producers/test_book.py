"""The L2 book: absolute sizes, deletes, depth truncation, cumulative top-N, integrity checks."""

from __future__ import annotations

import math
import zlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from producers import book as book_module
from producers.book import BookIntegrityError, OrderBook, SortedKeys
from producers.venues import kraken
from schemas.market import Level


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


@settings(max_examples=500, deadline=None)
@example(text="-0")
@example(text="1_0")
@example(text=" .5")
@example(text="1e400")
@example(text="0." + "0" * 400 + "1")
@given(text=st.one_of(st.decimals(allow_nan=False, allow_infinity=False).map(str), st.floats().map(repr),
                      st.text(alphabet="0123456789.-+eE_ \u0663", max_size=25)))
def test_a_number_text_parses_to_what_float_gives(text: str) -> None:
    """The JSON-number fast path equals ``float()``, or defers to it; only "-0" loses its sign (a size zero)."""
    try:
        expected = float(text)
    except ValueError:
        with pytest.raises(ValueError):
            book_module._number(text)
        return
    parsed = book_module._number(text)
    assert parsed == expected or (math.isnan(parsed) and math.isnan(expected))
    assert math.copysign(1.0, parsed) == math.copysign(1.0, expected) or text.strip() == "-0"


def test_a_level_in_any_spelling_float_takes_is_applied_as_float_reads_it() -> None:
    book = OrderBook("BTC-USD")
    assert not book.apply_update(bids=[("1_0", "2"), (" 9.5", ".5")], asks=[("1.1e1", "1"), ("12", "1E0")])
    assert book.top(5) == ([(10.0, 2.0, 2.0), (9.5, 0.5, 2.5)], [(11.0, 1.0, 1.0), (12.0, 1.0, 2.0)])


def reference_top(side: dict[float, tuple[float, tuple[str, str]]], n: int, descending: bool) -> list[Level]:
    """Best ``n`` of a dict book (price -> (size, wire text)) with a running sum, computed from scratch."""
    out, cumulative = [], 0.0
    for price in sorted(side, reverse=descending)[:n]:
        cumulative += side[price][0]
        out.append((price, side[price][0], cumulative))
    return out


def token(price: str, size: str) -> str:
    return f"{price}:{size},"


def apply_to_reference(side: dict[float, tuple[float, tuple[str, str]]], levels: list[tuple[str, str]]) -> None:
    for price, size in levels:
        if float(size):
            side[float(price)] = (float(size), (price, size))
        else:
            side.pop(float(price), None)


prices = st.integers(min_value=1, max_value=150)
sizes = st.sampled_from(["0", "0", "1", "2.5", "7", "0.000"])
messages = st.lists(st.tuples(*[st.lists(st.tuples(prices, sizes), max_size=4)] * 2), min_size=1, max_size=60)


@settings(max_examples=250, deadline=None)
@example(snapshot=([(p, "1") for p in range(1, 7)], []), updates=[([], [])], depth=4, top_n=5, with_token=False)
@example(snapshot=([], [(p, "1") for p in range(1, 13)]), updates=[([], [(1, "2")])], depth=9, top_n=0,
         with_token=True)  # depth one level shallower than the published levels / the checksummed levels
@example(snapshot=([(p, "1") for p in range(1, 13)], []), updates=[([(8, "2")], []), ([(3, "0")], [])], depth=None,
         top_n=5, with_token=True)  # a change at the 5th best bid (8), then at the 10th (3)
@given(
    snapshot=st.tuples(*[st.lists(st.tuples(prices, sizes), max_size=150)] * 2),
    updates=messages,
    depth=st.sampled_from([None, 3, 4, 9, 12, 70]),  # 4 and 9: one level shallower than a view
    top_n=st.sampled_from([0, 1, 5, 7, 20]),
    with_token=st.booleans(),
)
def test_published_levels_checksum_and_crossing_always_equal_a_fresh_computation(
    snapshot: tuple[list[tuple[int, str]], list[tuple[int, str]]], updates: list[tuple[list[tuple[int, str]], ...]],
    depth: int | None, top_n: int, with_token: bool,
) -> None:
    """Up to 150 levels a side: levels move between the head (16-64 best) and the tail, changes land in front
    of and behind the kept views, and a shallow depth truncates into them. Bids sit on prices 1-150 and asks
    on 101-250, so books cross and uncross."""
    book = OrderBook("X-Y", depth=depth, top_n=top_n, checksum_levels=10)
    reference: tuple[dict[float, tuple[float, tuple[str, str]]], ...] = ({}, {})

    def text(levels: list[tuple[int, str]], offset: int) -> list[tuple[str, str]]:
        return [(str(price + offset), size) for price, size in levels]

    def check(crossed: bool) -> None:
        for side, ref, descending in ((book.bids, reference[0], True), (book.asks, reference[1], False)):
            assert side.top_levels == reference_top(ref, top_n, descending)
            assert side.top(3) == reference_top(ref, 3, descending)
            best = sorted(ref, reverse=descending)
            assert side.top_text(12) == [ref[price][1] for price in best[:12]]
            assert side.checksum_text == ("".join(token(*ref[p][1]) for p in best[:10]).encode() if with_token else b"")
            assert len(side) == len(ref)
        expected_crossed = bool(reference[0]) and bool(reference[1]) and max(reference[0]) >= min(reference[1])
        assert crossed == expected_crossed == book.is_crossed()
        assert book.checksum == (zlib.crc32(book.asks.checksum_text + book.bids.checksum_text) if with_token else None)

    def truncate() -> None:
        for ref, descending in ((reference[0], True), (reference[1], False)):
            for price in sorted(ref, reverse=descending)[depth:] if depth is not None else []:
                del ref[price]

    crossed = book.apply_snapshot(text(snapshot[0], 0), text(snapshot[1], 100), token if with_token else None)
    apply_to_reference(reference[0], text(snapshot[0], 0))
    apply_to_reference(reference[1], text(snapshot[1], 100))
    truncate()
    check(crossed)
    for bids, asks in updates:
        crossed = book.apply_update(text(bids, 0), text(asks, 100))
        apply_to_reference(reference[0], text(bids, 0))
        apply_to_reference(reference[1], text(asks, 100))
        truncate()
        check(crossed)


def test_a_change_behind_the_published_levels_keeps_them_and_one_in_front_rebuilds_them() -> None:
    book = OrderBook("BTC-USD", top_n=2)
    book.apply_snapshot([("100", "1"), ("99", "1"), ("98", "1")], [("101", "1")])
    published = book.bids.top_levels
    book.apply_update([("98", "5"), ("97", "1")], [])  # third and fourth best: the top 2 cannot have changed
    assert book.bids.top_levels is published
    book.apply_update([("99", "2")], [])  # second best
    assert book.bids.top_levels == [(100.0, 1.0, 1.0), (99.0, 2.0, 3.0)]
    assert published == [(100.0, 1.0, 1.0), (99.0, 1.0, 2.0)]  # what was published before is left as it was


def test_a_bad_level_leaves_the_levels_before_it_applied_and_the_views_current() -> None:
    book = OrderBook("BTC-USD", top_n=5)
    book.apply_snapshot([("100", "1")], [("101", "1")])
    with pytest.raises(BookIntegrityError):
        book.apply_update([("100.5", "2"), ("nope", "1"), ("100.7", "1")], [])
    assert book.bids.top_levels == [(100.5, 2.0, 2.0), (100.0, 1.0, 3.0)] == book.bids.top(5)


def test_book_checksum_is_krakens_over_the_top_10_asks_then_bids() -> None:
    asks = [(f"{354 + i / 100:.8f}", f"{1 + i}.50000000") for i in range(15)]
    bids = [(f"{353 - i / 100:.8f}", f"0.0000{i + 1}000") for i in range(15)]
    book = OrderBook("XMR-USD", top_n=5, checksum_levels=10)
    book.apply_snapshot(bids, asks, kraken.token_v1)
    assert book.checksum == kraken.checksum_v1(asks[:10], bids[:10])
    book.apply_update([("353.005", "3.0")], [("354.50", "0")])  # a new best bid; an ask behind the top 10 goes
    assert book.checksum == kraken.checksum_v1(asks[:10], [("353.005", "3.0")] + bids[:9])
    assert book.checksum == kraken.checksum(book.asks.checksum_text, book.bids.checksum_text)


def test_a_snapshot_without_a_token_function_cannot_be_verified() -> None:
    book = OrderBook("BTC-USD", top_n=5, checksum_levels=10)
    book.apply_snapshot([("100", "1")], [("101", "1")])
    assert book.checksum is None
    book.apply_update([("100", "2")], [])
    assert book.checksum is None


@pytest.mark.parametrize("block_max", [2, 3, 256])
@settings(max_examples=100, deadline=None)
@given(operations=st.lists(st.tuples(st.sampled_from(["add", "remove", "extend", "pop_highest", "pop_lowest"]),
                                     st.integers(min_value=0, max_value=40)), max_size=80))
def test_sorted_keys_behave_like_one_sorted_list(block_max: int, operations: list[tuple[str, int]]) -> None:
    """Blocks of 2 and 3 keys split and empty on almost every operation."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(book_module, "BLOCK_MAX", block_max)
        keys, expected = SortedKeys(), []
        for operation, number in operations:
            count = number % 5
            if operation == "add" and number not in expected:
                keys.add(float(number))
                expected = sorted([*expected, number])
            elif operation == "remove" and number in expected:
                keys.remove(float(number))
                expected.remove(number)
            elif operation == "extend":  # keys above all held ones
                above = list(range(max(expected, default=0) + 1, max(expected, default=0) + 1 + count))
                keys.extend([float(key) for key in above])
                expected += above
            elif operation == "pop_highest":
                highest = expected[max(0, len(expected) - count):]
                assert keys.pop_highest(count) == highest
                expected = expected[:len(expected) - len(highest)]
            elif operation == "pop_lowest":
                assert keys.pop_lowest(count) == expected[:count]
                expected = expected[count:]
            assert [key for block in keys.blocks for key in block] == expected
            assert keys.maxes == [block[-1] for block in keys.blocks] and all(keys.blocks)
            assert all(len(block) <= block_max for block in keys.blocks)
            assert keys.highest(3) == expected[::-1][:3]
