"""The NDJSON capture format shared with ``../shared/fixtures``: one JSON object per line.

``{"t": "header"|"http"|"connect"|"send"|"recv", "conn", "ts", "data", ...}``; ``ts`` is Unix seconds
(float) at our side, ``data`` the frame text exactly as sent or received. :func:`read_capture` reads it;
:class:`CaptureWriter` writes it (``WS_CAPTURE=true``), rotating files by size. A header may carry the venue's
market list (``markets``: discovery records, see ``common/markets.py``) so that a backtest rounds sizes as the
live detector did; captures without it stay readable (:func:`header_markets` returns ``None``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from common.markets import MarketInfo


class CaptureFormatError(ValueError):
    """A line that is not a capture record; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    kind: str
    conn: str | None
    ts: float | None
    data: str | None
    raw: dict[str, Any]


def read_capture(path: Path) -> Iterator[CaptureRecord]:
    """Records in file order. Raises :class:`CaptureFormatError` on a line that is not a capture record."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                kind = record["t"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise CaptureFormatError(f"{path}:{number}: not a capture record ({exc})") from exc
            yield CaptureRecord(kind, record.get("conn"), record.get("ts"), record.get("data"), record)


def header_markets(header: Mapping[str, Any]) -> list[MarketInfo] | None:
    """The venue's markets a capture header carries, or ``None`` when it has none (older captures).

    Raises :class:`CaptureFormatError` when ``markets`` is there but is not a list of market records."""
    markets = header.get("markets")
    if markets is None:
        return None
    try:
        return [MarketInfo(**item) for item in markets]
    except TypeError as exc:
        raise CaptureFormatError(f"capture header: 'markets' is not a list of market records ({exc})") from exc


class CaptureWriter:
    """Appends one venue's frames to ``directory/{venue}-{start}-{n}.ndjson``, a new file every
    ``rotate_bytes``; each file starts with a header so it replays on its own. ``markets`` (the venue's
    discovery list, when the producer has one) goes into every header."""

    def __init__(self, directory: Path, venue: str, *, rotate_bytes: int = 256 * 1024 * 1024,
                 clock: Any = time.time, markets: Sequence[MarketInfo] | None = None) -> None:
        self._directory = directory
        self._venue = venue
        self._markets = [asdict(m) for m in markets] if markets is not None else None
        self._rotate_bytes = rotate_bytes
        self._clock = clock
        self._started = time.strftime("%Y%m%dT%H%M%S", time.gmtime(clock()))
        self._file: BinaryIO | None = None
        self._written = 0
        self._index = 0
        self.paths: list[Path] = []

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None or self._written >= self._rotate_bytes:
            self._open_next()
        assert self._file is not None
        line = orjson.dumps(record) + b"\n"
        self._file.write(line)
        self._written += len(line)

    def _open_next(self) -> None:
        self.close()
        self._directory.mkdir(parents=True, exist_ok=True)
        self._index += 1
        path = self._directory / f"{self._venue}-{self._started}-{self._index}.ndjson"
        self._file = path.open("ab")
        self._written = 0
        self.paths.append(path)
        header: dict[str, Any] = {"t": "header", "exchange": self._venue.upper(), "recorded": self._clock(),
                                  "format": 2}
        if self._markets is not None:
            header["markets"] = self._markets
        self._write(header)

    def _conn(self, connection: int) -> str:
        return f"{self._venue}.ws.{connection}"

    def connected(self, connection: int, url: str) -> None:
        self._write({"t": "connect", "conn": self._conn(connection), "ts": self._clock(), "addr": url})

    def sent(self, connection: int, data: str) -> None:
        self._write({"t": "send", "conn": self._conn(connection), "ts": self._clock(), "data": data})

    def received(self, connection: int, data: str | bytes) -> None:
        text = data if isinstance(data, str) else data.decode(errors="replace")
        self._write({"t": "recv", "conn": self._conn(connection), "ts": self._clock(), "data": text})

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
