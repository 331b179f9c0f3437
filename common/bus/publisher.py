"""Batched, atomic publishing: many XADDs (and hot-cache writes) per round trip.

Why commands packed here and sent on a dedicated connection instead of a redis-py pipeline: redis-py's
asyncio connection packs every command in pure Python (~20 µs per XADD), which caps a pipeline near 30k
entries/s on one core. Here each entry's arguments are packed once, when it is published (snapshots by
``schemas.wire``, reusing each book's unchanged sides; the rest by ``hiredis.pack_command``, in C), and a
whole batch goes as one atomic write: a ``MULTI``/``EXEC`` of plain XADDs (and hot-cache writes: one ``SET``
of the snapshot's JSON with its expiry), or one ``EVAL`` of ``PUBLISH_SCRIPT`` when it holds an entry to be
written once per id. Either way a consumer never sees a snapshot on the stream before its hot-cache entry (or
vice versa). Batches are pipelined: up to ``MAX_IN_FLIGHT`` are sent before their replies arrive.
``make bench-bus`` compares it with ``redis-benchmark -P 100`` on the same payload.

Guarantees: entries of one publisher reach Redis in ``publish()`` order; a batch is written entirely or
not at all; a connection failure retries the batch with backoff (at-least-once: a batch whose reply was
lost may be written twice), and a Redis error reply (ACL, OOM) is fatal and raised by the next call.
(One error reply comes after a partial write: a command that fails while EXEC runs it, such as an XADD to
a key that is not a stream; Redis does not roll back, so the publisher stops there with the reason.)

While Redis is away (killed, restarting, loading), a producer must keep reading its venue socket, so
beyond ``publish_high_water`` unwritten entries the publisher overflows instead of waiting: snapshots are
state, so only the newest per book is kept (and goes out first on reconnect, so the hot cache ends on it);
new trades and health records are dropped and counted. Opportunities and control messages are never
dropped: they keep the backpressure. While Redis answers, every subject keeps the backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, islice
from typing import Any

import hiredis
from redis._parsers import hiredis as redis_hiredis_parser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common import metrics
from common.config import BusSettings, StreamLimits
from common.redis_link import RedisLink, is_transient
from schemas.base import WireModel
from schemas.codec import SUBJECT_MODELS, FieldValue, encode_fields
from schemas.market import Snapshot
from schemas.streams import StreamNames, Subject
from schemas.wire import MAX_BOOKS, SnapshotWire

log = logging.getLogger(__name__)

# KEYS = streams first, then hot-cache and once keys. ARGV = [n_streams, maxlen per stream..., ttl_ms,
# once_ttl_ms, entries...] where an entry is [stream key index, key index or 0, n field pairs, field, value, ...]:
# a positive key index names the entry's hot-cache key (set to the JSON document that follows its fields), a
# negative one its once key (the entry is appended only if SET NX creates that key: the same id is written
# once, whoever sends it).
PUBLISH_SCRIPT = """
local n_streams = tonumber(ARGV[1])
local ttl_ms = ARGV[n_streams + 2]
local once_ttl_ms = ARGV[n_streams + 3]
local i = n_streams + 4
local last_id = false
while i <= #ARGV do
  local stream = tonumber(ARGV[i])
  local key = tonumber(ARGV[i + 1])
  local first = i + 3
  local last = i + 2 + 2 * tonumber(ARGV[i + 2])
  if key >= 0 or redis.call('SET', KEYS[-key], '1', 'NX', 'PX', once_ttl_ms) then
    last_id = redis.call('XADD', KEYS[stream], 'MAXLEN', '~', ARGV[stream + 1], '*', unpack(ARGV, first, last))
  end
  if key > 0 then
    last = last + 1
    redis.call('SET', KEYS[key], ARGV[last], 'PX', ttl_ms)
  end
  i = last + 1
