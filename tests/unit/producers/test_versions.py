"""Book versions as the producer (and the backtest) number them: per book, from 1, venue time when given."""

from __future__ import annotations

from producers.feed import BookChanged
from producers.versions import BookVersions


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
