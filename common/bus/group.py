"""Consumer-group worker loop: at-least-once delivery, reclaiming a dead worker's entries, dead letters.

One iteration is one round trip: the XACK of the batch just handled (one command, every id) travels in the
same pipeline as the XREADGROUP of the next one, whose reply is read raw and parsed in one pass (redis-py's
parse builds a tuple and a dict per entry that would only be copied again). Entries are acknowledged only
after the handler returned, so a worker that dies mid-batch leaves them pending; another worker's periodic
XAUTOCLAIM takes them over once they have been idle ``claim_idle_ms``. An entry that cannot be decoded is
dead-lettered at once; one whose handler keeps failing is retried (via reclaim) and dead-lettered after
``max_deliveries``.

Redis faults are weather: a lost connection, a server loading its AOF or refusing credentials while it
restarts makes the worker back off (capped, jittered) and carry on from the group's position, first
re-reading its own pending entries (``XREADGROUP ... 0``) so nothing it was handling waits for a reclaim.
Acknowledgements that did not reach Redis are kept and sent again (XACK is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from common import metrics
from common.bus.deadletter import DEADLETTER_MAXLEN, deadletter_record
from common.bus.entries import (
    Delivery,
    Fields,
    Payload,
    StreamEntry,
    parse_range_reply,
    parse_raw_stream_reply,
    text,
)
from common.config import BusSettings
from common.redis_link import RedisLink, is_transient
from schemas.codec import CodecError, decode
from schemas.streams import StreamNames, Subject

log = logging.getLogger(__name__)

Handler = Callable[[list[Delivery]], Awaitable[None]]
"""Processes a batch; returning means its effects are durable and the batch may be acknowledged."""

Decoder = Callable[[Subject, Fields], Payload]
"""Turns an entry's fields into what the handler gets; raises ``CodecError`` (the entry is dead-lettered)."""

IDLE_CONSUMER_FACTOR = 4
"""A consumer idle this many ``claim_idle_ms`` with nothing pending is gone for good: removed from the group."""


