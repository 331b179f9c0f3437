"""The NDJSON capture format shared with ``../shared/fixtures``: one JSON object per line.

``{"t": "header"|"http"|"connect"|"send"|"recv", "conn", "ts", "data", ...}``; ``ts`` is Unix seconds
(float) at our side, ``data`` the frame text exactly as sent or received. Reading is here; writing (the
``WS_CAPTURE`` rotating writer) joins it with the connection runner.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


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
