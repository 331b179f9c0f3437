"""What a reader believes: hand-made books, trades and control entries against ``schemas.checks``.

Each check returns ``None`` for something that can exist, else a reason that names the offending level,
value or symbol (it is stored on the dead-letter stream, so it has to say what was wrong).
"""

from __future__ import annotations

import pytest

from schemas.checks import (
    MAX_LEVELS,
    MAX_PRICE,
    MAX_SIZE,
    book_problem,
    control_problem,
    snapshot_problem,
    trade_problem,
)
from schemas.control import SymbolControl
from schemas.market import Level
from tests import samples

CATALOGS = {"coinbase": {"BTC-USD", "ETH-USD"}, "kraken": {"ETH-USD", "ETH-BTC"}}

# A believable BTC-USD book, totals written out: bids 0.25, 0.25+1.5=1.75; asks 0.4, 0.4+2.0=2.4.
BIDS: list[Level] = [(100.0, 0.25, 0.25), (99.5, 1.5, 1.75)]
ASKS: list[Level] = [(100.5, 0.4, 0.4), (101.0, 2.0, 2.4)]


# --- book_problem ---------------------------------------------------------------------------------------------


def test_two_sided_book_with_ordered_levels_and_running_totals_is_believable() -> None:
    assert book_problem(BIDS, ASKS) is None


def test_one_sided_books_are_believable() -> None:
    assert book_problem(BIDS, []) is None
    assert book_problem([], ASKS) is None


def test_crossed_book_is_rejected() -> None:
    assert book_problem([(101.0, 1.0, 1.0)], ASKS) == "crossed book: best bid 101.0 >= best ask 100.5"


def test_locked_book_with_best_bid_equal_to_best_ask_is_rejected() -> None:
    assert book_problem([(100.5, 1.0, 1.0)], ASKS) == "crossed book: best bid 100.5 >= best ask 100.5"


def test_bids_rising_away_from_the_best_are_rejected() -> None:
    assert book_problem([(99.5, 1.0, 1.0), (100.0, 1.0, 2.0)], ASKS) == "bids[1] price 100.0 is not below 99.5"


def test_asks_falling_away_from_the_best_are_rejected() -> None:
    assert book_problem(BIDS, [(101.0, 1.0, 1.0), (100.5, 1.0, 2.0)]) == "asks[1] price 100.5 is not above 101.0"


def test_two_levels_at_the_same_price_are_rejected() -> None:
    assert book_problem(BIDS, [(100.5, 1.0, 1.0), (100.5, 1.0, 2.0)]) == "asks[1] price 100.5 is not above 100.5"


@pytest.mark.parametrize("price", [0.0, -0.0, -100.0, 1e300, float("inf"), float("nan")])
def test_price_outside_zero_to_max_is_rejected(price: float) -> None:
    assert book_problem([(price, 1.0, 1.0)], []) == f"bids[0] price {price!r} outside (0, 1e+12]"


@pytest.mark.parametrize("size", [0.0, -1.0, 1e300, float("inf"), float("nan")])
def test_size_outside_zero_to_max_is_rejected(size: float) -> None:
    assert book_problem([], [(100.0, size, size)]) == f"asks[0] size {size!r} outside (0, 1e+18]"


def test_price_and_size_at_their_limits_are_accepted() -> None:
    assert book_problem([], [(MAX_PRICE, MAX_SIZE, MAX_SIZE)]) is None


def test_level_total_that_is_not_the_running_total_is_rejected() -> None:
    # second level carries its own size (1.5) where the running total is 0.25 + 1.5 = 1.75
    bids: list[Level] = [(100.0, 0.25, 0.25), (99.5, 1.5, 1.5)]
    assert book_problem(bids, ASKS) == "bids[1] cumulative size 1.5 is not the running total 1.75"


def test_first_level_total_must_equal_its_size() -> None:
    assert book_problem([], [(100.5, 0.4, 0.0)]) == "asks[0] cumulative size 0.0 is not the running total 0.4"


def test_totals_off_only_by_float_rounding_are_accepted() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in float64; a venue that sums in decimal sends 0.3
    assert book_problem([], [(1.0, 0.1, 0.1), (2.0, 0.2, 0.3)]) is None


def test_more_levels_than_the_limit_on_either_side_are_rejected() -> None:
    deep = [(1000.0 + i, 1.0, i + 1.0) for i in range(MAX_LEVELS + 1)]
    assert book_problem([], deep) == f"0 bids / {MAX_LEVELS + 1} asks: more than {MAX_LEVELS} levels"
    assert book_problem(deep[::-1], []) is not None


def test_exactly_the_level_limit_is_accepted() -> None:
    deep = [(1000.0 + i, 1.0, i + 1.0) for i in range(MAX_LEVELS)]
    assert book_problem([], deep) is None


# --- snapshot_problem -------------------------------------------------------------------------------------------


