"""Replaying captures: ``triarb replay FILE --check`` runs every received frame through the same parsers
and books as the live producer, with no Redis and no network, and summarises what it found.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from producers.capture import CaptureRecord, read_capture
from producers.feed import FeedCounters, Venue, VenueFeed
from producers.venues import kraken

SUMMARY_COUNTERS = ("frames", "snapshots", "updates", "published", "checksum_ok", "checksum_fail", "gaps",
                    "duplicates", "crossed", "parse_errors", "trades")


def venue_of(header: dict[str, Any]) -> Venue:
    name = str(header.get("exchange", "")).lower()
    try:
        return Venue(name)
    except ValueError as exc:
        raise ValueError(f"capture header names exchange {name!r}; replay knows {[v.value for v in Venue]}") from exc


def subscribed_depth(sent: str) -> int | None:
    """The book depth a captured Kraken subscribe asked for (v1 ``subscription.depth``, v2 ``params.depth``)."""
    try:
        message = orjson.loads(sent)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    v1 = message.get("subscription")
    if isinstance(v1, dict) and v1.get("name") == "book":
        return int(v1.get("depth", kraken.DEFAULT_BOOK_DEPTH))
    params = message.get("params")
    if isinstance(params, dict) and params.get("channel") == "book":
        return int(params.get("depth", kraken.DEFAULT_BOOK_DEPTH))
    return None


def header_precisions(header: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Kraken v2 precisions a capture header carries (``instruments``), by canonical symbol."""
    instruments = header.get("instruments") or {}
    return {
        kraken.canonical(symbol): (int(info["price_precision"]), int(info["qty_precision"]))
        for symbol, info in instruments.items()
    }


def check_capture(path: Path, *, top_n: int = 5) -> dict[str, Any]:
    """Run a capture through parsers and books; returns the summary ``triarb replay --check`` prints."""
    header: dict[str, Any] = {}
    venue: Venue | None = None
    feeds: dict[str, VenueFeed] = {}
    finished: list[VenueFeed] = []
    for record in read_capture(path):
        if record.kind == "header":
            header = record.raw
            venue = venue_of(header)
        elif record.kind in ("connect", "send", "recv"):
            if venue is None:
                raise ValueError(f"{path}: a capture must start with a header line naming the exchange")
            _replay_record(record, venue, header, feeds, finished)
    all_feeds = finished + list(feeds.values())
    totals = FeedCounters()
    for feed in all_feeds:
        for name, value in asdict(feed.counters).items():
            setattr(totals, name, getattr(totals, name) + value)
    books: dict[str, Any] = {}
    for feed in feeds.values():
        for symbol, book in sorted(feed.books.items()):
            bids, asks = book.top(top_n)
            books[symbol] = {
                "valid": symbol in feed.valid, "bid_levels": len(book.bids), "ask_levels": len(book.asks),
                "bids": [list(level) for level in bids], "asks": [list(level) for level in asks],
            }
    summary: dict[str, Any] = {"file": str(path), "venue": venue.value if venue else None}
    summary |= {name: getattr(totals, name) for name in SUMMARY_COUNTERS}
    summary["books"] = len(books)
    summary["top"] = books
    return summary


def _replay_record(
    record: CaptureRecord, venue: Venue, header: dict[str, Any], feeds: dict[str, VenueFeed],
    finished: list[VenueFeed],
) -> None:
    conn = record.conn or "default"
    if record.kind == "connect" and conn in feeds:
        finished.append(feeds.pop(conn))  # a new connection starts from scratch (sequence, books)
    feed = feeds.get(conn)
    if feed is None:
        feed = feeds[conn] = VenueFeed(venue, precisions=header_precisions(header))
        if venue is Venue.KRAKEN:
            feed.depth = kraken.DEFAULT_BOOK_DEPTH
    if record.kind == "send" and record.data is not None:
        depth = subscribed_depth(record.data)
        if depth is not None:
            feed.depth = depth
    elif record.kind == "recv" and record.data is not None:
        feed.on_frame(record.data)
