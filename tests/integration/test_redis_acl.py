"""redis.conf's ACL users: each role can do its job and nothing it must not (checked on a real server)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

from common.bus import PUBLISH_SCRIPT
from common.config import Role
from common.redis import RedisEndpoint

pytestmark = pytest.mark.integration

Connect = Callable[..., Redis]
ROLE_USERS = [Role.PRODUCER, Role.DETECTOR, Role.PERSISTENCE, Role.DASHBOARD, Role.CONTROL]


async def test_dashboard_cannot_xadd_but_can_read_streams_and_the_hot_cache(connect_as: Connect, admin: Redis) -> None:
    await admin.xadd("md.snapshot", {"v": "1"})
    await admin.hset("md:book:coinbase:BTC-USD", mapping={"v": "1"})
    dashboard = connect_as(Role.DASHBOARD)

    with pytest.raises(NoPermissionError):
        await dashboard.xadd("md.snapshot", {"a": "b"})
    assert len(await dashboard.xrange("md.snapshot")) == 1
    assert len(await dashboard.xread({"md.snapshot": "0"})) == 1
    assert await dashboard.hgetall("md:book:coinbase:BTC-USD") == {b"v": b"1"}
    assert await admin.xlen("md.snapshot") == 1


@pytest.mark.parametrize(
    "write",
    [
        lambda r: r.xadd("strategy.ctrl.symbols", {"a": "b"}),
        lambda r: r.xgroup_create("md.snapshot", "spy", mkstream=True),
        lambda r: r.xreadgroup("detector", "spy", {"md.snapshot": ">"}),
        lambda r: r.set("anything", "1"),
        lambda r: r.delete("md.snapshot"),
        lambda r: r.hset("md:book:coinbase:BTC-USD", "v", "2"),
    ],
    ids=["xadd-control", "xgroup-create", "xreadgroup", "set", "del", "hset"],
)
async def test_dashboard_is_refused_every_write(connect_as: Connect, admin: Redis, write: Callable) -> None:
    await admin.xgroup_create("md.snapshot", "detector", mkstream=True)
    with pytest.raises(NoPermissionError):
        await write(connect_as(Role.DASHBOARD))


async def test_producer_writes_md_streams_and_hot_cache_but_not_strategy(connect_as: Connect, admin: Redis) -> None:
    producer = connect_as(Role.PRODUCER)
    await producer.xadd("md.trade", {"v": "1"})
    await producer.hset("md:book:kraken:ETH-USD", "v", "1")
    await producer.xadd("deadletter", {"reason": "bad frame"})

    with pytest.raises(NoPermissionError):
        await producer.xadd("strategy.opportunity", {"a": "b"})
    with pytest.raises(NoPermissionError):
        await producer.delete("md.trade")
    assert await admin.exists("strategy.opportunity") == 0
    assert await admin.xlen("md.trade") == 1


async def test_producer_follows_the_control_stream_but_cannot_write_it(connect_as: Connect, admin: Redis) -> None:
    await admin.xadd("strategy.ctrl.symbols", {"v": "1"})
    producer = connect_as(Role.PRODUCER)
    assert len(await producer.xrevrange("strategy.ctrl.symbols", count=1)) == 1
    with pytest.raises(NoPermissionError):
        await producer.xadd("strategy.ctrl.symbols", {"v": "1"})


async def test_producer_can_run_the_publish_script_only_on_its_own_keys(connect_as: Connect, admin: Redis) -> None:
    producer = connect_as(Role.PRODUCER)
    # one entry on md.snapshot (stream 1, maxlen 100) that also writes the hot cache (key 2), ttl 1000 ms
    args = [1, 100, 1000, 1, 2, 1, "v", "1"]
    await producer.eval(PUBLISH_SCRIPT, 2, "md.snapshot", "md:book:coinbase:BTC-USD", *args)
    assert await admin.xlen("md.snapshot") == 1
    assert await admin.hgetall("md:book:coinbase:BTC-USD") == {b"v": b"1"}

    with pytest.raises(NoPermissionError):
        await producer.eval(PUBLISH_SCRIPT, 1, "strategy.opportunity", 1, 100, 1000, 1, 0, 1, "v", "1")
    assert await admin.exists("strategy.opportunity") == 0


@pytest.mark.parametrize("role", [Role.DETECTOR, Role.PERSISTENCE])
async def test_workers_read_md_through_their_group_but_cannot_xadd_md(
    connect_as: Connect, admin: Redis, role: Role
) -> None:
    await admin.xadd("md.snapshot", {"v": "1"})
    worker = connect_as(role)
    await worker.xgroup_create("md.snapshot", role.value, id="0")
    [[_, [(entry_id, _)]]] = await worker.xreadgroup(role.value, "w1", {"md.snapshot": ">"})
    assert await worker.xack("md.snapshot", role.value, entry_id) == 1
    await worker.xautoclaim("md.snapshot", role.value, "w2", 0)
    assert await worker.hgetall("md:book:none:X-Y") == {}

    with pytest.raises(NoPermissionError):
        await worker.xadd("md.snapshot", {"a": "b"})
    with pytest.raises(NoPermissionError):
        await worker.xgroup_destroy("md.snapshot", role.value)
    assert await admin.xlen("md.snapshot") == 1


@pytest.mark.parametrize("role", [Role.DETECTOR, Role.PERSISTENCE])
async def test_workers_write_strategy_streams_and_deadletter(connect_as: Connect, admin: Redis, role: Role) -> None:
    worker = connect_as(role)
    await worker.xadd("strategy.opportunity", {"v": "1"})
    await worker.xadd("strategy.ctrl.symbols", {"v": "1"})
    await worker.xadd("deadletter", {"reason": "x"})
    assert await admin.xlen("strategy.opportunity") == 1
    with pytest.raises(NoPermissionError):
        await worker.hset("md:book:coinbase:BTC-USD", "v", "1")


async def test_only_persistence_keeps_history_keys(connect_as: Connect) -> None:
    await connect_as(Role.PERSISTENCE).hset("hist:coinbase:BTC-USD", "last", "1")
    with pytest.raises(NoPermissionError):
        await connect_as(Role.DETECTOR).hset("hist:coinbase:BTC-USD", "last", "1")


@pytest.mark.parametrize("role", ROLE_USERS)
@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SHUTDOWN",), ("ACL", "LIST"),
        ("CLIENT", "KILL", "ID", "1"), ("FUNCTION", "FLUSH"), ("SCRIPT", "FLUSH"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
async def test_role_users_cannot_run_admin_commands(connect_as: Connect, role: Role, command: tuple[str, ...]) -> None:
    with pytest.raises(NoPermissionError):
        await connect_as(role).execute_command(*command)


async def test_default_user_is_disabled(redis_server: RedisEndpoint) -> None:
    anonymous = Redis(host=redis_server.host, port=redis_server.port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises((AuthenticationError, NoPermissionError)):
            await anonymous.ping()
    finally:
        await anonymous.aclose()


async def test_a_wrong_password_is_refused(redis_server: RedisEndpoint) -> None:
    client = Redis(
        host=redis_server.host, port=redis_server.port, username="producer", password="wrong",
        retry=Retry(NoBackoff(), 0),
    )
    try:
        with pytest.raises(AuthenticationError):
            await client.ping()
    finally:
        await client.aclose()


async def test_control_user_only_appends_symbol_sets(connect_as: Connect, admin: Redis) -> None:
    control = connect_as(Role.CONTROL)
    await control.xadd("strategy.ctrl.symbols", {"v": "1"})
    for write in (lambda: control.xadd("strategy.opportunity", {"v": "1"}), lambda: control.xrange("md.snapshot"),
                  lambda: control.delete("strategy.ctrl.symbols")):
        with pytest.raises(NoPermissionError):
            await write()
    assert await admin.xlen("strategy.ctrl.symbols") == 1
