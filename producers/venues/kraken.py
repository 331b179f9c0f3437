"""Kraken WebSocket v2 (the live default) and v1 (the 2021 recording): subscribe messages, pure frame
parsers, and the book checksums.

Facts this relies on (docs/exchange-protocols.md §4-5, checked on the fixtures): v2 sends prices and sizes as
JSON numbers whose text matters, so they are decoded to their text (msgspec ``float_hook=str``), never to
float; its checksum formats each number with the ``instrument`` precisions. v1 sends strings and its
checksum uses them exactly as received. Both checksum the top 10 asks (ascending) then the top 10 bids
(descending) with CRC-32. v1 names Bitcoin ``XBT``; v2 uses ``BTC``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import orjson

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
from schemas.market import Side, canonical_symbol

VENUE = "kraken"
DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_BOOK_DEPTH = 10
CHECKSUM_LEVELS = 10
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


# --- checksums ----------------------------------------------------------------------------------------


def _token(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def fixed_point(text: str, places: int) -> str:
    """Decimal ``text`` with exactly ``places`` decimals, computed on the text (no float rounding)."""
    whole, _, fraction = text.partition(".")
    if "e" in text or "E" in text or len(fraction) > places or text.startswith("-"):
        try:
            return f"{Decimal(text):.{places}f}"
        except InvalidOperation as exc:
            raise VenueProtocolError(f"bad decimal {text!r}") from exc
    return f"{whole}.{fraction.ljust(places, '0')}" if places else whole


def token_v1(price: str, size: str) -> str:
    """A level's part of the v1 checksum string: the wire strings without ``.`` and leading zeros."""
    return _token(price) + _token(size)


def token_v2(price_precision: int, qty_precision: int) -> Callable[[str, str], str]:
    """A level's part of the v2 checksum string, numbers first written with the instrument precisions."""
    def token(price: str, size: str) -> str:
        return _token(fixed_point(price, price_precision)) + _token(fixed_point(size, qty_precision))

    return token


def checksum(asks_part: str, bids_part: str) -> int:
    """CRC-32 (zlib) of the top-10 ask tokens followed by the top-10 bid tokens, as an unsigned int."""
    return zlib.crc32((asks_part + bids_part).encode())


def checksum_v1(asks: Iterable[TextLevel], bids: Iterable[TextLevel]) -> int:
    """CRC-32 of the top 10 asks then bids, each token the wire string without ``.`` and leading zeros."""
    parts = [_token(price) + _token(size) for price, size in asks]
    parts.extend(_token(price) + _token(size) for price, size in bids)
    return zlib.crc32("".join(parts).encode())


def checksum_v2(asks: Iterable[TextLevel], bids: Iterable[TextLevel], price_precision: int, qty_precision: int) -> int:
    """Like v1, but each number is first written with the instrument's fixed precision."""
    def token(level: TextLevel) -> str:
        return _token(fixed_point(level[0], price_precision)) + _token(fixed_point(level[1], qty_precision))

    parts = [token(level) for level in asks]
    parts.extend(token(level) for level in bids)
    return zlib.crc32("".join(parts).encode())


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


# --- entry point --------------------------------------------------------------------------------------


def parse_frame(frame: str | bytes) -> ParsedFrame:
    """One received frame (v2 object, v1 event object or v1 data array) → events.

    Raises :class:`VenueProtocolError` for anything malformed, never another exception.
    """
    try:
        message = _V2_DECODER.decode(frame)
    except msgspec.DecodeError as exc:
        raise VenueProtocolError(f"not JSON: {exc}") from exc
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
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise VenueProtocolError(f"malformed frame: {exc!r}") from exc
