"""Fan-out reading: plain XREAD from a saved position, so every reader sees every entry.

Used where each instance needs the whole stream rather than a share of it: the dashboard (its positions
are the SSE event ids a browser resumes from), producers following the control stream, ``triarb tail``.
It never writes, so it works with the read-only ``dashboard`` ACL user; an undecodable entry is counted,
logged and skipped (a reader cannot dead-letter). ``follow`` rides out Redis faults: it backs off and reads
on from the positions it holds, so a restart neither repeats nor skips an entry that Redis still has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from common import metrics
from common.bus.entries import Delivery, StreamEntry, parse_range_reply, parse_stream_reply, text
from common.redis_link import RedisLink, is_transient
from schemas.codec import CodecError, decode
from schemas.streams import StreamNames, Subject

log = logging.getLogger(__name__)

NEW_ONLY = "$"
"""Start position meaning "entries added after the first read"."""


class FanoutReader:
    """Follows ``streams`` from ``positions`` (stream → last seen id; ``"0"`` = from the start, ``"$"`` = new)."""

    def __init__(
        self,
        redis: Redis,
        positions: Mapping[str, str],
        *,
        count: int = 256,
        block_ms: int = 500,
        link: RedisLink | None = None,
    ) -> None:
        if not positions:
            raise ValueError("FanoutReader needs at least one stream")
        self._redis = redis
        self.positions: dict[str, str] = dict(positions)
        self._count = count
        self._block_ms = block_ms
        self.link = link or RedisLink("fanout")
        for stream in self.positions:
            metrics.BUS_INVALID_SKIPPED.labels(stream=stream)  # exists before the first skip

    @classmethod
    def for_subjects(
        cls, redis: Redis, names: StreamNames, subjects: Sequence[Subject], start: str = NEW_ONLY, *,
        count: int = 256, block_ms: int = 500, link: RedisLink | None = None,
    ) -> FanoutReader:
        return cls(redis, {names.stream(subject): start for subject in subjects}, count=count, block_ms=block_ms,
                   link=link)

    async def resolve_new_only(self) -> None:
        """Pin ``"$"`` positions to the current last id, so entries added between reads are not missed.

        XREAD with ``$`` means "after the newest entry at the time of *this* call"; re-sending ``$`` on every
        read would drop whatever arrived in between, so the first read pins it.
        """
        for stream, position in self.positions.items():
            if position == NEW_ONLY:
                newest = await self._redis.xrevrange(stream, count=1)
                self.positions[stream] = text(newest[0][0]) if newest else "0-0"

    async def read(self, *, block: bool = True) -> list[StreamEntry]:
        """One XREAD from the saved positions; advances them past what it returns."""
        await self.resolve_new_only()
        positions: dict[Any, Any] = dict(self.positions)
        reply = await self._redis.xread(positions, count=self._count, block=self._block_ms if block else None)
        entries = parse_stream_reply(reply)
        for entry in entries:
            self.positions[entry.stream] = entry.id
        return entries

    async def last(self, count: int) -> list[StreamEntry]:
        """The newest ``count`` entries of every stream, newest first (XREVRANGE); positions are unchanged."""
        entries: list[StreamEntry] = []
        for stream in self.positions:
            entries.extend(parse_range_reply(stream, await self._redis.xrevrange(stream, count=count)))
        return entries

    async def read_riding_out_faults(
        self, stop: asyncio.Event | None, *, block: bool = True
    ) -> list[StreamEntry] | None:
        """:meth:`read`, but a transient Redis fault is waited out with the link's backoff and gives ``None``
        (positions unchanged: the next read neither repeats nor skips anything)."""
        try:
            entries = await self.read(block=block)
        except Exception as exc:
            if not is_transient(exc):
                raise
            await self.link.pause(exc, stop)
            return None
        self.link.ok()
        return entries

    async def follow(self, stop: asyncio.Event | None = None) -> AsyncIterator[StreamEntry]:
        """Yield entries as they arrive until ``stop`` is set (checked at least every ``block_ms``);
        transient Redis faults are waited out with backoff."""
        while stop is None or not stop.is_set():
            for entry in await self.read_riding_out_faults(stop) or ():
                yield entry


def decode_entry(names: StreamNames, entry: StreamEntry) -> Delivery | None:
    """Decode a fan-out entry; an invalid one is counted and logged, and ``None`` returned."""
    try:
        subject = names.subject_of(entry.stream)
        return Delivery(subject, entry.stream, entry.id, decode(subject, entry.fields))
    except (CodecError, ValueError) as exc:
        metrics.BUS_INVALID_SKIPPED.labels(stream=entry.stream).inc()
        log.warning("skipped an undecodable entry", extra={"stream": entry.stream, "id": entry.id, "error": str(exc)})
        return None


async def history(redis: Redis, stream: str, *, page: int = 500) -> AsyncIterator[StreamEntry]:
    """Every entry ``stream`` still holds, oldest first, read in pages (XRANGE)."""
    start = "-"
    while True:
        entries = parse_range_reply(stream, await redis.xrange(stream, start, "+", count=page))
        for entry in entries:
            yield entry
        if len(entries) < page:
            return
        start = "(" + entries[-1].id
