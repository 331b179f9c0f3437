"""Consumer groups: at-least-once, ack piggybacked on the next read, reclaim from dead workers, dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus import Delivery, GroupConsumer, Publisher
from common.config import Role, Settings
from schemas import Subject
from schemas.codec import encode_dict
from tests import samples

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """A handler that records what it saw and can be told to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.seen: list[Delivery] = []
        self.calls = 0
        self.failures_left = failures

    async def __call__(self, batch: list[Delivery]) -> None:
        self.calls += 1
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("simulated handler failure")
        self.seen.extend(batch)

    @property
    def book_seqs(self) -> list[int]:
        return [d.model.book_seq for d in self.seen]  # type: ignore[attr-defined]


async def publish_snapshots(redis: Redis, settings: Settings, count: int) -> None:
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for seq in range(count):
            await pub.publish(samples.snapshot(book_seq=seq))


def worker(redis: Redis, settings: Settings, handler: Recorder, **bus: int) -> GroupConsumer:
    return GroupConsumer(
        redis, settings.names, settings.bus.model_copy(update={"read_count": 50, **bus}),
        group="detector", subjects=[Subject.SNAPSHOT], handler=handler, start_id="0",
    )


async def pending_count(admin: Redis, stream: str = "md.snapshot", group: str = "detector") -> int:
    return int((await admin.xpending(stream, group))["pending"])


async def test_two_workers_share_the_stream_and_every_entry_is_handled_and_acked(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 500)
    first, second = Recorder(), Recorder()
    await asyncio.gather(
        worker(connect_as(Role.DETECTOR), settings, first).run(burst=True),
        worker(connect_as(Role.DETECTOR), settings, second).run(burst=True),
    )
    assert sorted(first.book_seqs + second.book_seqs) == list(range(500))
    assert await pending_count(admin) == 0


async def test_group_creation_is_idempotent(connect_as: Callable[..., Redis], settings: Settings) -> None:
    consumer = worker(connect_as(Role.DETECTOR), settings, Recorder())
    await consumer.ensure_groups()
    await consumer.ensure_groups()  # BUSYGROUP counts as success


async def test_ack_of_each_batch_travels_with_the_next_read(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 200)
    detector = connect_as(Role.DETECTOR)
    consumer = worker(detector, settings, Recorder())
    await consumer.ensure_groups()
    await admin.config_resetstat()
    pipelines = 0
    make_pipeline = detector.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)  # type: ignore[arg-type]

    detector.pipeline = counting_pipeline  # type: ignore[method-assign]
    await consumer.run(burst=True)

    stats = await admin.info("commandstats")
    reads = stats["cmdstat_xreadgroup"]["calls"]
    # 1 read of our own pending entries at start (none), then 200 entries / 50 per read = 4 batches + 1 empty
    # read; 4 XACKs, each in the pipeline of the next read.
    assert reads == 6
    assert stats["cmdstat_xack"]["calls"] == 4
    assert pipelines == reads
    assert await pending_count(admin) == 0


async def test_the_workers_raw_reads_leave_the_shared_clients_xreadgroup_parsed(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 3)
    detector = connect_as(Role.DETECTOR)
    handler = Recorder()
    await worker(detector, settings, handler).run(burst=True)
    await detector.xgroup_create("md.snapshot", "other", id="0")

    [[stream, [(entry_id, fields)]]] = await detector.xreadgroup("other", "c", {"md.snapshot": ">"}, count=1)

    assert handler.book_seqs == [0, 1, 2]
    assert stream == b"md.snapshot" and fields[b"book_seq"] == b"0"  # redis-py's own parse, as before


async def test_failed_batch_stays_pending_and_is_redelivered(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 10)
    handler = Recorder(failures=1)
    await worker(connect_as(Role.DETECTOR), settings, handler, claim_idle_ms=0).run(burst=True)

    assert handler.calls == 2
    assert handler.book_seqs == list(range(10))
    assert await pending_count(admin) == 0


async def test_entry_failing_beyond_max_deliveries_is_dead_lettered_with_its_reason(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 3)
    handler = Recorder(failures=10**6)
    consumer = worker(connect_as(Role.DETECTOR), settings, handler, claim_idle_ms=0, max_deliveries=3)
    await consumer.run(burst=True)

    # delivered 3 times (1 read + 2 reclaims), the 4th reclaim exceeds max_deliveries=3
    assert handler.calls == 3
    assert await pending_count(admin) == 0
    dead = await admin.xrange("deadletter")
    original = await admin.xrange("md.snapshot")
    assert [f[b"id"] for _, f in dead] == [entry_id for entry_id, _ in original]
    first = dead[0][1]
    assert first[b"stream"] == b"md.snapshot"
    assert first[b"deliveries"] == b"4"
    assert b"max_deliveries=3" in first[b"reason"]
    assert orjson.loads(first[b"fields"])["book_seq"] == "0"


