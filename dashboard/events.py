"""Server-sent events from the streams: opportunities resumable by stream id, health and episodes as
current state.

An ``opportunity`` event's SSE id is its Redis stream id, and only those events carry an id, so the
browser's ``Last-Event-ID`` is always the last opportunity it received: a reconnect replays exactly the
ones after it (plain XREAD from that id). ``health`` and ``episode`` events carry no id: on (re)connect the
latest record of every feed and the current state of the newest episodes are sent, then each new event.
Every episode event carries the whole episode so far, so a reader keeps the one with the highest ``seq`` per
episode id and never needs a replay. Read with the read-only dashboard user.

A start id is checked before Redis sees it (:func:`parse_stream_id`), and one newer than the stream's last
entry is clamped to that entry (:func:`resume_position`): XREAD from a future id would skip every new
entry until the clock caught up with it. A Redis fault after the answer has started ends the stream, and
the browser's EventSource reconnects by itself (a non-200 answer would make it give up); while following,
the reader rides faults out instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Collection
from typing import Any

import orjson
from redis.asyncio import Redis
from sse_starlette import ServerSentEvent

from common import metrics
from common.bus import NEW_ONLY, FanoutReader, StreamEntry, decode_entry
from common.bus.entries import parse_range_reply, text
from schemas import Episode, Fill, Health, Opportunity
from schemas.episode import EpisodeEvent
from schemas.streams import StreamNames, Subject

HEALTH_SCAN = 200
"""Recent md.health entries scanned for each feed's latest state."""

EPISODES_ON_CONNECT = 100
"""Episodes whose current state an ``/events`` connection starts with (the page's table)."""

EPISODE_EVENTS_PER_EPISODE = 20
"""Reading back for ``count`` episodes stops after ``count`` × this many events: an episode has an open, a
close and at most one update per ``detector.episode_update_ms`` in between."""

PAPER_JOIN_SCAN = 2_000
"""Newest entries of ``strategy.opportunity`` and of ``strategy.fill`` searched for the paper result of an
episode's first opportunity; an older one has no result to show."""

SCAN_PAGE = 500
"""Entries per XREVRANGE when reading a stream back."""

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
    last = await last_id(redis, stream)
    return last if parse_stream_id(start) > parse_stream_id(last) else start


async def last_id(redis: Redis, stream: str) -> str:
    """The id of ``stream``'s newest entry, ``0-0`` when it is empty."""
    newest = await redis.xrevrange(stream, count=1)
    return text(newest[0][0]) if newest else "0-0"


async def newest_entries(redis: Redis, stream: str, limit: int, *, through: str = "+") -> AsyncIterator[StreamEntry]:
    """At most ``limit`` entries of ``stream``, newest first, from ``through`` (an id, included) back; read in
    pages of ``SCAN_PAGE``, so a reader that stops early reads little."""
    end = through
    while limit > 0:
        want = min(limit, SCAN_PAGE)
        reply = await redis.xrevrange(stream, max=end, min="-", count=want)
        entries = parse_range_reply(stream, reply)
        for entry in entries:
            yield entry
        if len(reply) < want:
            return
        limit -= len(reply)
        end = "(" + text(reply[-1][0])


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


async def latest_episodes(
    redis: Redis, names: StreamNames, count: int, *, through: str = "+"
) -> list[tuple[str, Episode]]:
    """The ``count`` newest-opened episodes, newest first, each as its newest event (with that event's stream
    id), folded from the newest entries of ``strategy.episode`` up to ``through``.

    Reading back stops once ``count`` ``open`` events are seen: every episode opened later has its open event
    (and so its newest event) among those read. An episode whose open event is older than what was read
    (a long one, or trimmed away) still counts by its ``opened_ms``."""
    stream = names.stream(Subject.EPISODE)
    newest: dict[str, tuple[str, Episode]] = {}
    opened = 0
    async for entry in newest_entries(redis, stream, count * EPISODE_EVENTS_PER_EPISODE, through=through):
        delivery = decode_entry(names, entry)
        if delivery is None or not isinstance(delivery.model, Episode):
            continue
        newest.setdefault(delivery.model.id, (entry.id, delivery.model))
        if delivery.model.event is EpisodeEvent.OPEN:
            opened += 1
            if opened >= count:
                break
    ranked = sorted(newest.values(), key=lambda item: (item[1].opened_ms, item[1].id), reverse=True)
    return ranked[:count]


async def fills_by_sim_id(
    redis: Redis, names: StreamNames, scan: int, wanted: Collection[str] | None = None
) -> dict[str, Any]:
    """Paper fills among the newest ``scan`` of ``strategy.fill``, as their traces (JSON) by ``sim_id``; with
    ``wanted``, only those, and reading stops once all are found."""
    stream = names.stream(Subject.FILL)
    fills: dict[str, Any] = {}
    if wanted is not None and not wanted:
        return fills
    async for entry in newest_entries(redis, stream, scan):
        delivery = decode_entry(names, entry)
        if delivery is None or not isinstance(delivery.model, Fill):
            continue
        sim_id = delivery.model.trace.sim_id
        if wanted is None or sim_id in wanted:
            fills.setdefault(sim_id, delivery.model.trace.model_dump(mode="json"))
            if wanted is not None and len(fills) == len(wanted):
                break
    return fills