end
return last_id
"""
ONCE_TTL_MS = 24 * 3600 * 1000
"""How long an opportunity or fill id is remembered: far longer than any redelivery, reclaim or restart."""

ONCE_IDS: dict[Subject, Callable[[WireModel], str]] = {
    Subject.OPPORTUNITY: lambda model: model.id,  # type: ignore[attr-defined]
    Subject.FILL: lambda model: model.trace.sim_id,  # type: ignore[attr-defined]
}
"""Subjects written at most once per id (``seen:{subject}:{id}`` keys, decided inside the publish script)."""

MAX_IN_FLIGHT = 4
"""Batches sent but not yet answered; beyond this the buffer grows towards ``publish_high_water``."""

REPLY_TIMEOUT_S = 10.0
"""Also bounds the connection handshake: a paused Redis accepts the TCP connection but never answers."""
RECONNECT_BASE_S = 0.05
RECONNECT_CAP_S = 2.0
DROP_LOG_INTERVAL_S = 5.0
"""At most one warning this often while entries are being dropped; the counter has every one."""
LOSSY_SUBJECTS = frozenset({Subject.SNAPSHOT, Subject.TRADE, Subject.HEALTH})
"""Subjects a publisher may conflate (snapshots) or drop (the others) while Redis is away."""

_JITTER = random.Random()

MODEL_SUBJECTS: dict[type[WireModel], Subject] = {model: subject for subject, model in SUBJECT_MODELS.items()}


class PublishError(RuntimeError):
    """Redis refused a batch (an error reply, not a lost connection); publishing cannot continue."""


@dataclass(slots=True)
class BufferedEntry:
    """A buffered entry, its fields already packed as RESP bulk strings: one bytes object per entry keeps
    both the flush (a join) and the garbage collector's work small. ``seq`` is its place in publish order."""

    seq: int
    stream: str
    maxlen: int
    cache_key: str | None
    pairs: int
    bulks: bytes
    once_key: str | None = None
    document: bytes = b""
    """A snapshot's JSON, what its hot-cache key is set to."""


