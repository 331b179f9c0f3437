"""Backtest = live: one capture, the same book versions, opportunity ids and episodes offline and through Redis.

Live path: the bundled Kraken demo session served by a :class:`ReplayVenue` over WebSocket, the real
:class:`VenueProducer` (parser, books, checksums, book numbering, Publisher → md.snapshot + hot cache in a real
redis-server) and the real detector (consumer group on md.snapshot, hot-cache reads, opportunity publishing).
Offline path: ``run_backtest`` on the same file.

The comparison, chosen to be exact and not timing-dependent: the live detector evaluates whatever the hot cache
holds when a batch runs, so a detector racing the producer conflates and skips intermediate versions, and one
run only after publishing sees nothing but the final books. Instead the producer publishes in lock step: each
snapshot is flushed to Redis and the detector group drains it (burst mode) before the producer handles its next
book change. The live detector then evaluates every book version the backtest evaluates, with the same books,
so both must report exactly the same set of ids (and the same cycles, ROI and legs per id).
The freshness guard is set out of the way (one hour) on both sides: it compares receive times with the
detection clock, which is the capture's clock offline and the wall clock live (a max-speed replay compresses
the session), and it is not what ids derive from. Everything else is the default configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from common.bus import GroupConsumer, Publisher
from common.config import Role, Settings, VenueSettings
from consumers.detector.service import DetectorService
from producers.feed import Venue
from producers.service import VenueProducer
from producers.simulators.demo import DEMO_DIR
from producers.simulators.replayvenue import ReplayVenue
from schemas import CloseReason, Episode, EpisodeEvent, Opportunity, Snapshot
from schemas.base import WireModel
from schemas.codec import decode_as
from triarb.backtest import backtest, backtest_markets, read_capture_file, replay_snapshots

pytestmark = pytest.mark.integration

SESSION = DEMO_DIR / "kraken-demo.ndjson"
ONE_HOUR_MS = 3_600_000


@pytest.fixture
async def redis_emptied_after(admin: Redis) -> AsyncIterator[Redis]:
    """An empty database before (``admin``) and after: later tests that do not flush must not see our streams."""
    yield admin
    await admin.flushall()


class LockStepPublisher:
    """The producer's publisher, except that every snapshot is written (flushed) and the detector group has
    drained the stream before ``publish`` returns; everything else passes straight through."""

    def __init__(self, publisher: Publisher, detector: GroupConsumer) -> None:
        self._publisher = publisher
        self._detector = detector
        self.snapshots = 0

    async def publish(self, model: WireModel) -> None:
        await self._publisher.publish(model)
        if isinstance(model, Snapshot):
            await self._publisher.flush()
            await self._detector.run(burst=True)
            self.snapshots += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)


def book_version(snapshot: Snapshot) -> tuple[object, ...]:
    """A published book version, without the receive time (the capture's offline, the wall clock's live)."""
    return (snapshot.symbol, snapshot.book_seq, snapshot.ts_event, snapshot.bids, snapshot.asks, snapshot.venue_seq,
            snapshot.checksum)


def as_evaluated(opportunity: Opportunity) -> tuple[object, ...]:
    return (opportunity.cycle_id, opportunity.roi_net, opportunity.roi_gross,
            [(leg.symbol, leg.side, leg.price, leg.size, leg.ts_event) for leg in opportunity.legs])


async def test_the_demo_session_gives_the_same_book_versions_and_opportunity_ids_offline_and_live(
    connect_as: Callable[..., Redis], redis_emptied_after: Redis, settings: Settings
) -> None:
    admin = redis_emptied_after
    settings = settings.model_copy(update={"detector": settings.detector.model_copy(
        update={"max_age_ms": ONE_HOUR_MS, "leg_latency_ms": 0})})
    levels = settings.producers.snapshot_levels
    capture = read_capture_file(SESSION)
    markets = backtest_markets([capture], settings.detector, {}, warn=lambda _: None)
    offline_versions = [book_version(s) for s in replay_snapshots([capture], snapshot_levels=levels)]
    result = backtest([SESSION], settings.detector, snapshot_levels=levels, warn=lambda _: None)
    offline = result.opportunities
    assert any("ETH-BTC" in o.cycle_id for o in offline), "the planted mispricings must be found"

    venue = ReplayVenue(SESSION, speed=None)
    url = await venue.start()
    detector_redis = connect_as(Role.DETECTOR)
    stop = asyncio.Event()
    try:
        async with (
            Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as books,
            Publisher(detector_redis, settings.names, settings.streams, settings.bus) as opportunities,
        ):
            service = DetectorService(settings, detector_redis, opportunities,
                                      {v.value: ms for v, ms in markets.items()})
            lockstep = LockStepPublisher(books, service.consumer(name="lockstep", start_id="0"))
            producer = VenueProducer(
                Venue.KRAKEN, VenueSettings(url=url, symbols=venue.book_symbols(), book_depth=venue.depth or 10),
                settings.producers, lockstep, names=settings.names)  # type: ignore[arg-type]
            producing = asyncio.create_task(producer.run(stop))
            async with asyncio.timeout(90):
                while lockstep.snapshots < len(offline_versions):
                    await asyncio.sleep(0.02)
            stop.set()
            await producing
    finally:
        stop.set()
        await venue.stop()

    live_versions = [book_version(decode_as(Snapshot, f)) for _, f in await admin.xrange("md.snapshot")]
    assert live_versions == offline_versions
    live = {o.id: o for o in (decode_as(Opportunity, f) for _, f in await admin.xrange("strategy.opportunity"))}
    assert set(live) == {o.id for o in offline}
    assert {i: as_evaluated(o) for i, o in live.items()} == {o.id: as_evaluated(o) for o in offline}

    # the same episodes: opened by the same opportunities, closed by the same evaluations with the same peak
    # and best size (updates are rate-limited by the detection clock, which differs; episodes still open when
    # the capture ends are closed by the backtest as stale, by the live sweep only later)
    live_episodes = [decode_as(Episode, f) for _, f in await admin.xrange("strategy.episode")]
    assert as_opened_and_closed(live_episodes) == as_opened_and_closed(
        [e for e in result.episodes if e.close_reason is not CloseReason.STALE])
    assert sum(e.event is EpisodeEvent.OPEN for e in live_episodes) >= 3  # one per planted window at least


def as_opened_and_closed(episodes: list[Episode]) -> set[tuple[object, ...]]:
    return {(e.id, e.event, e.cycle_id, e.first_opportunity_id, e.opportunity_id, e.opportunities, e.peak_roi_net,
             e.best_notional, e.best_profit, e.close_reason) for e in episodes if e.event is not EpisodeEvent.UPDATE}
