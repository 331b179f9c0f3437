"""Logging for every service: JSON lines for machines, one readable line for people.

Context goes in ``extra={...}``; those keys become JSON fields (or ``key=value`` in human form), so a log
line can be filtered by stream, venue or symbol without parsing the message.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from common.config import LogFormat

_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_HANDLER_NAME = "triarb"
_QUIET_LOGGERS = {"uvicorn.access": logging.WARNING, "websockets": logging.WARNING, "asyncio": logging.WARNING}


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(record_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        context = " ".join(f"{k}={v}" for k, v in record_extras(record).items())
        line = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            line = f"{line}  {context}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    level: str = "INFO", log_format: LogFormat = LogFormat.AUTO, *, stream: TextIO | None = None
) -> None:
    """Install one handler on the root logger (replacing ours from an earlier call, so it is idempotent)."""
    stream = stream or sys.stderr
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.HUMAN if stream.isatty() else LogFormat.JSON
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(HumanFormatter() if log_format is LogFormat.HUMAN else JsonFormatter())
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet_level)
