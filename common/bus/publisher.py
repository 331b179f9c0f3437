"""Batched, atomic publishing: many XADDs (and hot-cache writes) per round trip.

Why a Lua script sent on a raw connection instead of a redis-py pipeline: redis-py's asyncio connection
packs every command in pure Python (~20 µs per XADD), which caps a pipeline near 30k entries/s on one core.
Here a whole batch is one ``EVALSHA`` whose arguments ``hiredis.pack_command`` packs in C, and the script
runs atomically, so a consumer never sees a snapshot on the stream before its hot-cache entry (or vice
versa). ``make bench-bus`` compares it with ``redis-benchmark -P 100`` on the same payload.

Guarantees: entries of one publisher reach Redis in ``publish()`` order; a batch is written entirely or
not at all; a connection failure retries the batch with backoff (at-least-once: a batch whose reply was
lost may be written twice), and a Redis error reply (ACL, OOM) is fatal and raised by the next call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import metrics
from common.config import BusSettings, StreamLimits
from schemas.base import WireModel
from schemas.codec import SUBJECT_MODELS, FieldValue, encode_fields
from schemas.market import Snapshot
from schemas.streams import StreamNames, Subject

log = logging.getLogger(__name__)

# KEYS = streams first, then hot-cache keys. ARGV = [n_streams, maxlen per stream..., ttl_ms, entries...]
# where an entry is [stream key index, cache key index or 0, n field pairs, field, value, ...].
PUBLISH_SCRIPT = """
local n_streams = tonumber(ARGV[1])
local ttl_ms = ARGV[n_streams + 2]
local i = n_streams + 3
local last_id = false
while i <= #ARGV do
  local stream = tonumber(ARGV[i])
  local cache = tonumber(ARGV[i + 1])
  local first = i + 3
  local last = i + 2 + 2 * tonumber(ARGV[i + 2])
  last_id = redis.call('XADD', KEYS[stream], 'MAXLEN', '~', ARGV[stream + 1], '*', unpack(ARGV, first, last))
  if cache > 0 then
    redis.call('DEL', KEYS[cache])
    redis.call('HSET', KEYS[cache], unpack(ARGV, first, last))
    redis.call('PEXPIRE', KEYS[cache], ttl_ms)
  end
  i = last + 1
