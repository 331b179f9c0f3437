"""Book versions: how a producer turns valid book changes into numbered snapshots.

``book_seq`` counts the snapshots of each book over the producer's life, from 1, and keeps counting across
reconnects (a new connection rebuilds the books, not the numbering); ``ts_event`` is the venue's time, or our
receive time when the venue gives none. Opportunity ids hash each leg's ``(book_seq, ts_event)``, so the live
producer and ``triarb backtest`` share this one numbering: the same capture gives the same ids offline and live.
Pure: the receive time is an argument.
"""

from __future__ import annotations

from producers.feed import BookChanged
from schemas import Snapshot
from schemas.wire import trusted_snapshot


class BookVersions:
    """The snapshot numbering of one producer's life on ``venue``."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._seq: dict[str, int] = {}

    def snapshot(self, change: BookChanged, received_ms: int) -> Snapshot:
        """The next version of ``change.symbol``'s book, received at ``received_ms``."""
        seq = self._seq[change.symbol] = self._seq.get(change.symbol, 0) + 1
        ts_event = change.ts_event_ms or received_ms
        return trusted_snapshot(  # the book checked every level as it entered: no second validation per change
            exchange=self.venue, symbol=change.symbol, ts_event=ts_event, ts_ingest=received_ms,
            bids=change.bids, asks=change.asks, latency_ms={"venue_to_ingest": float(received_ms - ts_event)},
            book_seq=seq, venue_seq=change.venue_seq, checksum=change.checksum,
        )
