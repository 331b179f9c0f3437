"""Persistence: every entry of the market-data and opportunity streams to rotating NDJSON files, exactly once.

One worker of consumer group ``persistence`` per data directory. Each line is the decoded entry plus its
stream id (``"_id"``). Writes are idempotent: ids only grow within a stream, and the last id written is read
back from the newest file at start-up, so an entry redelivered after a crash (written, not yet acknowledged)
is skipped instead of written twice. Files rotate by size or age; a file is fsynced when it is closed (and
the batch is flushed before it is acknowledged), optionally gzipped after rotation. A bounded quick history
per book (``hist:{exchange}:{symbol}``, newest first) serves the dashboard.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import orjson
from redis.asyncio import Redis

from common.bus import Delivery, GroupConsumer
from common.config import Settings
from schemas import Snapshot, Subject

GROUP = "persistence"
SUBJECTS = (Subject.SNAPSHOT, Subject.TRADE, Subject.HEALTH, Subject.OPPORTUNITY)
HISTORY_LENGTH = 100


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
        directory.mkdir(parents=True, exist_ok=True)

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
        else:
            path = self.directory / f"{self.name}-{number:06d}.ndjson"
        self._file = path.open("ab")
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


class PersistenceWriter:
    """The handler of the persistence group: NDJSON per subject plus the Redis quick history."""

    def __init__(self, settings: Settings, redis: Redis, directory: Path, *, max_bytes: int = 64 * 1024 * 1024,
                 max_age_s: float = 3600.0, gzip_rotated: bool = False) -> None:
        self._settings = settings
        self._redis = redis
        self.files = {
            settings.names.stream(subject): RotatingFile(directory / subject.value, subject.value,
                                                         max_bytes=max_bytes, max_age_s=max_age_s,
                                                         gzip_rotated=gzip_rotated)
            for subject in SUBJECTS
        }
        self._last = {stream: file.last_id() for stream, file in self.files.items()}
        self.written = 0
        self.skipped_duplicates = 0

    def consumer(self, name: str | None = None) -> GroupConsumer:
        return GroupConsumer(self._redis, self._settings.names, self._settings.bus, group=GROUP,
                             subjects=list(SUBJECTS), handler=self.handle, name=name, start_id="0")

    async def handle(self, batch: list[Delivery]) -> None:
        history = self._redis.pipeline(transaction=False)
        touched: set[str] = set()
        for delivery in batch:
            last = self._last.get(delivery.stream)
            if last is not None and stream_id_key(delivery.id) <= stream_id_key(last):
                self.skipped_duplicates += 1
                continue
            record = delivery.model.model_dump(mode="json")
            record["_id"] = delivery.id
            self.files[delivery.stream].write(orjson.dumps(record) + b"\n")
            self._last[delivery.stream] = delivery.id
            self.written += 1
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
