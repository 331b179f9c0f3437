"""Fan-out readers: every reader sees every entry, from its own saved position, as a read-only user."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from common.bus import FanoutReader, Publisher, decode_entry, history
from common.config import Role, Settings
from schemas import Subject
from tests import samples

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("admin_sync")]  # each test on an empty database


async def publish(redis: Redis, settings: Settings, *models: object) -> None:
    async with Publisher(redis, settings.names, settings.streams, settings.bus) as pub:
        for model in models:
            await pub.publish(model)  # type: ignore[arg-type]


async def test_every_reader_sees_every_entry_in_order(
    connect_as: Callable[..., Redis], settings: Settings
) -> None:
    await publish(connect_as(Role.PRODUCER), settings, *(samples.snapshot(book_seq=s) for s in range(5)))
    readers = [
        FanoutReader.for_subjects(connect_as(Role.DASHBOARD), settings.names, [Subject.SNAPSHOT], start="0")
        for _ in range(2)
    ]
    for reader in readers:
        entries = await reader.read(block=False)
        assert [e.fields[b"book_seq"] for e in entries] == [b"0", b"1", b"2", b"3", b"4"]
        assert reader.positions["md.snapshot"] == entries[-1].id


async def test_resuming_from_a_saved_position_returns_only_later_entries(
    connect_as: Callable[..., Redis], settings: Settings
) -> None:
    producer, dashboard = connect_as(Role.PRODUCER), connect_as(Role.DASHBOARD)
    await publish(producer, settings, samples.trade(trade_id="a"), samples.trade(trade_id="b"))
    first = await FanoutReader(dashboard, {"md.trade": "0"}).read(block=False)
    await publish(producer, settings, samples.trade(trade_id="c"))

    resumed = await FanoutReader(dashboard, {"md.trade": first[0].id}).read(block=False)
    assert [e.fields[b"trade_id"] for e in resumed] == [b"b", b"c"]


async def test_new_only_reader_misses_nothing_published_between_its_reads(
    connect_as: Callable[..., Redis], settings: Settings
) -> None:
    producer = connect_as(Role.PRODUCER)
    await publish(producer, settings, samples.trade(trade_id="old"))
    reader = FanoutReader.for_subjects(connect_as(Role.DASHBOARD), settings.names, [Subject.TRADE])
    assert await reader.read(block=False) == []
    await publish(producer, settings, samples.trade(trade_id="new1"), samples.trade(trade_id="new2"))

    entries = await reader.read(block=False)
    assert [e.fields[b"trade_id"] for e in entries] == [b"new1", b"new2"]


async def test_history_yields_every_retained_entry_oldest_first_across_pages(
    connect_as: Callable[..., Redis], admin: Redis
) -> None:
    ids = [(await admin.xadd("strategy.ctrl.symbols", {"n": str(n)})).decode() for n in range(7)]
    seen = [entry.id async for entry in history(connect_as(Role.PRODUCER), "strategy.ctrl.symbols", page=3)]
    assert seen == ids


async def test_decode_entry_turns_an_invalid_entry_into_none(
    connect_as: Callable[..., Redis], admin: Redis, settings: Settings
) -> None:
    await admin.xadd("md.health", {"v": "1", "exchange": "kraken"})
    [entry] = await FanoutReader(connect_as(Role.DASHBOARD), {"md.health": "0"}).read(block=False)
    assert decode_entry(settings.names, entry) is None
