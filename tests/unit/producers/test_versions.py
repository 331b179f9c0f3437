"""Book versions as the producer (and the backtest) number them: per book, from 1, venue time when given."""

from __future__ import annotations

from producers.book import OrderBook
from producers.feed import BookChanged
from producers.versions import BookVersions
from schemas import Snapshot


def change(symbol: str, ts_event_ms: int | None) -> BookChanged:
    return BookChanged(symbol, [(100.0, 1.0, 1.0)], [(101.0, 2.0, 2.0)], ts_event_ms, 7, 12345)


def test_each_book_counts_its_own_snapshots_from_one() -> None:
    versions = BookVersions("kraken")
    seqs = [versions.snapshot(change(symbol, 1_000), 1_005).book_seq
            for symbol in ("BTC-USD", "BTC-USD", "ETH-USD", "BTC-USD", "ETH-USD")]
    assert seqs == [1, 2, 1, 3, 2]


def test_venue_time_is_kept_and_receive_time_stands_in_when_the_venue_gives_none() -> None:
    versions = BookVersions("coinbase")
    stamped = versions.snapshot(change("BTC-USD", 1_000), 1_250)
    unstamped = versions.snapshot(change("BTC-USD", None), 1_300)
    assert (stamped.ts_event, stamped.ts_ingest, stamped.latency_ms) == (1_000, 1_250, {"venue_to_ingest": 250.0})
    assert (unstamped.ts_event, unstamped.ts_ingest, unstamped.latency_ms) == (1_300, 1_300, {"venue_to_ingest": 0.0})
    assert (stamped.exchange, stamped.venue_seq, stamped.checksum) == ("coinbase", 7, 12345)


def test_a_snapshot_of_a_real_book_equals_the_validated_model_and_shares_its_top_levels() -> None:
    """BookVersions skips re-validating the book's own output (schemas.wire.trusted_snapshot): what it
    returns must still be the model ``Snapshot(...)`` would build, level types included."""
    book = OrderBook("ETH-BTC")
    book.apply_snapshot([("0.0500", "2"), ("0.0499", "1.5")], [("0.0501", "1"), ("0.0502", "3")])
    bids, asks = book.top(5)
    versions = BookVersions("kraken")
    for _ in range(2):  # the first snapshot of a book is validated in full, the next ones are not
        snapshot = versions.snapshot(BookChanged("ETH-BTC", bids, asks, 1_000, None, 4242), 1_003)
        validated = Snapshot(**{name: getattr(snapshot, name) for name in Snapshot.model_fields})
        assert snapshot == validated
        assert snapshot.bids == [(0.05, 2.0, 2.0), (0.0499, 1.5, 3.5)]  # cumulative: 2 + 1.5
        assert all(type(x) is float for side in (snapshot.bids, snapshot.asks) for level in side for x in level)
    assert snapshot.bids is bids  # not copied
