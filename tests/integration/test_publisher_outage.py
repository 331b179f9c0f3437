"""Publisher while Redis is away: the producer never waits, snapshots conflate per book, trades and health
records beyond the high-water mark are dropped and counted, opportunities keep the backpressure, and on
reconnect the newest state of every book goes out first."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common.bus import Publisher, PublishError
from common.bus.publisher import BufferedEntry, conflate, reconnect_delay_s
from common.config import BusSettings, Role, Settings, StreamLimits
from common.redis import EmbeddedRedis, RedisEndpoint, connect
from schemas import Snapshot, Trade
from schemas.base import WireModel
from schemas.codec import decode_as, decode_json_as
from tests import samples

BOOKS = ("BTC-USD", "ETH-USD", "ETH-BTC", "SOL-USD", "SOL-BTC")
HIGH_WATER = 20
OUTAGE_BUS = BusSettings(publish_high_water=HIGH_WATER)
WAIT_S = 30.0
"""Bound on every wait for the restarted Redis; the tests poll for conditions, they never time anything."""


class RestartableRedis:
    """A private redis-server that a test stops and starts again on the same port and data directory, with
    fixed passwords so that clients made before the outage can authenticate after it."""

    def __init__(self, var_dir: Path) -> None:
        self.settings = Settings(var_dir=var_dir, redis_passwords={role: f"pw-{role.value}" for role in Role})
        self._server = EmbeddedRedis(self.settings, port=0, write_runtime_file=False)
        self.endpoint: RedisEndpoint = self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def restart(self) -> None:
        data_dir = self._server.data_dir
        self._server = EmbeddedRedis(
            self.settings, port=self.endpoint.port, data_dir=data_dir, write_runtime_file=False
        )
        port = self._server.start().port
        assert port == self.endpoint.port, "the port was taken while Redis was down; the publisher cannot follow"


class WireRecorder(Publisher):
    """A Publisher that remembers every entry it writes to a socket, in wire order."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sent: list[BufferedEntry] = []

    def batch_command(self, batch: list[BufferedEntry]) -> tuple[bytes, int]:
        self.sent.extend(batch)
        return super().batch_command(batch)


@pytest.fixture
def outage_redis(redis_server: RedisEndpoint, tmp_path: Path) -> Iterator[RestartableRedis]:
    """Its own server, never the session's (``redis_server`` only skips the test without redis-server)."""
    server = RestartableRedis(tmp_path / "outage")
    yield server
    server.stop()


@pytest.fixture
async def clients(outage_redis: RestartableRedis) -> AsyncIterator[Callable[[Role], Redis]]:
    made: list[Redis] = []

    def make(role: Role) -> Redis:
        made.append(connect(outage_redis.settings, role, endpoint=outage_redis.endpoint))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def publishers(
    outage_redis: RestartableRedis, clients: Callable[[Role], Redis]
) -> AsyncIterator[Callable[..., Publisher]]:
    """``publishers(Role.PRODUCER)``: a started publisher. A test that fails mid-outage must not hang in
    ``close()`` (it waits for Redis), so teardown bounds it."""
    made: list[Publisher] = []

    def make(role: Role, cls: type[Publisher] = Publisher) -> Publisher:
        settings = outage_redis.settings
        made.append(cls(clients(role), settings.names, StreamLimits(), OUTAGE_BUS))
        made[-1].start()
        return made[-1]

    yield make
    for publisher in made:
        with contextlib.suppress(TimeoutError, PublishError):
            async with asyncio.timeout(5):
                await publisher.close()


def publish_now(publisher: Publisher, model: WireModel) -> None:
    """Drive ``publish()`` once: it must finish without suspending (no I/O, no waiting for Redis)."""
    coroutine = publisher.publish(model)
    with pytest.raises(StopIteration):
        coroutine.send(None)


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)


async def within_bound(awaitable: Awaitable[None]) -> None:
    async with asyncio.timeout(WAIT_S):
        await awaitable


