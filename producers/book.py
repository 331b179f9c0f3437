"""An L2 order book for one (venue, symbol): absolute level updates, top-N in O(N log depth).

Levels are keyed by float price: every venue price has at most 15 significant digits, so equal decimal
values (``"0.1"``, ``"0.10"``) parse to the same float and sort exactly. Each level also keeps the venue's
price and size text, which Kraken checksums are computed over. Sides are ``SortedDict``s (bids keyed by
negated price), so the best levels are at the front and reading the top never scans the book: the
Coinbase BTC-USD book holds ~46k levels.
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedDict

from producers.venues.events import TextLevel
from schemas.market import Level


class BookIntegrityError(ValueError):
    """A level that cannot be a price or size (not a finite non-negative number)."""


def _parse(level: TextLevel) -> tuple[float, float]:
    try:
        price, size = float(level[0]), float(level[1])
    except (TypeError, ValueError) as exc:
        raise BookIntegrityError(f"level {level!r} is not numeric") from exc
    if not (price > 0 and size >= 0 and price != float("inf") and size != float("inf")):
        raise BookIntegrityError(f"level {level!r} has a non-positive price or a negative/infinite size")
    return price, size


class BookSide:
    """One side; ``descending`` for bids so that index 0 is always the best level."""

    __slots__ = ("_levels", "_sign")

    def __init__(self, descending: bool) -> None:
        self._sign = -1.0 if descending else 1.0
        self._levels: SortedDict = SortedDict()  # sign*price -> (size, price_text, size_text)

    def __len__(self) -> int:
        return len(self._levels)

    def clear(self) -> None:
        self._levels.clear()

    def apply(self, level: TextLevel) -> None:
        """Set the absolute size at a price; size zero removes the level."""
        price, size = _parse(level)
        key = self._sign * price
        if size == 0.0:
            self._levels.pop(key, None)
        else:
            self._levels[key] = (size, level[0], level[1])

    def truncate(self, depth: int) -> None:
        """Drop levels beyond ``depth`` (Kraken sends no deletes for levels pushed out of the window)."""
        while len(self._levels) > depth:
            self._levels.popitem()

    def top(self, n: int) -> list[Level]:
        """The best ``n`` levels as ``(price, size, cumulative size)``."""
        out: list[Level] = []
        cumulative = 0.0
        items = self._levels.items()
        for index in range(min(n, len(self._levels))):
            key, (size, _, _) = items[index]
            cumulative += size
            out.append((self._sign * key, size, cumulative))
        return out

    def top_text(self, n: int) -> list[TextLevel]:
        """The best ``n`` levels as the venue's own (price, size) text, for checksums."""
        values = self._levels.values()
        return [(values[i][1], values[i][2]) for i in range(min(n, len(self._levels)))]

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

    def apply_snapshot(self, bids: Iterable[TextLevel], asks: Iterable[TextLevel]) -> None:
        """Replace the whole book."""
        self.bids.clear()
        self.asks.clear()
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
