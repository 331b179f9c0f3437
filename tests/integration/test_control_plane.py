"""The control plane as a careless or hostile user meets it: two producers on fake venues, a real Redis.

Whatever arrives on ``strategy.ctrl.symbols``, a producer changes only its own venue's set, only to markets
its venue lists, and dead-letters the rest with a reason; the feeds keep publishing every book they held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from common.bus import Publisher
from common.config import ProducerSettings, Role, Settings, VenueSettings
from common.control import ControlRejected, publish_control, read_control_state
from producers.feed import Venue
from producers.service import VenueProducer
from producers.simulators.fakevenue import FakeVenue, Market
from schemas import SymbolControl
from schemas.codec import encode_dict
from schemas.control import ControlOp, ControlSource
from schemas.health import FeedStatus
from tests.integration.test_producers import eventually

pytestmark = pytest.mark.integration

LISTED = ["BTC-USD", "ETH-USD", "SOL-USD", "ETH-BTC"]
CONFIGURED = ["BTC-USD", "ETH-USD"]


@dataclass
class Stack:
    producers: dict[str, VenueProducer]
    admin: Redis
    control: Redis
    settings: Settings

    async def snapshots_after(self, since: str) -> set[tuple[str, str]]:
        """(venue, symbol) of every snapshot published after stream id ``since``."""
        entries = await self.admin.xrange("md.snapshot", f"({since}", "+")
        return {(f[b"exchange"].decode(), f[b"symbol"].decode()) for _, f in entries}

    async def last_id(self, stream: str = "md.snapshot") -> str:
        newest = await self.admin.xrevrange(stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def raw(self, fields: dict[str, Any]) -> str:
        """XADD as the control role, bypassing every client-side check."""
        return (await self.control.xadd("strategy.ctrl.symbols", fields)).decode()

    async def send(self, control: SymbolControl) -> None:
        """As ``triarb symbols`` and the dashboard do: checked, then published as the control role."""
        await publish_control(self.control, self.settings, control)

    async def deadletters(self, entry_id: str) -> list[dict[bytes, bytes]]:
        return [f for _, f in await self.admin.xrange("deadletter") if f[b"id"].decode() == entry_id]

    async def all_books_flow(self, held: dict[str, list[str]]) -> None:
        since = await self.last_id()
        wanted = {(venue, symbol) for venue, symbols in held.items() for symbol in symbols}
        await eventually(lambda: self._covers(since, wanted))

    async def _covers(self, since: str, wanted: set[tuple[str, str]]) -> bool:
        return wanted <= await self.snapshots_after(since)


@pytest.fixture
async def stack(settings: Settings, admin: Redis, connect_as: Callable[..., Redis]) -> AsyncIterator[Stack]:
    stop = asyncio.Event()
    prices = {"BTC-USD": (60_000.0, 2), "ETH-USD": (3_000.0, 2), "SOL-USD": (150.0, 3), "ETH-BTC": (0.05, 5)}
    venues = {v: FakeVenue(v, [Market(s, *prices[s]) for s in LISTED], tick_interval_s=0.005, heartbeat_interval_s=0.2)
              for v in Venue}
    tasks = []
    producers: dict[str, VenueProducer] = {}
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as publisher:
        for venue, fake in venues.items():
            url = await fake.start()
            producer = VenueProducer(venue, VenueSettings(url=url, symbols=CONFIGURED),
                                     ProducerSettings(health_interval_s=0.2), publisher, names=settings.names,
                                     control_redis=connect_as(Role.PRODUCER), catalog=LISTED)
            producers[venue.value] = producer
            tasks.append(asyncio.create_task(producer.run(stop)))
        running = Stack(producers, admin, connect_as(Role.CONTROL), settings)
        await running.all_books_flow({v: CONFIGURED for v in producers})
        yield running
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for fake in venues.values():
        await fake.stop()


def control_fields(symbols: Any, **fields: Any) -> dict[str, Any]:
    return {"v": "1", "op": "set", "source": "user", "symbols": orjson.dumps(symbols), **fields}


BOTH = ["coinbase", "kraken"]
"""An entry that is invalid as a whole is rejected by every producer; one naming only another venue's
unlisted market only by that venue's producer."""

