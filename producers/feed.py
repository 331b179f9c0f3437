"""One connection's market data as a state machine: frames in; valid book changes, trades and resync
requests out. Pure (no I/O, no clock), so replay, the live runner and tests share exactly this logic.

Integrity rules (docs/exchange-protocols.md §1.3, §2.4, §4.7): a Coinbase ``sequence_num`` gap makes every
book of the connection suspect; a Kraken checksum mismatch makes that book suspect; so does a crossed book or
a level that is not a number. A suspect book publishes nothing until the venue sends a fresh snapshot, which
the caller requests by resubscribing the symbols in a :class:`ResyncNeeded`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from producers.book import BookIntegrityError, ChecksumToken, OrderBook
from producers.venues import coinbase, kraken
from producers.venues.events import (
    BookSnapshot,
    BookUpdate,
    ChecksumFormat,
    InstrumentInfo,
    ParsedFrame,
    TradePrint,
    VenueEvent,
    VenueProtocolError,
)
from schemas.market import Level


class Venue(StrEnum):
    COINBASE = "coinbase"
    KRAKEN = "kraken"


PARSERS: dict[Venue, Callable[[str | bytes], ParsedFrame]] = {
    Venue.COINBASE: coinbase.parse_frame,
    Venue.KRAKEN: kraken.parse_frame,
}


class BookChanged(msgspec.Struct, frozen=True, gc=False):
    """A valid book after a change: what a Snapshot is made of (the shell adds ts_ingest and latency).

    ``bids``/``asks`` may be the very lists of the previous change when that side's top did not move: treat
    them as read-only. (A frozen Struct, not a frozen dataclass: one is built per update.)
    """

    symbol: str
    bids: list[Level]
    asks: list[Level]
    ts_event_ms: int | None
    venue_seq: int | None
    checksum: int | None


class ResyncNeeded(msgspec.Struct, frozen=True, gc=False):
    """These books are invalid: resubscribe them to get fresh snapshots. ``reason`` goes to health/logs."""

    symbols: list[str]
    reason: str


FeedOutput = BookChanged | ResyncNeeded | TradePrint | VenueEvent


@dataclass(slots=True)
class FeedCounters:
    """Cumulative over the connection's life; ``triarb replay --check`` prints them."""

    frames: int = 0
    parse_errors: int = 0
    snapshots: int = 0
    updates: int = 0
    published: int = 0
    checksum_ok: int = 0
    checksum_fail: int = 0
    gaps: int = 0
    duplicates: int = 0
    crossed: int = 0
    trades: int = 0
    ignored_while_resyncing: int = 0


