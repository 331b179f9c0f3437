"""The paper broker service: a worker of consumer group ``paper`` on ``strategy.opportunity``.

Each opportunity is executed leg by leg after ``leg_latency_ms`` per leg against the hot cache as it is then
(:class:`PaperSimulation`), and the result is published on ``strategy.fill``. This waiting is why it is a
service of its own: the detector publishes the moment it has evaluated, and fills follow here, off its hot
path. The opportunities of a batch are simulated concurrently; the batch is acknowledged once their fills
are published. No order ever leaves the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer, Publisher
from common.config import Settings
from consumers.detector.evaluate import Book
from consumers.detector.graph import Market, Triangle, enumerate_triangles
from consumers.detector.service import fetch_books
from consumers.paper import PaperSimulation
from schemas import Fill, FillTrace, Opportunity, Subject, sim_id_for
from schemas.opportunity import FillStatus

GROUP = "paper"


class PaperBroker:
    """Simulates every opportunity it is handed and publishes its :class:`Fill`."""

    def __init__(
        self, settings: Settings, redis: Redis, publisher: Publisher, markets: Mapping[str, Sequence[Market]], *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._publisher = publisher
        self._clock_ms = clock_ms
        self._triangles: dict[str, Triangle] = {t.cycle_id: t for ms in markets.values()
                                                for t in enumerate_triangles(list(ms), settings.detector.anchors)}
        self.filled = 0

    def consumer(self, name: str | None = None, start_id: str = "$") -> GroupConsumer:
        return GroupConsumer(self._redis, self._settings.names, self._settings.bus, group=GROUP,
                             subjects=[Subject.OPPORTUNITY], handler=self.handle, name=name, start_id=start_id)

    async def handle(self, batch: list[Delivery]) -> None:
        opportunities = [d.model for d in batch if isinstance(d.model, Opportunity)]
        fills = await asyncio.gather(*(self.simulate(o) for o in opportunities))
        for fill in fills:
            await self._publisher.publish(fill)
        await self._publisher.flush()  # published before the batch is acknowledged
        self.filled += len(fills)

    async def simulate(self, opportunity: Opportunity) -> Fill:
        latency = self._settings.detector.leg_latency_ms
        started = self._clock_ms()
        triangle = self._triangles.get(opportunity.cycle_id)
        if triangle is None:  # another configuration's cycle: nothing to execute against
            trace = FillTrace(sim_id=sim_id_for(opportunity.id, latency), status=FillStatus.FAILED, legs=[],
                              expected_pnl=opportunity.start_notional * opportunity.roi_net,
                              realized_pnl=0.0, detail=f"unknown cycle {opportunity.cycle_id[:120]}")
        else:
            simulation = PaperSimulation.start(opportunity, triangle, started, latency)
            while not simulation.done:
                await asyncio.sleep(latency / 1000)
                fetched = await fetch_books(self._redis, self._settings.names, {opportunity.exchange: [triangle]})
                books: dict[str, Book] = {s: (b.bids, b.asks) for s, b in fetched[opportunity.exchange].items()}
                simulation.step(books, self._clock_ms())
            trace = simulation.trace()
        return Fill(opportunity_id=opportunity.id, exchange=opportunity.exchange, cycle_id=opportunity.cycle_id,
                    start_asset=opportunity.start_asset, start_notional=opportunity.start_notional,
                    latency_ms=latency, ts_start=started, ts_done=self._clock_ms(), trace=trace)


async def run_paper_workers(broker: PaperBroker, workers: int, stop: asyncio.Event, *, burst: bool = False,
                            start_id: str = "$") -> None:
    async with asyncio.TaskGroup() as tasks:
        for _ in range(workers):
            tasks.create_task(broker.consumer(start_id=start_id).run(stop, burst=burst))
