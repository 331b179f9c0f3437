"""Persistence: every stream entry in the NDJSON archive exactly once and in order, across kills, restarts,
standby takeovers, failing writes and torn lines; plain XREAD from the files' own cursor, no consumer group."""

from __future__ import annotations

import asyncio
import errno
import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus import Delivery, Publisher
from common.config import Role, Settings
from common.markets import register_markets
from common.redis import RedisEndpoint
from consumers.persistence import PersistenceWriter, RotatingFile
from schemas import Snapshot, Subject, Trade
from schemas.codec import encode_dict
from tests import samples
from tests.processes import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def archive_lines(directory: Path, subject: str) -> list[bytes]:
    """Every line of a subject's files, oldest first, gzipped ones included."""
    lines: list[bytes] = []
    files = RotatingFile(directory / subject, subject, max_bytes=1, max_age_s=1, gzip_rotated=False).numbered()
    for path in files:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        lines.extend(line for line in data.split(b"\n") if line)
    return lines


def persisted_ids(directory: Path, subject: str) -> list[str]:
    return [orjson.loads(line)["_id"] for line in archive_lines(directory, subject)]


async def stream_ids(admin: Redis, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await admin.xrange(stream)]


def persist_process(redis_server: RedisEndpoint, directory: Path, tmp_path: Path,
                    *options: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_")}
    env |= {"REDIS_URL": redis_server.url(), "TRIARB_REDIS_PASSWORDS__PERSISTENCE":
            redis_server.passwords[Role.PERSISTENCE], "TRIARB_BUS__READ_COUNT": "50", "TRIARB_VAR_DIR": str(tmp_path),
            "TRIARB_SERVICE_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "triarb.cli", "persist", "--dir", str(directory), *options],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=(tmp_path / "persist.log").open("a"),
                            text=True)


def lock_holder(directory: Path) -> str:
    return (directory / ".lock").read_text().strip()


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave files world-readable: what is private then is private by our doing."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


LISTED = ["BTC-USD", "ETH-USD", "ETH-BTC", "SOL-USD"]


@pytest.fixture(autouse=True)
async def registered_catalogs(admin: Redis, settings: Settings) -> None:
    """Producers register what their venue lists before they publish; these tests publish as them."""
    for venue in ("coinbase", "kraken"):
        await register_markets(admin, settings.names, venue, LISTED)


async def publish(redis: Redis, settings: Settings, *models: object) -> None:
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for model in models:
            await pub.publish(model)  # type: ignore[arg-type]


async def test_killed_and_restarted_worker_writes_every_entry_exactly_once(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, redis_server: RedisEndpoint, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    await publish(connect_as(Role.PRODUCER), settings, *(samples.snapshot(book_seq=seq) for seq in range(3000)))
    first = persist_process(redis_server, directory, tmp_path)
    assert wait_until(lambda: len(persisted_ids(directory, "md.snapshot")) >= 500, timeout_s=30)
    os.kill(first.pid, signal.SIGKILL)  # mid-stream: the last batch may be half on disk
    first.wait(timeout=10)

    second = persist_process(redis_server, directory, tmp_path)
    try:
        assert wait_until(lambda: len(persisted_ids(directory, "md.snapshot")) >= 3000, timeout_s=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)

    assert persisted_ids(directory, "md.snapshot") == await stream_ids(admin, "md.snapshot")  # once, in order
    assert await admin.llen("hist:coinbase:BTC-USD") == 100
    assert await admin.xinfo_groups("md.snapshot") == []  # plain XREAD: no group left behind for anyone to move


async def test_a_standby_takes_over_at_once_when_the_writer_is_killed(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, redis_server: RedisEndpoint, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    await publish(connect_as(Role.PRODUCER), settings, *(samples.trade(trade_id=str(n)) for n in range(3000)))
    active = persist_process(redis_server, directory, tmp_path)
    assert wait_until(lambda: (directory / ".lock").is_file() and lock_holder(directory) == str(active.pid))
    standby = persist_process(redis_server, directory, tmp_path, "--standby")
    try:
        assert wait_until(lambda: len(persisted_ids(directory, "md.trade")) >= 500, timeout_s=30)
        assert lock_holder(directory) == str(active.pid)  # the standby waits; it writes nothing meanwhile
        os.kill(active.pid, signal.SIGKILL)
        active.wait(timeout=10)

        assert wait_until(lambda: lock_holder(directory) == str(standby.pid), timeout_s=10)
        assert wait_until(lambda: len(persisted_ids(directory, "md.trade")) >= 3000, timeout_s=60)
    finally:
        standby.send_signal(signal.SIGTERM)
        standby.wait(timeout=10)

    assert persisted_ids(directory, "md.trade") == await stream_ids(admin, "md.trade")


async def test_a_restarted_writer_reads_on_from_the_last_id_on_disk_and_files_rotate(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    producer, redis = connect_as(Role.PRODUCER), connect_as(Role.PERSISTENCE)
    await publish(producer, settings, *(samples.trade(trade_id=str(n)) for n in range(200)))
    first = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096)
    await first.run(burst=True)
    first.close()
    await publish(producer, settings, *(samples.trade(trade_id=str(n)) for n in range(200, 250)))

    again = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096)
    assert again.positions()["md.trade"] == persisted_ids(tmp_path, "md.trade")[-1]
    await again.run(burst=True)
    again.close()

    assert (first.written, again.written, again.skipped_duplicates) == (200, 50, 0)
    assert persisted_ids(tmp_path, "md.trade") == await stream_ids(admin, "md.trade")
    files = RotatingFile(tmp_path / "md.trade", "md.trade", max_bytes=1, max_age_s=1, gzip_rotated=False).files()
    assert len(files) > 1  # 4 KiB files: rotated


async def test_a_write_failing_midway_is_retried_from_the_same_positions_and_what_reached_disk_is_skipped(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, *(samples.snapshot(book_seq=seq) for seq in range(120)))
    writer = PersistenceWriter(settings.model_copy(update={"bus": settings.bus.model_copy(update={"read_count": 50})}),
                               connect_as(Role.PERSISTENCE), tmp_path)
    file = writer.files["md.snapshot"]
    append = file._append
    lines_before_failure: list[int] = []

    def disk_fills_up_once(data: bytes) -> None:
        if lines_before_failure or not data:
            append(data)
            return
        half = data[: len(data) // 2]  # the kernel took half the batch, cut mid-line, then the disk was full
        append(half)
        lines_before_failure.append(half.count(b"\n"))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file, "_append", disk_fills_up_once)
    await writer.run(burst=True)
    writer.close()

    assert 0 < lines_before_failure[0] < 50
    assert writer.skipped_duplicates == lines_before_failure[0]  # re-read, found on disk, not written again
    assert persisted_ids(tmp_path, "md.snapshot") == await stream_ids(admin, "md.snapshot")  # the torn line is gone


async def test_a_redis_fault_after_the_files_were_written_is_waited_out_without_duplicates(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, *(samples.snapshot(book_seq=seq) for seq in range(30)))
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    handle = writer.handle
    failed = False

    async def history_write_loses_redis_once(batch: list[Delivery]) -> None:
        nonlocal failed
        await handle(batch)
        if not failed:  # the lines are on disk; the quick-history write then lost its connection
            failed = True
            raise RedisConnectionError("Connection reset by peer")

    writer.handle = history_write_loses_redis_once  # type: ignore[method-assign]
    await writer.run(burst=True)
    writer.close()

    assert writer.link.reconnects == 1 and writer.link.up
    assert writer.skipped_duplicates == 30
    assert persisted_ids(tmp_path, "md.snapshot") == await stream_ids(admin, "md.snapshot")


async def test_a_torn_last_line_is_cut_and_its_entry_written_again(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, *(samples.health(ts=samples.T0_MS + n) for n in range(10)))
    redis = connect_as(Role.PERSISTENCE)
    first = PersistenceWriter(settings, redis, tmp_path)
    await first.run(burst=True)
    first.close()
    [path] = RotatingFile(tmp_path / "md.health", "md.health", max_bytes=1, max_age_s=1, gzip_rotated=False).files()
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])  # a crash mid-write: the last line without its end

    restarted = PersistenceWriter(settings, redis, tmp_path)
    await restarted.run(burst=True)
    restarted.close()

    assert restarted.written == 1
    assert path.read_bytes() == whole
    assert persisted_ids(tmp_path, "md.health") == await stream_ids(admin, "md.health")


