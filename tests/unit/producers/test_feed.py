"""The per-connection feed: only valid books are published; gaps and checksum failures ask for a resync."""

from __future__ import annotations

import zlib

import orjson

from producers.feed import BookChanged, ResyncNeeded, Venue, VenueFeed
from producers.venues import kraken


def l2(sequence: int, kind: str, product: str, *levels: tuple[str, str, str]) -> str:
    updates = [{"side": s, "event_time": "2026-08-09T21:05:48.170326Z", "price_level": p, "new_quantity": q}
               for s, p, q in levels]
    return orjson.dumps({"channel": "l2_data", "timestamp": "2026-08-09T21:05:48.2Z", "sequence_num": sequence,
                         "events": [{"type": kind, "product_id": product, "updates": updates}]}).decode()


def heartbeat(sequence: int) -> str:
    return orjson.dumps({"channel": "heartbeats", "timestamp": "2026-08-09T21:05:48.2Z",
                         "sequence_num": sequence, "events": [{"heartbeat_counter": 1}]}).decode()


def coinbase_feed() -> VenueFeed:
    feed = VenueFeed(Venue.COINBASE)
    feed.on_frame(l2(0, "snapshot", "BTC-USD", ("bid", "100", "1"), ("offer", "101", "2")))
    feed.on_frame(l2(1, "snapshot", "ETH-USD", ("bid", "10", "1"), ("offer", "11", "2")))
    return feed


def test_snapshot_and_update_publish_the_top_of_book() -> None:
    feed = coinbase_feed()
    [changed] = feed.on_frame(l2(2, "update", "BTC-USD", ("bid", "100.5", "3")))
    assert changed == BookChanged("BTC-USD", [(100.5, 3.0, 3.0), (100.0, 1.0, 4.0)], [(101.0, 2.0, 2.0)],
                                  1786309548170, 2, None)


def test_sequence_gap_invalidates_every_book_until_fresh_snapshots() -> None:
    feed = coinbase_feed()
    outputs = feed.on_frame(l2(4, "update", "BTC-USD", ("bid", "100.5", "3")))  # 2 and 3 were lost
    assert outputs == [ResyncNeeded(["BTC-USD", "ETH-USD"], "sequence gap: 2 message(s) lost")]
    assert feed.counters.gaps == 1
    assert feed.on_frame(l2(5, "update", "ETH-USD", ("bid", "10.5", "3"))) == []  # suspect: not published
    [changed] = feed.on_frame(l2(6, "snapshot", "ETH-USD", ("bid", "10", "9"), ("offer", "11", "2")))
    assert isinstance(changed, BookChanged) and changed.bids == [(10.0, 9.0, 9.0)]
    assert feed.valid == {"ETH-USD"}


def test_duplicate_or_late_sequence_is_counted_and_ignored() -> None:
    feed = coinbase_feed()
    assert feed.on_frame(heartbeat(1)) == []
    assert feed.counters.duplicates == 1


def test_crossed_book_is_not_published_and_resynced() -> None:
    feed = coinbase_feed()
    outputs = feed.on_frame(l2(2, "update", "BTC-USD", ("bid", "102", "1")))
    assert outputs == [ResyncNeeded(["BTC-USD"], "book crossed")]


def test_malformed_frame_is_counted_and_skipped() -> None:
    feed = coinbase_feed()
    assert feed.on_frame('{"channel":"l2_data",') == []
    assert feed.on_frame(l2(2, "update", "BTC-USD", ("bid", "not-a-price", "1"))) == [
        ResyncNeeded(["BTC-USD"], "bad level: level ('not-a-price', '1') is not numeric")
    ]
    assert feed.counters.parse_errors == 2


def kraken_v1_update(price: str, volume: str, checksum: int) -> str:
    return orjson.dumps([1, {"b": [[price, volume, "1618678133.365913"]], "c": str(checksum)}, "book-10",
                         "XMR/USD"]).decode()


def test_kraken_checksum_mismatch_resyncs_that_book_and_publishes_nothing() -> None:
    feed = VenueFeed(Venue.KRAKEN, depth=10)
    feed.on_frame(orjson.dumps([1, {"as": [["354.31", "1.5", "1.0"]], "bs": [["353.30", "2.0", "1.0"]]},
                                "book-10", "XMR/USD"]).decode())
    # asks "354.31"x"1.5" -> 3543115, bids "353.40"x"1.0" then "353.30"x"2.0" -> 3534010 3533020
    good = zlib.crc32(b"3543115" b"3534010" b"3533020")
    [changed] = feed.on_frame(kraken_v1_update("353.40", "1.0", good))
    assert isinstance(changed, BookChanged)
    assert feed.on_frame(kraken_v1_update("353.50", "1.0", good)) == [
        ResyncNeeded(["XMR-USD"], f"checksum mismatch (venue {good})")
    ]
    assert (feed.counters.checksum_ok, feed.counters.checksum_fail) == (1, 1)
    assert feed.on_frame(kraken_v1_update("353.60", "1.0", 0)) == []  # waits for a snapshot


def test_kraken_v2_checksum_needs_instrument_precisions() -> None:
    snapshot = ('{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":45283.5,'
                '"qty":0.10000000}],"asks":[{"price":45285.2,"qty":0.00100000}],"checksum":%d}]}')
    crc = kraken.checksum_v2([("45285.2", "0.00100000")], [("45283.5", "0.10000000")], 1, 8)
    without = VenueFeed(Venue.KRAKEN, depth=10)
    assert isinstance(without.on_frame(snapshot % crc)[0], ResyncNeeded)
    with_precisions = VenueFeed(Venue.KRAKEN, depth=10, precisions={"BTC-USD": (1, 8)})
    assert isinstance(with_precisions.on_frame(snapshot % crc)[0], BookChanged)