async def redis_goes_away(publisher: Publisher, server: RestartableRedis) -> None:
    """Stop Redis and publish a probe trade, whose write is how the publisher finds out."""
    assert publisher.connected
    server.stop()
    await publisher.publish(samples.trade(trade_id="probe"))
    await eventually(lambda: not publisher.connected)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sent_model(entry: BufferedEntry) -> Snapshot | Trade:
    """Decode an entry as it went on the wire (its fields are RESP bulk strings)."""
    reader = hiredis.Reader()
    reader.feed(b"*%d\r\n" % (2 * entry.pairs) + entry.bulks)
    items = reader.gets()
    fields = dict(zip(items[::2], items[1::2], strict=True))
    return decode_as(Snapshot if entry.cache_key is not None else Trade, fields)


@pytest.mark.integration
async def test_an_outage_never_blocks_and_each_book_ends_on_its_newest_snapshot(
    outage_redis: RestartableRedis, clients: Callable[[Role], Redis], publishers: Callable[..., Publisher]
) -> None:
    admin = clients(Role.ADMIN)
    publisher = publishers(Role.PRODUCER)
    await publisher.publish(samples.trade(trade_id="before"))
    await publisher.flush()
    await redis_goes_away(publisher, outage_redis)
    dropped_metric = metric("triarb_bus_dropped_entries_total", stream="md.trade", reason="overflow")
    conflated_metric = metric("triarb_bus_conflated_snapshots_total", stream="md.snapshot")

    # 10 x high water = 200 snapshots, 40 per book (book = seq % 5), and a trade after each round of 5 books.
    for seq in range(10 * HIGH_WATER):
        publish_now(publisher, samples.snapshot(BOOKS[seq % 5], book_seq=seq))
        if seq % 5 == 4:
            publish_now(publisher, samples.trade(trade_id=f"t{seq}"))
    assert publisher.overflowing

    outage_redis.restart()
    await within_bound(publisher.flush())

    # The newest snapshot of book i is the last round's: seq 195 + i. 200 published - 5 written = 195 conflated.
    newest = {BOOKS[i]: samples.snapshot(BOOKS[i], book_seq=195 + i) for i in range(5)}
    snapshots = [decode_as(Snapshot, fields) for _, fields in await admin.xrange("md.snapshot")]
    assert sorted(snapshots, key=lambda s: s.symbol) == sorted(newest.values(), key=lambda s: s.symbol)
    assert publisher.conflated == 195
    for symbol, snapshot in newest.items():
        cached = await admin.get(outage_redis.settings.names.book_key("coinbase", symbol))
        assert decode_json_as(Snapshot, cached) == snapshot

    # Unwritten before the flood: the probe (1). Snapshots s0..s15 and trades t4, t9, t14 fill it to 20;
    # s16 finds 20 unwritten: overflow, the 16 buffered snapshots conflate to 5 (one per book) -> 9 unwritten
    # (probe + 3 trades + 5 snapshots). Further snapshots replace their book's, so only trades add: of the 37
    # trades t19..t199, 11 fit (9 -> 20) and 26 are dropped. Written: before, probe, t4, t9, t14 + 11 = 16.
    trades = await admin.xrange("md.trade")
    assert publisher.dropped == {"md.trade": 26}
    assert metric("triarb_bus_dropped_entries_total", stream="md.trade", reason="overflow") == dropped_metric + 26
    assert metric("triarb_bus_conflated_snapshots_total", stream="md.snapshot") == conflated_metric + 195
    assert len(trades) == 16
    assert len(trades) - 1 + publisher.dropped["md.trade"] == 1 + 40  # after "before": probe + 40 published
    assert [fields[b"trade_id"] for _, fields in trades[:6]] == [b"before", b"probe", b"t4", b"t9", b"t14", b"t19"]
    assert not publisher.overflowing  # caught up


