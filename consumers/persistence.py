"""Persistence: every entry of the market-data and opportunity streams to rotating NDJSON files, exactly once.

Design — one ordered writer per archive, the files are the cursor:

- A data directory is one archive, written by one worker at a time: an exclusive ``flock`` on
  ``DIR/.lock`` fences it (a second ``triarb persist`` on the same directory waits as a hot standby). The
  archive has its own consumer group (``persistence`` by default; another archive of the same streams
  uses another group, so each holds everything).
- The worker is the group's only reader (``GroupConsumer(ordered=True)``), under a name derived from the
  directory: after a crash the restarted writer re-reads its own pending entries first, in order; it
  refuses to start while another consumer reads the group; a failing write is retried on the same
  entries, never skipped past. So each stream's entries reach the files in stream-id
  order with no gap, and "already on disk" is exactly "id ≤ the last id in the files", read back at start.
- Any redelivery (reclaim, restart, a stalled worker, XGROUP SETID backwards, a Redis restart that rolled
  the group position back) brings ids ≤ that last id: skipped and counted, never written twice. New ids
  after a Redis restart are larger than every id on disk, because Redis ids follow its clock and every id
  on disk was made before the restart.
- Lines are flushed to the OS before the batch is acknowledged (a killed worker loses nothing the kernel
  has), a file is fsynced when it rotates or closes, and a torn last line from a crash is cut off before
  appending. What can still be missing is what Redis itself lost (at most ~1 s with ``appendfsync
  everysec``) or trimmed (``MAXLEN``) before it was read.

Each line is the decoded entry with its stream id first (``"_id"``). Files rotate by size or age,
optionally gzipped after rotation. A bounded quick history per book (``hist:{exchange}:{symbol}``, newest
first) serves the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import orjson
from prometheus_client import Counter
from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer
from common.config import Settings
from schemas import Snapshot, Subject

log = logging.getLogger(__name__)

WRITTEN = Counter("triarb_persistence_written_entries_total", "Entries appended to the NDJSON archive", ["stream"])
DUPLICATES = Counter(
    "triarb_persistence_duplicates_skipped_total", "Redelivered entries already in the archive", ["stream"]
)

GROUP = "persistence"
SUBJECTS = (Subject.SNAPSHOT, Subject.TRADE, Subject.HEALTH, Subject.OPPORTUNITY)
HISTORY_LENGTH = 100


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
                "stop it, use --standby to wait for it, or give this one another --dir and --group"
            )
        log.warning("waiting for the archive lock held by pid %s", self.holder(), extra={"path": str(self.path)})
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_s):
                    await stop.wait()
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
    """``directory/{name}-{n:06d}.ndjson`` files; the newest is appended to until it is too big or too old."""

    def __init__(self, directory: Path, name: str, *, max_bytes: int, max_age_s: float, gzip_rotated: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.name = name
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._gzip = gzip_rotated
        self._clock = clock
        self._file: BinaryIO | None = None
        self._opened_at = 0.0
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.name}-*.ndjson"))

    def last_id(self) -> str | None:
        """The stream id of the last complete line of the newest file (None for a fresh directory)."""
        for path in reversed(self.files()):
            with path.open("rb") as file:
                file.seek(0, os.SEEK_END)
                size = file.tell()
                file.seek(max(0, size - 65536))
                lines = [line for line in file.read().split(b"\n") if line.strip()]
            for line in reversed(lines):
                try:
                    return str(orjson.loads(line)["_id"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from a crash: the entry is rewritten on redelivery
        return None

    def write(self, line: bytes) -> None:
        if self._file is None or self._file.tell() >= self._max_bytes or \
                self._clock() - self._opened_at >= self._max_age_s:
            self._rotate()
        assert self._file is not None
        self._file.write(line)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _rotate(self) -> None:
        previous = self.close()
        files = self.files()
        number = int(files[-1].stem.rsplit("-", 1)[1]) + 1 if files else 1
        if files and previous is None and files[-1].stat().st_size < self._max_bytes:
            path = files[-1]  # restart: keep appending to the newest file
            _cut_torn_line(path)
        else:
            path = self.directory / f"{self.name}-{number:06d}.ndjson"
        self._file = path.open("ab")
        os.chmod(path, 0o600)
        self._opened_at = self._clock()
        if previous is not None and self._gzip:
            with previous.open("rb") as source, gzip.open(previous.with_suffix(".ndjson.gz"), "wb") as target:
                shutil.copyfileobj(source, target)
            previous.unlink()

    def close(self) -> Path | None:
        """Flush, fsync and close the open file; returns its path."""
        if self._file is None:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        path = Path(self._file.name)
        self._file.close()
        self._file = None
        return path


def _cut_torn_line(path: Path) -> None:
    """A crash mid-write leaves a last line without its newline: cut it, its entry is redelivered."""
    with path.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return
        file.seek(max(0, size - 65536))
        tail = file.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else 0
        if cut < 0 and size > len(tail):
            raise ValueError(f"{path}: last line longer than 64 KiB and torn; fix the file by hand")
        log.warning("cutting a torn last line", extra={"path": str(path), "bytes": size - keep})
        file.truncate(keep)


class PersistenceWriter:
    """The handler of the persistence group: NDJSON per subject plus the Redis quick history."""

    def __init__(self, settings: Settings, redis: Redis, directory: Path, *, max_bytes: int = 64 * 1024 * 1024,
                 max_age_s: float = 3600.0, gzip_rotated: bool = False, group: str = GROUP) -> None:
        self._settings = settings
        self._redis = redis
        self.group = group
        self.directory = directory
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
        self.written = 0
        self.skipped_duplicates = 0

    def consumer(self, name: str | None = None) -> GroupConsumer:
        """The archive's only reader; hold :class:`ArchiveLock` on the directory while it runs. Its name
        is derived from the directory, so a restarted writer gets back exactly its own pending entries."""
        name = name or "archive-" + hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:12]
        return GroupConsumer(self._redis, self._settings.names, self._settings.bus, group=self.group,
                             subjects=list(SUBJECTS), handler=self.handle, name=name, start_id="0", ordered=True)

    async def handle(self, batch: list[Delivery]) -> None:
        history = self._redis.pipeline(transaction=False)
        touched: set[str] = set()
        for delivery in batch:
            last = self._last.get(delivery.stream)
            if last is not None and stream_id_key(delivery.id) <= stream_id_key(last):
                self.skipped_duplicates += 1
                DUPLICATES.labels(stream=delivery.stream).inc()
                continue
            record = {"_id": delivery.id, **delivery.model.model_dump(mode="json")}
            self.files[delivery.stream].write(orjson.dumps(record) + b"\n")
            self._last[delivery.stream] = delivery.id
            self.written += 1
            WRITTEN.labels(stream=delivery.stream).inc()
            touched.add(delivery.stream)
            if isinstance(delivery.model, Snapshot):
                key = f"{self._settings.key_prefix}hist:{delivery.model.exchange}:{delivery.model.symbol}"
                history.lpush(key, orjson.dumps(record))
                history.ltrim(key, 0, HISTORY_LENGTH - 1)
        for stream in touched:
            self.files[stream].flush()  # in the OS before the batch is acknowledged
        if len(history):
            await history.execute()

    def close(self) -> None:
        for file in self.files.values():
            file.close()
