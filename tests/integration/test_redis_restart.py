"""A restarted Redis keeps what it promised: with ``appendfsync everysec`` a graceful SHUTDOWN loses nothing
and a ``kill -9`` at most the last second; role users log in from the first connection after a restart.

These fail on the naive ACL config (``user default off`` without permissions): Redis 7.0 then drops every
MULTI/EXEC of the AOF at load time, i.e. every publisher batch that wrote a snapshot and its hot-cache key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.bus import Publisher
from common.config import Role, Settings
from common.redis import EmbeddedRedis, connect, connect_sync
from schemas import Snapshot
from schemas.codec import decode_json_as
from tests import samples
from tests.chaos.harness import id_key
from tests.processes import wait_until

pytestmark = pytest.mark.integration

BOOKS = ("BTC-USD", "ETH-USD", "ETH-BTC")
ENTRIES = 3_000


@pytest.fixture
def server(tmp_path: Path, redis_server: object) -> Iterator[EmbeddedRedis]:
    embedded = EmbeddedRedis(Settings(var_dir=tmp_path), port=0, write_runtime_file=False)
    embedded.start()
    yield embedded
    embedded.stop()


def settings_for(server: EmbeddedRedis, tmp_path: Path) -> Settings:
    endpoint = server.endpoint
    return Settings(redis_url=endpoint.url(), redis_passwords=dict(endpoint.passwords), var_dir=tmp_path / "var")


async def publish_snapshots(settings: Settings) -> None:
    """Publisher batches: each one EVAL that Redis stores in the AOF as MULTI/EXEC (XADDs + hot cache)."""
    client = connect(settings, Role.PRODUCER)
    try:
        async with Publisher(client, settings.names, settings.streams, settings.bus) as publisher:
            for seq in range(ENTRIES):
                await publisher.publish(samples.snapshot(BOOKS[seq % len(BOOKS)], book_seq=seq))
    finally:
        await client.aclose()


def restart(server: EmbeddedRedis) -> None:
    assert wait_until(lambda: server.poll() is not None)
    server.respawn()
    server.wait_ready()


def assert_everything_is_back(server: EmbeddedRedis, settings: Settings) -> None:
    with connect_sync(settings, Role.ADMIN) as admin:
        assert admin.xlen("md.snapshot") == ENTRIES
        for symbol in BOOKS:
            assert decode_json_as(Snapshot, admin.get(settings.names.book_key("coinbase", symbol))).symbol == symbol
    assert "NOPERM" not in server.log_file.read_text()


async def test_graceful_shutdown_and_restart_lose_nothing(server: EmbeddedRedis, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    await publish_snapshots(settings)

    with connect_sync(settings, Role.ADMIN) as admin, contextlib.suppress(redis.ConnectionError):
        admin.shutdown()  # what an operator's `redis-cli SHUTDOWN` does
    restart(server)

    assert_everything_is_back(server, settings)


async def test_kill_9_loses_nothing_written_more_than_a_second_before(server: EmbeddedRedis, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    await publish_snapshots(settings)
    time.sleep(1.5)  # appendfsync everysec: what was acknowledged a second ago is on disk

    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    restart(server)

    assert_everything_is_back(server, settings)


async def test_group_positions_and_pending_entries_survive_a_restart(server: EmbeddedRedis, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    await publish_snapshots(settings)
    with connect_sync(settings, Role.DETECTOR) as detector:
        detector.xgroup_create("md.snapshot", "detector", id="0")
        delivered = detector.xreadgroup("detector", "w1", {"md.snapshot": ">"}, count=100)[0][1]
        detector.xack("md.snapshot", "detector", *[entry_id for entry_id, _ in delivered[:60]])

    with connect_sync(settings, Role.ADMIN) as admin, contextlib.suppress(redis.ConnectionError):
        admin.shutdown()
    restart(server)

    with connect_sync(settings, Role.DETECTOR) as detector:
        assert detector.xpending("md.snapshot", "detector")["pending"] == 40
        next_batch = detector.xreadgroup("detector", "w1", {"md.snapshot": ">"}, count=1)[0][1]
        assert id_key(next_batch[0][0].decode()) > id_key(delivered[-1][0].decode())  # as numbers, not text


def test_every_role_logs_in_on_the_first_connection_after_a_restart(server: EmbeddedRedis, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    restart(server)
    for role in Role:
        with connect_sync(settings, role) as client:
            assert client.acl_whoami() in (role.value, role.value.encode())


def test_the_acl_file_is_private_and_holds_no_password_in_clear(server: EmbeddedRedis) -> None:
    mode = stat.S_IMODE(server.acl_file.stat().st_mode)
    assert mode == 0o600
    text = server.acl_file.read_text()
    assert all(password not in text for password in server.endpoint.passwords.values())
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
