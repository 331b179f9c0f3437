"""Episodes through a real Redis with several detector workers racing on the same books: each dislocation is
one episode on ``strategy.episode`` (one open, updates, one close), each event written once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from unittest import mock

import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from consumers.detector.episode_store import EpisodeStore, States
from consumers.detector.episodes import EpisodeRules, EpisodeState, NotPaying
from consumers.detector.service import DetectorService
from schemas import CloseReason, Episode, EpisodeEvent, Opportunity, Snapshot
from schemas.codec import decode_as
from tests.integration.test_detector_service import MARKETS

pytestmark = pytest.mark.integration

CYCLE = "kraken:BTC-USD:buy|ETH-BTC:buy|ETH-USD:sell"
WORKERS_PER_SERVICE = 2


def books(seq: int, eth_btc_shift: float) -> list[Snapshot]:
    """Consistent books except ETH-BTC moved by ``eth_btc_shift`` (0.97: USD→BTC→ETH→USD beats the fees)."""
    now = time.time_ns() // 1_000_000

    def book(symbol: str, bid: float, ask: float) -> Snapshot:
        return Snapshot(exchange="kraken", symbol=symbol, ts_event=now, ts_ingest=now, book_seq=seq,
                        bids=[(bid, 5.0, 5.0), (bid * 0.999, 5.0, 10.0)],
                        asks=[(ask, 5.0, 5.0), (ask * 1.001, 5.0, 10.0)])

    return [book("BTC-USD", 59_990, 60_000), book("ETH-USD", 2_999, 3_000), book("SOL-USD", 149.9, 150),
            book("SOL-BTC", 0.0024995, 0.0025), book("ETH-BTC", 0.04995 * eth_btc_shift, 0.05 * eth_btc_shift)]


class Stack:
    """A producer's publisher and two detector services (as two processes would be), driven tick by tick."""

    def __init__(self, connect_as: Callable[..., Redis], settings: Settings) -> None:
        self.settings = settings
        self.producer = Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus)
        self.producer.start()
        self.services: list[DetectorService] = []
        self.publishers = [self.producer]
        for _ in range(2):
            redis = connect_as(Role.DETECTOR)
            publisher = Publisher(redis, settings.names, settings.streams, settings.bus)
            publisher.start()
            self.publishers.append(publisher)
            self.services.append(DetectorService(settings, redis, publisher, MARKETS))
        self.consumers = [service.consumer(start_id="0") for service in self.services
                          for _ in range(WORKERS_PER_SERVICE)]

    async def tick(self, seq: int, eth_btc_shift: float) -> None:
        """Publish one state of every book, then let all workers drain it concurrently."""
        for snapshot in books(seq, eth_btc_shift):
            await self.producer.publish(snapshot)
        await self.producer.flush()
        await asyncio.gather(*(consumer.run(burst=True) for consumer in self.consumers))

    async def close(self) -> None:
        for publisher in self.publishers:
            await publisher.close()


@pytest.fixture
async def stack(connect_as: Callable[..., Redis], admin: Redis, settings: Settings) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={
        # one entry per read: the workers interleave
        "detector": settings.detector.model_copy(update={"leg_latency_ms": 0, "episode_update_ms": 0, "read_count": 1}),
    })
    running = Stack(connect_as, settings)
    yield running
    await running.close()


async def episodes(admin: Redis) -> list[Episode]:
    return [decode_as(Episode, fields) for _, fields in await admin.xrange("strategy.episode")]


async def test_a_dislocation_seen_by_four_racing_workers_is_one_episode_written_once(
    stack: Stack, admin: Redis
) -> None:
    shifts = [1.0, 1.0, 0.97, 0.965, 0.96, 0.955, 0.97, 1.0, 1.0]  # pays on ticks 3..7, deepest on 6
    for seq, shift in enumerate(shifts, start=1):
        await stack.tick(seq, shift)

    events = await episodes(admin)
    opportunities = [decode_as(Opportunity, f) for _, f in await admin.xrange("strategy.opportunity")]
    assert {e.cycle_id for e in events} == {CYCLE}
    assert len({e.id for e in events}) == 1
    assert Counter((e.id, e.seq) for e in events).most_common(1)[0][1] == 1  # every event once
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].event is EpisodeEvent.OPEN and events[-1].event is EpisodeEvent.CLOSE
    assert {e.event for e in events[1:-1]} <= {EpisodeEvent.UPDATE}
    closed = events[-1]
    paid = [o for o in opportunities if o.cycle_id == CYCLE]
    assert len(paid) == 5 and closed.opportunities == 5  # one per paying book state, however many evaluated it
    assert closed.first_opportunity_id == min(paid, key=lambda o: o.ts_detect).id
    assert closed.close_reason is CloseReason.BELOW_MIN_ROI
    assert closed.peak_roi_net == max(o.roi_net for o in paid)
    assert closed.best_profit == max(o.best_profit for o in paid)
    assert closed.duration_ms == closed.ts - closed.opened_ms >= 0