async def test_undecodable_entries_are_dead_lettered_and_the_valid_ones_handled(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    good = encode_dict(samples.snapshot(book_seq=1))
    await admin.xadd("md.snapshot", good)
    await admin.xadd("md.snapshot", good | {"v": "2"})
    await admin.xadd("md.snapshot", {"garbage": "yes"})
    handler = Recorder()
    await worker(connect_as(Role.DETECTOR), settings, handler).run(burst=True)

    assert handler.book_seqs == [1]
    reasons = [f[b"reason"].decode() for _, f in await admin.xrange("deadletter")]
    assert reasons == [
        "Snapshot: v=2 is not supported (this build reads [1])",
        "Snapshot: entry has no 'v' field",
    ]
    assert await pending_count(admin) == 0


async def test_stop_finishes_and_acks_the_batch_in_hand_then_reads_no_more(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 100)
    stop = asyncio.Event()
    seen: list[Delivery] = []

    async def handle_then_stop(batch: list[Delivery]) -> None:
        stop.set()  # as SIGTERM would, mid-batch
        await asyncio.sleep(0)
        seen.extend(batch)

    consumer = GroupConsumer(
        connect_as(Role.DETECTOR), settings.names, settings.bus.model_copy(update={"read_count": 30}),
        group="detector", subjects=[Subject.SNAPSHOT], handler=handle_then_stop, start_id="0",
    )
    await consumer.run(stop)

    assert len(seen) == 30
    assert await pending_count(admin) == 0
    groups = await admin.xinfo_groups("md.snapshot")
    assert groups[0]["lag"] == 70


async def test_entries_held_by_a_killed_worker_process_are_claimed_by_another(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, redis_server: object
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 25)
    url = redis_server.url(Role.DETECTOR)  # type: ignore[attr-defined]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.group_worker_process", url, "detector"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "HOLDING 10"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert await pending_count(admin) == 10

    survivor = Recorder()
    await worker(connect_as(Role.DETECTOR), settings, survivor, claim_idle_ms=0).run(burst=True)

    assert sorted(survivor.book_seqs) == list(range(25))
    assert await pending_count(admin) == 0


async def test_idle_consumers_with_nothing_pending_are_removed_and_others_kept(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    detector = connect_as(Role.DETECTOR)
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 10)
    live = worker(detector, settings, Recorder())
    await live.ensure_groups()
    done = await detector.xreadgroup("detector", "gone-worker", {"md.snapshot": ">"}, count=3)
    await detector.xack("md.snapshot", "detector", *[entry_id for entry_id, _ in done[0][1]])
    await detector.xreadgroup("detector", "holding-worker", {"md.snapshot": ">"}, count=2)  # never acked
    await asyncio.sleep(0.2)

    assert await live.remove_idle_consumers(min_idle_ms=100) == 1

    names = {c["name"] for c in await admin.xinfo_consumers("md.snapshot", "detector")}
    assert names == {b"holding-worker"}  # its pending entries wait for a reclaim; the live worker never read


async def test_a_redis_fault_inside_the_handler_is_waited_out_and_the_batch_redone_at_once(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await publish_snapshots(connect_as(Role.PRODUCER), settings, 200)
    recorder = Recorder()
    failed = False

    async def hot_cache_read_fails_once(batch: list[Delivery]) -> None:
        nonlocal failed
        if not failed:  # e.g. the detector's hot-cache read while Redis restarts
            failed = True
            raise RedisConnectionError("Connection reset by peer")
        await recorder(batch)

    consumer = GroupConsumer(
        connect_as(Role.DETECTOR), settings.names, settings.bus.model_copy(update={"read_count": 50}),
        group="detector", subjects=[Subject.SNAPSHOT], handler=hot_cache_read_fails_once, start_id="0",
    )
    await consumer.run(burst=True)

    # the failed batch came back from this worker's own pending list, not after a 30 s reclaim
    assert recorder.book_seqs == list(range(200))
    assert consumer.link.reconnects == 1 and consumer.link.up
    assert await pending_count(admin) == 0
