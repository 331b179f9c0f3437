"""Coinbase Advanced Trade WebSocket: subscribe messages and the pure frame parser.

Facts this relies on (docs/exchange-protocols.md §2, checked on the 2026 recording): the ``level2``
subscription arrives as channel ``l2_data`` with sides ``bid``/``offer`` (never ``ask``); ``sequence_num``
is one counter per connection across all channels; ``market_trades.side`` is the maker's side; an error is a
bare ``{"type": "error", "message": ...}``. The parser never reads a clock and never raises anything but
:class:`VenueProtocolError`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from producers.venues.events import (
    AckStatus,
    BookSnapshot,
    BookUpdate,
    Heartbeat,
    ParsedFrame,
    SubscriptionAck,
    TextLevel,
    TradePrint,
    VenueErrorMessage,
    VenueEvent,
    VenueProtocolError,
)
from schemas.market import Side

VENUE = "coinbase"
DEFAULT_URL = "wss://advanced-trade-ws.coinbase.com"
BOOK_CHANNEL = "level2"
CHANNELS = (BOOK_CHANNEL, "market_trades", "heartbeats")
"""What a producer subscribes to, one message per channel (the venue takes one channel per message)."""

IGNORED_CHANNELS = frozenset({"ticker", "ticker_batch", "candles", "status"})
_PRODUCT = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}$")
_TAKER_SIDE = {"BUY": Side.SELL, "SELL": Side.BUY}  # the venue reports the resting (maker) order's side
_PRODUCTS_SEEN: set[str] = set()  # product ids that matched _PRODUCT: a connection streams a handful, per frame
_PRODUCTS_SEEN_MAX = 4096


def subscribe_messages(symbols: list[str], *, unsubscribe: bool = False) -> list[str]:
    """One (un)subscribe frame per channel for canonical ``symbols`` (Coinbase product ids are canonical)."""
    kind = "unsubscribe" if unsubscribe else "subscribe"
    channels = CHANNELS if not unsubscribe else (BOOK_CHANNEL, "market_trades")
    return [orjson.dumps({"type": kind, "product_ids": symbols, "channel": c}).decode() for c in channels]


def book_resubscribe_messages(symbols: list[str]) -> list[str]:
    """Unsubscribe then subscribe ``level2``: the venue answers with a fresh snapshot per product."""
    return [
        orjson.dumps({"type": "unsubscribe", "product_ids": symbols, "channel": BOOK_CHANNEL}).decode(),
        orjson.dumps({"type": "subscribe", "product_ids": symbols, "channel": BOOK_CHANNEL}).decode(),
    ]


def timestamp_ms(text: str) -> int:
    """RFC 3339 with up to nanoseconds (``...48.505350477Z``) to integer milliseconds since the epoch."""
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except (TypeError, ValueError, OverflowError) as exc:
        raise VenueProtocolError(f"bad timestamp {text!r}") from exc


def _product(value: Any) -> str:
    if type(value) is str and value in _PRODUCTS_SEEN:
        return value
    if not isinstance(value, str) or not _PRODUCT.match(value):
        raise VenueProtocolError(f"bad product_id {value!r}")
    if len(_PRODUCTS_SEEN) < _PRODUCTS_SEEN_MAX:
        _PRODUCTS_SEEN.add(value)
    return value


def _book_event(event: dict[str, Any]) -> BookSnapshot | BookUpdate:
    kind = event["type"]
    symbol = _product(event["product_id"])
    bids: list[TextLevel] = []
    asks: list[TextLevel] = []
    event_time: str | None = None
    for level in event["updates"]:
        side = level["side"]
        entry = (level["price_level"], level["new_quantity"])
        if type(entry[0]) is not str or type(entry[1]) is not str:
            raise VenueProtocolError(f"{symbol}: price_level/new_quantity must be decimal strings")
        if side == "bid":
            bids.append(entry)
        elif side == "offer":
            asks.append(entry)
        else:
            raise VenueProtocolError(f"{symbol}: unknown book side {side!r} (expected 'bid' or 'offer')")
        event_time = level["event_time"]
    ts = timestamp_ms(event_time) if event_time is not None else None
    if kind == "snapshot":
        return BookSnapshot(symbol, bids, asks, ts)
    if kind == "update":
        return BookUpdate(symbol, bids, asks, ts)
    raise VenueProtocolError(f"{symbol}: unknown l2_data event type {kind!r}")


def _trades(event: dict[str, Any]) -> list[VenueEvent]:
    if event["type"] == "snapshot":
        return []  # the last 100 trades before we connected: history, not new prints
    if event["type"] != "update":
        raise VenueProtocolError(f"unknown market_trades event type {event['type']!r}")
    prints: list[VenueEvent] = []
    for trade in event["trades"]:
        side = _TAKER_SIDE.get(trade["side"])
        if side is None:
            raise VenueProtocolError(f"unknown trade side {trade['side']!r}")
        prints.append(TradePrint(
            _product(trade["product_id"]), str(trade["price"]), str(trade["size"]), side,
            timestamp_ms(trade["time"]), str(trade["trade_id"]),
        ))
    return prints


def _subscriptions(event: dict[str, Any]) -> list[VenueEvent]:
    active = event["subscriptions"]
    if not isinstance(active, dict):
        raise VenueProtocolError("subscriptions event without a channel map")
    return [SubscriptionAck(channel, list(symbols), AckStatus.SUBSCRIBED) for channel, symbols in active.items()]


# --- fast path for l2_data frames ---------------------------------------------------------------------
# Book frames are most of the traffic: decoded straight into typed values (msgspec checks every type in C)
# instead of orjson dicts walked in Python. The schema is closed (unknown fields refused) and holds no
# untyped value, so it accepts a strict subset of what parse_general (orjson) accepts and gives exactly its
# result; for anything else, malformed frames included, it returns None and parse_general, which owns
# every error message, takes the frame. (An open schema would skip unknown values unchecked, e.g. a 1e999
# that orjson refuses.)


class _L2Level(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    side: str
    event_time: str
    price_level: str
    new_quantity: str


class _L2Event(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    type: str
    product_id: str
    updates: list[_L2Level]


_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # orjson reads integers past 64 bits as floats


class _L2Message(msgspec.Struct, gc=False, forbid_unknown_fields=True, tag_field="channel", tag="l2_data"):
    timestamp: str
    sequence_num: _Int64
    events: list[_L2Event]
    client_id: str | UnsetType = UNSET  # in the prose docs, not (yet) on the wire


_L2_DATA = msgspec.json.Decoder(_L2Message)


def _l2_fast_event(event: _L2Event) -> BookSnapshot | BookUpdate | None:
    kind = event.type
    if kind != "update" and kind != "snapshot":
        return None
    bids: list[TextLevel] = []
    asks: list[TextLevel] = []
    for level in event.updates:
        side = level.side
        if side == "bid":
            bids.append((level.price_level, level.new_quantity))
        elif side == "offer":
            asks.append((level.price_level, level.new_quantity))
        else:
            return None
    updates = event.updates
    ts = timestamp_ms(updates[-1].event_time) if updates else None
    if kind == "update":
        return BookUpdate(_product(event.product_id), bids, asks, ts)
    return BookSnapshot(_product(event.product_id), bids, asks, ts)


def _l2_data(frame: str | bytes) -> ParsedFrame | None:
    """``{"channel": "l2_data", "timestamp", "sequence_num", "events": [...]}``, or None."""
    try:
        message = _L2_DATA.decode(frame)
        events: list[VenueEvent] = []
        for event in message.events:
            parsed = _l2_fast_event(event)
            if parsed is None:
                return None
            events.append(parsed)
    except ValueError:  # also msgspec's errors, ours, and a str that is no text (UnicodeEncodeError)
        return None
    return ParsedFrame(events, message.sequence_num)


def parse_frame(frame: str | bytes) -> ParsedFrame:
    """Turn one received frame into events. Raises :class:`VenueProtocolError` for anything malformed."""
    fast = _l2_data(frame)
    return fast if fast is not None else parse_general(frame)


def parse_general(frame: str | bytes) -> ParsedFrame:
    """:func:`parse_frame` without the fast path: every frame shape, and the reference for it."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise VenueProtocolError(f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise VenueProtocolError(f"expected a JSON object, got {type(message).__name__}")
    try:
        return _parse_message(message)
    except VenueProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise VenueProtocolError(f"malformed {message.get('channel', 'frame')!r}: {exc!r}") from exc


def _parse_message(message: dict[str, Any]) -> ParsedFrame:
    if message.get("type") == "error":
        return ParsedFrame([VenueErrorMessage(str(message.get("message", "")))])
    channel = message["channel"]
    sequence = message["sequence_num"]
    if type(sequence) is not int:
        raise VenueProtocolError(f"sequence_num {sequence!r} is not an integer")
    events: list[VenueEvent] = []
    if channel == "l2_data":
        events = [_book_event(event) for event in message["events"]]
    elif channel == "market_trades":
        for event in message["events"]:
            events.extend(_trades(event))
    elif channel == "heartbeats":
        events = [Heartbeat()]
    elif channel == "subscriptions":
        for event in message["events"]:
            events.extend(_subscriptions(event))
    elif channel not in IGNORED_CHANNELS:
        raise VenueProtocolError(f"unknown channel {channel!r}")
    return ParsedFrame(events, sequence)
