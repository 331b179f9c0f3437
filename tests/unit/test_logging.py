"""Log lines: JSON for machines with context as fields, one readable line for people."""

from __future__ import annotations

import io
import logging

import orjson

from common.config import LogFormat
from common.logging import configure_logging


def log_once(log_format: LogFormat, **extra: object) -> str:
    out = io.StringIO()
    configure_logging("INFO", log_format, stream=out)
    logging.getLogger("triarb.test").warning("book resynced", extra=extra)
    return out.getvalue()


def test_json_line_has_time_level_logger_message_and_context_fields() -> None:
    entry = orjson.loads(log_once(LogFormat.JSON, venue="kraken", gaps=2))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "triarb.test"
    assert entry["msg"] == "book resynced"
    assert (entry["venue"], entry["gaps"]) == ("kraken", 2)
    assert entry["ts"].endswith("+00:00")


def test_human_line_puts_context_after_the_message() -> None:
    line = log_once(LogFormat.HUMAN, venue="kraken")
    assert line.rstrip().endswith("WARNING triarb.test: book resynced  venue=kraken")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    assert orjson.loads(log_once(LogFormat.AUTO))["msg"] == "book resynced"


def test_configuring_twice_does_not_duplicate_lines() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, stream=out)
    configure_logging("INFO", LogFormat.JSON, stream=out)
    logging.getLogger("triarb.test").info("once")
    assert out.getvalue().count("once") == 1


def test_exceptions_are_rendered_in_the_exc_field() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, stream=out)
    try:
        raise ValueError("checksum mismatch")
    except ValueError:
        logging.getLogger("triarb.test").exception("resync")
    entry = orjson.loads(out.getvalue())
    assert "ValueError: checksum mismatch" in entry["exc"]
