"""redis.conf's ACL users on a real redis-server: each role can do its job, and nothing it must not.

The refusals are a table: one row per thing a role must never do, each asserting that Redis itself answers
NOPERM (or, for a command inside a script, that the script's user cannot run it) and that nothing changed.
The state every row runs against is a working stack's: streams with entries, the detector's consumer group
with a pending entry, a hot-cache book, a market catalog, a quick history.

What ACLs cannot express: XADD's own arguments. A role that may XADD a stream may also pass ``MAXLEN 0``
and empty it (or a far-future explicit id): producer on md.*, detector on strategy.opportunity and
strategy.ctrl.symbols, control on strategy.ctrl.symbols, producer, detector and persistence on deadletter.
What is enforced is that nobody but admin may XTRIM, XDEL or DEL a stream, and persistence archives the
control stream, so a wipe through XADD loses nothing already archived
(``test_xadd_maxlen_is_not_a_separate_right_...`` below shows both).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from _pytest.mark import ParameterSet
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from common.acl import split_config
from common.bus import PUBLISH_SCRIPT, Delivery, GroupConsumer, Publisher
from common.bus.deadletter import dead_letter
from common.bus.entries import StreamEntry
from common.config import Role, Settings
from common.redis import RedisEndpoint, repo_redis_conf
from consumers.detector.episode_store import EpisodeStore
from consumers.detector.episodes import EpisodeRules, Paying
from consumers.persistence import PersistenceWriter
from schemas import Subject
from schemas.codec import encode_dict
from tests import samples

pytestmark = pytest.mark.integration

Connect = Callable[..., Redis]
Action = Callable[[Redis], Awaitable[Any]]
ROLE_USERS = [Role.PRODUCER, Role.DETECTOR, Role.PERSISTENCE, Role.DASHBOARD, Role.CONTROL, Role.PAPER]

SNAPSHOTS, TRADES, HEALTH = "md.snapshot", "md.trade", "md.health"
OPPORTUNITIES, CONTROL, DEADLETTER = "strategy.opportunity", "strategy.ctrl.symbols", "deadletter"
FILLS, PAPER_GROUP = "strategy.fill", "paper"
EPISODES, EPISODE_STATES = "strategy.episode", "strategy:episodes:coinbase"
BOOK, MARKETS, HISTORY = "md:book:coinbase:BTC-USD", "md:markets:coinbase", "hist:coinbase:BTC-USD"
DETECTOR_GROUP = "detector"
AUDIT_GROUP = "audit"
"""A group on md.trade that only admin made: stands for "a group that is not the detector's"."""

FIRST = "1-1"
"""The id of the first entry of every stream in :func:`stack_state` (the detector's pending one on md.snapshot)."""

TRIM = "return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)"
DELETE = "return redis.call('DEL', KEYS[1])"


def publish_script(*keys: str) -> Action:
    """One entry through the bus's publish script on ``keys[0]`` (and the hot cache ``keys[1]`` if given)."""
    cache = [2, 1, "v", "1", "{}"] if len(keys) > 1 else [0, 1, "v", "1"]
    return lambda r: r.eval(PUBLISH_SCRIPT, len(keys), *keys, 1, 100, 1000, 1, *cache)


async def book_symbol(r: Redis) -> str:
    """The symbol in the hot-cache document of BOOK, read the way the services read it (MGET)."""
    [document] = await r.mget([BOOK])
    return str(orjson.loads(document)["symbol"])


def script(body: str, key: str) -> Action:
    return lambda r: r.eval(body, 1, key)


@pytest.fixture
async def stack_state(admin: Redis) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Builds a working stack's keys (as admin) and returns a function that reads all of them back."""
    await admin.xadd(SNAPSHOTS, encode_dict(samples.snapshot(book_seq=1)), id=FIRST)
    await admin.xadd(SNAPSHOTS, encode_dict(samples.snapshot(book_seq=2)))
    await admin.xgroup_create(SNAPSHOTS, DETECTOR_GROUP, id="0")
    await admin.xreadgroup(DETECTOR_GROUP, "w1", {SNAPSHOTS: ">"}, count=1)  # w1 holds FIRST, unacknowledged
    await admin.xadd(TRADES, encode_dict(samples.trade()), id=FIRST)
    await admin.xgroup_create(TRADES, AUDIT_GROUP, id="0")
    await admin.xreadgroup(AUDIT_GROUP, "w1", {TRADES: ">"}, count=1)
    await admin.xadd(HEALTH, encode_dict(samples.health()), id=FIRST)
    await admin.xadd(OPPORTUNITIES, encode_dict(samples.opportunity()), id=FIRST)
    await admin.xadd(CONTROL, encode_dict(samples.control()), id=FIRST)
    await admin.xadd(DEADLETTER, {"reason": "an earlier rejection"}, id=FIRST)
    await admin.set(BOOK, samples.snapshot().model_dump_json(exclude_none=True))
    await admin.sadd(MARKETS, "BTC-USD", "ETH-USD", "ETH-BTC")
    await admin.lpush(HISTORY, "{}")

    async def read_back() -> dict[str, Any]:
        state: dict[str, Any] = {}
        for key in sorted(await admin.keys("*")):
            kind = (await admin.type(key)).decode()
            if kind == "stream":
                groups = [(g["name"], g["last-delivered-id"], g["pending"], g["consumers"])
                          for g in await admin.xinfo_groups(key)]
                state[key] = (await admin.xrange(key), groups)
            else:
                state[key] = (kind, await admin.dump(key))
        return state

    return read_back


def refused(role: Role, what: str, action: Action) -> ParameterSet:
    return pytest.param(role, action, id=f"{role.value}_cannot_{what}")


REFUSED = [
    # producer: market data only; a broken feed must not fake opportunities, halt producers or erase history
    refused(Role.PRODUCER, "forge_an_opportunity", lambda r: r.xadd(OPPORTUNITIES, {"v": "1"})),
    refused(Role.PRODUCER, "forge_an_opportunity_through_the_publish_script", publish_script(OPPORTUNITIES)),
    refused(Role.PRODUCER, "halt_producers_with_a_control_entry", lambda r: r.xadd(CONTROL, {"v": "1"})),
    refused(Role.PRODUCER, "forge_an_episode", lambda r: r.xadd(EPISODES, {"v": "1"})),
    refused(Role.PRODUCER, "rewrite_an_episode_state", lambda r: r.hset(EPISODE_STATES, "cycle", "{}")),
    refused(Role.PRODUCER, "trim_a_market_data_stream", lambda r: r.xtrim(SNAPSHOTS, maxlen=0)),
    refused(Role.PRODUCER, "trim_a_stream_from_inside_a_script", script(TRIM, SNAPSHOTS)),
    refused(Role.PRODUCER, "delete_a_stream_from_inside_a_script", script(DELETE, SNAPSHOTS)),
    refused(Role.PRODUCER, "delete_a_stream", lambda r: r.delete(TRADES)),
    refused(Role.PRODUCER, "delete_market_data_entries", lambda r: r.xdel(SNAPSHOTS, FIRST)),
    refused(Role.PRODUCER, "create_a_consumer_group", lambda r: r.xgroup_create(SNAPSHOTS, "spy")),
    refused(Role.PRODUCER, "read_through_the_detector_group",
            lambda r: r.xreadgroup(DETECTOR_GROUP, "spy", {SNAPSHOTS: ">"})),
    refused(Role.PRODUCER, "write_the_quick_history", lambda r: r.lpush(HISTORY, "{}")),
    # detector: its own group on md.snapshot, strategy.* through XADD only
    refused(Role.DETECTOR, "move_a_groups_position", lambda r: r.xgroup_setid(SNAPSHOTS, DETECTOR_GROUP, "$")),
    refused(Role.DETECTOR, "destroy_a_group", lambda r: r.xgroup_destroy(SNAPSHOTS, DETECTOR_GROUP)),
    refused(Role.DETECTOR, "run_a_group_on_another_stream",
            lambda r: r.xgroup_create(TRADES, "detector-2", mkstream=True)),
    refused(Role.DETECTOR, "run_a_group_on_a_strategy_stream", lambda r: r.xgroup_create(OPPORTUNITIES, "paper")),
    refused(Role.DETECTOR, "read_another_groups_stream",
            lambda r: r.xreadgroup(AUDIT_GROUP, "spy", {TRADES: ">"})),
    refused(Role.DETECTOR, "acknowledge_for_another_group", lambda r: r.xack(TRADES, AUDIT_GROUP, FIRST)),
    refused(Role.DETECTOR, "move_another_groups_position", lambda r: r.xgroup_setid(TRADES, AUDIT_GROUP, "$")),
    refused(Role.DETECTOR, "remove_another_groups_consumer",
            lambda r: r.xgroup_delconsumer(TRADES, AUDIT_GROUP, "w1")),
    refused(Role.DETECTOR, "claim_another_groups_entries", lambda r: r.xautoclaim(TRADES, AUDIT_GROUP, "spy", 0)),
    refused(Role.DETECTOR, "forge_market_data", lambda r: r.xadd(SNAPSHOTS, {"v": "1"})),
    refused(Role.DETECTOR, "forge_market_data_through_the_publish_script", publish_script(SNAPSHOTS, BOOK)),
    refused(Role.DETECTOR, "write_the_hot_cache", lambda r: r.set(BOOK, "{}")),
    refused(Role.DETECTOR, "rewrite_a_market_catalog", lambda r: r.sadd(MARKETS, "FAKE-USD")),
    refused(Role.DETECTOR, "trim_the_opportunity_stream", lambda r: r.xtrim(OPPORTUNITIES, maxlen=0)),
    refused(Role.DETECTOR, "trim_the_control_stream", lambda r: r.xtrim(CONTROL, maxlen=0)),
    refused(Role.DETECTOR, "trim_the_control_stream_from_inside_a_script", script(TRIM, CONTROL)),
    refused(Role.DETECTOR, "delete_opportunities", lambda r: r.xdel(OPPORTUNITIES, FIRST)),
    refused(Role.DETECTOR, "trim_the_episode_stream", lambda r: r.xtrim(EPISODES, maxlen=0)),
    refused(Role.DETECTOR, "delete_episode_states", lambda r: r.delete(EPISODE_STATES)),
    refused(Role.DETECTOR, "delete_the_control_stream", lambda r: r.delete(CONTROL)),
    refused(Role.DETECTOR, "write_the_quick_history", lambda r: r.lpush(HISTORY, "{}")),
    # persistence: reads with plain XREAD and writes its files; no group right anywhere, no stream writes
    refused(Role.PERSISTENCE, "create_a_consumer_group", lambda r: r.xgroup_create(SNAPSHOTS, "persistence")),
    refused(Role.PERSISTENCE, "move_the_detector_groups_position",
            lambda r: r.xgroup_setid(SNAPSHOTS, DETECTOR_GROUP, "$")),
    refused(Role.PERSISTENCE, "destroy_the_detector_group", lambda r: r.xgroup_destroy(SNAPSHOTS, DETECTOR_GROUP)),
    refused(Role.PERSISTENCE, "add_a_consumer_to_the_detector_group",
            lambda r: r.xgroup_createconsumer(SNAPSHOTS, DETECTOR_GROUP, "spy")),
    refused(Role.PERSISTENCE, "remove_a_detector_worker",
            lambda r: r.xgroup_delconsumer(SNAPSHOTS, DETECTOR_GROUP, "w1")),
    refused(Role.PERSISTENCE, "read_through_the_detector_group",
            lambda r: r.xreadgroup(DETECTOR_GROUP, "spy", {SNAPSHOTS: ">"})),
    refused(Role.PERSISTENCE, "acknowledge_the_detectors_pending_entry",
            lambda r: r.xack(SNAPSHOTS, DETECTOR_GROUP, FIRST)),
    refused(Role.PERSISTENCE, "claim_the_detectors_pending_entry",
            lambda r: r.xclaim(SNAPSHOTS, DETECTOR_GROUP, "spy", 0, [FIRST])),
    refused(Role.PERSISTENCE, "autoclaim_the_detectors_pending_entries",
            lambda r: r.xautoclaim(SNAPSHOTS, DETECTOR_GROUP, "spy", 0)),
    refused(Role.PERSISTENCE, "forge_an_opportunity", lambda r: r.xadd(OPPORTUNITIES, {"v": "1"})),
    refused(Role.PERSISTENCE, "forge_an_episode", lambda r: r.xadd(EPISODES, {"v": "1"})),
    refused(Role.PERSISTENCE, "rewrite_an_episode_state", lambda r: r.hset(EPISODE_STATES, "cycle", "{}")),
    refused(Role.PERSISTENCE, "halt_producers_with_a_control_entry", lambda r: r.xadd(CONTROL, {"v": "1"})),
    refused(Role.PERSISTENCE, "forge_market_data", lambda r: r.xadd(SNAPSHOTS, {"v": "1"})),
    refused(Role.PERSISTENCE, "run_a_script", lambda r: r.eval("return 1", 0)),
    refused(Role.PERSISTENCE, "trim_a_stream", lambda r: r.xtrim(SNAPSHOTS, maxlen=0)),
    refused(Role.PERSISTENCE, "trim_the_control_stream", lambda r: r.xtrim(CONTROL, maxlen=0)),
    refused(Role.PERSISTENCE, "delete_entries", lambda r: r.xdel(SNAPSHOTS, FIRST)),
    refused(Role.PERSISTENCE, "delete_a_stream", lambda r: r.delete(SNAPSHOTS)),
    refused(Role.PERSISTENCE, "write_the_hot_cache", lambda r: r.set(BOOK, "{}")),
    refused(Role.PERSISTENCE, "rewrite_a_market_catalog", lambda r: r.sadd(MARKETS, "FAKE-USD")),
    # control: appends symbol changes, nothing else
    refused(Role.CONTROL, "forge_an_opportunity", lambda r: r.xadd(OPPORTUNITIES, {"v": "1"})),
    refused(Role.CONTROL, "forge_an_opportunity_through_the_publish_script", publish_script(OPPORTUNITIES)),
    refused(Role.CONTROL, "forge_market_data", lambda r: r.xadd(SNAPSHOTS, {"v": "1"})),
    refused(Role.CONTROL, "write_the_dead_letter_stream", lambda r: r.xadd(DEADLETTER, {"v": "1"})),
    refused(Role.CONTROL, "read_market_data", lambda r: r.xrange(SNAPSHOTS)),
    refused(Role.CONTROL, "trim_the_control_stream", lambda r: r.xtrim(CONTROL, maxlen=0)),
    refused(Role.CONTROL, "trim_the_control_stream_from_inside_a_script", script(TRIM, CONTROL)),
    refused(Role.CONTROL, "delete_control_entries", lambda r: r.xdel(CONTROL, FIRST)),
    refused(Role.CONTROL, "delete_the_control_stream", lambda r: r.delete(CONTROL)),
    refused(Role.CONTROL, "delete_the_control_stream_from_inside_a_script", script(DELETE, CONTROL)),
    refused(Role.CONTROL, "run_a_group_on_the_control_stream", lambda r: r.xgroup_create(CONTROL, "spy")),
    refused(Role.CONTROL, "rewrite_a_market_catalog", lambda r: r.sadd(MARKETS, "FAKE-USD")),
    refused(Role.CONTROL, "delete_a_market_catalog", lambda r: r.delete(MARKETS)),
    # paper: its own group on strategy.opportunity, fills through XADD only
    refused(Role.PAPER, "forge_an_opportunity", lambda r: r.xadd(OPPORTUNITIES, {"v": "1"})),
    refused(Role.PAPER, "delete_opportunities", lambda r: r.xdel(OPPORTUNITIES, FIRST)),
    refused(Role.PAPER, "move_its_groups_position", lambda r: r.xgroup_setid(OPPORTUNITIES, PAPER_GROUP, "$")),
    refused(Role.PAPER, "destroy_its_group", lambda r: r.xgroup_destroy(OPPORTUNITIES, PAPER_GROUP)),
    refused(Role.PAPER, "read_through_the_detector_group",
            lambda r: r.xreadgroup(DETECTOR_GROUP, "spy", {SNAPSHOTS: ">"})),
    refused(Role.PAPER, "acknowledge_for_the_detector_group", lambda r: r.xack(SNAPSHOTS, DETECTOR_GROUP, FIRST)),
    refused(Role.PAPER, "trim_the_fill_stream", lambda r: r.xtrim(FILLS, maxlen=0)),
    refused(Role.PAPER, "forge_an_episode", lambda r: r.xadd(EPISODES, {"v": "1"})),
    refused(Role.PAPER, "rewrite_an_episode_state", lambda r: r.hset(EPISODE_STATES, "cycle", "{}")),
    refused(Role.PAPER, "forge_market_data", lambda r: r.xadd(SNAPSHOTS, {"v": "1"})),
    refused(Role.PAPER, "write_the_hot_cache", lambda r: r.set(BOOK, "{}")),
    refused(Role.PAPER, "halt_producers_with_a_control_entry", lambda r: r.xadd(CONTROL, {"v": "1"})),
    # dashboard: strictly read-only
    refused(Role.DASHBOARD, "append_a_control_entry", lambda r: r.xadd(CONTROL, {"v": "1"})),
    refused(Role.DASHBOARD, "create_a_consumer_group", lambda r: r.xgroup_create(SNAPSHOTS, "spy")),
    refused(Role.DASHBOARD, "read_through_the_detector_group",
            lambda r: r.xreadgroup(DETECTOR_GROUP, "spy", {SNAPSHOTS: ">"})),
    refused(Role.DASHBOARD, "set_a_key", lambda r: r.set("anything", "1")),
    refused(Role.DASHBOARD, "forge_an_episode", lambda r: r.xadd(EPISODES, {"v": "1"})),
    refused(Role.DASHBOARD, "delete_a_stream", lambda r: r.delete(SNAPSHOTS)),
    refused(Role.DASHBOARD, "write_the_hot_cache", lambda r: r.set(BOOK, "{}")),
    refused(Role.DASHBOARD, "rewrite_a_market_catalog", lambda r: r.sadd(MARKETS, "FAKE-USD")),
    refused(Role.DASHBOARD, "run_a_script", lambda r: r.eval("return 1", 0)),
]


@pytest.mark.parametrize(("role", "action"), REFUSED)
async def test_role_is_refused(
    connect_as: Connect, stack_state: Callable[[], Awaitable[dict[str, Any]]], role: Role, action: Action
) -> None:
    before = await stack_state()
    with pytest.raises(ResponseError) as refusal:
        await action(connect_as(role))
    assert is_acl_refusal(refusal.value), refusal.value
    assert await stack_state() == before


ANY_ROLE_REFUSED = [
    ("XGROUP", "SETID", SNAPSHOTS, DETECTOR_GROUP, "$"), ("XGROUP", "DESTROY", SNAPSHOTS, DETECTOR_GROUP),
    ("XTRIM", SNAPSHOTS, "MAXLEN", "0"), ("XTRIM", CONTROL, "MAXLEN", "0"), ("XTRIM", DEADLETTER, "MAXLEN", "0"),
    ("DEL", DEADLETTER), ("UNLINK", SNAPSHOTS), ("RENAME", CONTROL, "elsewhere"), ("FLUSHALL",), ("FLUSHDB",),
    ("CONFIG", "GET", "*"), ("CONFIG", "SET", "appendonly", "no"), ("KEYS", "*"), ("SHUTDOWN",), ("ACL", "LIST"),
    ("ACL", "SETUSER", "producer", "+@all"), ("CLIENT", "KILL", "ID", "1"), ("FUNCTION", "FLUSH"),
    ("SCRIPT", "FLUSH"), ("MONITOR",), ("BGREWRITEAOF",),
]


@pytest.mark.parametrize("role", ROLE_USERS)
@pytest.mark.parametrize("command", ANY_ROLE_REFUSED, ids=lambda c: " ".join(c[:2]))
async def test_no_role_may(
    connect_as: Connect, stack_state: Callable[[], Awaitable[dict[str, Any]]], role: Role, command: tuple[str, ...]
) -> None:
    before = await stack_state()
    with pytest.raises(NoPermissionError):
        await connect_as(role).execute_command(*command)
    assert await stack_state() == before


def is_acl_refusal(error: ResponseError) -> bool:
    """NOPERM, or its form for a command inside a script (Redis 7.0 reports it as ERR)."""
    return isinstance(error, NoPermissionError) or "The user executing the script can't" in str(error)


def test_no_role_line_grants_trim_delete_or_group_moves() -> None:
    """The rules themselves, read from redis.conf: the commands no role may have, however its selectors read."""
    users = split_config(repo_redis_conf().read_text()).users
    forbidden = {"+@all", "+@write", "+@dangerous", "+@admin", "+@stream", "+@keyspace", "+@scripting", "+xtrim",
                 "+xdel", "+xgroup", "+xgroup|setid", "+xgroup|destroy", "+xsetid", "+flushall", "+keys",
                 "+config", "nopass", "allkeys", "~*", "%R~*", "%RW~*", "allcommands"}
    for role in ROLE_USERS:
        words = {word.strip("()") for word in shlex.split(users[role.value])}
        assert not words & forbidden, (role, words & forbidden)
    group_streams = {role: re.findall(r"\(~(\S+) \+xreadgroup", users[role.value]) for role in ROLE_USERS
                     if "+xreadgroup" in users[role.value]}
    assert group_streams == {Role.DETECTOR: ["md.snapshot"], Role.PAPER: ["strategy.opportunity"]}  # one each


# --- every role can still do its job -----------------------------------------------------------------------


async def test_producer_publishes_market_data_keeps_its_catalog_follows_control_and_dead_letters(
    connect_as: Connect, admin: Redis, settings: Settings
) -> None:
    producer = connect_as(Role.PRODUCER)
    async with Publisher(producer, settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.snapshot())
        await publisher.publish(samples.trade())
        await publisher.publish(samples.health())
    assert [await admin.xlen(s) for s in (SNAPSHOTS, TRADES, HEALTH)] == [1, 1, 1]
    assert await book_symbol(admin) == "BTC-USD" and await admin.pttl(BOOK) > 0

    catalog = producer.pipeline(transaction=True)  # how a producer replaces its catalog: DEL + SADD, atomic
    catalog.delete(MARKETS)
    catalog.sadd(MARKETS, "BTC-USD", "ETH-USD")
    await catalog.execute()
    assert await producer.smembers(MARKETS) == {b"BTC-USD", b"ETH-USD"}

    await admin.xadd(CONTROL, encode_dict(samples.control()))
    assert len(await producer.xrevrange(CONTROL, count=1)) == 1
    assert len((await producer.xread({CONTROL: "0"}))[0][1]) == 1
    await dead_letter(producer, settings.names, StreamEntry(CONTROL, "1-1", {b"v": b"9"}), "bad control",
                      kind="control", rejected_by="producer/coinbase")
    assert await admin.xlen(DEADLETTER) == 1


async def test_detector_runs_its_group_reads_books_publishes_opportunities_and_announcements(
    connect_as: Connect, admin: Redis, settings: Settings
) -> None:
    detector = connect_as(Role.DETECTOR)
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as publisher:
        for seq in range(3):
            await publisher.publish(samples.snapshot(book_seq=seq))
    await admin.xadd(SNAPSHOTS, {"garbage": "yes"})
    await admin.sadd(MARKETS, "BTC-USD")
    seen: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> None:
        seen.extend(batch)

    worker = GroupConsumer(detector, settings.names, settings.bus.model_copy(update={"claim_idle_ms": 0}),
                           group=DETECTOR_GROUP, subjects=[Subject.SNAPSHOT], handler=handler, start_id="0")
    await worker.run(burst=True)  # XGROUP CREATE, XREADGROUP, XACK, XAUTOCLAIM, XPENDING, XINFO, dead letter
    assert len(seen) == 3 and await admin.xlen(DEADLETTER) == 1
    assert (await admin.xpending(SNAPSHOTS, DETECTOR_GROUP))["pending"] == 0
    await detector.xgroup_createconsumer(SNAPSHOTS, DETECTOR_GROUP, "gone")
    assert await worker.remove_idle_consumers(min_idle_ms=0) == 1  # XGROUP DELCONSUMER

    assert await book_symbol(detector) == "BTC-USD"
    assert await detector.sismember(MARKETS, "BTC-USD")
    async with Publisher(detector, settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.opportunity())
        await publisher.publish(samples.control())  # its symbol announcement
    assert await admin.xlen(OPPORTUNITIES) == 1
    assert len(await detector.xrevrange(CONTROL, count=1)) == 1

    store = EpisodeStore(detector, settings.names, settings.streams, EpisodeRules())
    opened = Paying(samples.opportunity(), order=1, fresh_until_ms=samples.T0_MS + 1_000)
    assert len(await store.apply("coinbase", [opened], await store.read("coinbase"))) == 1  # HGET+HSET+XADD in EVAL
    assert await admin.xlen(EPISODES) == 1 and await admin.hlen(EPISODE_STATES) == 1


async def test_persistence_archives_every_stream_keeps_history_and_dead_letters_without_a_group(
    connect_as: Connect, admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.snapshot())
        await publisher.publish(samples.trade())
        await publisher.publish(samples.health())
    async with Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.opportunity())
        await publisher.publish(samples.control())
    await admin.xadd(TRADES, {"garbage": "yes"})
    await admin.sadd(MARKETS, "BTC-USD")  # what the producers registered: persistence checks market data
    await admin.sadd("md:markets:kraken", "ETH-USD")
    persistence = connect_as(Role.PERSISTENCE)

    writer = PersistenceWriter(settings, persistence, tmp_path)
    await writer.run(burst=True)  # XREAD of every stream, LPUSH/LTRIM history, XADD deadletter
    writer.close()

    assert writer.written == 5
    assert await admin.llen(HISTORY) == 1
    [(_, rejected)] = await admin.xrange(DEADLETTER)
    assert rejected[b"rejected_by"] == b"persistence" and rejected[b"stream"] == TRADES.encode()
    assert await admin.xinfo_groups(SNAPSHOTS) == []  # no consumer group: nothing for another role to move
    assert await persistence.smembers(MARKETS) == {b"BTC-USD"}
    assert (await persistence.xinfo_stream(SNAPSHOTS))["length"] == 1


