"""Persistence: every entry of every stream (market data, opportunities, control) to rotating NDJSON files,
exactly once.

Design — one ordered writer per archive, the files are the cursor:

- A data directory is one archive, written by one worker at a time: an exclusive ``flock`` on
  ``DIR/.lock`` fences it (a second ``triarb persist`` on the same directory waits as a hot standby).
  Other archives of the same streams are other directories; each holds everything.
- The worker reads with plain XREAD (fan-out, no consumer group), in batches, from the last id in its files
  per stream (``0`` for a fresh archive). Nothing in Redis holds its position, so no other role can move
  it, and the persistence ACL user needs no group rights at all (see redis.conf). "Already on disk" is
  exactly "id ≤ the last id in the files", read back at start.
- A batch that fails (a full disk, Redis lost while the history is written) is retried from the same
  positions after a backoff, never skipped past. The open files are dropped first and the cursor read back
  from disk, so what counts as written is what the kernel has: those entries come back as duplicates and
  are skipped (and counted), the rest is written. Redis faults on the read itself are waited out.
- Ids only grow: after a Redis restart new ids are larger than every id on disk, because Redis ids follow
  its clock and every id on disk was made before the restart.
- Lines go straight to the OS (no user-space buffer; a killed worker loses nothing the kernel has), a file
  is fsynced when it rotates or closes, and a torn last line from a crash is cut off before appending. What
  can still be missing is what Redis itself lost (at most ~1 s with ``appendfsync everysec``) or trimmed
  (``MAXLEN``) before it was read.
- An entry that does not decode is dead-lettered with the reason and not archived. If it is the newest of
  its stream when the worker restarts, it is read, and dead-lettered, once more.

Each line is the decoded entry with its stream id first (``"_id"``). Files rotate by size or age,
optionally gzipped after rotation. A bounded quick history per book (``hist:{exchange}:{symbol}``, newest
first) serves the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from io import FileIO
from pathlib import Path

import orjson
from prometheus_client import Counter
from redis.asyncio import Redis

from common import metrics
from common.backoff import backoff_delays
from common.bus import Delivery, FanoutReader, StreamEntry
from common.bus.deadletter import dead_letter
from common.config import Settings
from common.markets import MarketCatalogs
from common.redis_link import RedisLink, is_transient
from schemas import Snapshot, Subject, Trade
from schemas.checks import snapshot_problem, trade_problem
from schemas.codec import CodecError, decode

log = logging.getLogger(__name__)

WRITTEN = Counter("triarb_persistence_written_entries_total", "Entries appended to the NDJSON archive", ["stream"])
DUPLICATES = Counter(
    "triarb_persistence_duplicates_skipped_total", "Re-read entries already in the archive", ["stream"]
)
RETRIES = Counter("triarb_persistence_batch_retries_total", "Batches that failed and were read again", ["reason"])
RETRY_REASONS = ("redis", "handler")

SUBJECTS = tuple(Subject)
HISTORY_LENGTH = 100
TAIL_BYTES = 1 << 20
"""How much of a file's end is read to find its last complete line: far more than the longest entry (a
control entry is at most 64 KiB), so the last line always fits."""
FRESH_ARCHIVE = "0"
"""XREAD position of a stream with nothing archived yet: everything Redis still holds."""


class ArchiveLockedError(RuntimeError):
    """Another persistence worker holds the archive directory."""


class ArchiveLock:
    """An exclusive ``flock`` on ``directory/.lock``: one writer per archive. The kernel drops it when the
    holder dies, however it dies, so a standby takes over at once after a ``kill -9``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or "?"
        return "?"

    async def acquire(self, stop: asyncio.Event, *, wait: bool, poll_s: float = 0.2) -> bool:
        """Take the lock; with ``wait`` keep trying (a hot standby) until it is free or ``stop`` is set."""
        if self.try_acquire():
            return True
        if not wait:
            raise ArchiveLockedError(
                f"another persistence worker (pid {self.holder()}) writes to {self.path.parent}; "
                "stop it, use --standby to wait for it, or give this one another --dir"
            )
        log.warning("waiting for the archive lock held by pid %s", self.holder(), extra={"path": str(self.path)})
        while not stop.is_set():
            await _wait(stop, poll_s)
            if self.try_acquire():
                return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def stream_id_key(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class RotatingFile:
    """``directory/{name}-{n:06d}.ndjson`` files (``.ndjson.gz`` once rotated, with ``gzip_rotated``); the
    newest is appended to until it is too big or too old."""

    def __init__(self, directory: Path, name: str, *, max_bytes: int, max_age_s: float, gzip_rotated: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.name = name
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._gzip = gzip_rotated
        self._clock = clock
        self._file: FileIO | None = None
        self._size = 0
        self._opened_at = 0.0
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        """The plain (not yet compressed) files, oldest first."""
        return sorted(self.directory.glob(f"{self.name}-*.ndjson"))

    def numbered(self) -> list[Path]:
        """Every file of the series, oldest first, one per number: the plain one when a crash between
        compressing and unlinking left both."""
        found: dict[int, Path] = {}
        prefix = f"{self.name}-"
        for path in self.directory.iterdir():
            number, dot, suffix = path.name.removeprefix(prefix).partition(".")
            if not path.name.startswith(prefix) or not number.isdigit() or not dot \
                    or suffix not in ("ndjson", "ndjson.gz"):
                continue
            if int(number) not in found or suffix == "ndjson":
                found[int(number)] = path
        return [found[number] for number in sorted(found)]

    def last_id(self) -> str | None:
        """The stream id of the last complete line of the series (None for a fresh directory)."""
        for path in reversed(self.numbered()):
            entry_id = _last_complete_id(path)
            if entry_id is not None:
                return entry_id
        return None

    def write(self, lines: Sequence[bytes]) -> None:
        """Append complete lines, rotating between them when the file is too big or too old. Straight to
        the OS: after a failure the files hold exactly what the kernel accepted."""
        chunk: list[bytes] = []
        for line in lines:
            if self._file is None or self._size >= self._max_bytes or \
                    self._clock() - self._opened_at >= self._max_age_s:
                self._append(b"".join(chunk))
                chunk = []
                self._rotate()
            chunk.append(line)
            self._size += len(line)
        self._append(b"".join(chunk))

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            assert self._file is not None
            view = view[self._file.write(view):]

    def _rotate(self) -> None:
        previous = self.close()
        numbered = self.numbered()
        path = None
        if previous is None and numbered and numbered[-1].name.endswith(".ndjson"):
            _cut_torn_line(numbered[-1])  # a (re)start: append to the newest file if it has room
            if numbered[-1].stat().st_size < self._max_bytes:
                path = numbered[-1]
        if path is None:
            number = int(numbered[-1].name.removeprefix(f"{self.name}-").partition(".")[0]) + 1 if numbered else 1
            path = self.directory / f"{self.name}-{number:06d}.ndjson"
        self._file = path.open("ab", buffering=0)
        os.chmod(path, 0o600)
        self._size = self._file.tell()
        self._opened_at = self._clock()
        if previous is not None and self._gzip:
            _compress(previous)

    def close(self) -> Path | None:
        """Fsync and close the open file; returns its path."""
        if self._file is None:
            return None
        file, self._file = self._file, None
        try:
            os.fsync(file.fileno())
        finally:
            file.close()
        return Path(str(file.name))

    def drop(self) -> None:
        """Close the open file after a failure, ignoring errors: what is on disk is what counts."""
        with contextlib.suppress(OSError):
            self.close()
        self._file = None


def _last_complete_id(path: Path) -> str | None:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as compressed:
                tail = compressed.read()[-TAIL_BYTES:]
        else:
            with path.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES))
                tail = file.read()
    except (OSError, EOFError) as exc:
        raise OSError(f"{path}: cannot read the last archived id ({exc}); fix or move the file") from exc
    for line in reversed(tail.split(b"\n")):
        if not line.strip():
            continue
        try:
            return str(orjson.loads(line)["_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line from a crash: the entry is read and written again
    return None


def _compress(path: Path) -> None:
    """``path`` → ``path.gz`` (0600), complete before it gets its name; then the plain file goes."""
    partial = path.with_name(path.name + ".gz.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, path.open("rb") as source:
        with gzip.GzipFile(fileobj=raw, mode="wb") as target:
            shutil.copyfileobj(source, target)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, path.with_name(path.name + ".gz"))
    path.unlink()


def _cut_torn_line(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it, its entry is read again."""
    with path.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return
        file.seek(max(0, size - TAIL_BYTES))
        tail = file.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else 0
        if cut < 0 and size > len(tail):
            raise ValueError(f"{path}: last line longer than {TAIL_BYTES} bytes and torn; fix the file by hand")
        log.warning("cutting a torn last line", extra={"path": str(path), "bytes": size - keep})
        file.truncate(keep)


class PersistenceWriter:
    """The archive's only writer: reads every subject with XREAD, NDJSON per subject plus the Redis quick
    history. Hold :class:`ArchiveLock` on the directory while it runs."""

    def __init__(self, settings: Settings, redis: Redis, directory: Path, *, max_bytes: int = 64 * 1024 * 1024,
                 max_age_s: float = 3600.0, gzip_rotated: bool = False, link: RedisLink | None = None) -> None:
        self._settings = settings
        self._redis = redis
        self.directory = directory
        self.link = link or RedisLink("persistence")
        self.files = {
            settings.names.stream(subject): RotatingFile(directory / subject.value, subject.value,
                                                         max_bytes=max_bytes, max_age_s=max_age_s,
                                                         gzip_rotated=gzip_rotated)
            for subject in SUBJECTS
        }
        self._last = {stream: file.last_id() for stream, file in self.files.items()}
        for stream in self.files:  # every series exists from the start (an increase() alert sees the first)
            WRITTEN.labels(stream=stream)
            DUPLICATES.labels(stream=stream)
        metrics.prepare_deadletters(self.files, ("codec", "untrusted"))
        for reason in RETRY_REASONS:
            RETRIES.labels(reason=reason)
        self.catalogs = MarketCatalogs(redis, settings.names)
        self.written = 0
        self.skipped_duplicates = 0

    def positions(self) -> dict[str, str]:
        """Where reading resumes: per stream, the last id on disk."""
        return {stream: last or FRESH_ARCHIVE for stream, last in self._last.items()}

    async def run(self, stop: asyncio.Event | None = None, *, burst: bool = False) -> None:
        """Archive until ``stop`` is set (checked at least every ``bus.read_block_ms``). ``burst=True``
        archives what the streams hold now and returns. Redis faults are waited out; a failing batch is
        retried from the same positions until it succeeds or ``stop`` is set."""
        stop = stop or asyncio.Event()
        bus = self._settings.bus
        reader = FanoutReader(self._redis, self.positions(), count=bus.read_count, block_ms=bus.read_block_ms,
                              link=self.link)
        failure_delays = backoff_delays(0.1, 5.0)
        while not stop.is_set():
            batch_start = dict(reader.positions)
            entries = await reader.read_riding_out_faults(stop, block=not burst)
            if entries is None:
                continue
            if not entries:
                if burst:
                    return
                continue
            try:
                await self.archive(entries)
            except Exception as exc:
                reader.positions = batch_start  # the same entries again: nothing is skipped past
                self._reload_cursor()
                if is_transient(exc):
                    RETRIES.labels(reason="redis").inc()
                    await self.link.pause(exc, stop)
                    continue
                RETRIES.labels(reason="handler").inc()
                log.exception("archiving a batch failed; reading the same entries again",
                              extra={"directory": str(self.directory), "entries": len(entries)})
                await _wait(stop, next(failure_delays))
                continue
            failure_delays = backoff_delays(0.1, 5.0)

    async def archive(self, entries: list[StreamEntry]) -> None:
        """Decode a batch read from the streams, check market data, and :meth:`handle` the rest; entries
        that do not decode, or that name a market no producer registered or an impossible book, are
        dead-lettered with the reason instead of archived."""
        batch: list[Delivery] = []
        rejected: list[tuple[StreamEntry, str, str]] = []
        for entry in entries:
            subject = self._settings.names.subject_of(entry.stream)
            try:
                model = decode(subject, entry.fields)
            except CodecError as exc:
                rejected.append((entry, "codec", exc.reason))
                continue
            if isinstance(model, Snapshot | Trade) and (problem := await self._distrust(entry, model)):
                rejected.append((entry, "untrusted", problem))
                continue
            batch.append(Delivery(subject, entry.stream, entry.id, model))
        if batch:
            await self.handle(batch)
        for entry, kind, reason in rejected:
            await dead_letter(self._redis, self._settings.names, entry, reason, kind=kind, rejected_by="persistence")

    async def _distrust(self, entry: StreamEntry, model: Snapshot | Trade) -> str | None:
        """Why this market data cannot be believed (see ``schemas/checks.py``), or ``None``."""
        own = snapshot_problem(model) if isinstance(model, Snapshot) else trade_problem(model)
        return own or await self.catalogs.problem(model.exchange, model.symbol, stream_id_key(entry.id)[0])

    async def handle(self, batch: list[Delivery]) -> None:
        """Append what is not on disk yet; returns once it is in the OS and the quick history is written."""
        lines: dict[str, list[bytes]] = {}
        newest: dict[str, str] = {}
        history = self._redis.pipeline(transaction=False)
        for delivery in batch:
            last = self._last.get(delivery.stream)
            if last is not None and stream_id_key(delivery.id) <= stream_id_key(last):
                self.skipped_duplicates += 1
                DUPLICATES.labels(stream=delivery.stream).inc()
                continue
            record = {"_id": delivery.id, **delivery.model.model_dump(mode="json")}
            line = orjson.dumps(record)
            lines.setdefault(delivery.stream, []).append(line + b"\n")
            newest[delivery.stream] = delivery.id
            if isinstance(delivery.model, Snapshot):
                key = f"{self._settings.key_prefix}hist:{delivery.model.exchange}:{delivery.model.symbol}"
                history.lpush(key, line)
                history.ltrim(key, 0, HISTORY_LENGTH - 1)
        for stream, stream_lines in lines.items():
            self.files[stream].write(stream_lines)
            self._last[stream] = newest[stream]
            self.written += len(stream_lines)
            WRITTEN.labels(stream=stream).inc(len(stream_lines))
        if len(history):
            await history.execute()

    def _reload_cursor(self) -> None:
        """After a failure: drop the open files and read the last ids back from disk."""
        for stream, file in self.files.items():
            file.drop()
            self._last[stream] = file.last_id()

    def close(self) -> None:
        for file in self.files.values():
            file.close()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
