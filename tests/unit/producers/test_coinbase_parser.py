"""Coinbase Advanced Trade frames → events, checked on frames of the real 2026 recording."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from producers.venues import coinbase
from producers.venues.events import (
    AckStatus,
    BookSnapshot,
    BookUpdate,
    Heartbeat,
    SubscriptionAck,
    TradePrint,
    VenueErrorMessage,
    VenueProtocolError,
)
from schemas.market import Side

RECORDING = "coinbase-advanced-2026.ndjson"
Frames = Callable[[str], list[str]]


def frame_with(frames: list[str], sequence: int) -> str:
    return next(f for f in frames if f'"sequence_num":{sequence},' in f)


def test_btc_snapshot_keeps_both_sides_with_offer_as_asks(recorded_frames: Frames) -> None:
    parsed = coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 13))
    [snapshot] = parsed.events
    assert isinstance(snapshot, BookSnapshot)
    assert parsed.sequence == 13
    assert snapshot.symbol == "BTC-USD"
    assert (len(snapshot.bids), len(snapshot.asks)) == (18764, 27236)
    assert snapshot.bids[0] == ("65083.66", "0.20371215")
    assert snapshot.asks[0] == ("65083.67", "0.23256041")


def test_update_keeps_level_order_and_zero_sizes_and_event_time(recorded_frames: Frames) -> None:
    [update] = coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 14)).events
    assert isinstance(update, BookUpdate)
    assert update.bids[:2] == [("65062.5", "0.00583"), ("65061.91", "0")]
    assert update.ts_event_ms == 1786309548210  # 2026-08-09T21:05:48.210883Z


def test_trade_side_is_flipped_from_maker_to_taker(recorded_frames: Frames) -> None:
    [trade] = coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 9)).events
    assert trade == TradePrint("BTC-USD", "65083.67", "0.01034361", Side.BUY, 1786309548167, "1068572091")


def test_trade_snapshot_is_history_and_yields_nothing(recorded_frames: Frames) -> None:
    assert coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 0)).events == []


def test_subscriptions_list_every_active_channel(recorded_frames: Frames) -> None:
    events = coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 26)).events
    assert SubscriptionAck("level2", ["BTC-USD", "ETH-USD"], AckStatus.SUBSCRIBED) in events
    assert len(events) == 5


def test_heartbeats_and_ignored_channels(recorded_frames: Frames) -> None:
    heartbeat = next(f for f in recorded_frames(RECORDING) if '"channel":"heartbeats"' in f)
    assert coinbase.parse_frame(heartbeat).events == [Heartbeat()]
    assert coinbase.parse_frame(frame_with(recorded_frames(RECORDING), 10)).events == []  # ticker


def test_error_message_is_an_event() -> None:
    assert coinbase.parse_frame('{"type":"error","message":"authentication failure"}').events == [
        VenueErrorMessage("authentication failure")
    ]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"channel":"l2_data","timestamp":"x","sequence_num":1,"events":[{"type":"update","product_id":"BTC-USD",'
         '"updates":[{"side":"ask","event_time":"2026-08-09T21:05:48Z","price_level":"1","new_quantity":"1"}]}]}',
         "unknown book side 'ask'"),
        ('{"channel":"fills","timestamp":"x","sequence_num":1,"events":[]}', "unknown channel 'fills'"),
        ('{"channel":"heartbeats","sequence_num":"7","events":[]}', "not an integer"),
        ('{"channel":"l2_data","sequence_num":1,"events":[{"type":"update","product_id":"btc/usd","updates":[]}]}',
         "bad product_id"),
        ('{"channel":"l2_data","sequence_num":1', "not JSON"),
        ("[1,2,3]", "expected a JSON object"),
    ],
)
def test_malformed_frames_raise_protocol_errors_with_the_reason(frame: str, reason: str) -> None:
    with pytest.raises(VenueProtocolError, match=reason):
        coinbase.parse_frame(frame)


def test_subscribe_sends_one_message_per_channel() -> None:
    messages = [orjson.loads(m) for m in coinbase.subscribe_messages(["BTC-USD", "ETH-USD"])]
    assert [m["channel"] for m in messages] == ["level2", "market_trades", "heartbeats"]
    assert messages[0] == {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"}