async def test_control_publishes_a_symbol_change_and_reads_it_and_the_catalogs_back(
    connect_as: Connect, admin: Redis, settings: Settings
) -> None:
    await admin.sadd(MARKETS, "BTC-USD")
    control = connect_as(Role.CONTROL)
    async with Publisher(control, settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.control())
    await control.xadd(CONTROL, encode_dict(samples.control()))  # a plain XADD works too

    assert await control.xlen(CONTROL) == 2
    assert len(await control.xrange(CONTROL)) == 2 and len(await control.xrevrange(CONTROL, count=1)) == 1
    assert len((await control.xread({CONTROL: "0"}))[0][1]) == 2
    assert await control.smembers(MARKETS) == {b"BTC-USD"}


async def test_paper_runs_its_group_on_opportunities_reads_books_and_publishes_fills(
    connect_as: Connect, admin: Redis, settings: Settings
) -> None:
    paper = connect_as(Role.PAPER)
    async with Publisher(connect_as(Role.DETECTOR), settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.opportunity())
    await admin.set(BOOK, '{"symbol": "BTC-USD"}')
    seen: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> None:
        seen.extend(batch)

    worker = GroupConsumer(paper, settings.names, settings.bus.model_copy(update={"claim_idle_ms": 0}),
                           group=PAPER_GROUP, subjects=[Subject.OPPORTUNITY], handler=handler, start_id="0")
    await worker.run(burst=True)  # XGROUP CREATE, XREADGROUP, XACK, XAUTOCLAIM, XPENDING, XINFO
    assert len(seen) == 1 and (await admin.xpending(OPPORTUNITIES, PAPER_GROUP))["pending"] == 0
    assert await book_symbol(paper) == "BTC-USD"
    async with Publisher(paper, settings.names, settings.streams, settings.bus) as publisher:
        await publisher.publish(samples.fill())
    assert await admin.xlen(FILLS) == 1


