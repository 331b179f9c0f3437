"""Kraken WebSocket v2 (the live default) and v1 (the 2021 recording): subscribe messages and pure frame
parsers (the book checksums are in ``kraken_checksum``, re-exported here).

Facts this relies on (docs/exchange-protocols.md §4-5, checked on the fixtures): v2 sends prices and sizes as
JSON numbers whose text matters, so they are decoded to their text (msgspec ``float_hook=str``), never to
float; its checksum formats each number with the ``instrument`` precisions. v1 sends strings and its
checksum uses them exactly as received. Both checksum the top 10 asks (ascending) then the top 10 bids
(descending) with CRC-32. v1 names Bitcoin ``XBT``; v2 uses ``BTC``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from producers.venues.events import (
    AckStatus,
    BookSnapshot,
    BookUpdate,
    ChecksumFormat,
    Heartbeat,
    InstrumentInfo,
    ParsedFrame,
    SubscriptionAck,
    TextLevel,
    TradePrint,
    VenueErrorMessage,
    VenueEvent,
    VenueProtocolError,
    VenueStatus,
)
from producers.venues.kraken_checksum import CHECKSUM_LEVELS as CHECKSUM_LEVELS  # re-exported: the public names
from producers.venues.kraken_checksum import checksum as checksum
from producers.venues.kraken_checksum import checksum_v1 as checksum_v1
from producers.venues.kraken_checksum import checksum_v2 as checksum_v2
from producers.venues.kraken_checksum import fixed_point as fixed_point
from producers.venues.kraken_checksum import token_v1 as token_v1
from producers.venues.kraken_checksum import token_v2 as token_v2
from schemas.market import Side, canonical_symbol

VENUE = "kraken"
DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_BOOK_DEPTH = 10
_V2_DECODER = msgspec.json.Decoder(float_hook=str)
_V2_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_V1_SIDES = {"b": Side.BUY, "s": Side.SELL}
IGNORED_V2_CHANNELS = frozenset({"ticker", "ohlc", "level3", "executions", "balances"})
IGNORED_V1_CHANNELS = ("ticker", "spread", "ohlc")


# --- symbols ------------------------------------------------------------------------------------------


def canonical(venue_symbol: str) -> str:
    """``XBT/USD`` (v1) or ``BTC/USD`` (v2) → ``BTC-USD``."""
    base, sep, quote = venue_symbol.partition("/")
    if not sep or not base or not quote:
        raise VenueProtocolError(f"bad Kraken symbol {venue_symbol!r}")
    return canonical_symbol(base, quote)


def v2_symbol(symbol: str) -> str:
    """``BTC-USD`` → ``BTC/USD`` (v2 spells Bitcoin BTC)."""
    return symbol.replace("-", "/")


def v1_symbol(symbol: str) -> str:
    """``BTC-USD`` → ``XBT/USD`` (v1 and REST ``wsname`` spell Bitcoin XBT)."""
    base, _, quote = symbol.partition("-")
    return "/".join("XBT" if asset == "BTC" else asset for asset in (base, quote))


# --- requests -----------------------------------------------------------------------------------------


def subscribe_messages(symbols: list[str], *, depth: int = DEFAULT_BOOK_DEPTH, req_id: int = 1) -> list[str]:
    """v2: ``instrument`` first (the checksum needs its precisions), then ``book`` and ``trade``."""
    names = [v2_symbol(s) for s in symbols]
    return [
        orjson.dumps({"method": "subscribe", "params": {"channel": "instrument", "snapshot": True},
                      "req_id": req_id}).decode(),
        orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": names, "depth": depth,
                                                         "snapshot": True}, "req_id": req_id + 1}).decode(),
        orjson.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": names, "snapshot": False},
                      "req_id": req_id + 2}).decode(),
    ]


def unsubscribe_messages(symbols: list[str], *, depth: int = DEFAULT_BOOK_DEPTH, req_id: int = 1) -> list[str]:
    names = [v2_symbol(s) for s in symbols]
    return [
        orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": names, "depth": depth},
                      "req_id": req_id}).decode(),
        orjson.dumps({"method": "unsubscribe", "params": {"channel": "trade", "symbol": names},
                      "req_id": req_id + 1}).decode(),
    ]


def book_resubscribe_messages(symbols: list[str], *, depth: int = DEFAULT_BOOK_DEPTH, req_id: int = 1) -> list[str]:
    """Unsubscribe then subscribe ``book``: Kraken answers with a fresh snapshot (it does not resume)."""
    names = [v2_symbol(s) for s in symbols]
    return [
        orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": names, "depth": depth},
                      "req_id": req_id}).decode(),
        orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": names, "depth": depth,
                                                         "snapshot": True}, "req_id": req_id + 1}).decode(),
    ]


# --- v2 parsing ---------------------------------------------------------------------------------------


def _number_text(value: Any) -> str:
    if type(value) is str:
        return value  # float_hook kept the JSON number's own text
    if type(value) is int:
        return str(value)
    raise VenueProtocolError(f"expected a number, got {value!r}")


def _v2_levels(levels: list[dict[str, Any]]) -> list[TextLevel]:
    return [(_number_text(level["price"]), _number_text(level["qty"])) for level in levels]


def _v2_time(text: Any) -> int | None:
    if text is None:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except (TypeError, ValueError) as exc:
        raise VenueProtocolError(f"bad timestamp {text!r}") from exc


def _v2_book(message: dict[str, Any]) -> list[VenueEvent]:
    events: list[VenueEvent] = []
    for item in message["data"]:
        symbol = canonical(item["symbol"])
        checksum = item.get("checksum")
        if checksum is not None and type(checksum) is not int:
            raise VenueProtocolError(f"{symbol}: checksum {checksum!r} is not an integer")
        bids, asks, ts = _v2_levels(item["bids"]), _v2_levels(item["asks"]), _v2_time(item.get("timestamp"))
        if message["type"] == "snapshot":
            events.append(BookSnapshot(symbol, bids, asks, ts, checksum, ChecksumFormat.KRAKEN_V2))
        elif message["type"] == "update":
            events.append(BookUpdate(symbol, bids, asks, ts, checksum, ChecksumFormat.KRAKEN_V2))
        else:
            raise VenueProtocolError(f"{symbol}: unknown book message type {message['type']!r}")
    return events


def _v2_trades(message: dict[str, Any]) -> list[VenueEvent]:
    if message["type"] == "snapshot":
        return []  # trades from before we subscribed
    prints: list[VenueEvent] = []
    for trade in message["data"]:
        side = _V2_SIDES.get(trade["side"])
        if side is None:
            raise VenueProtocolError(f"unknown trade side {trade['side']!r}")
        ts = _v2_time(trade["timestamp"])
        assert ts is not None
        prints.append(TradePrint(
            canonical(trade["symbol"]), _number_text(trade["price"]), _number_text(trade["qty"]), side, ts,
            str(trade.get("trade_id")),
        ))
    return prints


def _v2_response(message: dict[str, Any]) -> list[VenueEvent]:
    method = message["method"]
    if method == "pong":
        return [Heartbeat()]
    if method not in ("subscribe", "unsubscribe"):
        return []
    result = message.get("result") or {}
    symbol = result.get("symbol")
    symbols = [canonical(symbol)] if isinstance(symbol, str) else []
    if not message.get("success", False):
        return [SubscriptionAck(str(result.get("channel", "")), symbols, AckStatus.ERROR, str(message.get("error")))]
    status = AckStatus.SUBSCRIBED if method == "subscribe" else AckStatus.UNSUBSCRIBED
    return [SubscriptionAck(str(result.get("channel", "")), symbols, status)]


def _v2_instruments(message: dict[str, Any]) -> list[VenueEvent]:
    return [
        InstrumentInfo(canonical(pair["symbol"]), int(pair["price_precision"]), int(pair["qty_precision"]))
        for pair in message["data"]["pairs"]
    ]


def _parse_v2(message: dict[str, Any]) -> list[VenueEvent]:
    if "method" in message:
        return _v2_response(message)
    channel = message["channel"]
    if channel == "book":
        return _v2_book(message)
    if channel == "trade":
        return _v2_trades(message)
    if channel == "heartbeat":
        return [Heartbeat()]
    if channel == "status":
        return [VenueStatus(str(item["system"])) for item in message["data"]]
    if channel == "instrument":
        return _v2_instruments(message)
    if channel in IGNORED_V2_CHANNELS:
        return []
    raise VenueProtocolError(f"unknown channel {channel!r}")


# --- v1 parsing ---------------------------------------------------------------------------------------


def _v1_levels(levels: list[list[str]]) -> tuple[list[TextLevel], int]:
    """Levels ``[price, volume, time, ("r")]`` as text, and the newest level time in ms."""
    out: list[TextLevel] = []
    newest = 0.0
    for level in levels:
        price, volume, stamp = level[0], level[1], level[2]
        if type(price) is not str or type(volume) is not str:
            raise VenueProtocolError("v1 book levels must be [price, volume, time] strings")
        out.append((price, volume))
        newest = max(newest, float(stamp))
    return out, int(newest * 1000)


def _v1_book(payloads: list[dict[str, Any]], symbol: str) -> VenueEvent:
    if "as" in payloads[0] or "bs" in payloads[0]:
        asks, ts_asks = _v1_levels(payloads[0].get("as", []))
        bids, ts_bids = _v1_levels(payloads[0].get("bs", []))
        return BookSnapshot(symbol, bids, asks, max(ts_asks, ts_bids) or None, None, ChecksumFormat.KRAKEN_V1)
    asks, bids, newest = [], [], 0
    checksum: int | None = None
    for payload in payloads:  # both sides come as two objects, asks first, "c" in the last one
        if "a" in payload:
            levels, ts = _v1_levels(payload["a"])
            asks.extend(levels)
            newest = max(newest, ts)
        if "b" in payload:
            levels, ts = _v1_levels(payload["b"])
            bids.extend(levels)
            newest = max(newest, ts)
        if "c" in payload:
            checksum = int(payload["c"])
    return BookUpdate(symbol, bids, asks, newest or None, checksum, ChecksumFormat.KRAKEN_V1)


def _v1_trades(trades: list[list[str]], symbol: str) -> list[VenueEvent]:
    prints: list[VenueEvent] = []
    for price, volume, stamp, side, *_ in trades:
        taker = _V1_SIDES.get(side)
        if taker is None:
            raise VenueProtocolError(f"unknown v1 trade side {side!r}")
        prints.append(TradePrint(symbol, price, volume, taker, int(float(stamp) * 1000)))
    return prints


def _v1_event(message: dict[str, Any]) -> list[VenueEvent]:
    event = message["event"]
    if event in ("heartbeat", "pong"):
        return [Heartbeat()]
    if event == "systemStatus":
        return [VenueStatus(str(message["status"]))]
    if event == "subscriptionStatus":
        symbols = [canonical(message["pair"])] if "pair" in message else []
        status = AckStatus(message["status"])
        channel = str(message.get("channelName") or message.get("subscription", {}).get("name", ""))
        return [SubscriptionAck(channel, symbols, status, message.get("errorMessage"))]
    if event == "error":
        return [VenueErrorMessage(str(message.get("errorMessage", "")))]
    raise VenueProtocolError(f"unknown v1 event {event!r}")


def _parse_v1_array(message: list[Any]) -> list[VenueEvent]:
    if len(message) < 4:
        raise VenueProtocolError("v1 data frame shorter than [channelID, payload, channelName, pair]")
    channel_name, pair = message[-2], message[-1]
    if type(channel_name) is not str or type(pair) is not str:
        raise VenueProtocolError("v1 data frame must end with channelName and pair")
    symbol = canonical(pair)
    payloads = message[1:-2]
    if channel_name.startswith("book"):
        if not all(isinstance(p, dict) for p in payloads):
            raise VenueProtocolError(f"{symbol}: v1 book payloads must be objects")
        return [_v1_book(payloads, symbol)]
    if channel_name == "trade":
        return _v1_trades(payloads[0], symbol)
    if channel_name.startswith(IGNORED_V1_CHANNELS):
        return []
    raise VenueProtocolError(f"unknown v1 channel {channel_name!r}")


# --- fast paths for book frames -----------------------------------------------------------------------
# Book frames are nearly all of the traffic. These decode them straight into typed values (msgspec checks
# every type in C) instead of walking generic lists and dicts. Each accepts a strict subset of what the
# general parser (parse_general) accepts and gives exactly its result; for anything else, malformed frames
# included, the general parser, which owns every error message, takes the frame.

_V1Level = tuple[str, str, float]  # price, volume, time; a 4th element ("r", republish) leaves the fast path
_V1BookChannel = Literal["book-10", "book-25", "book-100", "book-500", "book-1000"]  # decoded without a copy


class _V1BookDelta(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """The one payload of a v1 book update. Any other key (a snapshot's ``as``/``bs``) leaves the fast path."""

    a: list[_V1Level] | UnsetType = UNSET  # null is refused: the general parser raises on it
    b: list[_V1Level] | UnsetType = UNSET
    c: str | UnsetType = UNSET


# strict=False reads the time string as a float in C. Python's float() takes everything that accepts, to
# the same double (both round correctly; "-0" gives 0.0 here, the same in a max() from 0.0), and more (" 1",
# "1_0", ".5"): those frames leave the fast path. The other lax coercions only touch the unused channelID.
_V1_BOOK_UPDATE = msgspec.json.Decoder(tuple[int, _V1BookDelta, _V1BookChannel, str], strict=False)
_JSON_INT = msgspec.json.Decoder(int).decode  # int() of a JSON integer's text, twice as fast; refuses the rest
_ARRAY_START = ("[", b"[")  # v1 data frames are arrays; v2 and v1 events are objects
_V1 = ChecksumFormat.KRAKEN_V1  # enum attribute lookups are slow enough to matter per frame
_V2 = ChecksumFormat.KRAKEN_V2
_SYMBOLS: dict[str, str] = {}  # venue pair -> canonical symbol; a connection streams a handful of pairs
_SYMBOLS_MAX = 4096


def _canonical_cached(venue_symbol: str) -> str:
    symbol = _SYMBOLS.get(venue_symbol)
    if symbol is None:
        symbol = canonical(venue_symbol)
        if len(_SYMBOLS) < _SYMBOLS_MAX:
            _SYMBOLS[venue_symbol] = symbol
    return symbol


class _V2Level(msgspec.Struct, gc=False):
    price: Any  # float_hook=str keeps a JSON number's own text; _number_text checks the rest
    qty: Any


class _V2BookData(msgspec.Struct, gc=False):
    symbol: str
    bids: list[_V2Level]
    asks: list[_V2Level]
    checksum: int | None = None
    timestamp: str | None = None


class _V2BookMessage(msgspec.Struct, gc=False, tag_field="channel", tag="book"):
    type: str
    data: list[_V2BookData]
    method: msgspec.Raw | UnsetType = UNSET  # either key sends the frame down another branch of parse_frame
    event: msgspec.Raw | UnsetType = UNSET


_V2_BOOK = msgspec.json.Decoder(_V2BookMessage, float_hook=str)
_V2_BOOK_EVENTS: dict[str, type[BookSnapshot] | type[BookUpdate]] = {"snapshot": BookSnapshot, "update": BookUpdate}


def _v2_fast_levels(levels: list[_V2Level]) -> list[TextLevel]:
    out: list[TextLevel] = []
    for level in levels:
        price, qty = level.price, level.qty
        if type(price) is not str or type(qty) is not str:
            price, qty = _number_text(price), _number_text(qty)
        out.append((price, qty))
    return out


def _v2_book_message(frame: str | bytes) -> ParsedFrame | None:
    """``{"channel": "book", "type": "snapshot"|"update", "data": [...]}``, or None."""
    try:
        message = _V2_BOOK.decode(frame)
        kind = _V2_BOOK_EVENTS.get(message.type)
        if kind is None or message.method is not UNSET or message.event is not UNSET:
            return None
        events: list[VenueEvent] = [
            kind(_canonical_cached(item.symbol), _v2_fast_levels(item.bids), _v2_fast_levels(item.asks),
                 _v2_time(item.timestamp), item.checksum, _V2)
            for item in message.data
        ]
    except (ValueError, RecursionError):  # ValueError: also msgspec's and ours
        return None
    return ParsedFrame(events)


# --- entry point --------------------------------------------------------------------------------------


def parse_frame(frame: str | bytes) -> ParsedFrame:
    """One received frame (v2 object, v1 event object or v1 data array) → events.

    Raises :class:`VenueProtocolError` for anything malformed, never another exception.
    """
    if frame[:1] in _ARRAY_START:
        try:  # the fast path for a v1 book update ``[channelID, {"a"|"b": levels, "c": crc}, "book-N", pair]``
            _, delta, _, pair = _V1_BOOK_UPDATE.decode(frame)
            newest = 0.0  # as _v1_levels: the latest level time; max() of per-side int(ms) is int() of the max
            asks: list[TextLevel] = []
            bids: list[TextLevel] = []
            if delta.a is not UNSET:
                for price, volume, seconds in delta.a:
                    asks.append((price, volume))
                    if seconds > newest:
                        newest = seconds
            if delta.b is not UNSET:
                for price, volume, seconds in delta.b:
                    bids.append((price, volume))
                    if seconds > newest:
                        newest = seconds
            checksum = _JSON_INT(delta.c) if delta.c is not UNSET else None
            symbol = _SYMBOLS.get(pair) or _canonical_cached(pair)
            return ParsedFrame([BookUpdate(symbol, bids, asks, int(newest * 1000) or None, checksum, _V1)])
        except (ValueError, OverflowError, RecursionError):  # ValueError: also msgspec's and ours
            pass  # not that shape: the general parser decides
    else:
        fast = _v2_book_message(frame)
        if fast is not None:
            return fast
    return parse_general(frame)


def parse_general(frame: str | bytes) -> ParsedFrame:
    """:func:`parse_frame` without the fast paths: every frame shape, and the reference for them."""
    try:
        message = _V2_DECODER.decode(frame)
    except (msgspec.DecodeError, RecursionError, UnicodeEncodeError) as exc:  # nested too deep; a str that
        raise VenueProtocolError(f"not JSON: {exc}") from exc  # is no text (a lone surrogate): not JSON either
    try:
        if isinstance(message, list):
            return ParsedFrame(_parse_v1_array(message))
        if not isinstance(message, dict):
            raise VenueProtocolError(f"expected a JSON object or array, got {type(message).__name__}")
        if "event" in message:
            return ParsedFrame(_v1_event(message))
        return ParsedFrame(_parse_v2(message))
    except VenueProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise VenueProtocolError(f"malformed frame: {exc!r}") from exc  # OverflowError: a time of "inf"