REJECTED_RAW_ENTRIES = {
    "unlisted symbol": (control_fields({"coinbase": ["XXX-YYY"]}), ["coinbase"], "coinbase lists no market XXX-YYY"),
    "unknown venue": (control_fields({"binance": ["BTC-USD"]}), BOTH, "unknown venue 'binance'"),
    "a valid venue beside an unknown one": (control_fields({"coinbase": ["SOL-USD"], "notavenue": ["BTC-USD"]}),
                                            BOTH, "unknown venue 'notavenue'"),
    "flat list for every venue": (control_fields(["XXX-YYY"]), BOTH, "must name each venue"),
    "all-venues key": (control_fields({"*": ["BTC-USD"]}), BOTH, "unknown venue '*'"),
    "20,000 made-up symbols": (control_fields({"kraken": [f"X{i}-Y{i}" for i in range(20_000)]}), BOTH,
                               "bytes, more than the limit"),
    "1,001 symbols": (control_fields({"kraken": [f"X{i}-USD" for i in range(1_001)]}), BOTH,
                      "more than the limit of 1000"),
    "empty set": (control_fields({"coinbase": []}), BOTH, "names no symbols"),
    "undecodable symbols": ({"v": "1", "symbols": "not json"}, BOTH, "not valid JSON"),
    "no version": ({"symbols": orjson.dumps({"coinbase": ["BTC-USD"]})}, BOTH, "no 'v' field"),
    "unknown op": (control_fields({"coinbase": ["BTC-USD"]}, op="wipe"), BOTH, "op"),
}


@pytest.mark.parametrize("fields, rejected_by, reason", REJECTED_RAW_ENTRIES.values(), ids=REJECTED_RAW_ENTRIES)
async def test_a_bad_control_entry_is_dead_lettered_and_changes_nothing(
    stack: Stack, fields: dict[str, Any], rejected_by: list[str], reason: str
) -> None:
    entry_id = await stack.raw(fields)
    await eventually(lambda: _rejected_by(stack, entry_id, rejected_by))
    for letter in await stack.deadletters(entry_id):
        assert reason in letter[b"reason"].decode()
    assert {venue: p.symbols for venue, p in stack.producers.items()} == {"coinbase": CONFIGURED, "kraken": CONFIGURED}
    await stack.all_books_flow({"coinbase": CONFIGURED, "kraken": CONFIGURED})
    assert all(p.health().status == FeedStatus.UP for p in stack.producers.values())


async def _rejected_by(stack: Stack, entry_id: str, venues: list[str]) -> bool:
    letters = await stack.deadletters(entry_id)
    return sorted(f[b"rejected_by"].decode() for f in letters) == [f"producer/{v}" for v in venues]


async def test_a_change_names_one_venue_and_leaves_the_other_alone(stack: Stack) -> None:
    await stack.send(SymbolControl(symbols={"kraken": ["SOL-USD"]}))
    await eventually(lambda: stack.producers["kraken"].symbols == ["SOL-USD"])
    await stack.all_books_flow({"coinbase": CONFIGURED, "kraken": ["SOL-USD"]})
    assert stack.producers["coinbase"].symbols == CONFIGURED


async def test_add_and_remove_edit_the_set_in_force(stack: Stack) -> None:
    await stack.send(SymbolControl(op=ControlOp.ADD, symbols={"coinbase": ["ETH-BTC"]}))
    await eventually(lambda: stack.producers["coinbase"].symbols == [*CONFIGURED, "ETH-BTC"])
    await stack.send(SymbolControl(op=ControlOp.REMOVE, symbols={"coinbase": ["BTC-USD"]}))
    await eventually(lambda: stack.producers["coinbase"].symbols == ["ETH-USD", "ETH-BTC"])
    await stack.all_books_flow({"coinbase": ["ETH-USD", "ETH-BTC"], "kraken": CONFIGURED})


