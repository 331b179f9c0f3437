"""Server-sent events from the streams: opportunities resumable by stream id, health as current state.

An ``opportunity`` event's SSE id is its Redis stream id, and only those events carry an id, so the
browser's ``Last-Event-ID`` is always the last opportunity it received: a reconnect replays exactly the
ones after it (plain XREAD from that id). ``health`` events carry no id: on (re)connect the latest record of
every feed is sent, then each new one. Read with the read-only dashboard user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis
from sse_starlette.sse import ServerSentEvent

from common import metrics
from common.bus import FanoutReader, StreamEntry, decode_entry
from common.bus.entries import parse_range_reply
from schemas import Health
from schemas.streams import StreamNames, Subject

HEALTH_SCAN = 200
"""Recent md.health entries scanned for each feed's latest state."""


async def latest_health(redis: Redis, names: StreamNames) -> dict[tuple[str, str], tuple[str, Health]]:
    """The newest health record per (exchange, channel), with its stream id."""
    stream = names.stream(Subject.HEALTH)
    latest: dict[tuple[str, str], tuple[str, Health]] = {}
    for entry in parse_range_reply(stream, await redis.xrevrange(stream, count=HEALTH_SCAN)):
        delivery = decode_entry(names, entry)
        if delivery is None or not isinstance(delivery.model, Health):
            continue
        key = (delivery.model.exchange, delivery.model.channel.value)
        latest.setdefault(key, (entry.id, delivery.model))
    return latest


def to_event(names: StreamNames, entry: StreamEntry) -> ServerSentEvent | None:
    delivery = decode_entry(names, entry)
    if delivery is None:
        return None
    data = orjson.dumps(delivery.model.model_dump(mode="json")).decode()
    if delivery.subject is Subject.OPPORTUNITY:
        return ServerSentEvent(data=data, event="opportunity", id=entry.id)
    return ServerSentEvent(data=data, event="health")


async def event_stream(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, *, block_ms: int = 250
) -> AsyncIterator[ServerSentEvent]:
    """Health snapshot, then opportunities after ``last_event_id`` (or only new ones), then everything live."""
    metrics.SSE_CLIENTS.inc()
    try:
        async for event in _events(redis, names, last_event_id, stop, block_ms):
            yield event
    finally:
        metrics.SSE_CLIENTS.dec()


async def _events(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, block_ms: int
) -> AsyncIterator[ServerSentEvent]:
    for _, health in sorted((await latest_health(redis, names)).values(), key=lambda item: item[0]):
        yield ServerSentEvent(data=orjson.dumps(health.model_dump(mode="json")).decode(), event="health")
    opportunity_start = last_event_id if last_event_id else "$"
    reader = FanoutReader(
        redis, {names.stream(Subject.OPPORTUNITY): opportunity_start, names.stream(Subject.HEALTH): "$"},
        block_ms=block_ms,
    )
    async for entry in reader.follow(stop):
        event = to_event(names, entry)
        if event is not None:
            yield event
