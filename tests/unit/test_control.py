"""The control plane's contract: what a control entry may say, and what folding entries in stream order yields.

``SymbolControl`` rejects anything that is not "these canonical symbols, for this known venue" with a reason
a user can act on; ``SymbolState`` changes only the venues an entry names and keeps the user's and the
detector's sets apart, so neither can drop the other's books.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from common.bus.entries import StreamEntry
from producers.control import ControlFollower
from schemas.codec import encode_dict
from schemas.control import MAX_ENTRY_BYTES, MAX_SYMBOLS_PER_VENUE, ControlOp, ControlSource, SymbolControl, SymbolState
from schemas.streams import StreamNames, Subject

USER, DETECTOR = ControlSource.USER, ControlSource.DETECTOR
SET, ADD, REMOVE = ControlOp.SET, ControlOp.ADD, ControlOp.REMOVE


def control(symbols: dict[str, list[str]], op: ControlOp = SET, source: ControlSource = USER) -> SymbolControl:
    return SymbolControl(op=op, source=source, symbols=symbols)


def rejection(**fields: Any) -> str:
    """The ValidationError text for a control entry given as decoded JSON (what the codec hands pydantic)."""
    with pytest.raises(ValidationError) as caught:
        SymbolControl.model_validate(fields)
    return str(caught.value)


# --- SymbolControl: what an entry may say -------------------------------------------------------------------


def test_entry_naming_known_venues_is_a_user_set_by_default() -> None:
    entry = SymbolControl.model_validate({"symbols": {"coinbase": ["BTC-USD"], "kraken": ["ETH-USD", "ETH-BTC"]}})
    assert entry.op is SET
    assert entry.source is USER
    assert entry.symbols == {"coinbase": ["BTC-USD"], "kraken": ["ETH-USD", "ETH-BTC"]}


def test_unknown_venue_is_rejected_naming_it_and_the_known_venues() -> None:
    assert "unknown venue 'binance' (known: coinbase, kraken)" in rejection(symbols={"binance": ["BTC-USD"]})


def test_star_is_no_longer_an_all_venues_key() -> None:
    assert "unknown venue '*'" in rejection(symbols={"*": ["BTC-USD"]})


def test_flat_symbol_list_is_rejected_and_says_to_name_each_venue() -> None:
    reason = rejection(symbols=["BTC-USD", "ETH-USD"])
    assert "symbols must name each venue" in reason
    assert "flat list" in reason


def test_entry_naming_no_venue_is_rejected() -> None:
    assert "at least 1 item" in rejection(symbols={})


def test_empty_symbol_list_is_rejected_and_says_to_remove_by_name() -> None:
    reason = rejection(symbols={"kraken": []})
    assert "kraken: names no symbols" in reason
    assert "remove them by name" in reason


def test_more_symbols_than_the_limit_for_one_venue_is_rejected() -> None:
    too_many = [f"A{i}-USD" for i in range(MAX_SYMBOLS_PER_VENUE + 1)]
    assert f"coinbase: {MAX_SYMBOLS_PER_VENUE + 1} symbols, more than the limit of {MAX_SYMBOLS_PER_VENUE}" in (
        rejection(symbols={"coinbase": too_many}))


def test_exactly_the_limit_of_symbols_is_accepted() -> None:
    at_limit = [f"A{i}-USD" for i in range(MAX_SYMBOLS_PER_VENUE)]
    assert len(control({"coinbase": at_limit}).symbols["coinbase"]) == MAX_SYMBOLS_PER_VENUE


@pytest.mark.parametrize("symbol", ["btc-usd", "XBT/USD", "BTCUSD", "BTC-USD-EUR", "BTC-", "", " BTC-USD", "BTC-USD\n"])
def test_non_canonical_symbol_is_rejected_naming_the_symbol(symbol: str) -> None:
    reason = rejection(symbols={"coinbase": ["ETH-USD", symbol]})
    assert f"symbol {symbol!r} is not canonical BASE-QUOTE" in reason
    assert "symbols.coinbase.1" in reason  # the location points at the offending element


def test_unknown_op_is_rejected_listing_the_valid_ones() -> None:
    assert "Input should be 'set', 'add' or 'remove'" in rejection(op="replace", symbols={"coinbase": ["BTC-USD"]})


def test_unknown_source_is_rejected_listing_the_valid_ones() -> None:
    assert "Input should be 'user' or 'detector'" in rejection(source="admin", symbols={"coinbase": ["BTC-USD"]})


def test_duplicate_symbols_are_dropped_keeping_first_occurrence_order() -> None:
    entry = control({"coinbase": ["ETH-USD", "BTC-USD", "ETH-USD", "SOL-USD", "BTC-USD"]})
    assert entry.symbols == {"coinbase": ["ETH-USD", "BTC-USD", "SOL-USD"]}


# --- SymbolState: folding entries ---------------------------------------------------------------------------


def configured() -> SymbolState:
    """Both producers started with configured symbols and no control entry yet."""
    return SymbolState(defaults={"coinbase": ["BTC-USD", "ETH-USD"], "kraken": ["ETH-BTC"]})


def test_before_any_entry_the_user_set_is_the_configured_symbols_and_the_detector_set_is_empty() -> None:
    state = configured()
    assert state.current(USER, "coinbase") == ["BTC-USD", "ETH-USD"]
    assert state.current(DETECTOR, "coinbase") == []
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD"]
    assert state.wanted("kraken") == ["ETH-BTC"]


def test_user_set_replaces_the_configured_symbols_of_the_named_venue_only() -> None:
    state = configured()
    state.apply(control({"coinbase": ["SOL-USD"]}))
    assert state.wanted("coinbase") == ["SOL-USD"]
    assert state.wanted("kraken") == ["ETH-BTC"]


def test_add_appends_new_symbols_in_entry_order_and_skips_ones_already_held() -> None:
    state = configured()
    state.apply(control({"coinbase": ["SOL-USD", "BTC-USD", "ADA-USD"]}, op=ADD))
    # configured [BTC-USD, ETH-USD] + new ones in entry order; BTC-USD was held already
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"]


def test_remove_drops_named_symbols_keeps_order_and_ignores_ones_not_held() -> None:
    state = SymbolState(defaults={"coinbase": ["BTC-USD", "ETH-USD", "SOL-USD"]})
    state.apply(control({"coinbase": ["ETH-USD", "DOGE-USD"]}, op=REMOVE))
    assert state.wanted("coinbase") == ["BTC-USD", "SOL-USD"]


def test_removing_every_user_symbol_leaves_an_empty_set_not_the_defaults() -> None:
    state = configured()
    state.apply(control({"kraken": ["ETH-BTC"]}, op=REMOVE))
    assert state.current(USER, "kraken") == []
    assert state.wanted("kraken") == []


def test_a_later_set_replaces_what_earlier_adds_built() -> None:
    state = configured()
    state.apply(control({"coinbase": ["SOL-USD"]}, op=ADD))
    state.apply(control({"coinbase": ["ADA-USD"]}))
    assert state.wanted("coinbase") == ["ADA-USD"]


def test_wanted_is_the_user_set_in_order_then_detector_symbols_the_user_lacks() -> None:
    state = configured()
    state.apply(control({"coinbase": ["ETH-BTC", "ETH-USD", "BTC-USD"]}, source=DETECTOR))
    # user [BTC-USD, ETH-USD] first, then detector's ETH-BTC; the shared two appear once
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD", "ETH-BTC"]


def test_detector_set_never_removes_user_symbols() -> None:
    state = configured()
    state.apply(control({"coinbase": ["ETH-BTC"]}, source=DETECTOR))
    state.apply(control({"coinbase": ["SOL-USD"]}, source=DETECTOR))
    assert state.current(USER, "coinbase") == ["BTC-USD", "ETH-USD"]
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD", "SOL-USD"]


def test_user_set_and_remove_never_remove_detector_symbols() -> None:
    state = configured()
    state.apply(control({"coinbase": ["ETH-BTC", "BTC-USD"]}, source=DETECTOR))
    state.apply(control({"coinbase": ["SOL-USD"]}))
    state.apply(control({"coinbase": ["ETH-BTC", "BTC-USD", "SOL-USD"]}, op=REMOVE))
    assert state.current(USER, "coinbase") == []
    assert state.wanted("coinbase") == ["ETH-BTC", "BTC-USD"]


def test_detector_add_and_remove_edit_only_the_detector_set() -> None:
    state = configured()
    state.apply(control({"kraken": ["BTC-USD", "ETH-USD"]}, op=ADD, source=DETECTOR))
    state.apply(control({"kraken": ["BTC-USD", "ETH-BTC"]}, op=REMOVE, source=DETECTOR))
    assert state.current(DETECTOR, "kraken") == ["ETH-USD"]
    assert state.current(USER, "kraken") == ["ETH-BTC"]
    assert state.wanted("kraken") == ["ETH-BTC", "ETH-USD"]


def test_folding_for_one_venue_ignores_the_other_venues_part_of_an_entry() -> None:
    state = configured()
    state.apply(control({"coinbase": ["SOL-USD"], "kraken": ["SOL-USD"]}), venues=("kraken",))
    assert state.wanted("kraken") == ["SOL-USD"]
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD"]


def test_a_venue_without_defaults_wants_only_what_entries_gave_it() -> None:
    state = SymbolState()
    assert state.wanted("kraken") == []
    state.apply(control({"kraken": ["ETH-BTC"]}, op=ADD))
    assert state.wanted("kraken") == ["ETH-BTC"]


def test_a_symbol_configured_twice_is_wanted_once() -> None:
    """VenueSettings.symbols is a plain list, so the state de-duplicates the defaults itself."""
    state = SymbolState(defaults={"coinbase": ["BTC-USD", "ETH-USD", "BTC-USD"]})
    state.apply(control({"coinbase": ["SOL-USD"]}, op=ADD))
    assert state.wanted("coinbase") == ["BTC-USD", "ETH-USD", "SOL-USD"]


def test_venues_lists_configured_and_controlled_venues_sorted() -> None:
    state = SymbolState(defaults={"kraken": ["ETH-BTC"]})
    state.apply(control({"coinbase": ["BTC-USD"]}, source=DETECTOR))
    assert state.venues() == ["coinbase", "kraken"]


# --- ControlFollower.consider: a producer's verdict on one entry ----------------------------------------------

STREAM = StreamNames().stream(Subject.CONTROL)


def follower(venue: str, catalog: list[str]) -> ControlFollower:
    """``consider`` touches neither Redis nor the link, so none are given."""
    async def apply(symbols: list[str]) -> None:
        raise AssertionError("consider must not apply anything")

    return ControlFollower(venue, None, StreamNames(), defaults=[], catalog=catalog,  # type: ignore[arg-type]
                           apply=apply, link=None)  # type: ignore[arg-type]


def entry(fields: dict[bytes, bytes]) -> StreamEntry:
    return StreamEntry(stream=STREAM, id="1-0", fields=fields)


def entry_of(model: SymbolControl) -> StreamEntry:
    return entry({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in encode_dict(model).items()})


def test_entry_whose_symbols_the_venue_lists_is_applied() -> None:
    model = control({"coinbase": ["BTC-USD"], "kraken": ["NOT-LISTED"]})
    assert follower("coinbase", ["BTC-USD", "ETH-USD"]).consider(entry_of(model)) == (model, None)


def test_entry_naming_only_other_venues_is_neither_applied_nor_rejected() -> None:
    model = control({"kraken": ["ETH-BTC"]})
    assert follower("coinbase", ["BTC-USD"]).consider(entry_of(model)) == (None, None)


def test_entry_naming_a_market_the_venue_does_not_list_is_rejected_with_the_symbol() -> None:
    model = control({"coinbase": ["BTC-USD", "DOGE-EUR"]})
    assert follower("coinbase", ["BTC-USD"]).consider(entry_of(model)) == (None, "coinbase lists no market DOGE-EUR")


def test_undecodable_entry_is_rejected_with_the_codec_reason() -> None:
    verdict, reason = follower("coinbase", ["BTC-USD"]).consider(entry({b"v": b"1", b"symbols": b'["BTC-USD"]'}))
    assert verdict is None
    assert reason is not None and "symbols must name each venue" in reason


def test_entry_larger_than_the_limit_is_rejected_before_decoding() -> None:
    oversized = entry({b"v": b"1", b"symbols": b'{"coinbase": ["BTC-USD"]}', b"issued_by": b"x" * MAX_ENTRY_BYTES})
    verdict, reason = follower("coinbase", ["BTC-USD"]).consider(oversized)
    # 1 + 25 + 65,536 value bytes
    assert (verdict, reason) == (None, f"entry of 65562 bytes, more than the limit of {MAX_ENTRY_BYTES}")