async def test_the_producer_holds_the_user_set_and_the_detector_set_together(stack: Stack) -> None:
    detector = SymbolControl(source=ControlSource.DETECTOR, symbols={"coinbase": ["SOL-USD", "BTC-USD"]})
    await stack.send(detector)
    await eventually(lambda: stack.producers["coinbase"].symbols == [*CONFIGURED, "SOL-USD"])
    user_removes = SymbolControl(op=ControlOp.REMOVE, symbols={"coinbase": ["SOL-USD", "ETH-USD"]})
    await stack.send(user_removes)
    await eventually(lambda: stack.producers["coinbase"].symbols == ["BTC-USD", "SOL-USD"])  # the detector needs SOL


async def test_a_feed_holding_no_symbols_is_degraded_until_some_are_added(stack: Stack) -> None:
    await stack.send(SymbolControl(op=ControlOp.REMOVE, symbols={"kraken": CONFIGURED}))
    await eventually(lambda: stack.producers["kraken"].health().status == FeedStatus.DEGRADED)
    health = stack.producers["kraken"].health()
    assert (health.symbol_count, health.detail) == (0, "holds no symbols: add some with triarb symbols")
    await stack.send(SymbolControl(op=ControlOp.ADD, symbols={"kraken": ["ETH-BTC"]}))
    await eventually(lambda: stack.producers["kraken"].health().status == FeedStatus.UP)


async def test_health_records_carry_a_count_and_digest_not_the_list(stack: Stack) -> None:
    since = await stack.last_id("md.health")
    await eventually(lambda: stack.admin.xrange("md.health", f"({since}", "+"))
    _, fields = (await stack.admin.xrange("md.health", f"({since}", "+", count=1))[0]
    assert b"symbols" not in fields
    assert (fields[b"symbol_count"], len(fields[b"symbols_digest"])) == (b"2", 16)


async def test_a_restarted_producer_folds_the_retained_history_to_the_same_set(stack: Stack, settings: Settings,
                                                                            connect_as: Callable[..., Redis]) -> None:
    await stack.send(SymbolControl(symbols={"coinbase": ["SOL-USD"]}))
    await stack.send(SymbolControl(op=ControlOp.ADD, symbols={"coinbase": ["ETH-BTC"]}))
    await stack.raw(control_fields({"coinbase": ["XXX-YYY"]}))
    await eventually(lambda: stack.producers["coinbase"].symbols == ["SOL-USD", "ETH-BTC"])
    async with Publisher(connect_as(Role.PRODUCER), settings.names, settings.streams, settings.bus) as publisher:
        fresh = VenueProducer(Venue.COINBASE, VenueSettings(url="ws://127.0.0.1:9", symbols=CONFIGURED),
                              ProducerSettings(), publisher, names=settings.names,
                              control_redis=connect_as(Role.PRODUCER), catalog=LISTED)
        assert fresh.control is not None
        await fresh.control.load()
        assert fresh.control.wanted() == ["SOL-USD", "ETH-BTC"]
    state = await read_control_state(stack.control, settings.names, {"coinbase": CONFIGURED, "kraken": CONFIGURED})
    assert (state.wanted("coinbase"), state.wanted("kraken")) == (["SOL-USD", "ETH-BTC"], CONFIGURED)


async def test_publish_control_refuses_what_a_producer_would_reject(stack: Stack) -> None:
    with pytest.raises(ControlRejected, match="coinbase lists no market XXX-YYY"):
        await stack.send(SymbolControl(symbols={"coinbase": ["XXX-YYY"]}))
    await stack.admin.delete("md:markets:kraken")
    with pytest.raises(ControlRejected, match="kraken: no market list registered"):
        await stack.send(SymbolControl(symbols={"kraken": ["BTC-USD"]}))
    assert await stack.admin.xlen("strategy.ctrl.symbols") == 0


def test_encoded_control_entries_name_their_op_and_source() -> None:
    control = SymbolControl(op=ControlOp.ADD, source=ControlSource.DETECTOR, symbols={"kraken": ["BTC-USD"]})
    fields = encode_dict(control)
    assert (fields["op"], fields["source"]) == ("add", "detector")