def test_snapshot_of_a_listed_market_with_a_believable_book_passes() -> None:
    assert snapshot_problem(samples.snapshot(), CATALOGS) is None


def test_snapshot_with_no_levels_at_all_is_rejected() -> None:
    assert snapshot_problem(samples.snapshot(bids=[], asks=[])) == "empty book: no bids and no asks"


def test_snapshot_reports_its_book_problem() -> None:
    crossed = samples.snapshot(bids=[(101.0, 1.0, 1.0)], asks=ASKS)
    assert snapshot_problem(crossed) == "crossed book: best bid 101.0 >= best ask 100.5"


def test_snapshot_with_a_huge_price_is_rejected() -> None:
    forged = samples.snapshot(bids=[], asks=[(1e300, 1.0, 1.0)])
    assert snapshot_problem(forged) == "asks[0] price 1e+300 outside (0, 1e+12]"


def test_snapshot_from_an_unknown_venue_is_rejected() -> None:
    assert snapshot_problem(samples.snapshot(exchange="binance"), CATALOGS) == "unknown venue 'binance'"


def test_snapshot_of_a_market_the_venue_does_not_list_is_rejected() -> None:
    unlisted = samples.snapshot(symbol="DOGE-USD")
    assert snapshot_problem(unlisted, CATALOGS) == "coinbase lists no market 'DOGE-USD'"


def test_snapshot_from_a_venue_whose_market_list_is_missing_is_rejected() -> None:
    reason = snapshot_problem(samples.snapshot(exchange="kraken"), {"coinbase": {"BTC-USD"}})
    assert reason == "no market list registered for kraken (its producer writes it at start)"


def test_without_catalogs_only_the_book_is_checked() -> None:
    assert snapshot_problem(samples.snapshot(exchange="binance", symbol="DOGE-USD")) is None


# --- trade_problem ----------------------------------------------------------------------------------------------


def test_trade_on_a_listed_market_passes() -> None:
    assert trade_problem(samples.trade(), CATALOGS) is None


def test_trade_at_a_huge_price_is_rejected() -> None:
    assert trade_problem(samples.trade(price=1e300)) == "price 1e+300 above 1e+12"


def test_trade_of_a_huge_size_is_rejected() -> None:
    assert trade_problem(samples.trade(size=1e300)) == "size 1e+300 above 1e+18"


def test_trade_at_the_limits_is_accepted() -> None:
    assert trade_problem(samples.trade(price=MAX_PRICE, size=MAX_SIZE)) is None


def test_trade_from_an_unknown_venue_is_rejected() -> None:
    assert trade_problem(samples.trade(exchange="binance"), CATALOGS) == "unknown venue 'binance'"


def test_trade_on_an_unlisted_market_is_rejected() -> None:
    assert trade_problem(samples.trade(symbol="BTC-USD"), CATALOGS) == "kraken lists no market 'BTC-USD'"


def test_trade_from_a_venue_whose_market_list_is_missing_is_rejected() -> None:
    reason = trade_problem(samples.trade(), {})
    assert reason == "no market list registered for kraken (its producer writes it at start)"


# --- control_problem --------------------------------------------------------------------------------------------


def test_control_naming_only_listed_markets_for_the_venue_passes() -> None:
    entry = SymbolControl(symbols={"coinbase": ["BTC-USD", "ETH-USD"]})
    assert control_problem(entry, "coinbase", CATALOGS["coinbase"]) is None


def test_control_lists_every_unknown_symbol_in_entry_order() -> None:
    entry = SymbolControl(symbols={"coinbase": ["SOL-USD", "BTC-USD", "ADA-USD"]})
    assert control_problem(entry, "coinbase", CATALOGS["coinbase"]) == "coinbase lists no market SOL-USD, ADA-USD"


def test_control_problem_shows_ten_unknown_symbols_and_counts_the_rest() -> None:
    unknown = [f"X{i}-USD" for i in range(13)]
    entry = SymbolControl(symbols={"coinbase": unknown})
    shown = ", ".join(f"X{i}-USD" for i in range(10))
    assert control_problem(entry, "coinbase", CATALOGS["coinbase"]) == f"coinbase lists no market {shown} and 3 more"


def test_control_problem_judges_only_the_given_venues_part() -> None:
    entry = SymbolControl(symbols={"coinbase": ["BTC-USD"], "kraken": ["NOT-LISTED"]})
    assert control_problem(entry, "coinbase", CATALOGS["coinbase"]) is None
    assert control_problem(entry, "kraken", CATALOGS["kraken"]) == "kraken lists no market NOT-LISTED"


def test_control_not_naming_the_venue_has_no_problem_for_it() -> None:
    entry = SymbolControl(symbols={"kraken": ["NOT-LISTED"]})
    assert control_problem(entry, "coinbase", CATALOGS["coinbase"]) is None