@pytest.mark.integration
async def test_after_reconnect_the_newest_snapshot_of_each_book_goes_out_first(
    outage_redis: RestartableRedis, clients: Callable[[Role], Redis], publishers: Callable[..., Publisher]
) -> None:
    admin = clients(Role.ADMIN)
    publisher = publishers(Role.PRODUCER, WireRecorder)
    assert isinstance(publisher, WireRecorder)
    for i, book in enumerate(BOOKS):
        await publisher.publish(samples.snapshot(book, book_seq=i))
    await publisher.flush()
    await redis_goes_away(publisher, outage_redis)
    publisher.sent.clear()  # from here on: only what reaches the restarted server

    for round_ in range(1, 9):  # 8 rounds: a snapshot of every book (book_seq = 10 * round + i), one trade
        for i, book in enumerate(BOOKS):
            publish_now(publisher, samples.snapshot(book, book_seq=10 * round_ + i))
        publish_now(publisher, samples.trade(trade_id=f"r{round_}"))
    assert publisher.overflowing
    outage_redis.restart()
    await within_bound(publisher.flush())

    sent = [sent_model(entry) for entry in publisher.sent]
    newest = [samples.snapshot(book, book_seq=80 + i) for i, book in enumerate(BOOKS)]  # round 8
    assert sorted(sent[:5], key=lambda s: s.symbol) == sorted(newest, key=lambda s: s.symbol)
    later = sent[5:]
    assert all(isinstance(model, Trade) for model in later)  # no older snapshot after a book's newest
    # The rest follows in publish order. Round 4's second snapshot found 20 unwritten (probe, 16 snapshots,
    # 3 trades) and started the overflow: 16 snapshots -> 5, so all 9 trades fit (at most 14 unwritten).
    assert [model.trade_id for model in later if isinstance(model, Trade)] == ["probe", *(f"r{n}" for n in range(1, 9))]

    # The stream agrees: after the 5 snapshots from before the outage come the 5 newest, in send order.
    streamed = [decode_as(Snapshot, fields) for _, fields in await admin.xrange("md.snapshot")]
    assert streamed[:5] == [samples.snapshot(book, book_seq=i) for i, book in enumerate(BOOKS)]
    assert streamed[5:] == sent[:5]


@pytest.mark.integration
async def test_opportunities_are_never_dropped_they_wait_for_redis(
    outage_redis: RestartableRedis, clients: Callable[[Role], Redis], publishers: Callable[..., Publisher]
) -> None:
    admin = clients(Role.ADMIN)
    publisher = publishers(Role.ADMIN)  # the one user that may write both md.* and strategy.*
    await publisher.publish(samples.trade(trade_id="before"))
    await publisher.flush()
    await redis_goes_away(publisher, outage_redis)
    for seq in range(10 * HIGH_WATER):
        publish_now(publisher, samples.snapshot(BOOKS[seq % 5], book_seq=seq))
    assert publisher.overflowing

    # Unwritten: the probe + 5 snapshots (one per book) = 6; opportunities 0..13 bring it to 20, which is
    # allowed; the 15th (21 unwritten) waits for Redis, while a trade published meanwhile is dropped.
    for n in range(14):
        publish_now(publisher, samples.opportunity(id=f"opp-{n}"))
    waiting = asyncio.ensure_future(publisher.publish(samples.opportunity(id="opp-14")))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not waiting.done()
    publish_now(publisher, samples.trade(trade_id="meanwhile"))
    assert publisher.dropped == {"md.trade": 1}

    outage_redis.restart()
    await within_bound(waiting)
    await within_bound(publisher.flush())
    opportunities = await admin.xrange("strategy.opportunity")
    assert [fields[b"id"] for _, fields in opportunities] == [f"opp-{n}".encode() for n in range(15)]


