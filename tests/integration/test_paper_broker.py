"""The paper broker as its own consumer group: the detector publishes at once, fills follow on strategy.fill."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from consumers.detector.service import DetectorService, run_workers
from consumers.paper_broker import PaperBroker, run_paper_workers
from schemas import Fill, Opportunity, sim_id_for
from schemas.codec import decode_as
from tests import samples
from tests.integration.test_detector_service import MARKETS, publish_session

pytestmark = pytest.mark.integration
# every test takes `admin`: that fixture empties the session's Redis first


def with_latency(settings: Settings, latency_ms: int) -> Settings:
    return settings.model_copy(update={"detector": settings.detector.model_copy(update={"leg_latency_ms": latency_ms})})


async def detect(connect_as: Callable[..., Redis], settings: Settings) -> list[Opportunity]:
    redis = connect_as(Role.DETECTOR)
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
        await run_workers(DetectorService(settings, redis, publisher, MARKETS), 1, asyncio.Event(), burst=True,
                          start_id="0")
    return [decode_as(Opportunity, f) for _, f in await connect_as(Role.DASHBOARD).xrange("strategy.opportunity")]


async def fill(connect_as: Callable[..., Redis], settings: Settings) -> list[Fill]:
    redis = connect_as(Role.PAPER)
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as publisher:
        await run_paper_workers(PaperBroker(settings, redis, publisher, MARKETS), 1, asyncio.Event(), burst=True,
                                start_id="0")
    return [decode_as(Fill, f) for _, f in await connect_as(Role.DASHBOARD).xrange("strategy.fill")]


async def test_every_opportunity_gets_one_fill_joined_by_sim_id(
    connect_as: Callable[..., Redis], settings: Settings, admin: Redis
) -> None:
    settings = with_latency(settings, 5)
    await publish_session(connect_as(Role.PRODUCER), settings)
    opportunities = await detect(connect_as, settings)
    fills = await fill(connect_as, settings)

    assert opportunities, "the planted dislocation must be found"
    assert sorted(f.trace.sim_id for f in fills) == sorted(o.sim_id for o in opportunities)  # type: ignore[misc]
    by_sim = {f.trace.sim_id: f for f in fills}
    for opportunity in opportunities:
        paid = by_sim[sim_id_for(opportunity.id, 5)]
        assert (paid.opportunity_id, paid.trace.status, len(paid.trace.legs)) == (opportunity.id, "filled", 3)
        assert paid.ts_done - paid.ts_start >= 3 * 5  # three legs, each after the latency


async def test_the_detector_publishes_without_waiting_for_the_fill_latency(
    connect_as: Callable[..., Redis], settings: Settings, admin: Redis
) -> None:
    settings = with_latency(settings, 3_600_000)  # an hour per leg: a detector that waited would never finish
    await publish_session(connect_as(Role.PRODUCER), settings)
    async with asyncio.timeout(60):
        opportunities = await detect(connect_as, settings)
    assert opportunities and all(o.fill is None for o in opportunities)


async def test_an_opportunity_of_an_unknown_cycle_gets_a_failed_fill_with_the_reason(
    connect_as: Callable[..., Redis], settings: Settings, admin: Redis
) -> None:
    async with Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.opportunity(cycle_id="kraken:NOT|A|CYCLE"))
    [paid] = await fill(connect_as, settings)
    assert (paid.trace.status, paid.trace.detail) == ("failed", "unknown cycle kraken:NOT|A|CYCLE")
