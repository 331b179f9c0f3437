"""Detector workers through Redis: the same opportunities with 1 or 3 workers, nothing left pending."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from consumers.detector.graph import Market, enumerate_triangles
from consumers.detector.service import GROUP, DetectorService, fetch_books, run_workers
from schemas import Opportunity, Snapshot, sim_id_for
from schemas.codec import decode_as

pytestmark = pytest.mark.integration

MARKETS = {"kraken": [Market("kraken", s, *s.split("-"), 1e-8, 0.0, 0.004)
                      for s in ("BTC-USD", "ETH-BTC", "ETH-USD", "SOL-USD", "SOL-BTC")]}


def book(symbol: str, bid: float, ask: float, seq: int, now_ms: int) -> Snapshot:
    return Snapshot(exchange="kraken", symbol=symbol, ts_event=now_ms, ts_ingest=now_ms, book_seq=seq,
                    bids=[(bid, 5.0, 5.0), (bid * 0.999, 5.0, 10.0)], asks=[(ask, 5.0, 5.0), (ask * 1.001, 5.0, 10.0)])


async def publish_session(producer: Redis, settings: Settings) -> None:
    """Consistent books, then ETH-BTC dislocated by -3 %: USD→BTC→ETH→USD beats 3 × 0.4 % fees."""
    now = time.time_ns() // 1_000_000
    async with Publisher(producer, settings.names, settings.streams, settings.bus) as pub:
        for seq in range(1, 6):
            await pub.publish(book("BTC-USD", 59_990, 60_000, seq, now))
            await pub.publish(book("ETH-USD", 2_999, 3_000, seq, now))
            await pub.publish(book("SOL-USD", 149.9, 150, seq, now))
            await pub.publish(book("SOL-BTC", 0.0024995, 0.0025, seq, now))
            shift = 0.97 if seq == 5 else 1.0  # the whole book moves: a crossed book is refused as impossible
            await pub.publish(book("ETH-BTC", 0.04995 * shift, 0.05 * shift, seq, now))


async def detect(connect_as: Callable[..., Redis], settings: Settings, workers: int) -> list[Opportunity]:
    redis = connect_as(Role.DETECTOR)
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
        service = DetectorService(settings, redis, publisher, MARKETS)
        await run_workers(service, workers, asyncio.Event(), burst=True, start_id="0")
    entries = await connect_as(Role.DASHBOARD).xrange("strategy.opportunity")  # the detector only appends
    return [decode_as(Opportunity, fields) for _, fields in entries]


async def test_one_and_three_workers_report_the_same_opportunities(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    settings = settings.model_copy(update={
        # small batches: the workers share the stream
        "detector": settings.detector.model_copy(update={"leg_latency_ms": 0, "read_count": 3}),
    })
    await publish_session(connect_as(Role.PRODUCER), settings)
    single = await detect(connect_as, settings, workers=1)

    await admin.delete("strategy.opportunity", *await admin.keys("seen:*"))  # a fresh start for the second run
    await admin.xgroup_destroy("md.snapshot", GROUP)
    triple = await detect(connect_as, settings, workers=3)

    assert single, "the planted dislocation must be found"
    assert {o.id for o in single} == {o.id for o in triple}
    for run in (single, triple):  # each id once on the stream, however many workers evaluated its books
        assert len({o.id for o in run}) == len(run)
    assert {o.cycle_id for o in single} >= {"kraken:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell"}
    assert all(o.roi_net > 0 and o.fill is None and o.sim_id == sim_id_for(o.id, 0) for o in single)  # fills: paper
    assert int((await admin.xpending("md.snapshot", GROUP))["pending"]) == 0
    control = await admin.xrevrange("strategy.ctrl.symbols", count=1)
    assert b"ETH-BTC" in control[0][1][b"symbols"]


@pytest.mark.parametrize("workers", [1, 3])
async def test_replayed_session_yields_the_planted_opportunities_through_redis(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, workers: int
) -> None:
    from common.config import VenueSettings
    from producers.feed import Venue
    from producers.service import VenueProducer
    from producers.simulators.demo import DEMO_DIR
    from producers.simulators.replayvenue import ReplayVenue
    from triarb.backtest import run_backtest

    session = DEMO_DIR / "kraken-demo.ndjson"
    speed = 10.0
    settings = settings.model_copy(update={"detector": settings.detector.model_copy(update={"leg_latency_ms": 0})})
    expected = {(o.cycle_id, o.ts_detect) for o in run_backtest([session], settings.detector)}
    venue = ReplayVenue(session, speed=speed)
    url = await venue.start()
    stop = asyncio.Event()
    detector_redis = connect_as(Role.DETECTOR)
    async with (
        Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as books,
        Publisher(detector_redis, settings.names, settings.streams, settings.bus) as opportunities,
    ):
        producer = VenueProducer(Venue.KRAKEN, VenueSettings(url=url, symbols=venue.book_symbols()),
                                 settings.producers, books, names=settings.names)
        service = DetectorService(settings, detector_redis, opportunities, {
            "kraken": [Market("kraken", s, *s.split("-"), 1e-8, 0.0, 0.004) for s in venue.book_symbols()]})
        detecting = asyncio.create_task(run_workers(service, workers, stop, start_id="0"))
        producing = asyncio.create_task(producer.run(stop))
        while producer.feed.counters.frames < len(venue.frames):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the workers finish the last batches
        stop.set()
        await asyncio.gather(producing, detecting)
    await venue.stop()
    found = [decode_as(Opportunity, f) for _, f in await admin.xrange("strategy.opportunity")]
    header = orjson.loads(session.read_bytes().split(b"\n", 1)[0])
    planted = header["mispricings"]

    def window(session_ms: int) -> int | None:
        return next((n for n, w in enumerate(planted) if w["start_ms"] <= session_ms < w["end_ms"]), None)

    # live detection happens at wall-clock time; the legs' venue times place it on the session's clock
    live = {(o.cycle_id, window(max(leg.ts_event for leg in o.legs))) for o in found}
    offline = {(cycle, window(ts)) for cycle, ts in expected}
    assert offline and None not in offline
    assert live == offline
    assert int((await admin.xpending("md.snapshot", GROUP))["pending"]) == 0


async def test_legs_of_two_venues_are_read_with_one_mget_per_venue(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    """Every multi-key command stays within one venue (so a venue can be pinned to one cluster slot), and each
    leg comes back as the book its venue published; a leg never published is left out."""
    now = time.time_ns() // 1_000_000
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        for symbol in ("BTC-USD", "ETH-BTC", "ETH-USD"):
            await pub.publish(book(symbol, 99.0, 100.0, 1, now))
        await pub.publish(book("BTC-USD", 59_990, 60_000, 2, now).model_copy(update={"exchange": "coinbase"}))
    coinbase = [Market("coinbase", s, *s.split("-"), 1e-8, 0.0, 0.006) for s in ("BTC-USD", "ETH-BTC", "ETH-USD")]
    affected = {"kraken": enumerate_triangles(MARKETS["kraken"])[:1], "coinbase": enumerate_triangles(coinbase)[:1]}
    await admin.config_resetstat()

    books = await fetch_books(connect_as(Role.DETECTOR), settings.names, affected)

    assert {venue: sorted(legs) for venue, legs in books.items()} == {
        "kraken": ["BTC-USD", "ETH-BTC", "ETH-USD"], "coinbase": ["BTC-USD"]}
    assert books["coinbase"]["BTC-USD"].book_seq == 2 and books["kraken"]["BTC-USD"].book_seq == 1
    assert (await admin.info("commandstats"))["cmdstat_mget"]["calls"] == 2
