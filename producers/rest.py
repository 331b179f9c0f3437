"""REST top-of-book fallback: while a venue's socket is stale or down, poll its public book endpoint.

Pure parsers (venue JSON → text levels) are separate from :class:`RestPoller`, the aiohttp loop that
polls symbols round-robin within the venue's public rate limit (Coinbase ~10 requests/s per IP, Kraken
about 1/s: docs/exchange-protocols.md §6) and publishes ``source="rest"`` snapshots. Kraken answers HTTP
200 with a non-empty ``error`` list on failure; that is a failure here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from producers.book import OrderBook
from producers.feed import Venue
from producers.venues import kraken
from producers.venues.coinbase import timestamp_ms
from producers.venues.events import TextLevel, VenueProtocolError
from schemas import Snapshot
from schemas.market import Source

log = logging.getLogger(__name__)

DEFAULT_REST_URLS = {Venue.COINBASE: "https://api.coinbase.com", Venue.KRAKEN: "https://api.kraken.com"}
REQUESTS_PER_SECOND = {Venue.COINBASE: 5.0, Venue.KRAKEN: 1.0}
"""Half of Coinbase's public limit; Kraken's documented safe pace."""


def book_path(venue: Venue, symbol: str, levels: int) -> str:
    if venue is Venue.COINBASE:
        return f"/api/v3/brokerage/market/product_book?product_id={symbol}&limit={levels}"
    return f"/0/public/Depth?pair={kraken.v1_symbol(symbol).replace('/', '')}&count={levels}"


def parse_coinbase_book(body: bytes) -> tuple[list[TextLevel], list[TextLevel], int | None]:
    """``product_book`` → (bids, asks, time in ms)."""
    try:
        book = orjson.loads(body)["pricebook"]
        bids = [(str(level["price"]), str(level["size"])) for level in book["bids"]]
        asks = [(str(level["price"]), str(level["size"])) for level in book["asks"]]
        stamp = book.get("time")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise VenueProtocolError(f"coinbase product_book: {exc!r}") from exc
    return bids, asks, _iso_ms(stamp)


def parse_kraken_depth(body: bytes) -> tuple[list[TextLevel], list[TextLevel], int | None]:
    """``Depth`` → (bids, asks, newest level time in ms); the result key is Kraken's own pair name."""
    try:
        message = orjson.loads(body)
        if message.get("error"):
            raise VenueProtocolError(f"kraken Depth error: {', '.join(map(str, message['error']))}")
        [book] = message["result"].values()
        bids = [(str(price), str(volume)) for price, volume, _ in book["bids"]]
        asks = [(str(price), str(volume)) for price, volume, _ in book["asks"]]
        stamps = [int(level[2]) for level in book["bids"] + book["asks"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VenueProtocolError(f"kraken Depth: {exc!r}") from exc
    return bids, asks, max(stamps) * 1000 if stamps else None


def _iso_ms(stamp: Any) -> int | None:
    return timestamp_ms(stamp) if isinstance(stamp, str) else None


PARSERS: dict[Venue, Callable[[bytes], tuple[list[TextLevel], list[TextLevel], int | None]]] = {
    Venue.COINBASE: parse_coinbase_book,
    Venue.KRAKEN: parse_kraken_depth,
}


class RestPoller:
    """Polls ``symbols`` round-robin while :meth:`run` runs; each good answer becomes a REST snapshot."""

    def __init__(
        self,
        venue: Venue,
        base_url: str,
        publish: Callable[[Snapshot], Awaitable[None]],
        *,
        levels: int = 5,
        requests_per_second: float | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self._publish = publish
        self._levels = levels
        self._interval_s = 1 / (requests_per_second or REQUESTS_PER_SECOND[venue])
        self._clock_ms = clock_ms
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_ok_ms: int | None = None

    async def run(self, symbols: Callable[[], list[str]], active: asyncio.Event, stop: asyncio.Event) -> None:
        """Poll while ``active`` is set (the socket is not up), until ``stop``; ``symbols`` is re-read each turn."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            turn = 0
            while not stop.is_set():
                if not active.is_set():
                    await _first(active.wait(), stop.wait())
                    continue
                wanted = symbols()
                if wanted:
                    await self.poll_once(session, wanted[turn % len(wanted)])
                    turn += 1
                await _first(asyncio.sleep(self._interval_s), stop.wait())

    async def poll_once(self, session: aiohttp.ClientSession, symbol: str) -> bool:
        self.polls += 1
        url = self.base_url + book_path(self.venue, symbol, self._levels)
        try:
            async with session.get(url) as response:
                body = await response.read()
                if response.status != 200:
                    raise VenueProtocolError(f"HTTP {response.status} from {url}")
            bids, asks, ts_event = PARSERS[self.venue](body)
        except (aiohttp.ClientError, TimeoutError, VenueProtocolError) as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.warning("REST poll failed", extra={"venue": self.venue.value, "symbol": symbol, "error": str(exc)})
            return False
        book = OrderBook(symbol)
        book.apply_snapshot(bids, asks)
        top_bids, top_asks = book.top(self._levels)
        received_ms = self._clock_ms()
        ts = ts_event or received_ms
        await self._publish(Snapshot(
            exchange=self.venue.value, symbol=symbol, ts_event=ts, ts_ingest=received_ms, bids=top_bids,
            asks=top_asks, source=Source.REST, latency_ms={"venue_to_ingest": float(received_ms - ts)},
        ))
        self.last_ok_ms = received_ms
        return True


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
