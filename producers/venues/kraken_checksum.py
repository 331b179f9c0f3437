"""Kraken's book checksums, v1 and v2: each level's token, the fixed-point text v2 needs, the CRC-32.

Both checksum the top 10 asks (ascending) then the top 10 bids (descending): each level contributes its price
then size text without ``.`` and leading zeros. v1 uses the wire strings exactly as received; v2 first writes
each number with the ``instrument`` precisions (docs/exchange-protocols.md §4.5, §5.2).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation

from producers.venues.events import TextLevel, VenueProtocolError

CHECKSUM_LEVELS = 10


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
    return price.replace(".", "").lstrip("0") + size.replace(".", "").lstrip("0")  # _token twice, inlined


def fixed_token(text: str, places: int) -> str:
    """``_token(fixed_point(text, places))``: when the text needs no rounding (the usual case: the venue writes
    at most the instrument's decimals), without building the fixed-point text in between."""
    whole, _, fraction = text.partition(".")
    if len(fraction) > places or "e" in text or "E" in text or text.startswith("-"):
        return _token(fixed_point(text, places))
    if not places:
        return whole.lstrip("0")
    return (whole + fraction.ljust(places, "0")).replace(".", "").lstrip("0")


PRICE_TOKENS_MAX = 1024
"""Price tokens a v2 token function (one per book) remembers: levels change size far more often than price."""


def token_v2(price_precision: int, qty_precision: int) -> Callable[[str, str], str]:
    """A level's part of the v2 checksum string, numbers first written with the instrument precisions."""
    prices: dict[str, str] = {}

    def token(price: str, size: str) -> str:
        price_token = prices.get(price)
        if price_token is None:
            price_token = fixed_token(price, price_precision)
            if len(prices) >= PRICE_TOKENS_MAX:
                prices.clear()
            prices[price] = price_token
        return price_token + fixed_token(size, qty_precision)

    return token


def checksum(asks_part: bytes, bids_part: bytes) -> int:
    """CRC-32 (zlib) of the top-10 ask tokens followed by the top-10 bid tokens, as an unsigned int.

    The CRC of the asks is continued over the bids: the same value as over the joined text, without joining.
    """
    return zlib.crc32(bids_part, zlib.crc32(asks_part))


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
