"""Kraken v2 and v1 frames → events, and both checksums, on the real recordings and Kraken's guide vectors."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from producers.venues import kraken, kraken_checksum
from producers.venues.events import (
    AckStatus,
    BookSnapshot,
    BookUpdate,
    ChecksumFormat,
    Heartbeat,
    InstrumentInfo,
    SubscriptionAck,
    TradePrint,
    VenueProtocolError,
    VenueStatus,
)
from schemas.market import Side

V1 = "kraken-v1-2021.ndjson"
V2 = "kraken-v2-book-samples.ndjson"
Frames = Callable[[str], list[str]]


def test_v2_snapshot_keeps_number_text_and_checksum(recorded_frames: Frames) -> None:
    snapshot_frame = next(f for f in recorded_frames(V2) if '"ALGO/USD"' in f and '"snapshot"' in f)
    [snapshot] = kraken.parse_frame(snapshot_frame).events
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.symbol == "ALGO-USD"
    assert snapshot.checksum == 2375857985
    assert snapshot.checksum_format is ChecksumFormat.KRAKEN_V2
    assert len(snapshot.bids) == len(snapshot.asks) == 10
    assert all("." in price for price, _ in snapshot.bids)  # text, never a float


def test_v2_update_and_status(recorded_frames: Frames) -> None:
    update_frame = next(f for f in recorded_frames(V2) if '"update"' in f and '"book"' in f)
    [update] = kraken.parse_frame(update_frame).events
    assert update == BookUpdate("ALGO-USD", [("0.12275", "6597.51731160")], [], 1727923617050, 1100635717,
                                ChecksumFormat.KRAKEN_V2)
    status_frame = next(f for f in recorded_frames(V2) if '"status"' in f)
    assert kraken.parse_frame(status_frame).events == [VenueStatus("online")]


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        ('{"channel":"heartbeat"}', Heartbeat()),
        ('{"method":"pong","req_id":42}', Heartbeat()),
        ('{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"ALGO/USD"},'
         '"success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}',
         SubscriptionAck("book", ["ALGO-USD"], AckStatus.SUBSCRIBED)),
        ('{"method":"subscribe","error":"Currency pair not supported NOPE/USD","success":false}',
         SubscriptionAck("", [], AckStatus.ERROR, "Currency pair not supported NOPE/USD")),
        ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":105944.20,'
         '"qty":0.00027625,"ord_type":"limit","trade_id":10218208,"timestamp":"2023-10-06T17:35:55.440295Z"}]}',
         TradePrint("BTC-USD", "105944.20", "0.00027625", Side.BUY, 1696613755440, "10218208")),
        ('{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
         '"price_precision":1,"qty_precision":8}]}}', InstrumentInfo("BTC-USD", 1, 8)),
    ],
)
def test_v2_messages(frame: str, event: object) -> None:
    assert kraken.parse_frame(frame).events == [event]


def test_v1_snapshot_uses_wire_strings_and_maps_xbt(recorded_frames: Frames) -> None:
    frame = next(f for f in recorded_frames(V1) if '"XBT/CHF"' in f and '"as"' in f)
    [snapshot] = kraken.parse_frame(frame).events
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.symbol == "BTC-CHF"
    assert snapshot.checksum is None
    assert len(snapshot.asks[0][0].split(".")[1]) == 5  # XBT/CHF prices carry 5 decimals on the wire


def test_v1_update_with_both_sides_takes_checksum_from_the_last_payload(recorded_frames: Frames) -> None:
    frame = next(f for f in recorded_frames(V1) if '"a":' in f and '},{"b":' in f)
    [update] = kraken.parse_frame(frame).events
    assert isinstance(update, BookUpdate)
    assert update.asks and update.bids
    assert update.checksum == int(orjson.loads(frame)[2]["c"])
    assert update.checksum_format is ChecksumFormat.KRAKEN_V1


def test_v1_trade_side_is_the_takers() -> None:
    frame = '[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]'
    assert kraken.parse_frame(frame).events == [
        TradePrint("XMR-USD", "354.11000000", "0.89594024", Side.SELL, 1618678142557)
    ]


def test_checksum_v2_reproduces_krakens_guide_vector(recorded_frames: Frames) -> None:
    frame = next(f for f in recorded_frames(V2) if '"BTC/USD"' in f)
    [snapshot] = kraken.parse_frame(frame).events
    assert isinstance(snapshot, BookSnapshot)
    assert kraken.checksum_v2(snapshot.asks[:10], snapshot.bids[:10], 1, 8) == 3310070434 == snapshot.checksum


def test_checksum_tokens_strip_dot_and_leading_zeros() -> None:
    # "0.05005" -> 5005, "0.00000500" -> 500: the string is "5005500"
    import zlib

    assert kraken.checksum_v1([("0.05005", "0.00000500")], []) == zlib.crc32(b"5005500")


@pytest.mark.parametrize(
    ("text", "places", "fixed"),
    [("0.1229", 5, "0.12290"), ("8136.3328818", 8, "8136.33288180"), ("5", 2, "5.00"), ("1e-08", 8, "0.00000001"),
     ("45285.2", 1, "45285.2"), ("123456789.123456789", 8, "123456789.12345679")],
)
def test_fixed_point_is_computed_on_the_text(text: str, places: int, fixed: str) -> None:
    assert kraken.fixed_point(text, places) == fixed


def fixed_token_or_error(text: str, places: int, through_fixed_point: bool) -> str:
    try:
        if through_fixed_point:
            return kraken_checksum._token(kraken.fixed_point(text, places))
        return kraken_checksum.fixed_token(text, places)
    except VenueProtocolError as exc:
        return f"error: {exc}"


@settings(max_examples=2000, deadline=None)
@example(text="1.2.3", places=8)
@example(text="0.00000500", places=8)
@example(text="5.", places=0)
@example(text="-0.5", places=2)
@example(text="1E-8", places=8)
@given(text=st.text(alphabet="0123456789.-eE+ _a", max_size=14) | st.decimals(allow_nan=False).map(str),
       places=st.integers(0, 12))
def test_a_v2_token_is_the_token_of_the_fixed_point_text_for_any_text(text: str, places: int) -> None:
    assert fixed_token_or_error(text, places, False) == fixed_token_or_error(text, places, True)


def test_a_v2_token_function_gives_the_same_token_for_a_price_it_has_seen() -> None:
    token = kraken.token_v2(5, 8)
    first = token("0.12290", "1.5")
    assert first == "12290" + "150000000"
    assert token("0.12290", "2") == "12290" + "200000000"  # the remembered price part, a new size part
    assert first == token("0.12290", "1.5")


@pytest.mark.parametrize(
    "frame",
    ['{"channel":"book","type":"delta","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}',
     '{"channel":"book","type":"update","data":[{"symbol":"BTCUSD","bids":[],"asks":[]}]}',
     '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"1"}],"asks":[]}]}',
     '{"channel":"mystery"}', '[1,{"b":[]},"book-10"]', '{"event":"surprise"}', "[", "42"],
)
def test_malformed_frames_raise_protocol_errors(frame: str) -> None:
    with pytest.raises(VenueProtocolError):
        kraken.parse_frame(frame)


def test_symbol_spellings() -> None:
    assert kraken.canonical("XBT/USD") == kraken.canonical("BTC/USD") == "BTC-USD"
    assert kraken.v2_symbol("BTC-USD") == "BTC/USD"
    assert kraken.v1_symbol("BTC-USD") == "XBT/USD"


def test_events_are_immutable_values() -> None:
    update = BookUpdate("ALGO-USD", [("0.12275", "1")], [], 1727923617050, 1100635717, ChecksumFormat.KRAKEN_V2)
    assert update == BookUpdate("ALGO-USD", [("0.12275", "1")], [], 1727923617050, 1100635717, ChecksumFormat.KRAKEN_V2)
    assert update != BookSnapshot("ALGO-USD", [("0.12275", "1")], [], 1727923617050, 1100635717,
                                  ChecksumFormat.KRAKEN_V2)  # same fields, another kind of message
    with pytest.raises(AttributeError):
        update.symbol = "BTC-USD"  # type: ignore[misc]


def test_checksum_of_two_parts_equals_the_checksum_of_the_joined_text() -> None:
    assert kraken.checksum(b"3543115", b"35340103533020") == zlib.crc32(b"3543115" b"35340103533020")
