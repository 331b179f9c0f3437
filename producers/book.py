"""An L2 order book for one (venue, symbol): absolute level updates, top-N in O(N log depth).

Levels are keyed by float price: every venue price has at most 15 significant digits, so equal decimal
values (``"0.1"``, ``"0.10"``) parse to the same float and sort exactly. Each level also keeps the venue's
price and size text, which Kraken checksums are computed over. Sides are ``SortedDict``s (bids keyed by
negated price), so the best levels are at the front and reading the top never scans the book: the
Coinbase BTC-USD book holds ~46k levels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sortedcontainers import SortedDict

from producers.venues.events import TextLevel
from schemas.checks import MAX_PRICE, MAX_SIZE
from schemas.market import Level

TOP_CACHE_LEVELS = 10
"""Levels per side whose published form and checksum text are cached (Kraken checksums the top 10)."""


class BookIntegrityError(ValueError):
    """A level that cannot be a price or size (not a positive price / non-negative size within bounds)."""


def _parse(level: TextLevel) -> tuple[float, float]:
    try:
        price, size = float(level[0]), float(level[1])
    except (TypeError, ValueError) as exc:
        raise BookIntegrityError(f"level {level!r} is not numeric") from exc
    if not (0 < price <= MAX_PRICE and 0 <= size <= MAX_SIZE):
        raise BookIntegrityError(f"level {level!r}: price outside (0, {MAX_PRICE:g}] or size outside [0, {MAX_SIZE:g}]")
    return price, size


ChecksumToken = Callable[[str, str], str]
"""Turns a level's (price, size) text into its part of the venue's checksum string (Kraken)."""


class BookSide:
    """One side; ``descending`` for bids so that index 0 is always the best level.

    Most updates touch levels far from the top, so the best ``TOP_CACHE_LEVELS`` are cached (as published
    levels and as checksum text) and recomputed only after a change at or above the cached boundary.
    """

    __slots__ = ("_levels", "_sign", "token", "_boundary", "_top_cache", "_checksum_cache")

    def __init__(self, descending: bool, token: ChecksumToken | None = None) -> None:
        self._sign = -1.0 if descending else 1.0
        self.token = token
        self._levels: SortedDict = SortedDict()  # sign*price -> (size, price_text, size_text, checksum token)
        self._invalidate()

    def __len__(self) -> int:
        return len(self._levels)

    def _invalidate(self) -> None:
        self._boundary: float | None = None  # key of the last cached level; None = nothing cached
        self._top_cache: dict[int, list[Level]] = {}
        self._checksum_cache: dict[int, str] = {}

    def clear(self) -> None:
        self._levels.clear()
        self._invalidate()

    def apply(self, level: TextLevel) -> None:
        """Set the absolute size at a price; size zero removes the level."""
        price, size = _parse(level)
        key = self._sign * price
        if self._boundary is None or key <= self._boundary:
            self._invalidate()  # the change is within (or the side is thinner than) the cached top
        if size == 0.0:
            self._levels.pop(key, None)
        else:
            token = self.token(level[0], level[1]) if self.token is not None else ""
            self._levels[key] = (size, level[0], level[1], token)

    def truncate(self, depth: int) -> None:
        """Drop levels beyond ``depth`` (Kraken sends no deletes for levels pushed out of the window)."""
        if depth <= TOP_CACHE_LEVELS:
            self._invalidate()
        while len(self._levels) > depth:
            self._levels.popitem()

    def _cacheable(self, n: int) -> bool:
        """Whether the top ``n`` can be cached: only when the side is deeper than the cache window, so a
        change beyond the boundary provably leaves the top unchanged."""
        if n > TOP_CACHE_LEVELS or len(self._levels) <= TOP_CACHE_LEVELS:
            return False
        if self._boundary is None:
            self._boundary = self._levels.keys()[TOP_CACHE_LEVELS - 1]
        return True

    def top(self, n: int) -> list[Level]:
        """The best ``n`` levels as ``(price, size, cumulative size)``."""
        cacheable = self._cacheable(n)
        if cacheable and n in self._top_cache:
            return self._top_cache[n]
        out: list[Level] = []
        cumulative = 0.0
        sign, levels = self._sign, self._levels
        for key in levels.islice(stop=n):  # sorted keys; values by plain dict lookup
            size = levels[key][0]
            cumulative += size
            out.append((sign * key, size, cumulative))
        if cacheable:
            self._top_cache[n] = out
        return out

    def top_text(self, n: int) -> list[TextLevel]:
        """The best ``n`` levels as the venue's own (price, size) text, for checksums."""
        levels = self._levels
        return [levels[key][1:3] for key in levels.islice(stop=n)]

    def checksum_part(self, n: int) -> str:
        """The checksum tokens of the best ``n`` levels, computed once per level when it was set."""
        cacheable = self._cacheable(n)
        if cacheable and n in self._checksum_cache:
            return self._checksum_cache[n]
        levels = self._levels
        part = "".join([levels[key][3] for key in levels.islice(stop=n)])
        if cacheable:
            self._checksum_cache[n] = part
        return part

    def best_price(self) -> float | None:
        if not self._levels:
            return None
        return float(self._sign * self._levels.peekitem(0)[0])


class OrderBook:
    """Book of one symbol. ``depth`` (Kraken) truncates each side after every message; None keeps all."""

    __slots__ = ("symbol", "depth", "bids", "asks")

    def __init__(self, symbol: str, depth: int | None = None) -> None:
        self.symbol = symbol
        self.depth = depth
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def apply_snapshot(
        self, bids: Iterable[TextLevel], asks: Iterable[TextLevel], token: ChecksumToken | None = None
    ) -> None:
        """Replace the whole book; ``token`` (Kraken) precomputes each level's checksum token."""
        self.bids.clear()
        self.asks.clear()
        self.bids.token = self.asks.token = token
        self.apply_update(bids, asks)

    def apply_update(self, bids: Iterable[TextLevel], asks: Iterable[TextLevel]) -> None:
        """Apply levels in the order given (one message may touch a price twice), then truncate."""
        for level in bids:
            self.bids.apply(level)
        for level in asks:
            self.asks.apply(level)
        if self.depth is not None:
            self.bids.truncate(self.depth)
            self.asks.truncate(self.depth)

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return self.bids.top(n), self.asks.top(n)

    def is_crossed(self) -> bool:
        bid, ask = self.bids.best_price(), self.asks.best_price()
        return bid is not None and ask is not None and bid >= ask