async def test_dashboard_reads_streams_groups_hot_cache_history_and_catalogs(
    connect_as: Connect, stack_state: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    await stack_state()
    dashboard = connect_as(Role.DASHBOARD)
    assert len(await dashboard.xrange(SNAPSHOTS)) == 2
    assert len(await dashboard.xread({SNAPSHOTS: "0", CONTROL: "0", DEADLETTER: "0"})) == 3
    assert [g["name"] for g in await dashboard.xinfo_groups(SNAPSHOTS)] == [DETECTOR_GROUP.encode()]
    assert await book_symbol(dashboard) == "BTC-USD"
    assert await dashboard.lrange(HISTORY, 0, -1) == [b"{}"]
    assert await dashboard.scard(MARKETS) == 3


async def test_xadd_maxlen_is_not_a_separate_right_so_control_can_empty_its_stream_but_the_archive_keeps_it(
    connect_as: Connect, admin: Redis, settings: Settings, tmp_path: Path
) -> None:
    for symbol in ("BTC-USD", "ETH-USD", "ETH-BTC"):
        await admin.xadd(CONTROL, encode_dict(samples.control(symbols={"coinbase": [symbol]})))
    writer = PersistenceWriter(settings, connect_as(Role.PERSISTENCE), tmp_path)
    await writer.run(burst=True)
    control = connect_as(Role.CONTROL)

    for trim in (lambda: control.xtrim(CONTROL, maxlen=0), lambda: control.xdel(CONTROL, FIRST),
                 lambda: control.delete(CONTROL)):
        with pytest.raises(NoPermissionError):
            await trim()
    assert await admin.xlen(CONTROL) == 3
    # ACLs cannot see XADD's arguments: an append with MAXLEN 0 is allowed and leaves the stream empty
    await control.xadd(CONTROL, encode_dict(samples.control()), maxlen=0, approximate=False)
    assert await admin.xlen(CONTROL) == 0

    await writer.run(burst=True)
    writer.close()
    archived = [orjson.loads(line)["symbols"]["coinbase"] for path in sorted((tmp_path / CONTROL).glob("*.ndjson"))
                for line in path.read_bytes().splitlines()]
    assert archived == [["BTC-USD"], ["ETH-USD"], ["ETH-BTC"]]  # the three entries read before the wipe


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
