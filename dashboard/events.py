"""Server-sent events from the streams: opportunities resumable by stream id, health as current state.

An ``opportunity`` event's SSE id is its Redis stream id, and only those events carry an id, so the
browser's ``Last-Event-ID`` is always the last opportunity it received: a reconnect replays exactly the
ones after it (plain XREAD from that id). ``health`` events carry no id: on (re)connect the latest record of
every feed is sent, then each new one. Read with the read-only dashboard user.

A start id is checked before Redis sees it (:func:`parse_stream_id`), and one newer than the stream's last
entry is clamped to that entry (:func:`resume_position`): XREAD from a future id would skip every new
entry until the clock caught up with it. A Redis fault after the answer has started ends the stream, and
the browser's EventSource reconnects by itself (a non-200 answer would make it give up); while following,
the reader rides faults out instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis
from sse_starlette import ServerSentEvent

from common import metrics
from common.bus import NEW_ONLY, FanoutReader, StreamEntry, decode_entry
from common.bus.entries import parse_range_reply, text
from schemas import Health
from schemas.streams import StreamNames, Subject

HEALTH_SCAN = 200
"""Recent md.health entries scanned for each feed's latest state."""

STREAM_ID_PATTERN = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
"""``MS`` or ``MS-SEQ`` in ASCII decimal digits (also the OpenAPI pattern of ``since``/``Last-Event-ID``)."""

MAX_ID_PART = 2**64 - 1
"""Redis keeps both halves of a stream id as unsigned 64-bit integers."""

_STREAM_ID = re.compile(STREAM_ID_PATTERN)


class InvalidStreamId(ValueError):
    """A start position that is not a Redis stream id; the message says what one looks like."""


def parse_stream_id(value: str) -> tuple[int, int]:
    """``(ms, seq)`` of ``MS`` or ``MS-SEQ`` (``MS`` alone is ``MS-0``, as XREAD reads it), each part at most
    2^64-1; raises :class:`InvalidStreamId` for anything Redis would refuse with "Invalid stream ID"."""
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        raise InvalidStreamId(f"{value[:40]!r} is not a stream id: expected MS or MS-SEQ in decimal digits, "
                              "e.g. 1718000000000-0")
    milliseconds, _, sequence = value.partition("-")
    parsed = int(milliseconds), int(sequence or 0)
    if max(parsed) > MAX_ID_PART:
        raise InvalidStreamId(f"{value!r} is not a stream id: each part must be at most {MAX_ID_PART}")
    return parsed


async def resume_position(redis: Redis, stream: str, start: str | None) -> str:
    """Where to follow ``stream`` from: only new entries without ``start``, else after ``start``, clamped to
    the stream's last entry (``0-0`` when it is empty) when ``start`` is newer than that."""
    if start is None:
        return NEW_ONLY
    newest = await redis.xrevrange(stream, count=1)
    last = text(newest[0][0]) if newest else "0-0"
    return last if parse_stream_id(start) > parse_stream_id(last) else start


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
    if delivery.subject is Subject.FILL:
        return ServerSentEvent(data=data, event="fill")
    return ServerSentEvent(data=data, event="health")


async def event_stream(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, *, block_ms: int = 250,
    follow: bool = True,
) -> AsyncIterator[ServerSentEvent]:
    """Health snapshot, then opportunities after ``last_event_id`` (or only new ones), then everything live
    until ``stop`` is set. ``follow=False`` ends once the streams hold nothing more (drain, for tests)."""
    metrics.SSE_CLIENTS.inc()
    try:
        async for event in _events(redis, names, last_event_id, stop, block_ms, follow):
            yield event
    finally:
        metrics.SSE_CLIENTS.dec()


async def _events(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, block_ms: int, follow: bool
) -> AsyncIterator[ServerSentEvent]:
    opportunities = names.stream(Subject.OPPORTUNITY)
    opportunity_start = await resume_position(redis, opportunities, last_event_id)
    for _, health in sorted((await latest_health(redis, names)).values(), key=lambda item: item[0]):
        yield ServerSentEvent(data=orjson.dumps(health.model_dump(mode="json")).decode(), event="health")
    reader = FanoutReader(redis, {opportunities: opportunity_start, names.stream(Subject.HEALTH): NEW_ONLY,
                                  names.stream(Subject.FILL): NEW_ONLY}, block_ms=block_ms)
    async for entry in reader.follow(stop) if follow else _drain(reader):
        event = to_event(names, entry)
        if event is not None:
            yield event


async def _drain(reader: FanoutReader) -> AsyncIterator[StreamEntry]:
    while entries := await reader.read(block=False):
        for entry in entries:
            yield entry
