"""Market data subjects: L1..Ln book snapshots and trades, plus canonical symbol helpers."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import CanonicalSymbol, EpochMs, ExchangeName, WireModel

Level = tuple[float, float, float]
"""One book level: ``(price, size, cumulative size from the best level to this one)``."""


class Source(StrEnum):
    """Where a snapshot's book came from: the venue's WebSocket book or the REST top-of-book fallback."""

    WS = "ws"
    REST = "rest"


class Side(StrEnum):
    """Side of the aggressor (taker) of a trade. Venues that report the maker side are flipped at parsing."""

    BUY = "buy"
    SELL = "sell"


def canonical_symbol(base: str, quote: str) -> str:
    """Canonical ``BASE-QUOTE`` spelling; ``XBT`` becomes ``BTC`` so both venues share market names."""
    def norm(asset: str) -> str:
        asset = asset.upper()
        return "BTC" if asset == "XBT" else asset

    return f"{norm(base)}-{norm(quote)}"


class Snapshot(WireModel):
    """The top of one venue book after a change, published on ``md.snapshot`` and to the hot cache.

    ``book_seq`` increases by one for every snapshot of this book within a producer's life and, paired with
    ``ts_event``, identifies a book version (opportunity ids are derived from it).
    """

    v: Literal[1] = 1
    exchange: ExchangeName
    symbol: CanonicalSymbol
    ts_event: EpochMs = Field(description="venue time of the last change, ms")
    ts_ingest: EpochMs = Field(description="our receive time of the frame that made this state, ms")
    bids: list[Level] = Field(description="best (highest) bid first")
    asks: list[Level] = Field(description="best (lowest) ask first")
    source: Source = Source.WS
    latency_ms: dict[str, float] = Field(default_factory=dict)
    book_seq: int = Field(default=0, ge=0)
    venue_seq: int | None = Field(default=None, description="Coinbase sequence_num of the last frame")
    checksum: int | None = Field(default=None, description="Kraken CRC32 the book was verified against")


class Trade(WireModel):
    """One public trade, side normalised to the taker's side, on ``md.trade``."""

    v: Literal[1] = 1
    exchange: ExchangeName
    symbol: CanonicalSymbol
    price: float = Field(gt=0)
    size: float = Field(gt=0)
    side: Side
    ts_event: EpochMs
    ts_ingest: EpochMs
    trade_id: str | None = None
