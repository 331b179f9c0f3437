"""Feed health records published by producers on ``md.health``, once a second and on every state change."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Literal, TypedDict

from pydantic import Field

from schemas.base import EpochMs, ExchangeName, WireModel


class Channel(StrEnum):
    """Which path of a venue feed the record describes."""

    WS = "ws"
    REST = "rest"


class FeedStatus(StrEnum):
    """``up``: fresh and valid; ``stale``: no message within the watchdog window; ``down``: not connected;
    ``resyncing``: connected but waiting for a fresh snapshot after a gap or checksum failure;
    ``degraded``: connected but holding no symbols (nothing to publish)."""

    UP = "up"
    STALE = "stale"
    DOWN = "down"
    RESYNCING = "resyncing"
    DEGRADED = "degraded"


class Health(WireModel):
    """Counters are cumulative over the producer's life, so a reader can diff two records."""

    v: Literal[1] = 1
    exchange: ExchangeName
    channel: Channel
    status: FeedStatus
    ts: EpochMs = Field(description="when this record was made, ms")
    last_msg_ms: EpochMs | None = Field(default=None, description="receive time of the last message, ms")
    reconnects: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    gaps: int = Field(default=0, ge=0)
    checksum_failures: int = Field(default=0, ge=0)
    symbol_count: int = Field(default=0, ge=0, description="books the feed is asked to hold")
    symbols_digest: str | None = Field(default=None, max_length=64, description=(
        "first 16 hex digits of the SHA-256 of the sorted symbols joined by ','; equal digests, equal sets"))
    redis_reconnects: int = Field(default=0, ge=0, description="times the producer got Redis back after losing it")
    redis_down_s: float = Field(default=0.0, ge=0, description="seconds the producer spent without Redis, in all")
    detail: str | None = Field(default=None, description="human-readable reason for the current status")


class SymbolSummary(TypedDict):
    symbol_count: int
    symbols_digest: str


def symbol_summary(symbols: Iterable[str]) -> SymbolSummary:
    """A record's ``symbol_count`` and ``symbols_digest``: health stays small however many books a feed
    holds (the full set is the control state: ``triarb symbols show``)."""
    ordered = sorted(set(symbols))
    digest = hashlib.sha256(",".join(ordered).encode()).hexdigest()[:16]
    return SymbolSummary(symbol_count=len(ordered), symbols_digest=digest)
