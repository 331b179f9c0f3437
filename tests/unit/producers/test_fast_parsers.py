"""The typed fast paths for book frames give exactly the general parsers' result (events, or the same
VenueProtocolError) on every recorded frame and on thousands of near-miss variants of the real shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from producers.venues import coinbase, kraken
from producers.venues.events import BookUpdate, ParsedFrame, VenueProtocolError

Frames = Callable[[str], list[str]]
Parser = Callable[[str | bytes], ParsedFrame]
VARIANTS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(parse: Parser, frame: str | bytes) -> tuple[str, object]:
    """What a parser made of a frame: its events and sequence, or the protocol error's message."""
    try:
        parsed = parse(frame)
    except VenueProtocolError as exc:
        return "error", str(exc)
    return "parsed", parsed


@pytest.mark.parametrize(
    ("recording", "fast", "general"),
    [("kraken-v1-2021.ndjson", kraken.parse_frame, kraken.parse_general),
     ("kraken-v2-book-samples.ndjson", kraken.parse_frame, kraken.parse_general),
     ("coinbase-advanced-2026.ndjson", coinbase.parse_frame, coinbase.parse_general)],
)
def test_every_recorded_frame_parses_as_the_general_parser_parses_it(
    recorded_frames: Frames, recording: str, fast: Parser, general: Parser
) -> None:
    for frame in recorded_frames(recording):
        assert outcome(fast, frame) == outcome(general, frame)
        assert outcome(fast, frame.encode()) == outcome(general, frame)


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """Valid values four times in five, so that whole frames are often valid and reach every branch."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid),
                     st.sampled_from(invalid))


def with_extras(required: dict[str, Any], extras: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the required keys, and one time in four some of the ``extras`` keys too."""
    none: st.SearchStrategy[dict[str, Any]] = st.just({})
    some = st.fixed_dictionaries({}, optional=extras)
    return st.tuples(st.fixed_dictionaries(required), st.one_of(none, none, none, some)).map(lambda kv: kv[0] | kv[1])