async def paper_results(redis: Redis, names: StreamNames, opportunity_ids: Collection[str]) -> dict[str, Any]:
    """The paper broker's result of each opportunity: ``{"sim_id", "result"}`` by opportunity id, joined like
    everywhere else (the opportunity's ``sim_id`` names its fill on ``strategy.fill``). ``result`` is the fill's
    trace, ``None`` while there is none; ``sim_id`` is ``None`` for an opportunity not among the newest
    ``PAPER_JOIN_SCAN`` (its result is not looked for)."""
    wanted = set(opportunity_ids)
    sim_ids: dict[str, str | None] = dict.fromkeys(wanted)
    found = 0
    if wanted:
        async for entry in newest_entries(redis, names.stream(Subject.OPPORTUNITY), PAPER_JOIN_SCAN):
            delivery = decode_entry(names, entry)
            if delivery is None or not isinstance(delivery.model, Opportunity) or delivery.model.id not in wanted:
                continue
            if sim_ids[delivery.model.id] is None:
                sim_ids[delivery.model.id] = delivery.model.sim_id
                found += 1
                if found == len(wanted):
                    break
    fills = await fills_by_sim_id(redis, names, PAPER_JOIN_SCAN, {s for s in sim_ids.values() if s is not None})
    return {opportunity_id: {"sim_id": sim_id, "result": fills.get(sim_id) if sim_id is not None else None}
            for opportunity_id, sim_id in sim_ids.items()}


def episode_row(stream_id: str, episode: Episode) -> dict[str, Any]:
    """An episode as the API and the page see it: its newest event, with that event's stream id."""
    return {"stream_id": stream_id, **episode.model_dump(mode="json")}


async def episode_rows(
    redis: Redis, names: StreamNames, count: int, *, through: str = "+"
) -> list[dict[str, Any]]:
    """:func:`latest_episodes` as rows, each with ``paper``: the paper result of its first opportunity."""
    episodes = await latest_episodes(redis, names, count, through=through)
    paper = await paper_results(redis, names, {episode.first_opportunity_id for _, episode in episodes})
    return [episode_row(stream_id, episode) | {"paper": paper[episode.first_opportunity_id]}
            for stream_id, episode in episodes]


def to_event(names: StreamNames, entry: StreamEntry) -> ServerSentEvent | None:
    delivery = decode_entry(names, entry)
    if delivery is None:
        return None
    model = delivery.model
    if isinstance(model, Episode):  # live events: the page joins their paper result from opportunity and fill
        return ServerSentEvent(data=orjson.dumps(episode_row(entry.id, model)).decode(), event="episode")
    data = orjson.dumps(model.model_dump(mode="json")).decode()
    if isinstance(model, Opportunity):
        return ServerSentEvent(data=data, event="opportunity", id=entry.id)
    if isinstance(model, Fill):
        return ServerSentEvent(data=data, event="fill")
    if isinstance(model, Health):
        return ServerSentEvent(data=data, event="health")
    return None


async def event_stream(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, *, block_ms: int = 250,
    follow: bool = True,
) -> AsyncIterator[ServerSentEvent]:
    """Health and episode snapshots, then opportunities after ``last_event_id`` (or only new ones), then
    everything live until ``stop`` is set. ``follow=False`` ends once the streams hold nothing more (drain,
    for tests)."""
    metrics.SSE_CLIENTS.inc()
    try:
        async for event in _events(redis, names, last_event_id, stop, block_ms, follow):
            yield event
    finally:
        metrics.SSE_CLIENTS.dec()


async def _events(
    redis: Redis, names: StreamNames, last_event_id: str | None, stop: asyncio.Event, block_ms: int, follow: bool
) -> AsyncIterator[ServerSentEvent]:
    opportunities, episodes = names.stream(Subject.OPPORTUNITY), names.stream(Subject.EPISODE)
    opportunity_start = await resume_position(redis, opportunities, last_event_id)
    episode_start = await last_id(redis, episodes)  # the snapshot is read up to here, and followed after it
    for _, health in sorted((await latest_health(redis, names)).values(), key=lambda item: item[0]):
        yield ServerSentEvent(data=orjson.dumps(health.model_dump(mode="json")).decode(), event="health")
    for row in reversed(await episode_rows(redis, names, EPISODES_ON_CONNECT, through=episode_start)):
        yield ServerSentEvent(data=orjson.dumps(row).decode(), event="episode")  # oldest first, as if live
    reader = FanoutReader(redis, {opportunities: opportunity_start, names.stream(Subject.HEALTH): NEW_ONLY,
                                  names.stream(Subject.FILL): NEW_ONLY, episodes: episode_start}, block_ms=block_ms)
    async for entry in reader.follow(stop) if follow else _drain(reader):
        event = to_event(names, entry)
        if event is not None:
            yield event


async def _drain(reader: FanoutReader) -> AsyncIterator[StreamEntry]:
    while entries := await reader.read(block=False):
        for entry in entries:
            yield entry