def pack_bulks(args: Sequence[FieldValue | int]) -> bytes:
    """RESP bulk strings for ``args`` without the array header, so they can be spliced into one command."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub declares a 1-tuple
    return packed[packed.index(b"\r\n") + 2 :]


def conflate(
    entries: Iterable[BufferedEntry], latest: dict[str, BufferedEntry]
) -> tuple[list[BufferedEntry], list[BufferedEntry]]:
    """Moves every snapshot of ``entries`` into ``latest`` (per hot-cache key, the higher ``seq`` wins).

    Returns the other entries in their order, and the snapshots superseded (from ``entries`` or ``latest``).
    """
    kept: list[BufferedEntry] = []
    superseded: list[BufferedEntry] = []
    for entry in entries:
        if entry.cache_key is None:
            kept.append(entry)
            continue
        current = latest.get(entry.cache_key)
        if current is not None and current.seq > entry.seq:
            superseded.append(entry)
            continue
        if current is not None:
            superseded.append(current)
        latest[entry.cache_key] = entry
    return kept, superseded


def reconnect_delay_s(attempt: int, rng: random.Random | None = None) -> float:
    """Capped exponential backoff with full jitter: uniform in [0, min(cap, base·2^attempt)], so the
    publishers of a stack do not all reconnect to a restarted Redis in the same instant."""
    ceiling = min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2.0 ** min(attempt, 32))  # clamped: no float overflow
    return (rng or _JITTER).uniform(0.0, ceiling)


def pack_command(*args: FieldValue | int) -> bytes:
    """One whole RESP command (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # stub declares a 1-tuple
    return packed


_MULTI = pack_command("MULTI")
_EXEC = pack_command("EXEC")


@lru_cache(maxsize=1024)
def _xadd_header(stream: str, maxlen: int, pairs: int) -> bytes:
    """``XADD stream MAXLEN ~ maxlen *`` with the array header for ``pairs`` field pairs to follow."""
    return b"*%d\r\n" % (6 + 2 * pairs) + pack_bulks(("XADD", stream, "MAXLEN", "~", maxlen, "*"))


@lru_cache(maxsize=MAX_BOOKS)
def _cache_set_header(key: str) -> bytes:
    """``SET key`` and the ``$`` of the value's bulk string: its length and the document follow."""
    return b"*5\r\n" + pack_bulks(("SET", key)) + b"$"


@lru_cache(maxsize=8)
def _cache_set_tail(ttl_ms: int) -> bytes:
    """The end of the document's bulk string and ``PX ttl_ms``."""
    return b"\r\n" + pack_bulks(("PX", ttl_ms))


@lru_cache(maxsize=8192)
def _entry_header(stream: int, cache: int, pairs: int) -> bytes:
    """The three small integers before each entry's fields; few distinct triples, so cached."""
    return pack_bulks((stream, cache, pairs))


class Publisher:
    """Buffers entries and writes them in batches of up to ``publish_batch_size``, pipelined.

    A full batch is sent from ``publish()`` itself (a buffered socket write, no waiting for the reply), so
    Redis executes batch k while the caller encodes batch k+1; a receiver task reads the replies in order.
    A partial batch goes at once when no batch is in flight, else when the reply is in (``publish_linger_ms``
    at most). ``publish()`` awaits only when more than ``publish_high_water`` entries are unwritten
    (backpressure), and while Redis is away not even then for snapshots, trades and health records (the
    overflow in the module docstring). ``async with`` starts it and, on exit, flushes everything.
    """

    def __init__(self, redis: Redis, names: StreamNames, limits: StreamLimits, bus: BusSettings, *,
                 component: str = "publisher") -> None:
        self._redis = redis
        self.link = RedisLink(component)
        """Reconnects and time without Redis, for metrics and the producers' health records."""
        self._names = names
        self._bus = bus
        self._targets = {subject: (names.stream(subject), limits.for_subject(subject)) for subject in Subject}
        self._snapshot_wire = SnapshotWire()
        """Snapshots' fast encoder: the bulks of ``encode_fields``, each book's unchanged sides reused."""
        self._book_key = lru_cache(maxsize=MAX_BOOKS)(names.book_key)
        self._buffer: list[BufferedEntry] = []
        self._latest: dict[str, BufferedEntry] = {}
        """While overflowing, every unsent snapshot, one per hot-cache key; sent before the buffer."""
        self._in_flight: deque[tuple[list[BufferedEntry], float, int]] = deque()
        """Batches on the wire, oldest first, with the time they were sent and how many replies they get."""
        self._pending = asyncio.Event()
        self._full = asyncio.Event()
        self._sent = asyncio.Event()
        self._progress = asyncio.Condition()
        self._enqueued = 0
        """Entries accepted by ``publish()``; also the ``seq`` of the next one."""
        self._settled = 0
        """Entries written, or conflated away (they never will be)."""
        self._failures = 0
        """Connection failures since Redis last answered a batch: above 0, Redis is away."""
        self._overflowing = False
        self._dropped: dict[str, int] = {}
        self._streams_written: set[str] = set()
        self._conflated = 0
        self._drop_logged_at = float("-inf")
        self._error: PublishError | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: AbstractConnection | None = None
        self._broken = False
        self.flushes = 0
        """Batches written, each in one round trip (tests count these instead of timing anything)."""

    async def __aenter__(self) -> Publisher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._send_lingering(), name="publisher-send"),
                asyncio.create_task(self._receive_replies(), name="publisher-receive"),
            ]

    async def publish(self, model: WireModel) -> None:
        """Queue ``model`` on its subject's stream (snapshots also refresh their hot-cache key).

        Waits only when more than ``publish_high_water`` entries are unwritten, and never for a snapshot, trade
        or health record while overflowing: a producer must keep reading its venue while Redis is away.
        """
        self._raise_if_failed()
        subject = MODEL_SUBJECTS[type(model)]
        stream, maxlen = self._targets[subject]
        high_water = self._bus.publish_high_water
        lossy = subject in LOSSY_SUBJECTS
        if lossy and self._away and self._unwritten >= high_water:
            self._start_overflow()
        if lossy and self._overflowing and subject is not Subject.SNAPSHOT and self._unwritten >= high_water:
            self._drop(stream)
            return
        cache_key = None
        if subject is Subject.SNAPSHOT:
            assert isinstance(model, Snapshot)
            cache_key = self._book_key(model.exchange, model.symbol)
            pairs, bulks, document = self._snapshot_wire.encode(model)
        else:
            fields = encode_fields(model)
            pairs, bulks, document = len(fields) // 2, pack_bulks(fields), b""
        once = ONCE_IDS.get(subject)
        once_key = self._names.seen_key(subject, once(model)) if once is not None else None
        entry = BufferedEntry(self._enqueued, stream, maxlen, cache_key, pairs, bulks, once_key, document)
        self._enqueued += 1
        self._pending.set()
        if self._overflowing and cache_key is not None:
            self._conflate([entry])
        else:
            self._buffer.append(entry)
        if lossy and self._overflowing:
            return  # the sender task drains the backlog; the producer must not wait for it
        full = len(self._buffer) >= self._bus.publish_batch_size
        if full and len(self._in_flight) < MAX_IN_FLIGHT and self.connected:
            await self._send(self._take_batch())
        elif self._unwritten > high_water:
            await self._wait_settled(self._enqueued - high_water, lossy)

    async def flush(self) -> None:
        """Return once everything published before this call is in Redis (or superseded by a newer snapshot
        of its book). While Redis is away, that is once it is back."""
        target = self._enqueued
        self._full.set()
        self._pending.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._oldest_unsettled() >= target or self._error is not None)
        self._raise_if_failed()

    async def close(self) -> None:
        """Flush what is buffered, stop the tasks and close the connection. Idempotent.

        While Redis is away the flush waits for it to come back, however long that takes: a caller that
        cannot wait wraps this in ``asyncio.timeout``; what is then left unwritten is logged and counted in
        ``triarb_bus_dropped_entries_total{reason="closed"}``.
        """
        if not self._tasks:
            return
        try:
            if self._error is None:
                await self.flush()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            if self._error is None and self._unwritten:
                self._abandon_unwritten()
            await self._drop_connection()
        self._raise_if_failed()

    @property
    def buffered(self) -> int:
        """Entries published but not yet sent."""
        return len(self._buffer) + len(self._latest)

    @property
    def connected(self) -> bool:
        """A live connection on which no write has failed (Redis may still not have answered on it)."""
        return self._conn is not None and self._conn.is_connected and not self._broken

    @property
    def overflowing(self) -> bool:
        """Redis went away with ``publish_high_water`` entries unwritten and the backlog has not drained
        since: snapshots conflate per book, trades and health records beyond the mark are dropped."""
        return self._overflowing

    @property
    def dropped(self) -> dict[str, int]:
        """Trades and health records dropped while overflowing, per stream (a copy)."""
        return dict(self._dropped)

    @property
    def conflated(self) -> int:
        """Snapshots superseded by a newer one of their book while overflowing, so never written."""
        return self._conflated

    @property
    def _unwritten(self) -> int:
        return self._enqueued - self._settled

    @property
    def _away(self) -> bool:
        return self._failures > 0 or self._broken

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _wait_settled(self, target: int, lossy: bool) -> None:
        """Backpressure. A snapshot, trade or health record also stops waiting once Redis is found away: its
        entry stays buffered, and the ones after it overflow instead of blocking the producer."""
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._settled >= target or self._error is not None or (lossy and self._away)
            )
        self._raise_if_failed()

    def _oldest_unsettled(self) -> int:
        """The lowest ``seq`` not yet written (``_enqueued`` if none). Conflated snapshots are sent before
        older entries, so a count of written entries could not tell whether a flush is done."""
        in_flight = (entry for batch, _, _ in self._in_flight for entry in batch)
        unsettled = chain(self._buffer, self._latest.values(), in_flight)
        return min((entry.seq for entry in unsettled), default=self._enqueued)

    def _start_overflow(self) -> None:
        """From here on one snapshot per book, starting with the buffer's own (older ones would only be
        overwritten in the hot cache, and would hold the newest back)."""
        if self._overflowing:
            return
        self._overflowing = True
        log.warning("Redis is away with %d entries unwritten: keeping only the newest snapshot of each book and "
                    "dropping new trades and health records until it catches up", self._unwritten)
        self._buffer = self._conflate(self._buffer)

    def _end_overflow_if_caught_up(self) -> None:
        """Ends once every conflated snapshot is sent and half the high-water mark is free: with no margin, a
        producer publishing at the mark would compact the whole buffer on every entry."""
        if self._overflowing and not self._latest and self._unwritten <= self._bus.publish_high_water // 2:
            self._overflowing = False
            log.info("publisher caught up after an overflow: %d snapshots conflated, dropped %s so far",
                     self._conflated, self._dropped)

    def _conflate(self, entries: Iterable[BufferedEntry]) -> list[BufferedEntry]:
        """Moves the snapshots of ``entries`` into ``_latest``; returns the other entries in order."""
        kept, superseded = conflate(entries, self._latest)
        self._settled += len(superseded)
        self._conflated += len(superseded)
        for stream, count in _count_by_stream(superseded).items():
            metrics.BUS_CONFLATED.labels(stream=stream).inc(count)
        return kept

    def _drop(self, stream: str) -> None:
        self._dropped[stream] = self._dropped.get(stream, 0) + 1
        metrics.BUS_DROPPED.labels(stream=stream, reason="overflow").inc()
        now = time.monotonic()
        if now - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
            self._drop_logged_at = now
            log.warning("publisher overflowing with %d entries unwritten: dropping new trades and health "
                        "records (%s so far)", self._unwritten, self._dropped)

    def _abandon_unwritten(self) -> None:
        """``close()`` was cancelled before its flush finished: what is left will never be written."""
        in_flight = [entry for batch, _, _ in self._in_flight for entry in batch]
        unwritten = [*in_flight, *self._latest.values(), *self._buffer]
        for stream, count in _count_by_stream(unwritten).items():
            metrics.BUS_DROPPED.labels(stream=stream, reason="closed").inc(count)
        log.warning("publisher closed with %d entries unwritten", len(unwritten))

    def _take_batch(self) -> list[BufferedEntry]:
        """Conflated snapshots first, so the newest state of every book reaches Redis before anything older;
        then the buffer in publish order."""
        size = self._bus.publish_batch_size
        batch = [self._latest.pop(key) for key in list(islice(self._latest, size))]
        room = size - len(batch)
        batch += self._buffer[:room]
        del self._buffer[:room]
        if not self.buffered:
            self._pending.clear()
            self._full.clear()
        return batch

    async def _send(self, batch: list[BufferedEntry]) -> None:
        """Write one batch; nothing may suspend between queueing it as in flight and the socket write,
        so the order of ``_in_flight`` is the order on the wire."""
        conn = self._conn
        command, replies = self.batch_command(batch)
        self._in_flight.append((batch, time.perf_counter(), replies))
        self._sent.set()
        if conn is None or not conn.is_connected:
            self._broken = True  # the receiver requeues everything in flight and the sender reconnects
            return
        try:
            await conn.send_packed_command(command, check_health=False)
        except (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError) as exc:
            if not is_transient(exc):  # uvloop's write to a just-closed socket is a RuntimeError
                raise
            self._broken = True

    async def _send_lingering(self) -> None:
        """Sends partial batches, and (re)connects. An entry that finds the wire idle goes at once (a lone
        snapshot must not wait: detection latency starts at ingest); entries published while a batch is in
        flight gather until its reply is in (at most ``publish_linger_ms``, or a full batch), so batches grow
        with the rate by themselves."""
        linger_s = self._bus.publish_linger_ms / 1000
        while True:
            await self._pending.wait()
            if linger_s and not self._full.is_set() and self._in_flight:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger_s):
                        await self._full.wait()
            try:
                if self._conn is None:
                    await self._connect()
                while self.buffered and not self._broken and len(self._in_flight) < MAX_IN_FLIGHT:
                    await self._send(self._take_batch())
            except (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError) as exc:
                if not is_transient(exc):
                    raise
                await self._connection_lost(exc)
                continue
            if not self.buffered:
                self._pending.clear()
                self._full.clear()
            else:  # in-flight limit reached or the connection broke: wait for the receiver to make progress
                async with self._progress:
                    await self._progress.wait()

    async def _receive_replies(self) -> None:
        while True:
            await self._sent.wait()
            if not self._in_flight:
                self._sent.clear()
                continue
            conn = self._conn
            try:
                if conn is None or self._broken:
                    raise RedisConnectionError("the connection broke while sending")
                reply = await read_replies(conn, self._in_flight[0][2], REPLY_TIMEOUT_S)
                if type(reply) is list and (failed := next((r for r in reply if isinstance(r, Exception)), None)):
                    raise failed  # a command inside EXEC failed (the others ran: Redis does not roll back)
            except ResponseError as exc:
                refused = len(self._in_flight[0][0])
                await self._fail(PublishError(f"Redis refused a batch of {refused} entries: {exc}"))
                return
            except (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError) as exc:
                if not is_transient(exc):
                    raise
                await self._connection_lost(exc)
                continue
            batch, sent_at, _ = self._in_flight.popleft()
            if not self._in_flight and self.buffered:
                self._full.set()  # the wire is idle: what gathered meanwhile goes now, not after the linger
            self._failures = 0
            self.link.ok()
            self._record(batch, time.perf_counter() - sent_at)
            async with self._progress:
                self._settled += len(batch)
                self._end_overflow_if_caught_up()
                self._progress.notify_all()

    def _record(self, batch: list[BufferedEntry], seconds: float) -> None:
        self.flushes += 1
        metrics.BUS_FLUSHES.inc()
        metrics.BUS_BATCH_SIZE.observe(len(batch))
        metrics.BUS_FLUSH_SECONDS.observe(seconds)
        for stream, count in _count_by_stream(batch).items():
            if stream not in self._streams_written:
                self._streams_written.add(stream)
                metrics.prepare_publishing(stream)  # its drop series exist before an outage drops anything
            metrics.BUS_PUBLISHED.labels(stream=stream).inc(count)

    async def _fail(self, error: PublishError) -> None:
        """A Redis error reply is not transient (ACL, OOM, a bad script): stop and tell every caller."""
        metrics.BUS_FLUSH_ERRORS.inc()
        lost = sum(len(batch) for batch, _, _ in self._in_flight) + self.buffered
        log.error("publisher stopped: %s", error, extra={"entries_unwritten": lost})
        self._error = error
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        async with self._progress:
            self._progress.notify_all()

    async def _connection_lost(self, exc: BaseException) -> None:
        """Requeue every unacknowledged batch in order (at-least-once; while overflowing, its snapshots are
        conflated like the buffer's) and reconnect after a jittered backoff."""
        metrics.BUS_FLUSH_ERRORS.inc()
        self.link.failed(exc)
        self._failures += 1
        requeued = [entry for batch, _, _ in self._in_flight for entry in batch]
        self._in_flight.clear()
        self._buffer[:0] = self._conflate(requeued) if self._overflowing else requeued
        await self._drop_connection()
        self._broken = False
        delay = reconnect_delay_s(self._failures - 1)
        log.warning("publisher lost its connection, resending in %.2fs: %s", delay, exc,
                    extra={"entries_requeued": len(requeued), "entries_unwritten": self._unwritten})
        self._full.set()
        self._pending.set()
        async with self._progress:
            self._progress.notify_all()
        await asyncio.sleep(delay)

    def batch_command(self, batch: list[BufferedEntry]) -> tuple[bytes, int]:
        """The whole batch as one atomic write, and the number of replies it gets.

        A batch with an entry written at most once per id (opportunities, fills) needs a decision inside
        Redis, so it is one ``EVAL`` of ``PUBLISH_SCRIPT``. Any other batch (snapshots, trades, health,
        control) is a ``MULTI``/``EXEC`` of plain commands: as atomic, and half the server's time per entry,
        because a command called from Lua costs Redis about as much again as the command itself (``make
        bench-bus``: 14.6 vs 8.0 µs per snapshot of server CPU; a plain pipelined XADD 6.9).
        """
        if any(entry.once_key is not None for entry in batch):
            return self.script_command(batch), 1
        return self.transaction_command(batch)

    def transaction_command(self, batch: list[BufferedEntry]) -> tuple[bytes, int]:
        """``MULTI``, per entry ``XADD stream MAXLEN ~ n * fields...`` (and after the last snapshot of each book
        in the batch ``SET key document PX ttl`` of its hot-cache key, as the script does), ``EXEC``."""
        last_for_key = {entry.cache_key: position for position, entry in enumerate(batch)
                        if entry.cache_key is not None}
        set_tail = _cache_set_tail(self._bus.hot_cache_ttl_ms)
        parts = [_MULTI]
        commands = 0
        for position, entry in enumerate(batch):
            parts.append(_xadd_header(entry.stream, entry.maxlen, entry.pairs))
            parts.append(entry.bulks)
            commands += 1
            key = entry.cache_key
            if key is not None and last_for_key[key] == position:
                document = entry.document
                parts.append(_cache_set_header(key))
                parts.append(b"%d\r\n" % len(document))
                parts.append(document)
                parts.append(set_tail)
                commands += 1
        parts.append(_EXEC)
        return b"".join(parts), commands + 2

    def script_command(self, batch: list[BufferedEntry]) -> bytes:
        """The whole batch as one packed ``EVAL`` of ``PUBLISH_SCRIPT``.

        Always EVAL, never EVALSHA: Redis caches the compiled script by its SHA either way, the body adds
        <1% to a batch, and there is no NOSCRIPT reply that could reorder pipelined batches.
        Only the last entry per book writes the hot cache: earlier ones in the batch are superseded.
        """
        stream_index: dict[str, int] = {}
        maxlens: list[int] = []
        for entry in batch:
            if entry.stream not in stream_index:
                stream_index[entry.stream] = len(stream_index) + 1
                maxlens.append(entry.maxlen)
        last_for_key: dict[str, int] = {}
        once_keys: dict[str, None] = {}  # in order, each once: an id twice in a batch shares one key
        for position, entry in enumerate(batch):
            if entry.cache_key is not None:
                last_for_key[entry.cache_key] = position
            if entry.once_key is not None:
                once_keys[entry.once_key] = None
        cache_index = {key: len(stream_index) + n for n, key in enumerate(last_for_key, start=1)}
        once_index = {key: len(stream_index) + len(cache_index) + n for n, key in enumerate(once_keys, start=1)}
        keys = [*stream_index, *cache_index, *once_index]
        head: list[FieldValue | int] = [
            "EVAL", PUBLISH_SCRIPT, len(keys), *keys, len(stream_index), *maxlens, self._bus.hot_cache_ttl_ms,
            ONCE_TTL_MS,
        ]
        parts = [b"", pack_bulks(head)]
        argc = len(head)
        for position, entry in enumerate(batch):
            key = 0
            if entry.cache_key is not None and last_for_key[entry.cache_key] == position:
                key = cache_index[entry.cache_key]
            elif entry.once_key is not None:
                key = -once_index[entry.once_key]
            parts.append(_entry_header(stream_index[entry.stream], key, entry.pairs))
            parts.append(entry.bulks)
            argc += 3 + 2 * entry.pairs
            if key > 0:
                parts.append(pack_bulks((entry.document,)))
                argc += 1
        parts[0] = b"*%d\r\n" % argc
        return b"".join(parts)

    async def _connect(self) -> None:
        """A dedicated connection (not from the pool: it is held for the publisher's life), without a socket
        timeout so that a write never suspends before reaching the transport buffer, and without redis-py's
        own retries: the sender's loop owns the backoff."""
        pool = self._redis.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "retry": Retry(NoBackoff(), 0)}
        conn = pool.connection_class(**kwargs)
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await conn.disconnect()
            raise
        self._conn = conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()


async def read_replies(conn: AbstractConnection, count: int, timeout_s: float) -> Any:
    """Read ``count`` replies and return the last; an error reply is raised. A transaction of a 512-entry
    batch gets 514 replies: with hiredis (redis-py's parser when installed, as here) the ones already received
    are taken straight from its reader, ~0.2 µs each instead of ~20 µs for a ``read_response`` call each."""
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    incomplete = getattr(redis_hiredis_parser, "NOT_ENOUGH_DATA", None)  # what its reader returns meanwhile
    if not isinstance(reader, hiredis.Reader) or incomplete is None or not hasattr(parser, "read_from_socket"):
        reply = None
        for _ in range(count):
            reply = await conn.read_response(timeout=timeout_s)
        return reply
    async with asyncio.timeout(timeout_s):
        for _ in range(count):
            reply = reader.gets()
            while reply is incomplete:
                await parser.read_from_socket()  # type: ignore[union-attr]
                reply = reader.gets()
            if isinstance(reply, (ResponseError, RedisConnectionError)):
                raise reply
    return reply


def _count_by_stream(batch: list[BufferedEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in batch:
        counts[entry.stream] = counts.get(entry.stream, 0) + 1
    return counts