@pytest.mark.integration
async def test_a_snapshot_waiting_for_room_is_released_when_redis_turns_out_to_be_away(
    outage_redis: RestartableRedis, publishers: Callable[..., Publisher]
) -> None:
    outage_redis.stop()
    publisher = publishers(Role.PRODUCER)  # it has not tried to connect yet: Redis is not known to be away
    for seq in range(HIGH_WATER):
        publish_now(publisher, samples.snapshot(BOOKS[seq % 5], book_seq=seq))
    waiting = asyncio.ensure_future(publisher.publish(samples.snapshot(BOOKS[0], book_seq=HIGH_WATER)))
    await asyncio.sleep(0)
    assert not waiting.done()  # backpressure, as while Redis answers

    await within_bound(waiting)  # the failed connection attempt releases it
    publish_now(publisher, samples.snapshot(BOOKS[1], book_seq=HIGH_WATER + 1))
    assert publisher.overflowing
    # 22 snapshots of 5 books conflate to 5.
    assert publisher.buffered == 5 and publisher.conflated == 17


@pytest.mark.integration
async def test_close_while_redis_is_away_waits_and_a_caller_timeout_counts_what_was_left(
    outage_redis: RestartableRedis, publishers: Callable[..., Publisher]
) -> None:
    publisher = publishers(Role.PRODUCER)
    await publisher.publish(samples.trade(trade_id="before"))
    await publisher.flush()
    await redis_goes_away(publisher, outage_redis)
    publish_now(publisher, samples.health())
    trades_before = metric("triarb_bus_dropped_entries_total", stream="md.trade", reason="closed")
    health_before = metric("triarb_bus_dropped_entries_total", stream="md.health", reason="closed")

    with pytest.raises(TimeoutError):  # close() flushes, and the flush waits for Redis: the caller bounds it
        async with asyncio.timeout(0.2):
            await publisher.close()

    # Left unwritten: the probe trade and the health record, each counted on its stream.
    assert metric("triarb_bus_dropped_entries_total", stream="md.trade", reason="closed") == trades_before + 1
    assert metric("triarb_bus_dropped_entries_total", stream="md.health", reason="closed") == health_before + 1


def entry(seq: int, book: str | None) -> BufferedEntry:
    """A buffered snapshot of ``book``, or a trade when ``book`` is None; only seq and cache key matter."""
    if book is None:
        return BufferedEntry(seq, "md.trade", 1000, None, 0, b"")
    return BufferedEntry(seq, "md.snapshot", 1000, f"md:book:coinbase:{book}", 0, b"")


def test_conflate_keeps_the_newest_snapshot_per_book_and_the_other_entries_in_order() -> None:
    latest: dict[str, BufferedEntry] = {}
    buffer = [entry(0, "A"), entry(1, None), entry(2, "B"), entry(3, "A"), entry(4, None), entry(5, "A")]

    kept, superseded = conflate(buffer, latest)

    assert [e.seq for e in kept] == [1, 4]
    assert {key: e.seq for key, e in latest.items()} == {"md:book:coinbase:A": 5, "md:book:coinbase:B": 2}
    assert sorted(e.seq for e in superseded) == [0, 3]


def test_conflate_drops_requeued_snapshots_older_than_the_kept_one() -> None:
    # A batch lost in flight comes back after newer snapshots were kept: it must not overwrite them.
    latest = {"md:book:coinbase:A": entry(10, "A")}
    requeued = [entry(2, "A"), entry(3, "C"), entry(4, None)]

    kept, superseded = conflate(requeued, latest)

    assert [e.seq for e in kept] == [4]
    assert {key: e.seq for key, e in latest.items()} == {"md:book:coinbase:A": 10, "md:book:coinbase:C": 3}
    assert [e.seq for e in superseded] == [2]


def test_reconnect_delays_are_jittered_below_a_doubling_ceiling_capped_at_two_seconds() -> None:
    rng = random.Random(7)
    ceilings = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]  # 0.05 s doubling per attempt, capped at 2 s
    for attempt, ceiling in enumerate(ceilings):
        delays = [reconnect_delay_s(attempt, rng) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # full jitter spans the range
    assert 0.0 <= reconnect_delay_s(100_000, rng) <= 2.0  # a day-long outage does not overflow the float
