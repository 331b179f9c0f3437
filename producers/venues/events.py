"""What venue parsers produce: typed, venue-neutral events, built from one raw frame each.

Prices and sizes stay the venue's decimal text (``TextLevel``): Kraken checksums are computed over the wire
text, and the book converts to float once, at the level's insertion. Symbols are already canonical.
Events are frozen msgspec Structs, not frozen dataclasses: one is built per frame on the hot path, and a
frozen dataclass pays an ``object.__setattr__`` call per field (about ten times the cost). They hold no
reference cycles, so they stay out of the garbage collector (``gc=False``).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from schemas.market import Side

TextLevel = tuple[str, str]
"""``(price, size)`` exactly as the venue wrote them; size ``0`` (any spelling) removes the level."""


class ChecksumFormat(StrEnum):
    """How a book message's checksum is computed (Kraken): v1 over wire strings, v2 with fixed precisions."""

    KRAKEN_V1 = "kraken-v1"
    KRAKEN_V2 = "kraken-v2"


class VenueProtocolError(ValueError):
    """A frame that does not follow the venue's protocol: counted, logged once, dead-lettered and skipped."""


class BookMessage(msgspec.Struct, frozen=True, gc=False):
    """The levels of one book message for one symbol, each side in the venue's order (best first)."""

    symbol: str
    bids: list[TextLevel]
    asks: list[TextLevel]
    ts_event_ms: int | None = None
    checksum: int | None = None
    checksum_format: ChecksumFormat | None = None


class BookSnapshot(BookMessage, frozen=True, gc=False):
    """A whole book (Coinbase: every level; Kraken: the subscribed depth): it replaces what was held."""


class BookUpdate(BookMessage, frozen=True, gc=False):
    """New absolute sizes at some prices; one message may touch a price twice (apply in order)."""


class TradePrint(msgspec.Struct, frozen=True, gc=False):
    """One trade; ``side`` is the taker's (Coinbase reports the maker's; its parser flips it)."""

    symbol: str
    price: str
    size: str
    side: Side
    ts_event_ms: int
    trade_id: str | None = None


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """Liveness only."""


class AckStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    ERROR = "error"


class SubscriptionAck(msgspec.Struct, frozen=True, gc=False):
    """The venue confirmed (or refused) a subscription change; ``error`` says why when refused."""

    channel: str
    symbols: list[str]
    status: AckStatus
    error: str | None = None


class VenueStatus(msgspec.Struct, frozen=True, gc=False):
    """Kraken's engine status (``online`` = normal trading) sent on connect and on every change."""

    system: str


class VenueErrorMessage(msgspec.Struct, frozen=True, gc=False):
    """An error the venue sent us (bad request, auth failure, rate limit)."""

    message: str


class InstrumentInfo(msgspec.Struct, frozen=True, gc=False):
    """Kraken v2 ``instrument`` pair data: the decimals its checksum is computed with."""

    symbol: str
    price_precision: int
    qty_precision: int


VenueEvent = (
    BookSnapshot | BookUpdate | TradePrint | Heartbeat | SubscriptionAck | VenueStatus | VenueErrorMessage
    | InstrumentInfo
)


class ParsedFrame(msgspec.Struct, frozen=True, gc=False):
    """The events of one frame, with the connection-wide sequence number when the venue has one (Coinbase)."""

    events: list[VenueEvent] = []  # msgspec copies an empty-list default per instance
    sequence: int | None = None