end
return last_id
"""
PUBLISH_SCRIPT_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()

REPLY_TIMEOUT_S = 10.0
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)

MODEL_SUBJECTS: dict[type[WireModel], Subject] = {model: subject for subject, model in SUBJECT_MODELS.items()}


class PublishError(RuntimeError):
    """Redis refused a batch (an error reply, not a lost connection); publishing cannot continue."""


@dataclass(slots=True)
class _Entry:
    stream: str
    maxlen: int
    cache_key: str | None
    fields: list[FieldValue]


class Publisher:
    """Buffers entries and flushes them from one background task, by size or after ``publish_linger_ms``.

    ``publish()`` only encodes and appends; it awaits nothing unless more than ``publish_high_water``
    entries are waiting (backpressure). Use as ``async with Publisher(...) as pub:``; leaving flushes.
    """

    def __init__(self, redis: Redis, names: StreamNames, limits: StreamLimits, bus: BusSettings) -> None:
        self._redis = redis
        self._names = names
        self._limits = limits
        self._bus = bus
        self._buffer: list[_Entry] = []
        self._pending = asyncio.Event()
        self._full = asyncio.Event()
        self._progress = asyncio.Condition()
        self._enqueued = 0
        self._written = 0
        self._error: PublishError | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._conn: Connection | None = None
        self.flushes = 0
        """Round trips that wrote a batch (tests count these instead of timing anything)."""

    async def __aenter__(self) -> Publisher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="publisher-flush")

    async def publish(self, model: WireModel) -> None:
        """Queue ``model`` on its subject's stream (snapshots also refresh their hot-cache key)."""
        self._raise_if_failed()
        subject = MODEL_SUBJECTS[type(model)]
        cache_key = None
        if subject is Subject.SNAPSHOT:
            assert isinstance(model, Snapshot)
            cache_key = self._names.book_key(model.exchange, model.symbol)
        stream = self._names.stream(subject)
        self._buffer.append(_Entry(stream, self._limits.for_subject(subject), cache_key, encode_fields(model)))
        self._enqueued += 1
        self._pending.set()
        if len(self._buffer) >= self._bus.publish_batch_size:
            self._full.set()
            if len(self._buffer) >= self._bus.publish_high_water:
                await self._wait_written(self._enqueued - self._bus.publish_high_water + 1)

    async def flush(self) -> None:
        """Return once everything published before this call is in Redis."""
        self._full.set()
        await self._wait_written(self._enqueued)

    async def close(self) -> None:
        """Flush what is buffered, stop the flush task and return the connection. Idempotent."""
        if self._task is None:
            return
        try:
            if self._error is None and not self._task.done():
                await self.flush()
        finally:
            self._closing = True
            self._pending.set()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            if self._conn is not None:
                await self._redis.connection_pool.release(self._conn)
                self._conn = None
        self._raise_if_failed()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _wait_written(self, target: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target or self._error is not None)
        self._raise_if_failed()

    async def _run(self) -> None:
        linger_s = self._bus.publish_linger_ms / 1000
        while not self._closing:
            await self._pending.wait()
            if linger_s and not self._full.is_set():
                try:
                    async with asyncio.timeout(linger_s):
                        await self._full.wait()
                except TimeoutError:
                    pass
            batch = self._buffer[: self._bus.publish_batch_size]
            del self._buffer[: len(batch)]
            if len(self._buffer) < self._bus.publish_batch_size:
                self._full.clear()
            if not self._buffer:
                self._pending.clear()
            if not batch:
                continue
            try:
                await self._write_with_retry(batch)
            except PublishError as exc:
                self._error = exc
                log.error("publisher stopped: %s", exc, extra={"entries_lost": len(batch) + len(self._buffer)})
            async with self._progress:
                self._written += len(batch)
                self._progress.notify_all()
            if self._error is not None:
                return

    async def _write_with_retry(self, batch: list[_Entry]) -> None:
        attempt = 0
        while True:
            try:
                await self._write(batch)
                return
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                metrics.BUS_FLUSH_ERRORS.inc()
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                log.warning("publish flush failed, retrying in %.2fs: %s", delay, exc, extra={"entries": len(batch)})
                await self._drop_connection()
                await asyncio.sleep(delay)
                attempt += 1
            except ResponseError as exc:
                metrics.BUS_FLUSH_ERRORS.inc()
                raise PublishError(f"Redis refused a batch of {len(batch)} entries: {exc}") from exc

    async def _write(self, batch: list[_Entry]) -> None:
        keys, argv = self._script_arguments(batch)
        started = time.perf_counter()
        conn = await self._connection()
        try:
            await self._call(conn, ("EVALSHA", PUBLISH_SCRIPT_SHA, len(keys), *keys, *argv))
        except NoScriptError:
            await self._call(conn, ("EVAL", PUBLISH_SCRIPT, len(keys), *keys, *argv))
        self.flushes += 1
        metrics.BUS_FLUSHES.inc()
        metrics.BUS_BATCH_SIZE.observe(len(batch))
        metrics.BUS_FLUSH_SECONDS.observe(time.perf_counter() - started)
        for stream, count in _count_by_stream(batch).items():
            metrics.BUS_PUBLISHED.labels(stream=stream).inc(count)

    async def _call(self, conn: Connection, command: tuple[Any, ...]) -> None:
        packed = hiredis.pack_command(command)
        await conn.send_packed_command(packed, check_health=False)
        await conn.read_response(timeout=REPLY_TIMEOUT_S)

    def _script_arguments(self, batch: list[_Entry]) -> tuple[list[str], list[FieldValue | int]]:
        """Build KEYS/ARGV; only the last entry per book writes the hot cache (earlier ones are superseded)."""
        stream_index: dict[str, int] = {}
        maxlens: list[int] = []
        for entry in batch:
            if entry.stream not in stream_index:
                stream_index[entry.stream] = len(stream_index) + 1
                maxlens.append(entry.maxlen)
        last_for_key: dict[str, int] = {}
        for position, entry in enumerate(batch):
            if entry.cache_key is not None:
                last_for_key[entry.cache_key] = position
        cache_index = {key: len(stream_index) + n for n, key in enumerate(last_for_key, start=1)}
        keys = [*stream_index, *cache_index]
        argv: list[FieldValue | int] = [len(stream_index)]
        argv.extend(maxlens)
        argv.append(self._bus.hot_cache_ttl_ms)
        for position, entry in enumerate(batch):
            cache = 0
            if entry.cache_key is not None and last_for_key[entry.cache_key] == position:
                cache = cache_index[entry.cache_key]
            argv.append(stream_index[entry.stream])
            argv.append(cache)
            argv.append(len(entry.fields) // 2)
            argv.extend(entry.fields)
        return keys, argv

    async def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = await self._redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            await self._conn.disconnect()
            await self._redis.connection_pool.release(self._conn)
            self._conn = None


def _count_by_stream(batch: list[_Entry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in batch:
        counts[entry.stream] = counts.get(entry.stream, 0) + 1
    return counts
