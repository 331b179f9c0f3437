"""Producers against fake venues on 127.0.0.1 that speak the real protocols, publishing into a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import ProducerSettings, Role, Settings, VenueSettings
from common.control import publish_control
from producers.book import OrderBook
from producers.connection import LinkState
from producers.feed import BookChanged, ResyncNeeded, Venue, VenueFeed
from producers.service import VenueProducer
from producers.simulators.fakerest import FakeRest
from producers.simulators.fakevenue import FakeVenue, Market
from schemas import Snapshot, SymbolControl
from schemas.codec import decode_json_as
from triarb.stack import producer_check

pytestmark = pytest.mark.integration


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Wait until ``condition`` holds; fail with its source if it never does (a bound, not a speed test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.02)


def markets() -> list[Market]:
    return [Market("BTC-USD", 60_000.0, 2, 8), Market("ETH-USD", 3_000.0, 2, 8), Market("SOL-USD", 150.0, 3, 6)]


@dataclass
class Running:
    venue: FakeVenue
    producer: VenueProducer
    admin: Redis
    stop: asyncio.Event
    rest: FakeRest

    async def cached_top(self, symbol: str) -> Snapshot | None:
        document = await self.admin.get(f"md:book:{self.venue.venue.value}:{symbol}")
        return decode_json_as(Snapshot, document) if document is not None else None

    async def matches_venue(self, symbol: str) -> bool:
        """The hot cache shows exactly the venue's current top 5 (call while the venue is silent)."""
        snapshot = await self.cached_top(symbol)
        market = self.venue.markets[symbol]
        if snapshot is None:
            return False
        bids = [(round(float(market.price_text(t)), 8), float(s)) for t, s in market.top("bid", 5).items()]
        asks = [(round(float(market.price_text(t)), 8), float(s)) for t, s in market.top("ask", 5).items()]
        return [(p, s) for p, s, _ in snapshot.bids] == bids and [(p, s) for p, s, _ in snapshot.asks] == asks


@pytest.fixture(params=[Venue.COINBASE, Venue.KRAKEN], ids=["coinbase", "kraken"])
async def running(
    request: pytest.FixtureRequest, settings: Settings, admin: Redis, connect_as: Callable[..., Redis]
) -> AsyncIterator[Running]:
    venue = FakeVenue(request.param, markets(), tick_interval_s=0.005, heartbeat_interval_s=0.2)
    url = await venue.start()
    rest = FakeRest(venue)
    rest_url = await rest.start()
    producer_settings = ProducerSettings(stale_after_s=1.0, health_interval_s=0.2)
    stop = asyncio.Event()
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as publisher:
        producer = VenueProducer(
            request.param, VenueSettings(url=url, symbols=["BTC-USD", "ETH-USD"], rest_url=rest_url, rest_poll_hz=50),
            producer_settings, publisher,
            names=settings.names, control_redis=connect_as(Role.PRODUCER), catalog=list(venue.markets),
        )
        task = asyncio.create_task(producer.run(stop))
        running = Running(venue, producer, admin, stop, rest)
        await eventually(lambda: running.cached_top("BTC-USD"))
        yield running
        stop.set()
        await asyncio.wait_for(task, 10)
    await venue.stop()
    await rest.stop()


async def test_books_are_published_with_their_hot_cache_and_match_the_venue(running: Running) -> None:
    await eventually(lambda: running.cached_top("ETH-USD"))
    running.venue.go_silent()
    await asyncio.sleep(0.05)  # let frames already on the wire arrive
    await eventually(lambda: running.matches_venue("BTC-USD"))
    await eventually(lambda: running.matches_venue("ETH-USD"))
    assert running.producer.health().status == "up"


async def test_dropped_connection_reconnects_and_rebuilds_from_a_fresh_snapshot(running: Running) -> None:
    await running.venue.drop_connections()
    await eventually(lambda: running.venue.connections_accepted == 2 and running.producer.link.connected)
    await eventually(lambda: running.producer.feed.counters.snapshots >= 2)  # new connection, new books
    running.venue.go_silent()
    await asyncio.sleep(0.05)
    await eventually(lambda: running.matches_venue("BTC-USD"))
    assert running.producer.health().reconnects == 1


