"""Persistence: a worker killed mid-stream and restarted leaves every entry in the NDJSON files exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import Role, Settings
from common.redis import RedisEndpoint
from consumers.persistence import PersistenceWriter, RotatingFile
from tests import samples
from tests.processes import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def persisted_ids(directory: Path, subject: str) -> list[str]:
    return [orjson.loads(line)["_id"] for path in sorted((directory / subject).glob("*.ndjson"))
            for line in path.read_bytes().splitlines() if line.strip()]


def persist_process(redis_server: RedisEndpoint, directory: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_")}
    env |= {"REDIS_URL": redis_server.url(), "TRIARB_REDIS_PASSWORDS__PERSISTENCE":
            redis_server.passwords[Role.PERSISTENCE], "TRIARB_BUS__READ_COUNT": "50",
            "TRIARB_BUS__CLAIM_IDLE_MS": "200", "TRIARB_BUS__CLAIM_INTERVAL_MS": "100", "TRIARB_VAR_DIR": str(tmp_path),
            "TRIARB_SERVICE_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "triarb.cli", "persist", "--dir", str(directory)], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=(tmp_path / "persist.log").open("a"), text=True)


async def test_killed_and_restarted_worker_writes_every_entry_exactly_once(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, redis_server: RedisEndpoint, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        for seq in range(3000):
            await pub.publish(samples.snapshot(book_seq=seq))
    first = persist_process(redis_server, directory, tmp_path)
    assert wait_until(lambda: len(persisted_ids(directory, "md.snapshot")) >= 500, timeout_s=30)
    os.kill(first.pid, signal.SIGKILL)  # mid-stream: some entries written but not acknowledged
    first.wait(timeout=10)

    second = persist_process(redis_server, directory, tmp_path)
    try:
        assert wait_until(lambda: len(persisted_ids(directory, "md.snapshot")) >= 3000, timeout_s=60)
        assert wait_until(lambda: admin_pending_zero(settings), timeout_s=30)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)

    ids = persisted_ids(directory, "md.snapshot")
    stream_ids = [entry_id.decode() for entry_id, _ in await admin.xrange("md.snapshot")]
    assert ids == stream_ids  # every entry, once, in order
    assert await admin.llen("hist:coinbase:BTC-USD") == 100


def admin_pending_zero(settings: Settings) -> bool:
    from common.redis import connect_sync

    with connect_sync(settings, Role.ADMIN) as admin:
        return int(admin.xpending("md.snapshot", "persistence")["pending"]) == 0


async def test_redelivered_entries_are_skipped_and_files_rotate(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        for seq in range(200):
            await pub.publish(samples.trade(trade_id=str(seq)))
    redis = connect_as(Role.PERSISTENCE)
    writer = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096)
    await writer.consumer().run(burst=True)
    writer.close()
    again = PersistenceWriter(settings, redis, tmp_path, max_bytes=4096)  # a restart sees what is on disk
    await redis.xgroup_setid("md.trade", "persistence", "0")  # force a full redelivery
    await again.consumer().run(burst=True)
    again.close()
    assert again.written == 0 and again.skipped_duplicates == 200
    ids = persisted_ids(tmp_path, "md.trade")
    assert len(ids) == len(set(ids)) == 200
    files = RotatingFile(tmp_path / "md.trade", "md.trade", max_bytes=1, max_age_s=1, gzip_rotated=False).files()
    assert len(files) > 1  # 4 KiB files: rotated


async def test_an_entry_left_pending_by_a_killed_writer_is_written_after_restart(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as pub:
        for seq in range(10):
            await pub.publish(samples.health(ts=samples.T0_MS + seq))
    redis = connect_as(Role.PERSISTENCE)
    crashed = PersistenceWriter(settings, redis, tmp_path)
    name = crashed.consumer().name
    await crashed.consumer().ensure_groups()
    # the crash: entries delivered to this archive's consumer, the last one never written nor acknowledged
    delivered = await redis.xreadgroup("persistence", name, {"md.health": ">"}, count=10)
    await redis.xack("md.health", "persistence", *[entry_id for entry_id, _ in delivered[0][1][:9]])

    restarted = PersistenceWriter(settings, redis, tmp_path)
    await restarted.consumer().run(burst=True)
    restarted.close()

    assert persisted_ids(tmp_path, "md.health") == [delivered[0][1][9][0].decode()]


async def test_a_second_reader_in_the_archive_group_is_refused(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    from common.bus.group import GroupInUseError

    redis = connect_as(Role.PERSISTENCE)
    await PersistenceWriter(settings, redis, tmp_path / "a").consumer().run(burst=True)
    other = PersistenceWriter(settings, redis, tmp_path / "b")  # another archive, same group: would get half
    with pytest.raises(GroupInUseError, match="give this worker its own group"):
        await other.consumer().run(burst=True)
    own_group = PersistenceWriter(settings, redis, tmp_path / "b", group="persistence-b")
    await own_group.consumer().run(burst=True)  # its own group: fine