async def test_gzipped_files_are_private_and_still_hold_the_cursor(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path, permissive_umask: None
) -> None:
    producer, redis = connect_as(Role.PRODUCER), connect_as(Role.PERSISTENCE)
    await publish(producer, settings, *(samples.trade(trade_id=str(n)) for n in range(200)))
    first = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096, gzip_rotated=True)
    await first.run(burst=True)
    first.close()
    newest = RotatingFile(tmp_path / "md.trade", "md.trade", max_bytes=1, max_age_s=1, gzip_rotated=False).files()
    assert len(newest) == 1  # every older file is gzipped
    newest[0].write_bytes(b"")  # a crash right after a rotation: the new file is still empty
    await publish(producer, settings, *(samples.trade(trade_id=str(n)) for n in range(200, 210)))

    again = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096, gzip_rotated=True)
    await again.run(burst=True)
    again.close()

    assert persisted_ids(tmp_path, "md.trade") == await stream_ids(admin, "md.trade")  # not from 0 again
    for path in tmp_path.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path
        assert not path.is_dir() or path.stat().st_mode & 0o777 == 0o700, path


async def test_an_undecodable_entry_is_dead_lettered_and_the_archive_goes_on(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    await admin.xadd("md.health", encode_dict(samples.health()))
    garbage = (await admin.xadd("md.health", {"v": "1", "exchange": "kraken"})).decode()
    await admin.xadd("md.health", encode_dict(samples.health(ts=samples.T0_MS + 1)))
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await writer.run(burst=True)
    writer.close()

    assert len(persisted_ids(tmp_path, "md.health")) == 2 and garbage not in persisted_ids(tmp_path, "md.health")
    [(_, record)] = await admin.xrange("deadletter")
    assert (record[b"stream"], record[b"id"], record[b"rejected_by"]) == (b"md.health", garbage.encode(),
                                                                          b"persistence")


async def test_every_subject_is_archived_the_control_stream_included(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, samples.snapshot(), samples.trade(), samples.health())
    await publish(connect_as(Role.DETECTOR), settings, samples.opportunity(), samples.control())
    await publish(connect_as(Role.DETECTOR), settings, samples.episode())  # its own EVAL: another ACL selector
    await publish(connect_as(Role.PAPER), settings, samples.fill())
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await writer.run(burst=True)
    writer.close()

    for subject in Subject:
        [line] = archive_lines(tmp_path, subject.value)
        assert orjson.loads(line)["v"] >= 1, subject


async def test_stop_ends_a_waiting_writer_within_read_block_ms(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    stop = asyncio.Event()
    running = asyncio.create_task(writer.run(stop))
    await asyncio.sleep(0.2)  # blocked in XREAD on empty streams
    stopped_at = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, timeout=5)
    writer.close()
    assert time.monotonic() - stopped_at <= settings.bus.read_block_ms / 1000 + 0.25


UNTRUSTED = {
    "unknown venue": (samples.snapshot(exchange="bogusvenue"), "unknown venue 'bogusvenue'"),
    "market the venue does not list": (samples.snapshot(symbol="FOO-BAR"), "coinbase lists no market 'FOO-BAR'"),
    "crossed 1e300 book": (samples.snapshot(bids=[(1e300, 1.0, 1.0)], asks=[(1.0, 1.0, 1.0)]),
                           "bids[0] price 1e+300 outside"),
    "crossed book": (samples.snapshot(bids=[(60_001.0, 1.0, 1.0)], asks=[(60_000.0, 1.0, 1.0)]), "crossed book"),
    "bids in the wrong order": (samples.snapshot(bids=[(1.0, 1.0, 1.0), (2.0, 1.0, 2.0)], asks=[]), "is not below"),
    "wrong running totals": (samples.snapshot(asks=[(60_002.0, 1.0, 1.0), (60_003.0, 1.0, 5.0)]), "running total"),
    "empty book": (samples.snapshot(bids=[], asks=[]), "empty book"),
    "trade in an unlisted market": (samples.trade(symbol="FOO-BAR"), "lists no market 'FOO-BAR'"),
    "trade at 1e300": (samples.trade(price=1e300), "price 1e+300 above"),
}


@pytest.mark.parametrize("model, reason", UNTRUSTED.values(), ids=UNTRUSTED)
async def test_untrusted_market_data_is_dead_lettered_not_archived(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path, model: Snapshot | Trade,
    reason: str
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, model)
    good = samples.snapshot(book_seq=2) if isinstance(model, Snapshot) else samples.trade(trade_id="ok")
    await publish(connect_as(Role.PRODUCER), settings, good)
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await writer.run(burst=True)
    writer.close()

    subject = "md.snapshot" if isinstance(model, Snapshot) else "md.trade"
    assert len(archive_lines(tmp_path, subject)) == 1  # the good one
    [(_, record)] = await admin.xrange("deadletter")
    assert record[b"rejected_by"] == b"persistence" and reason in record[b"reason"].decode()
    assert await admin.keys("hist:bogusvenue:*") == [] and await admin.keys("hist:coinbase:FOO-BAR") == []


async def test_a_venue_registered_after_the_writer_read_the_catalogs_is_trusted_at_once(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    await admin.delete("md:markets:kraken")
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await publish(connect_as(Role.PRODUCER), settings, samples.snapshot())
    await writer.run(burst=True)  # reads the catalogs: kraken has none yet
    await register_markets(admin, settings.names, "kraken", LISTED)  # a kraken producer starts...
    await publish(connect_as(Role.PRODUCER), settings, samples.snapshot(exchange="kraken"))  # ...and publishes
    await writer.run(burst=True)
    writer.close()

    assert len(archive_lines(tmp_path, "md.snapshot")) == 2
    assert await admin.xlen("deadletter") == 0


async def test_a_restart_after_an_entry_longer_than_64_kib_neither_repeats_nor_skips_it(
    connect_as: Callable[..., Redis], settings: Settings, tmp_path: Path
) -> None:
    long_symbols = {venue: [f"{n:020d}-{'Q' * 20}" for n in range(1_000)] for venue in ("coinbase", "kraken")}
    await publish(connect_as(Role.CONTROL), settings, samples.control(symbols=long_symbols))
    first = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await first.run(burst=True)
    first.close()
    await publish(connect_as(Role.CONTROL), settings, samples.control())
    second = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await second.run(burst=True)
    second.close()

    lines = archive_lines(tmp_path, "strategy.ctrl.symbols")
    assert len(lines[0]) > 64 * 1024 and len(lines) == 2
    assert second.skipped_duplicates == 0
