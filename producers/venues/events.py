"""What venue parsers produce: typed, venue-neutral events, built from one raw frame each.

Prices and sizes stay the venue's decimal text (``TextLevel``): Kraken checksums are computed over the wire
text, and the book converts to float once, at the level's insertion. Symbols are already canonical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from schemas.market import Side

TextLevel = tuple[str, str]
"""``(price, size)`` exactly as the venue wrote them; size ``0`` (any spelling) removes the level."""


class ChecksumFormat(StrEnum):
    """How a book message's checksum is computed (Kraken): v1 over wire strings, v2 with fixed precisions."""

    KRAKEN_V1 = "kraken-v1"
    KRAKEN_V2 = "kraken-v2"


class VenueProtocolError(ValueError):
    """A frame that does not follow the venue's protocol: counted, logged once, dead-lettered and skipped."""


@dataclass(frozen=True, slots=True)
class BookMessage:
    """The levels of one book message for one symbol, each side in the venue's order (best first)."""

    symbol: str
    bids: list[TextLevel]
    asks: list[TextLevel]
    ts_event_ms: int | None = None
    checksum: int | None = None
    checksum_format: ChecksumFormat | None = None


@dataclass(frozen=True, slots=True)
class BookSnapshot(BookMessage):
    """A whole book (Coinbase: every level; Kraken: the subscribed depth): it replaces what was held."""


@dataclass(frozen=True, slots=True)
class BookUpdate(BookMessage):
    """New absolute sizes at some prices; one message may touch a price twice (apply in order)."""


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One trade; ``side`` is the taker's (Coinbase reports the maker's; its parser flips it)."""

    symbol: str
    price: str
    size: str
    side: Side
    ts_event_ms: int
    trade_id: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness only."""


class AckStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SubscriptionAck:
    """The venue confirmed (or refused) a subscription change; ``error`` says why when refused."""

    channel: str
    symbols: list[str]
    status: AckStatus
    error: str | None = None


@dataclass(frozen=True, slots=True)
class VenueStatus:
    """Kraken's engine status (``online`` = normal trading) sent on connect and on every change."""

    system: str


@dataclass(frozen=True, slots=True)
class VenueErrorMessage:
    """An error the venue sent us (bad request, auth failure, rate limit)."""

    message: str


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """Kraken v2 ``instrument`` pair data: the decimals its checksum is computed with."""

    symbol: str
    price_precision: int
    qty_precision: int


VenueEvent = (
    BookSnapshot | BookUpdate | TradePrint | Heartbeat | SubscriptionAck | VenueStatus | VenueErrorMessage
    | InstrumentInfo
)


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """The events of one frame, with the connection-wide sequence number when the venue has one (Coinbase)."""

    events: list[VenueEvent] = field(default_factory=list)
    sequence: int | None = None
