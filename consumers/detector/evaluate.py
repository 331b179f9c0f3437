"""Triangle arithmetic, pure: top-of-book ROI and the depth walk of one notional (what it returns, what it pays
in fees, before and after them). Which notionals are worth walking is ``sizes.py``.

Conventions: a leg converts its source asset into its target asset. ``buy`` spends quote on the asks
(amount out = quote / ask), ``sell`` sells base into the bids (amount out = base × bid); each leg pays the
taker fee on what it receives. Sizes are rounded *down* to the market's increment and must reach its minimum,
so rounding can only make a fill smaller and never trades more than the book shows; an amount larger than the
visible depth is infeasible on either side, even if rounding would shave it to fit. Whatever rounding leaves
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
    steps = math.floor(amount / increment * (1 + 1e-12) + 1e-9)
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

    @property
    def rate(self) -> float:
        """Target asset received per source asset spent, before the fee (at the average price)."""
        return 1.0 / self.average_price if self.side is Side.BUY else self.average_price


@dataclass(frozen=True, slots=True)
class CycleFill:
    start_notional: float
    final_amount: float
    legs: tuple[LegFill, ...]
    feasible: bool
    reason: str | None = None

    @property
    def roi(self) -> float:
        """Average net ROI: the start asset recovered over the start notional, minus 1."""
        return self.final_amount / self.start_notional - 1.0 if self.start_notional > 0 else 0.0

    @property
    def profit(self) -> float:
        """In the start asset, net of fees and of whatever rounding left behind."""
        return self.final_amount - self.start_notional

    @property
    def fees_in_start_asset(self) -> float:
        """Every leg's fee carried to the end of the cycle at the rates the later legs executed at (a leg-1 fee
        in BTC × leg 2's and leg 3's average rates), so ``final_amount + fees`` is what the same fills would
        have returned without fees, and gross − net ROI = fees / start notional exactly."""
        total, carry = 0.0, 1.0
        for leg in reversed(self.legs):
            total += leg.fee * carry
            carry *= leg.rate
        return total

    @property
    def roi_gross(self) -> float:
        """Average ROI of the same fills before fees (same levels, same rounding)."""
        if self.start_notional <= 0:
            return 0.0
        return (self.final_amount + self.fees_in_start_asset) / self.start_notional - 1.0


class Infeasible(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def trade_size(levels: Sequence[Level], size: float) -> tuple[float, float]:
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
        spent, _ = trade_size(asks, size)
        fee = size * market.taker_fee
        return LegFill(market.symbol, leg.side, amount_in, size - fee, size, spent / size, fee)
    # like a buy, the whole amount must fit the visible depth, not just what rounding keeps of it
    _, short = trade_size(bids, amount_in)
    if short > amount_in * 1e-12:
        raise Infeasible(f"{market.symbol}: not enough bid depth for {amount_in:g} {market.base}")
    size = round_down(amount_in, market.size_increment)
    if size <= 0 or size < market.min_size:
        raise Infeasible(f"{market.symbol}: {amount_in:g} rounds below the minimum size {market.min_size:g}")
    proceeds, _ = trade_size(bids, size)
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