@dataclass(slots=True)
class VenueFeed:
    """Books of one connection. ``depth`` truncates (Kraken's subscribed depth); ``top_n`` is the published
    snapshot depth; ``precisions`` are Kraken v2 (price, qty) decimals per symbol (also learnt from
    ``instrument`` messages)."""

    venue: Venue
    depth: int | None = None
    top_n: int = 5
    precisions: dict[str, tuple[int, int]] = field(default_factory=dict)
    books: dict[str, OrderBook] = field(default_factory=dict)
    valid: set[str] = field(default_factory=set)
    counters: FeedCounters = field(default_factory=FeedCounters)
    last_error: str | None = None
    _last_sequence: int | None = None
    _parse: Callable[[str | bytes], ParsedFrame] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._parse = PARSERS[self.venue]  # looked up once: the venue never changes

    def on_frame(self, frame: str | bytes) -> list[FeedOutput]:
        """Process one received frame; malformed frames are counted in ``parse_errors`` and skipped."""
        self.counters.frames += 1
        try:
            parsed = self._parse(frame)
        except VenueProtocolError as exc:
            self.counters.parse_errors += 1
            self.last_error = str(exc)
            return []
        sequence, events = parsed.sequence, parsed.events
        gap: ResyncNeeded | None = None
        if sequence is not None:
            last = self._last_sequence
            if last is not None and sequence <= last:
                self.counters.duplicates += 1
                return []
            if last is not None and sequence > last + 1:
                self.counters.gaps += 1
                gap = self._invalidate(list(self.books), f"sequence gap: {sequence - last - 1} message(s) lost")
            self._last_sequence = sequence
        if len(events) == 1 and gap is None:  # the usual frame: one event, its list is the answer
            event = events[0]
            if type(event) is not BookUpdate:
                return self._on_event(event, sequence)
            self.counters.updates += 1  # _on_event's first case, inlined: nearly every frame is one update
            book = self.books.get(event.symbol)
            if book is None or event.symbol not in self.valid:
                self.counters.ignored_while_resyncing += 1
                return []
            return self._apply(book, event, sequence, snapshot=False)
        outputs: list[FeedOutput] = [gap] if gap is not None else []
        for event in events:
            outputs.extend(self._on_event(event, sequence))
        return outputs

    def forget(self, symbol: str) -> None:
        """Drop a book (its symbol was unsubscribed)."""
        self.books.pop(symbol, None)
        self.valid.discard(symbol)

    def _on_event(self, event: VenueEvent, sequence: int | None) -> list[FeedOutput]:
        if isinstance(event, BookUpdate):  # first: nearly every frame is one
            self.counters.updates += 1
            book = self.books.get(event.symbol)
            if book is None or event.symbol not in self.valid:
                self.counters.ignored_while_resyncing += 1
                return []
            return self._apply(book, event, sequence, snapshot=False)
        if isinstance(event, BookSnapshot):
            self.counters.snapshots += 1
            book = self.books.get(event.symbol)
            if book is None:
                checksum_levels = kraken.CHECKSUM_LEVELS if self.venue is Venue.KRAKEN else 0
                book = self.books[event.symbol] = OrderBook(event.symbol, self.depth, top_n=self.top_n,
                                                            checksum_levels=checksum_levels)
            return self._apply(book, event, sequence, snapshot=True)
        if isinstance(event, TradePrint):
            self.counters.trades += 1
        elif isinstance(event, InstrumentInfo):
            self.precisions[event.symbol] = (event.price_precision, event.qty_precision)
        return [event]

    def _apply(
        self, book: OrderBook, event: BookSnapshot | BookUpdate, sequence: int | None, *, snapshot: bool
    ) -> list[FeedOutput]:
        try:
            if snapshot:
                token = self._checksum_token(book.symbol, event.checksum_format)
                crossed = book.apply_snapshot(event.bids, event.asks, token)
            else:
                crossed = book.apply_update(event.bids, event.asks)
        except BookIntegrityError as exc:
            self.counters.parse_errors += 1
            return [self._invalidate([book.symbol], f"bad level: {exc}")]
        counters = self.counters
        checksum = event.checksum
        if checksum is not None:
            if book.checksum != checksum:  # None (no instrument precisions for a v2 book) never matches
                return [self._checksum_mismatch(book, checksum)]
            counters.checksum_ok += 1
        if crossed:
            counters.crossed += 1
            return [self._invalidate([book.symbol], "book crossed")]
        if snapshot:
            self.valid.add(book.symbol)  # an update is only applied to a valid book
        counters.published += 1
        return [BookChanged(book.symbol, book.bids.top_levels, book.asks.top_levels, event.ts_event_ms, sequence,
                            checksum)]

    def _checksum_token(self, symbol: str, checksum_format: ChecksumFormat | None) -> ChecksumToken | None:
        """How each level of this book contributes to its checksum; fixed at every snapshot."""
        if checksum_format is ChecksumFormat.KRAKEN_V1:
            return kraken.token_v1
        if checksum_format is ChecksumFormat.KRAKEN_V2:
            precision = self.precisions.get(symbol)
            return kraken.token_v2(*precision) if precision is not None else None
        return None

    def _checksum_mismatch(self, book: OrderBook, venue_checksum: int) -> ResyncNeeded:
        """The book's Kraken checksum (``kraken.checksum`` of the top-10 texts, kept current by the book)
        differs from the venue's. A v2 book without instrument precisions cannot be verified, so it cannot
        pass either; the resync retries once the instrument channel has delivered them."""
        self.counters.checksum_fail += 1
        return self._invalidate([book.symbol], f"checksum mismatch (venue {venue_checksum})")

    def _invalidate(self, symbols: list[str], reason: str) -> ResyncNeeded:
        for symbol in symbols:
            self.valid.discard(symbol)
        self.last_error = reason
        return ResyncNeeded(symbols, reason)
