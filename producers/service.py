"""A venue producer: one live connection, its books, and what they publish.

It wires the pure parts (venue parser → :class:`VenueFeed`) to I/O: the :class:`Link` socket, the bus
publisher (snapshots with hot cache, trades, health) and the control stream. A new connection starts with
empty books (venues do not resume); an invalid book is resubscribed on the live socket; symbols added or
removed on ``strategy.ctrl.symbols`` are (un)subscribed on the live socket, without reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from redis.asyncio import Redis

from common import metrics
from common.bus import Publisher
from common.config import ProducerSettings, VenueSettings
from common.markets import register_markets
from common.redis_link import RedisLink, is_transient
from producers.capture import CaptureWriter
from producers.connection import Link, LinkSettings, LinkState
from producers.control import ControlFollower
from producers.feed import BookChanged, ResyncNeeded, Venue, VenueFeed
from producers.rest import DEFAULT_REST_URLS, RestPoller
from producers.venues import coinbase, kraken
from producers.venues.events import AckStatus, SubscriptionAck, TradePrint, VenueErrorMessage
from producers.versions import BookVersions
from schemas import Health, Snapshot, Trade
from schemas.health import Channel, FeedStatus, symbol_summary
from schemas.streams import StreamNames

log = logging.getLogger(__name__)

CONTROL_STARTUP_TIMEOUT_S = 3.0
"""How long start-up waits for the control stream before subscribing with the configured symbols."""

CATALOG_REREGISTER_S = 30.0


def subscribe_messages(venue: Venue, symbols: list[str], depth: int) -> list[str]:
    if venue is Venue.COINBASE:
        return coinbase.subscribe_messages(symbols)
    return kraken.subscribe_messages(symbols, depth=depth)


def unsubscribe_messages(venue: Venue, symbols: list[str], depth: int) -> list[str]:
    if venue is Venue.COINBASE:
        return coinbase.subscribe_messages(symbols, unsubscribe=True)
    return kraken.unsubscribe_messages(symbols, depth=depth)


def resubscribe_messages(venue: Venue, symbols: list[str], depth: int) -> list[str]:
    if venue is Venue.COINBASE:
        return coinbase.book_resubscribe_messages(symbols)
    return kraken.book_resubscribe_messages(symbols, depth=depth)


class VenueProducer:
    """Holds ``venue``'s books over one socket and publishes them. ``redis`` (optional) follows control."""

    def __init__(
        self,
        venue: Venue,
        venue_settings: VenueSettings,
        settings: ProducerSettings,
        publisher: Publisher,
        *,
        names: StreamNames | None = None,
        control_redis: Redis | None = None,
        capture: CaptureWriter | None = None,
        catalog: Collection[str] | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        """``catalog``: the markets this venue lists (default: the configured symbols and markets)."""
        self.venue = venue
        self._symbols: list[str] = list(venue_settings.symbols)
        self._held: frozenset[str] = frozenset(self._symbols)
        self.catalog = sorted(set(catalog if catalog is not None else venue_settings.symbols + venue_settings.markets))
        self._depth = venue_settings.book_depth
        self._rest_fallback = venue_settings.rest_fallback
        self._settings = settings
        self._publisher = publisher
        self._names = names or StreamNames()
        self._control_redis = control_redis
        self._clock_ms = clock_ms
        self.feed = self._new_feed()
        self.link = Link(
            LinkSettings(venue_settings.url, stale_after_s=settings.stale_after_s),
            on_connect=self._on_connect, on_frame=self._on_frame, on_state=self._on_state, capture=capture,
        )
        self.link_state = LinkState.CONNECTING
        self.detail = ""
        self.last_msg_ms: int | None = None
        self._versions = BookVersions(venue.value)  # book_seq numbering, shared with triarb backtest
        self._totals = {"errors": 0, "gaps": 0, "checksum_failures": 0}
        self._health_due = asyncio.Event()
        metrics.prepare_venue(venue.value)
        self.control_link = RedisLink(f"producer-{venue.value}-control")
        self.control = None if control_redis is None else ControlFollower(
            venue.value, control_redis, self._names, defaults=self.symbols, catalog=self.catalog,
            apply=self.apply_symbols, link=self.control_link)
        self._rest_active = asyncio.Event()
        self.rest = RestPoller(
            venue, venue_settings.rest_url or DEFAULT_REST_URLS[venue], self._publisher.publish,
            levels=settings.snapshot_levels, requests_per_second=venue_settings.rest_poll_hz, clock_ms=clock_ms,
        )

    @property
    def symbols(self) -> list[str]:
        """The books this producer holds; nothing else it receives is published."""
        return self._symbols

    @symbols.setter
    def symbols(self, symbols: list[str]) -> None:
        self._symbols = list(symbols)
        self._held = frozenset(self._symbols)

    def _new_feed(self) -> VenueFeed:
        depth = self._depth if self.venue is Venue.KRAKEN else None
        return VenueFeed(self.venue, depth=depth, top_n=self._settings.snapshot_levels)

    async def run(self, stop: asyncio.Event) -> None:
        control_position: str | None = None
        registered = False
        if self.control is not None:
            # The catalog goes to Redis before the first snapshot (consumers check markets against it),
            # and the symbol set in force is folded before the first subscription; if Redis is away the
            # configured set goes first and both happen once Redis is back.
            try:
                async with asyncio.timeout(CONTROL_STARTUP_TIMEOUT_S):
                    await self._register_catalog()
                    registered = True
                    control_position = await self.control.load()
                    self.symbols = self.control.wanted()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("control stream unreachable at start, using the configured symbols: %s", exc,
                            extra={"venue": self.venue.value})
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.link.run(stop))
            tasks.create_task(self._publish_health(stop))
            if self._rest_fallback:
                tasks.create_task(self.rest.run(lambda: self.symbols, self._rest_active, stop))
            if self.control is not None:
                tasks.create_task(self.control.follow(stop, control_position))
                tasks.create_task(self._keep_catalog_registered(stop, registered))

    async def _register_catalog(self) -> None:
        assert self._control_redis is not None
        await register_markets(self._control_redis, self._names, self.venue.value, self.catalog)

    async def _keep_catalog_registered(self, stop: asyncio.Event, registered: bool) -> None:
        """Re-register now and then, so a Redis that lost its data (no AOF, FLUSHALL) gets it back."""
        while not stop.is_set():
            if registered:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CATALOG_REREGISTER_S):
                        await stop.wait()
                if stop.is_set():
                    return
            try:
                await self._register_catalog()
                registered = True
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await self.control_link.pause(exc, stop)

    # --- socket callbacks ---------------------------------------------------------------------------

    async def _on_connect(self) -> None:
        self._fold_counters()
        self.feed = self._new_feed()  # the venue does not resume: rebuild every book from new snapshots
        for message in subscribe_messages(self.venue, self.symbols, self._depth):
            await self.link.send(message)

    async def _on_frame(self, frame: str | bytes, received_ms: int) -> None:
        self.last_msg_ms = received_ms
        metrics.WS_MESSAGES.labels(venue=self.venue.value).inc()
        counters = self.feed.counters
        before = (counters.gaps, counters.checksum_fail, counters.parse_errors)
        outputs = self.feed.on_frame(frame)
        after = (counters.gaps, counters.checksum_fail, counters.parse_errors)
        if after != before:
            metrics.BOOK_GAPS.labels(venue=self.venue.value).inc(after[0] - before[0])
            metrics.BOOK_CHECKSUM_FAILURES.labels(venue=self.venue.value).inc(after[1] - before[1])
            metrics.PARSE_ERRORS.labels(venue=self.venue.value).inc(after[2] - before[2])
        for output in outputs:
            if isinstance(output, BookChanged | TradePrint) and output.symbol not in self._held:
                metrics.UNREQUESTED.labels(venue=self.venue.value).inc()  # a venue sending what we did not ask for
            elif isinstance(output, BookChanged):
                await self._publisher.publish(self._snapshot(output, received_ms))
            elif isinstance(output, TradePrint):
                await self._publisher.publish(Trade(
                    exchange=self.venue.value, symbol=output.symbol, price=float(output.price),
                    size=float(output.size), side=output.side, ts_event=output.ts_event_ms, ts_ingest=received_ms,
                    trade_id=output.trade_id,
                ))
            elif isinstance(output, ResyncNeeded):
                log.warning("resyncing books", extra={"venue": self.venue.value, "symbols": output.symbols,
                                                      "reason": output.reason})
                self.detail = output.reason
                wanted = [s for s in output.symbols if s in self.symbols]
                if wanted:
                    for message in resubscribe_messages(self.venue, wanted, self._depth):
                        await self.link.send(message)
                self._health_due.set()
            elif isinstance(output, SubscriptionAck) and output.status is AckStatus.ERROR:
                self.detail = f"subscription refused: {output.error}"
                log.error("subscription refused", extra={"venue": self.venue.value, "error": output.error})
            elif isinstance(output, VenueErrorMessage):
                self.detail = f"venue error: {output.message}"
                log.error("venue error", extra={"venue": self.venue.value, "message": output.message})

    def _on_state(self, state: LinkState, reason: str) -> None:
        """While the socket is not up, the REST poller keeps top-of-book snapshots flowing."""
        if state is LinkState.UP and self.link.connections > 1:
            metrics.WS_RECONNECTS.labels(venue=self.venue.value).inc()
        self.link_state = state
        self.detail = reason
        if state is LinkState.UP:
            self._rest_active.clear()
        elif state in (LinkState.STALE, LinkState.DOWN):
            self._rest_active.set()
        self._health_due.set()

    def _snapshot(self, change: BookChanged, received_ms: int) -> Snapshot:
        return self._versions.snapshot(change, received_ms)

    # --- health -------------------------------------------------------------------------------------

    def _fold_counters(self) -> None:
        counters = self.feed.counters
        self._totals["errors"] += counters.parse_errors
        self._totals["gaps"] += counters.gaps
        self._totals["checksum_failures"] += counters.checksum_fail

    def health(self) -> Health:
        counters = self.feed.counters
        if self.link_state is LinkState.UP:
            resyncing = [s for s in self.symbols if s not in self.feed.valid]
            status = FeedStatus.RESYNCING if resyncing else FeedStatus.UP if self.symbols else FeedStatus.DEGRADED
        else:
            status = FeedStatus.STALE if self.link_state is LinkState.STALE else FeedStatus.DOWN
        return Health(
            exchange=self.venue.value, channel=Channel.WS, status=status, ts=self._clock_ms(),
            last_msg_ms=self.last_msg_ms, reconnects=max(0, self.link.connections - 1),
            errors=self._totals["errors"] + counters.parse_errors, gaps=self._totals["gaps"] + counters.gaps,
            checksum_failures=self._totals["checksum_failures"] + counters.checksum_fail,
            **symbol_summary(self.symbols),
            detail=(self.detail[:200] or None) if self.symbols else "holds no symbols: add some with triarb symbols",
            redis_reconnects=self._publisher.link.reconnects, redis_down_s=round(self._publisher.link.down_seconds, 3),
        )

    def rest_health(self) -> Health:
        """The fallback's own record: up while it is polling successfully."""
        polling = self._rest_active.is_set()
        fresh = self.rest.last_ok_ms is not None and self._clock_ms() - self.rest.last_ok_ms < 5_000
        status = FeedStatus.UP if polling and fresh else FeedStatus.DOWN
        detail = "polling while the socket is down" if polling else "idle: the socket is up"
        return Health(
            exchange=self.venue.value, channel=Channel.REST, status=status, ts=self._clock_ms(),
            last_msg_ms=self.rest.last_ok_ms, errors=self.rest.errors, **symbol_summary(self.symbols),
            detail=self.rest.last_error if polling and not fresh and self.rest.last_error else detail,
        )

    async def _publish_health(self, stop: asyncio.Event) -> None:
        started_ms = self._clock_ms()  # a venue that never answers grows stale from here (a feed-down alert fires)
        while not stop.is_set():
            last_ms = self.last_msg_ms if self.last_msg_ms is not None else started_ms
            metrics.BOOK_STALENESS.labels(venue=self.venue.value).set((self._clock_ms() - last_ms) / 1000)
            await self._publisher.publish(self.health())
            if self._rest_active.is_set() or self.rest.polls:
                await self._publisher.publish(self.rest_health())
            self._health_due.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._health_due.wait())}
            await asyncio.wait(waiters, timeout=self._settings.health_interval_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self._publisher.publish(self.health())

    # --- hot symbol reload --------------------------------------------------------------------------

    async def apply_symbols(self, wanted: list[str]) -> None:
        """Diff-subscribe on the live socket: new symbols get a snapshot, dropped ones are forgotten."""
        added = [s for s in wanted if s not in self.symbols]
        removed = [s for s in self.symbols if s not in wanted]
        self.symbols = list(wanted)
        if removed:
            for message in unsubscribe_messages(self.venue, removed, self._depth):
                await self.link.send(message)
            for symbol in removed:
                self.feed.forget(symbol)  # its hot-cache key expires after hot_cache_ttl_ms
        if added:
            for message in subscribe_messages(self.venue, added, self._depth):
                await self.link.send(message)
        if added or removed:
            log.info("symbols changed", extra={"venue": self.venue.value, "added": added, "removed": removed})
            self._health_due.set()