def consumer_name() -> str:
    """Unique per process and start, so a restarted worker never inherits a dead one's pending list."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class GroupConsumer:
    """Reads ``subjects`` as consumer ``name`` of ``group`` and feeds decoded batches to ``handler``."""

    def __init__(
        self,
        redis: Redis,
        names: StreamNames,
        bus: BusSettings,
        *,
        group: str,
        subjects: Sequence[Subject],
        handler: Handler,
        name: str | None = None,
        start_id: str = "$",
        deadletter_maxlen: int = DEADLETTER_MAXLEN,
        link: RedisLink | None = None,
        decoder: Decoder = decode,
    ) -> None:
        """``decoder``: the full model by default; a handler that needs less (the detector needs only which
        book changed) passes a cheaper one, such as :func:`schemas.codec.decode_book_ref`."""
        self._redis = redis
        self._names = names
        self._bus = bus
        self.group = group
        self.name = name or consumer_name()
        self._streams = {names.stream(subject): subject for subject in subjects}
        self._handler = handler
        self._decoder = decoder
        self._start_id = start_id
        self._deadletter_maxlen = deadletter_maxlen
        self._to_ack: dict[str, list[bytes]] = {stream: [] for stream in self._streams}
        """Ids handled and not yet acknowledged, per stream (bytes: redis-py packs them as they are)."""
        self._raw_read_callbacks = {command: parse for command, parse in redis.response_callbacks.items()
                                    if command != "XREADGROUP"}
        """The client's reply parsers less XREADGROUP's (keys are upper case), for our read pipelines only."""
        self._claim_cursor = dict.fromkeys(self._streams, "0-0")
        self._next_claim_at = 0.0
        self.link = link or RedisLink(f"group-{group}")
        metrics.prepare_group(group, self._streams)
        self._pending_cursor: dict[str, str] = {}
        """Per stream, where the re-read of our own pending entries stands; empty once done. Restarted from
        "0" at start and after every fault, so what we were handling is redone before anything new."""
        self._restart_pending()

    async def ensure_groups(self) -> None:
        """Create the group on every stream (and the stream itself); an existing group is fine."""
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id=self._start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, stop: asyncio.Event | None = None, *, burst: bool = False) -> None:
        """Work until ``stop`` is set (checked between reads, so at most ``read_block_ms`` later).

        ``burst=True`` drains what is there now (new and reclaimable entries) and returns: tests and
        one-shot jobs need no sleeps. Either way the batch in hand is finished and acknowledged.
        Transient Redis faults never end it: it backs off and resumes from the group's position.
        """
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    await self._work(stop, burst=burst)
                    return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._restart_pending()
                    await self.link.pause(exc, stop)
        finally:
            with contextlib.suppress(Exception):  # best effort: unacked entries are redelivered anyway
                await self._flush_acks()

    async def _work(self, stop: asyncio.Event, *, burst: bool) -> None:
        await self.ensure_groups()
        self.link.ok()
        while not stop.is_set():
            if self._pending_cursor:
                batch = await self._ack_and_read(block=False, positions=self._pending_cursor)
                last = {entry.stream: entry.id for entry in batch}
                self._pending_cursor = {stream: last[stream] for stream in self._pending_cursor if stream in last}
                if batch:
                    await self._process(batch)
                continue
            if await self.reclaim():
                continue
            batch = await self._ack_and_read(block=not burst)
            if batch:
                await self._process(batch)
            elif burst and not await self.reclaim(force=True):
                return

    async def remove_idle_consumers(self, min_idle_ms: int | None = None) -> int:
        """XGROUP DELCONSUMER every other consumer with nothing pending that has been idle ``min_idle_ms``
        (default ``IDLE_CONSUMER_FACTOR × claim_idle_ms``): dead workers must not pile up in the group. A
        live worker removed by mistake loses nothing: its next XREADGROUP re-creates it."""
        if min_idle_ms is None:
            min_idle_ms = IDLE_CONSUMER_FACTOR * max(self._bus.claim_idle_ms, 1000)
        removed = 0
        for stream in self._streams:
            for info in await self._redis.xinfo_consumers(stream, self.group):
                name = text(info["name"])
                if name != self.name and int(info["pending"]) == 0 and int(info["idle"]) >= min_idle_ms:
                    await self._redis.xgroup_delconsumer(stream, self.group, name)
                    removed += 1
        if removed:
            metrics.BUS_CONSUMERS_REMOVED.labels(group=self.group).inc(removed)
            log.info("removed idle consumers", extra={"group": self.group, "count": removed})
        return removed

    async def reclaim(self, *, force: bool = False) -> int:
        """XAUTOCLAIM entries idle for ``claim_idle_ms`` (from any consumer, us included) and process them.

        Runs at most every ``claim_interval_ms`` unless forced. Returns how many entries were taken.
        """
        now = time.monotonic()
        if not force and now < self._next_claim_at:
            return 0
        self._next_claim_at = now + self._bus.claim_interval_ms / 1000
        # Handled-but-unacknowledged entries are still pending and would look idle: ack them first.
        await self._flush_acks()
        await self._update_lag()
        taken = 0
        for stream in self._streams:
            cursor, raw_entries, _deleted = await self._redis.xautoclaim(
                stream, self.group, self.name, self._bus.claim_idle_ms,
                start_id=self._claim_cursor[stream], count=self._bus.read_count,
            )
            self._claim_cursor[stream] = text(cursor)
            entries = parse_range_reply(stream, raw_entries)
            if not entries:
                continue
            taken += len(entries)
            metrics.BUS_CLAIMED.labels(stream=stream, group=self.group).inc(len(entries))
            log.info("reclaimed idle entries", extra={"stream": stream, "group": self.group, "count": len(entries)})
            deliveries = await self._delivery_counts(stream, entries)
            exhausted = [e for e in entries if deliveries.get(e.id, 0) > self._bus.max_deliveries]
            for entry in exhausted:
                count = deliveries[entry.id]
                reason = f"handler failed on {count} deliveries (max_deliveries={self._bus.max_deliveries})"
                await self._deadletter(entry, "max_deliveries", reason, count)
            retry = [e for e in entries if deliveries.get(e.id, 0) <= self._bus.max_deliveries]
            if retry:
                await self._process(retry, deliveries)
        if not taken:
            await self.remove_idle_consumers()
        return taken

    async def _update_lag(self) -> None:
        for stream in self._streams:
            for info in await self._redis.xinfo_groups(stream):
                if text(info["name"]) == self.group and info.get("lag") is not None:
                    metrics.BUS_CONSUMER_LAG.labels(stream=stream, group=self.group).set(int(info["lag"]))

    async def _delivery_counts(self, stream: str, entries: list[StreamEntry]) -> dict[str, int]:
        rows = await self._redis.xpending_range(
            stream, self.group, min=entries[0].id, max=entries[-1].id, count=len(entries) * 2, consumername=self.name
        )
        return {text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    def _restart_pending(self) -> None:
        self._pending_cursor = dict.fromkeys(self._streams, "0")

    async def _ack_and_read(self, *, block: bool, positions: dict[str, str] | None = None) -> list[StreamEntry]:
        """Acknowledge what was handled and read the next batch, in one round trip: new entries, or with
        ``positions`` this consumer's own pending entries (delivered, not acknowledged) past those ids."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.response_callbacks = self._raw_read_callbacks  # XREADGROUP raw: parse_raw_stream_reply below
        acked = self._queue_acks(pipe)
        streams: dict[Any, Any] = dict(positions) if positions else dict.fromkeys(self._streams, ">")
        pipe.xreadgroup(
            self.group, self.name, streams,
            count=self._bus.read_count, block=self._bus.read_block_ms if block and not positions else None,
        )
        replies = await pipe.execute()
        self._acks_sent(acked)
        self.link.ok()
        return parse_raw_stream_reply(replies[-1])

    async def _process(self, entries: list[StreamEntry], deliveries: dict[str, int] | None = None) -> None:
        batch: list[Delivery] = []
        for stream, count in Counter(entry.stream for entry in entries).items():
            metrics.BUS_CONSUMED.labels(stream=stream, group=self.group).inc(count)
        decoder, subjects = self._decoder, self._streams
        for entry in entries:
            subject = subjects[entry.stream]
            try:
                batch.append(Delivery(subject, entry.stream, entry.id, decoder(subject, entry.fields)))
            except CodecError as exc:
                count = (deliveries or {}).get(entry.id, 1)
                await self._deadletter(entry, "codec", exc.reason, count)
        if not batch:
            return
        try:
            await self._handler(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise  # a Redis fault inside the handler: back off, then redo our pending entries
            # Left pending on purpose: reclaim retries it after claim_idle_ms, then dead-letters it.
            metrics.BUS_HANDLER_ERRORS.labels(stream=batch[0].stream, group=self.group).inc(len(batch))
            log.exception("handler failed; batch stays pending for retry", extra={"group": self.group,
                                                                                 "entries": len(batch)})
            return
        to_ack = self._to_ack
        for delivery in batch:
            to_ack[delivery.stream].append(delivery.id.encode())

    async def _deadletter(self, entry: StreamEntry, kind: str, reason: str, deliveries: int) -> None:
        """Move an entry to ``deadletter`` and acknowledge it, atomically (MULTI), so it is never lost."""
        pipe = self._redis.pipeline(transaction=True)
        record = deadletter_record(entry, reason, f"{self.group}/{self.name}", deliveries=deliveries)
        pipe.xadd(self._names.deadletter, record, maxlen=self._deadletter_maxlen, approximate=True)
        pipe.xack(entry.stream, self.group, entry.id)
        await pipe.execute()
        metrics.BUS_DEADLETTERED.labels(stream=entry.stream, reason=kind).inc()
        log.warning("dead-lettered entry", extra={"stream": entry.stream, "id": entry.id, "reason": reason})

    def _queue_acks(self, pipe: Pipeline) -> dict[str, int]:
        """Queue XACKs of everything handled; they stay in ``_to_ack`` until Redis has them."""
        acked = {stream: len(ids) for stream, ids in self._to_ack.items() if ids}
        for stream, ids in self._to_ack.items():
            if ids:
                pipe.xack(stream, self.group, *ids)
        return acked

    def _acks_sent(self, acked: dict[str, int]) -> None:
        for stream, count in acked.items():
            del self._to_ack[stream][:count]
            metrics.BUS_ACKED.labels(stream=stream, group=self.group).inc(count)

    async def _flush_acks(self) -> None:
        if not any(self._to_ack.values()):
            return
        pipe = self._redis.pipeline(transaction=False)
        acked = self._queue_acks(pipe)
        await pipe.execute()
        self._acks_sent(acked)
