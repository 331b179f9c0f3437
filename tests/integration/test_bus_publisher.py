"""Publisher: batches many entries per round trip, writes the hot cache with them, loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from common.bus import Publisher, PublishError
from common.config import BusSettings, Role, Settings, StreamLimits
from schemas import Snapshot, Subject
from schemas.codec import decode_json_as
from tests import samples

pytestmark = pytest.mark.integration


@pytest.fixture
async def producer(connect_as: Callable[..., Redis]) -> Redis:
    return connect_as(Role.PRODUCER)


@pytest.fixture
async def publisher(producer: Redis, settings: Settings) -> AsyncIterator[Publisher]:
    async with Publisher(producer, settings.names, settings.streams, settings.bus) as pub:
        yield pub


async def command_calls(admin: Redis, command: str) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_thousand_snapshots_take_two_round_trips_not_a_thousand(
    publisher: Publisher, admin: Redis
) -> None:
    await admin.config_resetstat()
    for seq in range(1000):
        await publisher.publish(samples.snapshot(book_seq=seq))
    await publisher.flush()

    # batch size 512 -> 512 + 488 entries; each batch is one MULTI/EXEC
    assert publisher.flushes == 2
    assert await command_calls(admin, "exec") == 2
    assert await command_calls(admin, "xadd") == 1000
    assert await admin.xlen("md.snapshot") == 1000


async def test_publish_below_high_water_returns_without_suspending(publisher: Publisher) -> None:
    # The hot path never awaits I/O: driving the coroutine once must finish it.
    coroutine = publisher.publish(samples.snapshot())
    with pytest.raises(StopIteration):
        coroutine.send(None)
    assert publisher.buffered == 1


async def test_hot_cache_holds_the_last_snapshot_of_each_book_and_expires(
    publisher: Publisher, admin: Redis, settings: Settings
) -> None:
    for seq in range(1, 6):
        await publisher.publish(samples.snapshot("BTC-USD", book_seq=seq))
        await publisher.publish(samples.snapshot("ETH-USD", book_seq=seq * 10))
    await publisher.flush()

    btc = await admin.get(settings.names.book_key("coinbase", "BTC-USD"))
    eth = await admin.get(settings.names.book_key("coinbase", "ETH-USD"))
    assert decode_json_as(Snapshot, btc) == samples.snapshot("BTC-USD", book_seq=5)
    assert decode_json_as(Snapshot, eth) == samples.snapshot("ETH-USD", book_seq=50)
    ttl_ms = await admin.pttl(settings.names.book_key("coinbase", "BTC-USD"))
    assert 0 < ttl_ms <= settings.bus.hot_cache_ttl_ms


async def test_a_hot_cache_key_of_another_type_is_replaced_not_an_error(
    publisher: Publisher, admin: Redis, settings: Settings
) -> None:
    """A hash left by a version that kept books as hashes: the next snapshot of that book replaces it."""
    key = settings.names.book_key("coinbase", "BTC-USD")
    await admin.hset(key, mapping={"v": "1", "symbol": "BTC-USD"})
    await publisher.publish(samples.snapshot("BTC-USD", book_seq=7))
    await publisher.flush()
    assert decode_json_as(Snapshot, await admin.get(key)) == samples.snapshot("BTC-USD", book_seq=7)


async def test_entries_reach_each_stream_in_publish_order(publisher: Publisher, admin: Redis) -> None:
    await publisher.publish(samples.snapshot(book_seq=1))
    await publisher.publish(samples.trade(trade_id="a"))
    await publisher.publish(samples.snapshot(book_seq=2))
    await publisher.publish(samples.trade(trade_id="b"))
    await publisher.publish(samples.health())
    await publisher.flush()

    snapshots = await admin.xrange("md.snapshot")
    trades = await admin.xrange("md.trade")
    assert [fields[b"book_seq"] for _, fields in snapshots] == [b"1", b"2"]
    assert [fields[b"trade_id"] for _, fields in trades] == [b"a", b"b"]
    assert await admin.xlen("md.health") == 1


async def test_streams_are_trimmed_to_their_approximate_maxlen(
    producer: Redis, admin: Redis, settings: Settings
) -> None:
    limits = StreamLimits(snapshot=100)
    async with Publisher(producer, settings.names, limits, settings.bus) as pub:
        for seq in range(2000):
            await pub.publish(samples.snapshot(book_seq=seq))
    # MAXLEN ~ trims whole radix-tree nodes (100 entries each by default), so the length overshoots a bit.
    assert 100 <= await admin.xlen("md.snapshot") < 300


async def test_small_batches_flush_after_the_linger_without_an_explicit_flush(
    publisher: Publisher, admin: Redis
) -> None:
    await publisher.publish(samples.trade())
    reply = await admin.xread({"md.trade": "0"}, block=5000)
    assert len(reply[0][1]) == 1


async def test_an_entry_that_finds_the_wire_idle_is_sent_at_once_not_after_the_linger(
    producer: Redis, admin: Redis, settings: Settings
) -> None:
    slow_linger = settings.bus.model_copy(update={"publish_linger_ms": 60_000})
    async with Publisher(producer, settings.names, settings.streams, slow_linger) as publisher:
        for trade_id in ("first", "second", "third"):  # the 2nd and 3rd wait only for the reply before them
            await publisher.publish(samples.trade(trade_id=trade_id))
            reply = await admin.xread({"md.trade": "0"}, block=5_000, count=10)
            assert reply and reply[0][1][-1][1][b"trade_id"] == trade_id.encode()


async def test_publishing_survives_the_script_cache_being_flushed(publisher: Publisher, admin: Redis) -> None:
    await admin.script_flush()
    await publisher.publish(samples.trade())
    await publisher.flush()
    assert await admin.xlen("md.trade") == 1


async def test_lost_connection_is_retried_and_no_entry_is_lost(publisher: Publisher, admin: Redis) -> None:
    await publisher.publish(samples.trade(trade_id="before"))
    await publisher.flush()
    await admin.client_kill_filter(user="producer")
    await publisher.publish(samples.trade(trade_id="after"))
    await publisher.flush()
    assert [f[b"trade_id"] for _, f in await admin.xrange("md.trade")] == [b"before", b"after"]


async def test_redis_refusing_a_batch_raises_publish_error_with_the_reason(
    producer: Redis, admin: Redis, settings: Settings
) -> None:
    # The producer ACL user may not write strategy.* streams.
    pub = Publisher(producer, settings.names, settings.streams, BusSettings())
    pub.start()
    await pub.publish(samples.opportunity())
    with pytest.raises(PublishError, match="NOPERM|permission"):
        await pub.flush()
    with pytest.raises(PublishError):
        await pub.publish(samples.trade())
    with pytest.raises(PublishError):
        await pub.close()
    assert await admin.exists(settings.names.stream(Subject.OPPORTUNITY)) == 0


async def test_a_command_failing_inside_the_transaction_stops_the_publisher_with_the_reason(
    producer: Redis, admin: Redis, settings: Settings
) -> None:
    await admin.set("md.trade", "not a stream")  # XADD is queued fine and fails only when EXEC runs it
    pub = Publisher(producer, settings.names, settings.streams, settings.bus)
    pub.start()
    await pub.publish(samples.trade())
    with pytest.raises(PublishError, match="WRONGTYPE"):
        await pub.flush()
    with pytest.raises(PublishError):
        await pub.close()


async def test_only_a_batch_with_an_entry_written_once_per_id_runs_the_script(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await admin.config_resetstat()
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.snapshot())
        await pub.publish(samples.trade())
    async with Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.opportunity())

    assert (await command_calls(admin, "exec"), await command_calls(admin, "eval")) == (1, 1)


async def test_a_batch_run_by_the_script_writes_the_hot_cache_as_a_transaction_does(
    admin: Redis, settings: Settings
) -> None:
    """A publisher that sends snapshots and opportunities in one batch (the script) leaves the same document."""
    key = settings.names.book_key("coinbase", "BTC-USD")
    async with Publisher(admin, settings.names, settings.streams, settings.bus) as pub:
        await pub.publish(samples.snapshot(book_seq=1))
        await pub.flush()
        by_transaction = await admin.get(key)
        await pub.publish(samples.opportunity())
        await pub.publish(samples.snapshot(book_seq=1))
    assert await admin.xlen("strategy.opportunity") == 1 and await admin.xlen("md.snapshot") == 2
    assert await admin.get(key) == by_transaction
    assert decode_json_as(Snapshot, by_transaction) == samples.snapshot(book_seq=1)
    assert 0 < await admin.pttl(key) <= settings.bus.hot_cache_ttl_ms


async def test_pipelined_batches_keep_publish_order(producer: Redis, admin: Redis, settings: Settings) -> None:
    bus = settings.bus.model_copy(update={"publish_batch_size": 50})
    async with Publisher(producer, settings.names, settings.streams, bus) as pub:
        for seq in range(3000):
            await pub.publish(samples.snapshot(book_seq=seq))
            if seq % 70 == 0:
                await asyncio.sleep(0)  # let replies arrive while later batches are already sent
    seqs = [int(fields[b"book_seq"]) for _, fields in await admin.xrange("md.snapshot")]
    assert seqs == list(range(3000))
    assert pub.flushes >= 3000 // 50


async def test_publish_waits_once_more_than_high_water_entries_are_unwritten(
    producer: Redis, admin: Redis, settings: Settings
) -> None:
    bus = settings.bus.model_copy(update={"publish_batch_size": 10, "publish_high_water": 20})
    pub = Publisher(producer, settings.names, settings.streams, bus)
    pub.start()
    for seq in range(20):  # the flush task has not run yet: nothing is written
        with pytest.raises(StopIteration):
            pub.publish(samples.snapshot(book_seq=seq)).send(None)

    waiting = asyncio.ensure_future(pub.publish(samples.snapshot(book_seq=20)))
    await asyncio.sleep(0)
    assert not waiting.done()  # backpressure: the 21st entry waits for a flush

    await waiting
    await pub.close()
    assert await admin.xlen("md.snapshot") == 21


async def test_flushing_an_empty_buffer_returns_and_publishing_goes_on(publisher: Publisher, admin: Redis) -> None:
    await publisher.flush()
    await publisher.publish(samples.trade(trade_id="a"))
    await publisher.flush()
    await publisher.flush()  # nothing buffered: must not leave the flush task spinning
    await asyncio.sleep(0.01)
    await publisher.publish(samples.trade(trade_id="b"))
    await publisher.flush()
    assert [f[b"trade_id"] for _, f in await admin.xrange("md.trade")] == [b"a", b"b"]


async def test_an_opportunity_id_reaches_its_stream_once_whoever_publishes_it_and_however_often(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    first, second = samples.opportunity(id="opp-1"), samples.opportunity(id="opp-2")
    workers = [Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) for _ in range(2)]
    for worker in workers:  # two workers report the same books (and one batch repeats an id)
        async with worker:
            await worker.publish(first)
            await worker.publish(first)
            await worker.publish(second)
    ids = [fields[b"id"] for _, fields in await admin.xrange("strategy.opportunity")]
    assert ids == [b"opp-1", b"opp-2"]
    assert 0 < await admin.pttl("seen:strategy.opportunity:opp-1") <= 24 * 3600 * 1000


async def test_a_fill_is_written_once_per_sim_id(connect_as: Callable[..., Redis], admin: Redis,
                                                 settings: Settings) -> None:
    async with Publisher(connect_as(Role.PAPER), settings.names, settings.streams, settings.bus) as paper:
        await paper.publish(samples.fill())
        await paper.publish(samples.fill(ts_done=samples.T0_MS + 999))  # a redelivered opportunity, filled again
    assert await admin.xlen("strategy.fill") == 1


async def test_snapshots_and_other_subjects_are_never_deduplicated(publisher: Publisher, admin: Redis) -> None:
    for _ in range(2):
        await publisher.publish(samples.snapshot())
        await publisher.publish(samples.trade())
    await publisher.flush()
    assert (await admin.xlen("md.snapshot"), await admin.xlen("md.trade")) == (2, 2)
    assert await admin.keys("seen:*") == []
