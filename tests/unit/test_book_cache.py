"""Hot-cache books are decoded once per stored state, and only trusted books are kept."""

from __future__ import annotations

from consumers.detector.book_cache import DecodedBooks
from schemas import Snapshot
from schemas.wire import SnapshotWire
from tests import samples


def stored(book: Snapshot) -> bytes:
    """A hot-cache document as a producer stores it (``SET``) and ``MGET`` returns it."""
    return SnapshotWire().encode(book)[2]


def test_an_unchanged_book_is_not_decoded_again() -> None:
    decoded = DecodedBooks()
    first = decoded.trusted("coinbase", "BTC-USD", stored(samples.snapshot(book_seq=1)))

    again = decoded.trusted("coinbase", "BTC-USD", stored(samples.snapshot(book_seq=1)))  # equal, not identical

    assert isinstance(first, Snapshot) and again is first


def test_a_changed_book_is_decoded_afresh() -> None:
    decoded = DecodedBooks()
    decoded.trusted("coinbase", "BTC-USD", stored(samples.snapshot(book_seq=1)))

    moved = decoded.trusted("coinbase", "BTC-USD", stored(samples.snapshot(book_seq=2)))

    assert isinstance(moved, Snapshot) and moved.book_seq == 2


def test_a_book_filed_under_another_market_is_refused_with_the_reason() -> None:
    decoded = DecodedBooks()
    reason = decoded.trusted("coinbase", "ETH-USD", stored(samples.snapshot(symbol="BTC-USD")))
    assert reason == "holds coinbase:BTC-USD"
    assert len(decoded) == 0


def test_a_book_that_does_not_decode_is_refused_and_the_last_good_one_is_not_served_for_it() -> None:
    decoded = DecodedBooks()
    good = stored(samples.snapshot())
    decoded.trusted("coinbase", "BTC-USD", good)
    broken = good.replace(b'"bids":[', b'"bids":[not json')

    reason = decoded.trusted("coinbase", "BTC-USD", broken)

    assert isinstance(reason, str) and "not valid JSON" in reason
