"""Thousands of malformed frames: parsers raise only VenueProtocolError, and the feed never raises at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.feed import Venue, VenueFeed
from producers.venues import coinbase, kraken
from producers.venues.events import ParsedFrame, VenueProtocolError

PARSERS = {Venue.COINBASE: coinbase.parse_frame, Venue.KRAKEN: kraken.parse_frame}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Realistic shapes whose keys are right but whose values are anything: wrong types, missing parts.
coinbase_like = st.fixed_dictionaries(
    {"channel": st.sampled_from(["l2_data", "market_trades", "heartbeats", "subscriptions", "x"]),
     "sequence_num": st.integers(0, 10) | st.text(max_size=3)},
    optional={"events": st.lists(st.dictionaries(
        st.sampled_from(["type", "product_id", "updates", "trades", "subscriptions", "side"]), json_values,
        max_size=4), max_size=3), "timestamp": json_values},
)
kraken_v2_like = st.fixed_dictionaries(
    {"channel": st.sampled_from(["book", "trade", "status", "instrument", "heartbeat", "zzz"])},
    optional={"type": st.sampled_from(["snapshot", "update", "other"]),
              "data": st.lists(st.dictionaries(st.sampled_from(["symbol", "bids", "asks", "checksum", "price", "qty",
                                                                "side", "timestamp", "pairs", "system"]),
                                               json_values, max_size=5), max_size=3) | json_values},
)
kraken_v1_like = st.lists(json_values, min_size=1, max_size=5).map(lambda xs: [1, *xs, "book-10", "XBT/USD"])


def accepted_or_protocol_error(parse: Callable[[str | bytes], ParsedFrame], frame: str | bytes) -> None:
    try:
        parse(frame)
    except VenueProtocolError:
        pass


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("venue", list(Venue))
@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_exceptions(venue: Venue, text: Any) -> None:
    accepted_or_protocol_error(PARSERS[venue], text)


@pytest.mark.parametrize("venue", list(Venue))
@FUZZ
@given(value=json_values | coinbase_like | kraken_v2_like | kraken_v1_like)
def test_wrong_types_and_unknown_channels_are_protocol_errors(venue: Venue, value: Any) -> None:
    accepted_or_protocol_error(PARSERS[venue], json.dumps(value))


@FUZZ
@given(cut=st.integers(min_value=1, max_value=400), value=coinbase_like | kraken_v2_like | kraken_v1_like)
def test_truncated_frames_are_counted_and_the_feed_keeps_going(cut: int, value: Any) -> None:
    for venue in Venue:
        feed = VenueFeed(venue, depth=10)
        frame = json.dumps(value)
        feed.on_frame(frame[: max(1, len(frame) - cut)])
        assert feed.counters.frames == 1
        assert feed.counters.parse_errors <= 1


def test_recorded_frames_cut_at_every_point_never_raise(recorded_frames: Callable[[str], list[str]]) -> None:
    feed = VenueFeed(Venue.KRAKEN, depth=1000)
    sample = recorded_frames("kraken-v1-2021.ndjson")[:60]
    for frame in sample:
        for cut in range(1, len(frame), 7):
            feed.on_frame(frame[:cut])
    assert feed.counters.parse_errors > 0