@pytest.mark.parametrize(
    ("recording", "venue", "is_book_frame"),
    [("kraken-v1-2021.ndjson", kraken,  # v1 book updates with one payload
      lambda frame: frame.startswith("[") and '"book-' in frame and '"as"' not in frame and "},{" not in frame),
     ("kraken-v2-book-samples.ndjson", kraken, lambda frame: frame.startswith('{"channel":"book"')),
     ("coinbase-advanced-2026.ndjson", coinbase, lambda frame: frame.startswith('{"channel":"l2_data"'))],
)
def test_every_recorded_book_frame_takes_the_fast_path(
    recorded_frames: Frames, recording: str, venue: Any, is_book_frame: Callable[[str], bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Book frames are the traffic the fast paths exist for: none of those may need the general parser (the
    v1 fast path leaves it snapshots and updates with two payloads, 3 of the 3,531 updates recorded)."""
    book_frames = [frame for frame in recorded_frames(recording) if is_book_frame(frame)]
    expected = [venue.parse_general(frame) for frame in book_frames]

    def general_parser_called(frame: str | bytes) -> ParsedFrame:
        raise AssertionError(f"took the general parser: {frame[:80]!r}")

    monkeypatch.setattr(venue, "parse_general", general_parser_called)
    assert [venue.parse_frame(frame) for frame in book_frames] == expected
    assert len(book_frames) >= 3


# Values near the real ones: right, wrong type, or text that one number parser takes and another refuses.
numbers = mostly(["354.15000000", "0.000022900", "0", "0.00000000"],
                 ["1e5", " 1", "1_0", ".5", "abc", "", 5, 1.5, None, True])
times = mostly(["1618678133.365913", "1618678145.920708", "1618678133"],
               ["-0", "0", "-5", "1e400", "inf", "-inf", "nan", " 1", "1_0", ".5", "1e5", "", 1618678133.365913, 16,
                True, None, [], "٣"])
v1_levels = st.lists(st.one_of(
    st.tuples(numbers, numbers, times).map(list),
    st.tuples(numbers, numbers, times, st.just("r")).map(list),
    st.tuples(numbers, numbers).map(list),
), max_size=3)
v1_payloads = st.fixed_dictionaries({}, optional={
    "a": v1_levels | st.none(), "b": v1_levels | st.none(),
    "c": mostly(["2583817756", "0"], ["1.0", "1e3", " 5", "-5", "abc", "", "٣", 5, None]),
    "as": v1_levels, "bs": v1_levels, "x": st.integers(),
})
v1_frames = st.tuples(
    st.sampled_from([992, "992", 1.5, True, None]),
    st.lists(v1_payloads, min_size=1, max_size=2),
    st.sampled_from(["book-10", "book-1000", "book-7", "bookish", "trade", "spread"]),
    st.sampled_from(["XMR/USD", "XBT/CHF", "BAD", "", 5]),
).map(lambda parts: [parts[0], *parts[1], parts[2], parts[3]])


@VARIANTS
@given(frame=v1_frames)
def test_kraken_v1_book_arrays_parse_as_the_general_parser_parses_them(frame: list[Any]) -> None:
    text = json.dumps(frame)
    assert outcome(kraken.parse_frame, text) == outcome(kraken.parse_general, text)


v2_levels = st.lists(st.fixed_dictionaries(
    {"price": st.sampled_from([0.12275, 45285.2, 0.1229, 6597, "0.12275", True, None, [1.5]]),
     "qty": st.sampled_from([6597.5173116, 0.001, 1, "1.5", False, None])},
    optional={"x": st.integers()},
), max_size=3)
v2_data = st.fixed_dictionaries(
    {"symbol": st.sampled_from(["ALGO/USD", "BTC/USD", "BAD", 5]), "bids": v2_levels, "asks": v2_levels},
    optional={"checksum": st.sampled_from([1100635717, 0, -1, 2**70, True, 1.5, "5", None]),
              "timestamp": st.sampled_from(["2024-10-03T02:46:57.050170Z", "bad", 5, None])},
)
v2_frames = st.fixed_dictionaries(
    {"channel": st.sampled_from(["book", "book", "trade"]), "type": st.sampled_from(["snapshot", "update", "delta"]),
     "data": st.lists(v2_data, max_size=2)},
    optional={"method": st.just("subscribe"), "event": st.just("heartbeat"), "x": st.integers()},
)


@VARIANTS
@given(frame=v2_frames)
def test_kraken_v2_book_messages_parse_as_the_general_parser_parses_them(frame: dict[str, Any]) -> None:
    text = json.dumps(frame)
    assert outcome(kraken.parse_frame, text) == outcome(kraken.parse_general, text)


unknown = {"x": st.sampled_from([1, "1e999"])}  # an unknown key; "1e999" becomes a number orjson refuses
l2_levels = st.lists(with_extras(
    {"side": mostly(["bid", "offer"], ["ask", "BID", 5]),
     "event_time": mostly(["2026-08-09T21:05:48.210883Z", "2026-08-09T21:05:49Z"], ["bad", 5, None]),
     "price_level": mostly(["65062.5", "65063"], ["0", 65062.5, None]),
     "new_quantity": mostly(["0.00583", "0"], [1, None])},
    unknown,
), max_size=3)
l2_events = with_extras(
    {"type": mostly(["update", "snapshot"], ["other", None]),
     "product_id": mostly(["BTC-USD", "ETH-USD"], ["btc/usd", 5]), "updates": l2_levels},
    unknown,
)
l2_frames = with_extras(
    {"channel": mostly(["l2_data"], ["ticker"]),
     "timestamp": mostly(["2026-08-09T21:05:48.505350477Z"], [5]),
     "sequence_num": mostly([14, 0], [-1, "14", 1.5, True, 2**63, 2**64 + 5]),
     "events": st.lists(l2_events, max_size=2)},
    {"type": st.sampled_from(["error", "update"]), "client_id": st.sampled_from(["", 5]), **unknown},
)


def l2_frame(**level: Any) -> dict[str, Any]:
    return {"channel": "l2_data", "timestamp": "2026-08-09T21:05:48.505350477Z", "sequence_num": 14, "events": [
        {"type": "update", "product_id": "BTC-USD", "updates": [
            {"side": "bid", "event_time": "2026-08-09T21:05:48.210883Z", "price_level": "65062.5",
             "new_quantity": "0.00583"} | level]}]}


@VARIANTS
@example(frame=l2_frame(side="ask"))  # Coinbase says "offer"; "ask" must stay an error, not become an ask
@example(frame=l2_frame(x="1e999"))
@given(frame=l2_frames)
def test_coinbase_l2_data_frames_parse_as_the_general_parser_parses_them(frame: dict[str, Any]) -> None:
    text = json.dumps(frame).replace('"1e999"', "1e999")  # a number JSON allows and orjson refuses
    assert outcome(coinbase.parse_frame, text) == outcome(coinbase.parse_general, text)


def test_kraken_v1_update_keeps_the_wire_text_and_the_latest_level_time() -> None:
    frame = ('[1920,{"a":[["0.042990","364630.28272081","1618678145.920708"]],'
             '"b":[["0.042980","0.00000000","1618678145.910470"]],"c":"4105471083"},"book-1000","SC/EUR"]')
    assert kraken.parse_frame(frame).events == [  # the asks' time: the latest, though not the last
        BookUpdate("SC-EUR", [("0.042980", "0.00000000")], [("0.042990", "364630.28272081")], 1618678145920,
                   4105471083, kraken.ChecksumFormat.KRAKEN_V1)
    ]


@pytest.mark.parametrize("stamp", ["inf", "1e400"])
def test_a_level_or_trade_time_too_large_for_milliseconds_is_a_protocol_error(stamp: str) -> None:
    """float("inf") * 1000 cannot become an int: OverflowError, which escaped the parser before."""
    book = f'[1,{{"b":[["1.0","2.0","{stamp}"]],"c":"5"}},"book-10","XMR/USD"]'
    trade = f'[1,[["1.0","2.0","{stamp}","s","l",""]],"trade","XMR/USD"]'
    for frame in (book, trade):
        with pytest.raises(VenueProtocolError, match="malformed frame: OverflowError"):
            kraken.parse_frame(frame)


@pytest.mark.parametrize("parse", [kraken.parse_frame, coinbase.parse_frame])
@pytest.mark.parametrize("frame", ['{"channel":"l2_data","x":"\ud800"}', '[1,{"b":[]},"book-10","\ud800"]',
                                   "[" * 5000 + "]" * 5000])
def test_text_that_is_no_utf8_and_nesting_too_deep_are_not_json(parse: Parser, frame: str) -> None:
    """A str with a lone surrogate made msgspec raise UnicodeEncodeError, deep nesting RecursionError."""
    with pytest.raises(VenueProtocolError, match="not JSON"):
        parse(frame)