async def test_an_episode_whose_feed_stops_is_closed_stale_once_by_whichever_sweep_comes_first(
    stack: Stack, admin: Redis, settings: Settings
) -> None:
    for seq, shift in enumerate([1.0, 0.97, 0.96], start=1):
        await stack.tick(seq, shift)
    before = [e.event for e in await episodes(admin)]
    assert before == [EpisodeEvent.OPEN, EpisodeEvent.UPDATE]
    assert not any(await asyncio.gather(*(s.sweep_once() for s in stack.services)))  # still fresh

    await asyncio.sleep(settings.detector.max_age_ms / 1000 + 0.1)  # no book updates: the legs go stale
    swept = await asyncio.gather(*(s.sweep_once() for s in stack.services))
    events = await episodes(admin)
    assert [e.event for e in events] == [*before, EpisodeEvent.CLOSE]
    assert sum(len(closed) for closed in swept) == 1
    closed = events[-1]
    assert closed.close_reason is CloseReason.STALE
    assert closed.ts <= time.time_ns() // 1_000_000 - 100  # when the legs went stale, not when it was noticed


def open_state(cycle: str, order: int) -> EpisodeState:
    """An open episode of ``cycle`` as a worker would have stored it (its legs fresh until far ahead)."""
    now = time.time_ns() // 1_000_000
    record = Episode(id=f"ep-{cycle}", event=EpisodeEvent.OPEN, seq=0, exchange="kraken", cycle_id=cycle,
                     start_asset="USD", opened_ms=now, ts=now, duration_ms=0, roi_net=0.01, peak_roi_net=0.01,
                     peak_ms=now, best_notional=100.0, best_profit=1.0, opportunities=1,
                     first_opportunity_id=f"op-{cycle}", opportunity_id=f"op-{cycle}")
    return EpisodeState(record, True, order, now + 60_000, now, 0.01, 1.0)


async def stored(store: EpisodeStore, admin: Redis, states: dict[str, EpisodeState]) -> States:
    raw = {cycle: state.dumps() for cycle, state in states.items()}
    await admin.hset("strategy:episodes:kraken", mapping=raw)  # type: ignore[arg-type]
    return await store.read("kraken")


async def test_a_batch_that_closes_several_episodes_stores_them_all_in_one_round_trip(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    store = EpisodeStore(connect_as(Role.DETECTOR), settings.names, settings.streams, EpisodeRules())
    cycles = [f"kraken:c{n}" for n in range(3)]
    states = await stored(store, admin, {cycle: open_state(cycle, order=10) for cycle in cycles})
    now = time.time_ns() // 1_000_000
    observations = [NotPaying(cycle, CloseReason.BELOW_MIN_ROI, now, order=11) for cycle in cycles]

    with mock.patch.object(store, "_compare_and_set_all", wraps=store._compare_and_set_all) as round_trips:
        published = await store.apply("kraken", observations, states)

    assert round_trips.call_count == 1
    assert [e.cycle_id for e in published] == cycles
    assert [e.event for e in await episodes(admin)] == [EpisodeEvent.CLOSE] * 3
    assert all(not state.open for _, state in (await store.read("kraken")).values() if state is not None)


async def test_a_cycle_observed_twice_in_a_batch_takes_its_observations_in_order(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    """A lapse then a new open of the same cycle: the second step starts from the first one's stored state."""
    store = EpisodeStore(connect_as(Role.DETECTOR), settings.names, settings.streams, EpisodeRules())
    states = await stored(store, admin, {"kraken:c0": open_state("kraken:c0", order=10),
                                         "kraken:c1": open_state("kraken:c1", order=10)})
    now = time.time_ns() // 1_000_000
    observations = [NotPaying("kraken:c0", CloseReason.STALE, now - 5, order=10),
                    NotPaying("kraken:c1", CloseReason.BELOW_MIN_ROI, now, order=11),
                    NotPaying("kraken:c0", CloseReason.BELOW_MIN_ROI, now, order=12)]  # already closed: no-op

    with mock.patch.object(store, "_compare_and_set_all", wraps=store._compare_and_set_all) as round_trips:
        published = await store.apply("kraken", observations, states)

    assert round_trips.call_count == 1  # c0's second observation changes nothing once the first is applied
    assert [(e.cycle_id, e.close_reason) for e in published] == [
        ("kraken:c0", CloseReason.STALE), ("kraken:c1", CloseReason.BELOW_MIN_ROI)]


async def test_a_worker_that_lost_the_race_steps_again_from_the_winners_state_and_writes_nothing_twice(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    store = EpisodeStore(connect_as(Role.DETECTOR), settings.names, settings.streams, EpisodeRules())
    late = await stored(store, admin, {"kraken:c0": open_state("kraken:c0", order=10)})
    winner = EpisodeStore(connect_as(Role.DETECTOR), settings.names, settings.streams, EpisodeRules())
    now = time.time_ns() // 1_000_000
    close = NotPaying("kraken:c0", CloseReason.BELOW_MIN_ROI, now, order=11)
    assert len(await winner.apply("kraken", [close], await winner.read("kraken"))) == 1

    with mock.patch.object(store, "_compare_and_set_all", wraps=store._compare_and_set_all) as round_trips:
        published = await store.apply("kraken", [close], late)  # read before the winner wrote

    assert published == []
    assert round_trips.call_count == 1  # lost once; from the winner's state the close changes nothing
    assert [e.event for e in await episodes(admin)] == [EpisodeEvent.CLOSE]