async def test_integrity_loss_resyncs_the_book_on_the_same_socket(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    history: list[tuple[str, bool]] = []  # ("resync" | "published", from a snapshot?) for BTC-USD
    apply = VenueFeed._apply

    def recording_apply(self: VenueFeed, book: OrderBook, event: object, sequence: object, *, snapshot: bool) -> list:
        outputs = apply(self, book, event, sequence, snapshot=snapshot)  # type: ignore[arg-type]
        if book.symbol == "BTC-USD":
            history.extend(("published", snapshot) for o in outputs if isinstance(o, BookChanged))
        return outputs

    original_on_frame = VenueFeed.on_frame

    def recording_on_frame(self: VenueFeed, frame: str | bytes) -> list:
        outputs = original_on_frame(self, frame)
        if any(isinstance(o, ResyncNeeded) and "BTC-USD" in o.symbols for o in outputs):
            history.append(("resync", False))
        return outputs

    monkeypatch.setattr(VenueFeed, "_apply", recording_apply)
    monkeypatch.setattr(VenueFeed, "on_frame", recording_on_frame)
    if running.venue.venue is Venue.COINBASE:
        running.venue.skip_sequence()
        await eventually(lambda: running.producer.health().gaps == 1)
    else:
        running.venue.corrupt_checksum("BTC-USD")
        await eventually(lambda: running.producer.health().checksum_failures == 1)
    await eventually(lambda: "BTC-USD" in running.producer.feed.valid)  # a fresh snapshot arrived
    client = running.venue.clients[0]
    assert running.venue.connections_accepted == 1  # resubscribed, not reconnected
    assert any(r.get("type") == "unsubscribe" or r.get("method") == "unsubscribe" for r in client.received)
    running.venue.go_silent()
    await asyncio.sleep(0.05)
    await eventually(lambda: running.matches_venue("BTC-USD"))
    # no snapshot of the suspect book was published: after the resync, the next one came from a fresh snapshot
    first_resync = history.index(("resync", False))
    assert history[first_resync + 1] == ("published", True)


async def test_hot_reload_adds_and_removes_symbols_without_reconnecting(
    running: Running, connect_as: Callable[..., Redis], settings: Settings
) -> None:
    client = running.venue.clients[0]
    control = SymbolControl(symbols={running.venue.venue.value: ["BTC-USD", "SOL-USD"]}, issued_by="test")
    await publish_control(connect_as(Role.CONTROL), settings, control)
    await eventually(lambda: running.cached_top("SOL-USD"))
    await eventually(lambda: "ETH-USD" not in running.producer.feed.books)
    assert running.venue.clients == [client]  # the very same socket
    assert running.venue.connections_accepted == 1
    assert "ETH-USD" not in client.books  # the venue was told to stop sending it
    assert running.producer.symbols == ["BTC-USD", "SOL-USD"]


async def test_silent_venue_makes_the_feed_stale_then_it_reconnects(running: Running) -> None:
    running.venue.go_silent()
    await eventually(lambda: running.producer.link_state is LinkState.STALE)
    assert running.producer.health().status == "stale"
    assert producer_check(running.producer)().ok is False  # /healthz answers 503 while the venue is down
    running.venue.go_silent(False)
    await eventually(lambda: running.venue.connections_accepted >= 2 and running.producer.health().status == "up")


async def test_rest_fallback_takes_over_while_the_socket_is_silent_and_hands_back(running: Running) -> None:
    assert running.rest.requests == 0  # idle while the socket is up
    running.venue.go_silent()
    await eventually(lambda: running.producer.link_state is LinkState.STALE)
    await eventually(lambda: running.rest.requests >= 2)

    async def rest_snapshots_published() -> bool:
        snapshots = [await running.cached_top(s) for s in ("BTC-USD", "ETH-USD")]
        return any(s is not None and s.source == "rest" for s in snapshots)

    await eventually(rest_snapshots_published)
    assert running.producer.rest_health().status == "up"

    running.venue.go_silent(False)
    await eventually(lambda: running.producer.link_state is LinkState.UP and "BTC-USD" in running.producer.feed.valid)
    polls = running.rest.requests

    async def ws_again() -> bool:
        snapshot = await running.cached_top("BTC-USD")
        return snapshot is not None and snapshot.source == "ws"

    await eventually(ws_again)
    await asyncio.sleep(0.2)
    assert running.rest.requests <= polls + 1  # the poller went idle once the socket was back
