"""What a reader can check about market data and control entries before trusting them. Pure functions.

A decoded entry is well-formed (the codec saw to that); these answer "is it believable?": a venue we know,
a market that venue lists, a book that can exist. Each returns ``None`` or a short reason fit for the
dead-letter stream.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from schemas.base import VENUES
from schemas.control import SymbolControl
from schemas.market import Level, Snapshot, Trade

MAX_PRICE = 1e12
"""No market quotes above this (BTC is ~1e5); larger is a unit error or a forgery, and its products overflow."""

MAX_SIZE = 1e18
"""Memecoin books reach ~1e12 units per level; beyond this sizes only come from bugs."""

MAX_LEVELS = 1_000

Catalogs = Mapping[str, Collection[str]]
"""Venue → the canonical symbols it lists (its discovered markets)."""


def market_problem(exchange: str, symbol: str, catalogs: Catalogs) -> str | None:
    if exchange not in VENUES:
        return f"unknown venue {exchange[:40]!r}"
    listed = catalogs.get(exchange)
    if listed is None:
        return f"no market list registered for {exchange} (its producer writes it at start)"
    if symbol not in listed:
        return f"{exchange} lists no market {symbol!r}"
    return None


def _side_problem(side: str, levels: Sequence[Level], better: int) -> str | None:
    """``better`` is -1 for bids (prices fall away from the best), +1 for asks."""
    cumulative = 0.0
    previous = None
    for index, (price, size, total) in enumerate(levels):
        if not (0.0 < price <= MAX_PRICE) or math.isnan(price):
            return f"{side}[{index}] price {price!r} outside (0, {MAX_PRICE:g}]"
        if not (0.0 < size <= MAX_SIZE) or math.isnan(size):
            return f"{side}[{index}] size {size!r} outside (0, {MAX_SIZE:g}]"
        if previous is not None and (price - previous) * better <= 0:
            return f"{side}[{index}] price {price!r} is not {'below' if better < 0 else 'above'} {previous!r}"
        cumulative += size
        if not math.isclose(total, cumulative, rel_tol=1e-6, abs_tol=1e-12):
            return f"{side}[{index}] cumulative size {total!r} is not the running total {cumulative!r}"
        previous = price
    return None


def book_problem(bids: Sequence[Level], asks: Sequence[Level]) -> str | None:
    """Positive bounded prices and sizes, strictly ordered levels, true running totals, and a best bid
    below the best ask (a crossed or locked book cannot rest on either venue's matching engine)."""
    if len(bids) > MAX_LEVELS or len(asks) > MAX_LEVELS:
        return f"{len(bids)} bids / {len(asks)} asks: more than {MAX_LEVELS} levels"
    problem = _side_problem("bids", bids, -1) or _side_problem("asks", asks, +1)
    if problem is None and bids and asks and bids[0][0] >= asks[0][0]:
        problem = f"crossed book: best bid {bids[0][0]!r} >= best ask {asks[0][0]!r}"
    return problem


def snapshot_problem(snapshot: Snapshot, catalogs: Catalogs | None = None) -> str | None:
    """The book's own consistency, and with ``catalogs`` whether its venue lists the market."""
    if catalogs is not None and (problem := market_problem(snapshot.exchange, snapshot.symbol, catalogs)):
        return problem
    if not snapshot.bids and not snapshot.asks:
        return "empty book: no bids and no asks"
    return book_problem(snapshot.bids, snapshot.asks)


def trade_problem(trade: Trade, catalogs: Catalogs | None = None) -> str | None:
    if catalogs is not None and (problem := market_problem(trade.exchange, trade.symbol, catalogs)):
        return problem
    if trade.price > MAX_PRICE:
        return f"price {trade.price!r} above {MAX_PRICE:g}"
    if trade.size > MAX_SIZE:
        return f"size {trade.size!r} above {MAX_SIZE:g}"
    return None


def control_problem(control: SymbolControl, venue: str, listed: Collection[str]) -> str | None:
    """Whether ``venue``'s part of a control entry names only markets ``venue`` lists."""
    unknown = [s for s in control.symbols.get(venue, ()) if s not in listed]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        return f"{venue} lists no market {shown}"
    return None
