"""Fixtures that start real servers. Integration tests get a private redis-server, never the machine's own.

One server per test session (on a free port, data in a temp dir, our redis.conf and ACL users); each
test starts from an empty database. If redis-server is not installed, the tests that need it are skipped
with the command that installs it; everything else still runs.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio

from common.config import Role, Settings
from common.redis import EmbeddedRedis, RedisEndpoint, connect, connect_sync
from producers.rest import DEFAULT_REST_URLS

ISOLATED_ENV = ("REDIS_URL", "TRIARB_CONFIG")
CLOSED_LOCAL_URL = "http://127.0.0.1:9"
"""Where a producer's REST fallback goes in tests unless a test serves one: nothing listens (discard port)."""
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real recorded sessions in ``../shared/fixtures`` (CI has ``../shared`` beside the checkout)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"recorded exchange sessions not found at {SHARED_FIXTURES} (expected ../shared beside the repo)")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def recorded_frames(fixtures_dir: Path) -> Callable[[str], list[str]]:
    """``recorded_frames("coinbase-advanced-2026.ndjson")``: the received frame texts of a recording, in order."""
    cache: dict[str, list[str]] = {}

    def frames(name: str) -> list[str]:
        if name not in cache:
            with (fixtures_dir / name).open("rb") as lines:
                records = [orjson.loads(line) for line in lines if line.strip()]
            cache[name] = [r["data"] for r in records if r["t"] == "recv"]
        return cache[name]

    return frames


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's TRIARB_* variables or ./triarb.toml must not change what a test sees."""
    import os

    for name in list(os.environ):
        if name.startswith("TRIARB_") or name in ISOLATED_ENV:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for venue in list(DEFAULT_REST_URLS):  # no test ever reaches a live exchange, even by the REST fallback
        monkeypatch.setitem(DEFAULT_REST_URLS, venue, CLOSED_LOCAL_URL)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisEndpoint]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: run `make test` (it installs it with apt) "
                    "or `sudo apt-get install redis-server`")
    var_dir = tmp_path_factory.mktemp("redis")
    server = EmbeddedRedis(Settings(var_dir=var_dir), port=0, write_runtime_file=False)
    with server as endpoint:
        yield endpoint


@pytest.fixture
def settings(redis_server: RedisEndpoint, tmp_path: Path) -> Settings:
    """Settings of a stack pointed at the session's server, with its ACL passwords."""
    return Settings(
        redis_url=redis_server.url(), redis_passwords=dict(redis_server.passwords), var_dir=tmp_path / "var"
    )


@pytest.fixture
def admin_sync(settings: Settings) -> Iterator[redis.Redis]:
    client = connect_sync(settings, Role.ADMIN)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
async def admin(settings: Settings, admin_sync: redis.Redis) -> AsyncIterator[redis.asyncio.Redis]:
    """An admin client on an empty database (admin_sync flushed it)."""
    client = connect(settings, Role.ADMIN)
    yield client
    await client.aclose()


@pytest.fixture
async def connect_as(settings: Settings) -> AsyncIterator[Callable[..., redis.asyncio.Redis]]:
    """``connect_as(Role.PRODUCER)``: a client as that ACL user, closed after the test."""
    clients: list[redis.asyncio.Redis] = []

    def make(role: Role, decode_responses: bool = False) -> redis.asyncio.Redis:
        client = connect(settings, role, decode_responses=decode_responses)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
