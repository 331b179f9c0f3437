"""Triangle arithmetic, pure: top-of-book ROI, the depth walk for a notional, the largest executable notional.

Conventions: a leg converts its source asset into its target asset. ``buy`` spends quote on the asks
(amount out = quote / ask), ``sell`` sells base into the bids (amount out = base × bid); each leg pays the
taker fee on what it receives. Sizes are rounded *down* to the market's increment and must reach its minimum,
so rounding can only make a fill smaller and never trades more than the book shows. Whatever rounding leaves
behind is counted as lost: the ROI is the start asset recovered at the end over the start notional
(conservative). Floats throughout (ranking, not accounting; see schemas/__init__.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumers.detector.graph import Leg, Triangle
from schemas.market import Level, Side

Book = tuple[Sequence[Level], Sequence[Level]]
"""``(bids, asks)``, best first, each level ``(price, size, cumulative)``."""


def round_down(amount: float, increment: float) -> float:
    """The largest multiple of ``increment`` not above ``amount``, where "not above" allows float noise of
    1e-12 relative (3 × 0.1 is 0.30000000000000004 in binary, yet 0.3 is a multiple of 0.1)."""
    if increment <= 0:
        return amount
    steps = math.floor(amount / increment + 1e-9)
    while steps > 0 and steps * increment > amount * (1 + 1e-12):
        steps -= 1
    return max(steps, 0) * increment


def top_of_book(triangle: Triangle, books: Mapping[str, Book]) -> tuple[float, float] | None:
    """(gross, net) multiplier of one unit of the start asset at the best prices; None if a side is empty."""
    gross = net = 1.0
    for leg in triangle.legs:
        bids, asks = books[leg.market.symbol]
        if leg.side is Side.BUY:
            if not asks:
                return None
            rate = 1.0 / asks[0][0]
        else:
            if not bids:
                return None
            rate = bids[0][0]
        gross *= rate
        net *= rate * (1.0 - leg.market.taker_fee)
    return gross, net


@dataclass(frozen=True, slots=True)
class LegFill:
    symbol: str
    side: Side
    amount_in: float
    amount_out: float
    size: float
    """base-asset amount traded"""
    average_price: float
    fee: float
    """in the leg's target asset"""


@dataclass(frozen=True, slots=True)
class CycleFill:
    start_notional: float
    final_amount: float
    legs: tuple[LegFill, ...]
    feasible: bool
    reason: str | None = None

    @property
    def roi(self) -> float:
        return self.final_amount / self.start_notional - 1.0 if self.start_notional > 0 else 0.0


class Infeasible(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _trade_size(levels: Sequence[Level], size: float) -> tuple[float, float]:
    """(notional, unfilled base) of trading ``size`` base across ``levels``, best first."""
    notional, remaining = 0.0, size
    for price, level_size, _ in levels:
        take = min(level_size, remaining)
        notional += take * price
        remaining -= take
        if remaining <= 0:
            break
    return notional, remaining


def fill_leg(leg: Leg, book: Book, amount_in: float) -> LegFill:
    """Execute ``amount_in`` of the leg's source asset against ``book``; raises :class:`Infeasible`."""
    bids, asks = book
    market = leg.market
    if leg.side is Side.BUY:
        base = cost = 0.0
        for price, size, _ in asks:  # how much base the quote buys, level by level
            take = min(size, (amount_in - cost) / price)
            base += take
            cost += take * price
            if take < size:
                break
        else:
            if cost < amount_in * (1 - 1e-12):
                raise Infeasible(f"{market.symbol}: not enough ask depth for {amount_in:g} {market.quote}")
        size = round_down(base, market.size_increment)
        if size <= 0 or size < market.min_size:
            raise Infeasible(f"{market.symbol}: {base:g} rounds below the minimum size {market.min_size:g}")
        spent, _ = _trade_size(asks, size)
        fee = size * market.taker_fee
        return LegFill(market.symbol, leg.side, amount_in, size - fee, size, spent / size, fee)
    size = round_down(amount_in, market.size_increment)
    if size <= 0 or size < market.min_size:
        raise Infeasible(f"{market.symbol}: {amount_in:g} rounds below the minimum size {market.min_size:g}")
    proceeds, remaining = _trade_size(bids, size)
    if remaining > size * 1e-12:
        raise Infeasible(f"{market.symbol}: not enough bid depth for {size:g} {market.base}")
    fee = proceeds * market.taker_fee
    return LegFill(market.symbol, leg.side, amount_in, proceeds - fee, size, proceeds / size, fee)


def walk(triangle: Triangle, books: Mapping[str, Book], start_notional: float) -> CycleFill:
    """Run ``start_notional`` of the start asset through the three legs, level by level."""
    amount = start_notional
    fills: list[LegFill] = []
    try:
        for leg in triangle.legs:
            fill = fill_leg(leg, books[leg.market.symbol], amount)
            fills.append(fill)
            amount = fill.amount_out
    except Infeasible as exc:
        return CycleFill(start_notional, 0.0, tuple(fills), False, exc.reason)
    return CycleFill(start_notional, amount, tuple(fills), True)


def first_leg_capacity(triangle: Triangle, books: Mapping[str, Book]) -> float:
    """The most start asset the first leg's visible levels can absorb (an upper bound for any notional)."""
    leg = triangle.legs[0]
    bids, asks = books[leg.market.symbol]
    if leg.side is Side.BUY:
        return sum(price * size for price, size, _ in asks)
    return sum(size for _, size, _ in bids)


def max_executable_notional(
    triangle: Triangle, books: Mapping[str, Book], min_roi: float, *, iterations: int = 40
) -> float:
    """The largest start notional whose depth walk is feasible and clears ``min_roi`` (0.0 if none).

    Walking deeper only worsens prices, so ROI falls with notional (up to rounding steps): a bisection over
    ``(0, first-leg capacity]`` finds the boundary; the answer itself is re-checked.
    """
    low, high = 0.0, first_leg_capacity(triangle, books)
    if high <= 0:
        return 0.0
    best = 0.0
    for _ in range(iterations):
        middle = (low + high) / 2
        fill = walk(triangle, books, middle)
        if fill.feasible and fill.roi >= min_roi:
            best = low = middle
        else:
            high = middle
    return best
