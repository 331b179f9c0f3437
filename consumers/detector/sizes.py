"""Which start notional to publish, pure: the one that maximises profit, and the largest that still clears
``min_roi``.

Both start from :func:`depth_curve`, the cycle's result as an exact function of the start notional when sizes
are not rounded: piecewise linear and concave, known by its corners. Rounding (sizes down to each market's
increment, leftovers lost, see ``evaluate.py``) only loses, so the curve bounds what real walks can do, and a
few walks settle the answer (each function says how exactly). The cost is one pass over the levels plus a few
walks, paid only by triangles that clear ``min_roi`` at top of book.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from consumers.detector.evaluate import Book, CycleFill, trade_size, walk
from consumers.detector.graph import Triangle
from schemas.market import Side

SEARCH_STEPS = 40
"""Bisection steps where a size has no closed form (rare: see the functions): 2⁻⁴⁰ ≈ 1e-12 of the range."""


class Knot(NamedTuple):
    """A corner of the depth curve: at start ``notional`` the cycle returns ``final_amount`` (fees paid, no
    rounding) and leg i trades ``sizes[i]`` of its market's base."""

    notional: float
    final_amount: float
    sizes: tuple[float, float, float]


def depth_curve(triangle: Triangle, books: Mapping[str, Book]) -> tuple[Knot, ...]:
    """The final amount as a function of the start notional, walking every leg's visible levels with taker
    fees and without rounding: exact, as its corners (the first at 0, the last at the visible capacity).

    Between two corners every leg stays inside one level, so the function is linear there with slope = the
    product of the three legs' marginal rates (``(1 - fee) / ask`` for a buy, ``bid × (1 - fee)`` for a
    sell). A corner is where some leg crosses a level boundary, mapped back to the start notional through
    the legs before it. Deeper levels only have worse prices, so slopes fall from corner to corner: the
    curve is concave, and the profit (final − notional) peaks at a corner.
    """
    # per leg and level: (input per base, output per base, base in the level)
    ladders: list[list[tuple[float, float, float]]] = []
    for leg in triangle.legs:
        bids, asks = books[leg.market.symbol]
        keep = 1.0 - leg.market.taker_fee
        if leg.side is Side.BUY:
            ladders.append([(price, keep, size) for price, size, _ in asks if size > 0 and price > 0])
        else:
            ladders.append([(1.0, price * keep, size) for price, size, _ in bids if size > 0 and price > 0])
    first, second, third = ladders
    if not (first and second and third):
        return (Knot(0.0, 0.0, (0.0, 0.0, 0.0)),)
    level = [0, 0, 0]
    left = [first[0][2], second[0][2], third[0][2]]  # base left in each leg's current level
    notional = final = size0 = size1 = size2 = 0.0
    knots = [Knot(0.0, 0.0, (0.0, 0.0, 0.0))]
    while True:
        cost0, out0, depth0 = first[level[0]]
        cost1, out1, depth1 = second[level[1]]
        cost2, out2, depth2 = third[level[2]]
        base0 = 1.0 / cost0  # base each leg trades per unit of start notional, at the current levels
        base1 = base0 * out0 / cost1
        base2 = base1 * out1 / cost2
        step = min(left[0] / base0, left[1] / base1, left[2] / base2)
        notional += step
        final += base2 * out2 * step
        size0 += base0 * step
        size1 += base1 * step
        size2 += base2 * step
        knots.append(Knot(notional, final, (size0, size1, size2)))
        done = False
        for i, base, depth in ((0, base0, depth0), (1, base1, depth1), (2, base2, depth2)):
            # the leg that limited the step (and any other that finished its level within float noise) moves on
            left[i] -= base * step
            if left[i] <= depth * 1e-12:
                level[i] += 1
                if level[i] == len(ladders[i]):
                    done = True
                else:
                    left[i] = ladders[i][level[i]][2]
        if done:
            return tuple(knots)


def most_profitable_notional(curve: Sequence[Knot]) -> float:
    """The corner after which the curve's slope is 1 or less, i.e. every further unit of notional returns no
    more than it costs (profit is concave, so this is its maximum; 0.0 if even the first unit loses)."""
    for a, b in zip(curve, curve[1:], strict=False):
        if b.final_amount - b.notional <= a.final_amount - a.notional:
            return a.notional
    return curve[-1].notional


def notional_at_roi(curve: Sequence[Knot], min_roi: float) -> float:
    """The largest notional whose average ROI (final / notional − 1) is still ≥ ``min_roi``, without rounding.

    The curve is concave through the origin, so the average ROI only falls with notional: find the first
    segment whose end falls below ``1 + min_roi`` times its notional and solve its line there,
    ``final_a + slope × (x − x_a) = (1 + min_roi) × x``.
    """
    target = 1.0 + min_roi
    for a, b in zip(curve, curve[1:], strict=False):
        if b.final_amount >= target * b.notional:
            continue
        slope = (b.final_amount - a.final_amount) / (b.notional - a.notional)
        return max(0.0, (a.final_amount - slope * a.notional) / (target - slope))
    return curve[-1].notional


def notional_for_size(curve: Sequence[Knot], leg: int, size: float) -> float | None:
    """The notional at which leg ``leg`` trades ``size`` of its base (None beyond the visible depth)."""
    for a, b in zip(curve, curve[1:], strict=False):
        if b.sizes[leg] >= size:
            share = (size - a.sizes[leg]) / (b.sizes[leg] - a.sizes[leg])
            return a.notional + max(0.0, share) * (b.notional - a.notional)
    return None


def _size_at(curve: Sequence[Knot], leg: int, notional: float) -> float:
    for a, b in zip(curve, curve[1:], strict=False):
        if b.notional >= notional and b.notional > a.notional:
            share = (notional - a.notional) / (b.notional - a.notional)
            return a.sizes[leg] + share * (b.sizes[leg] - a.sizes[leg])
    return curve[-1].sizes[leg]


def most_profitable_fill(
    triangle: Triangle, books: Mapping[str, Book], curve: Sequence[Knot] | None = None
) -> CycleFill | None:
    """The walk (rounding and minimums included) at the start notional that maximises profit in the start
    asset; None if no notional is feasible.

    Without rounding the maximum is exactly :func:`most_profitable_notional`, moved up to the smallest notional
    at which every leg trades its minimum (and one increment). With rounding, the cycle's result depends only
    on how many increments the first leg trades and costs least at the notional that buys exactly that many,
    so the two such notionals either side of the exact maximum are walked. The rounding-free profit is concave,
    so no other count of first-leg increments beats both by more than what legs 2 and 3 lose to their own
    rounding: less than one increment of each leg's base, valued in the start asset (zero when they do not
    round). If neither is feasible (rounding pushed a later leg under its minimum), the smallest feasible
    notional above is searched for instead: past the maximum, profit only falls.
    """
    curve = curve if curve is not None else depth_curve(triangle, books)
    fills: list[CycleFill] = []
    if len(curve) >= 2:
        floors = [notional_for_size(curve, i, max(leg.market.min_size, leg.market.size_increment))
                  for i, leg in enumerate(triangle.legs)]
        floor = max(math.inf if f is None else f for f in floors)
        capacity = curve[-1].notional
        if floor <= capacity:
            notional = min(max(most_profitable_notional(curve), floor), capacity)
            grid = _first_leg_grid(triangle, books, _size_at(curve, 0, notional))
            candidates = [walk(triangle, books, n) for n in grid]
            fills += [f for f in candidates if f.feasible] or _smallest_feasible(triangle, books, notional, capacity)
    return max(fills, key=_profit, default=None)


def _profit(fill: CycleFill) -> float:
    return fill.profit


def _first_leg_grid(triangle: Triangle, books: Mapping[str, Book], size: float) -> list[float]:
    """The notionals at which the first leg trades exactly the whole increments just below and above ``size``."""
    leg = triangle.legs[0]
    increment = leg.market.size_increment
    if increment <= 0:
        sizes = [size]
    else:
        steps = math.floor(size / increment * (1 + 1e-12) + 1e-9)
        sizes = [steps * increment, (steps + 1) * increment]
    notionals = []
    for base in sizes:
        if base <= 0 or base < leg.market.min_size:
            continue
        if leg.side is Side.SELL:
            notionals.append(base)
            continue
        cost, short = trade_size(books[leg.market.symbol][1], base)
        if short <= base * 1e-12:
            notionals.append(cost)
    return notionals


def _smallest_feasible(triangle: Triangle, books: Mapping[str, Book], low: float, high: float) -> list[CycleFill]:
    """The walk at (about) the smallest feasible notional in ``(low, high]``, moved down to what its first leg
    spends (the same sizes for less); [] if ``high`` is not feasible either."""
    high *= 1 - 1e-12  # the capacity, give or take float noise
    found = walk(triangle, books, high)
    if not found.feasible:
        return []
    for _ in range(SEARCH_STEPS):
        middle = (low + high) / 2
        fill = walk(triangle, books, middle)
        if fill.feasible:
            high, found = middle, fill
        else:
            low = middle
    first = found.legs[0]
    spent = first.size * first.average_price if first.side is Side.BUY else first.size
    tight = walk(triangle, books, spent)
    return [tight if tight.feasible and tight.profit >= found.profit else found]


def max_notional_at_min_roi(
    triangle: Triangle, books: Mapping[str, Book], min_roi: float, curve: Sequence[Knot] | None = None,
    *, lifts: int = 64,
) -> float:
    """The largest start notional whose walk (rounding and minimums included) is feasible with average ROI
    ≥ ``min_roi``; 0.0 if there is none.

    Rounding only loses, so :func:`notional_at_roi` bounds it from above. The walk's final amount never falls
    as the notional grows, so if the walk at a bound ``x`` returns ``F`` short of ``(1 + min_roi) × x``, no
    notional in ``(F / (1 + min_roi), x]`` clears either: that is the next, lower bound, and the first bound
    that clears is the answer, exactly. Each bound skips at least one rounding step; with fine increments a few
    bounds (often one or two) reach it. Coarse increments can cost more than the margin on step after step
    (when the rounding-free ROI falls slowly through ``min_roi``): after ``lifts`` bounds, a bisection below
    the last bound looks for one that clears and lifts it to ``F / (1 + min_roi)`` while that moves. That one
    is locally the largest (slightly more falls below ``min_roi``), but some rounding step between it and the
    last bound may clear too; and if the notionals that clear are narrower than the bisection's steps it finds
    none (0.0: conservative). At the visible capacity, rounding can keep a little more feasible: searched for
    as well.
    """
    curve = curve if curve is not None else depth_curve(triangle, books)
    target = 1.0 + min_roi
    high = notional_at_roi(curve, min_roi)
    cleared: CycleFill | None = None
    for _ in range(lifts):
        if high <= 0:
            return 0.0
        fill = walk(triangle, books, high)
        if not fill.feasible and high >= curve[-1].notional * (1 - 1e-9):
            fill = walk(triangle, books, high * (1 - 1e-12))  # the capacity, give or take float noise
        if _clears(fill, min_roi):
            cleared = fill
            break
        if not fill.feasible:
            return 0.0  # below some leg's minimum, and so is every smaller notional
        high = min(fill.final_amount / target, fill.start_notional * (1 - 1e-12))  # the nudge: float noise
    if cleared is None:
        start = _bisect_at_min_roi(triangle, books, min_roi, high)
        if start is None:
            return 0.0
        cleared = _lift(triangle, books, min_roi, start, lifts)
    if cleared.start_notional >= curve[-1].notional * (1 - 1e-9):
        return _past_capacity(triangle, books, min_roi, curve, cleared.start_notional)
    return cleared.start_notional


def _clears(fill: CycleFill, min_roi: float) -> bool:
    return fill.feasible and fill.roi >= min_roi


def _lift(triangle: Triangle, books: Mapping[str, Book], min_roi: float, fill: CycleFill, lifts: int) -> CycleFill:
    """From a walk that clears, up to ``final / (1 + min_roi)`` while that moves: a larger notional returns at
    least as much, so the walk there still clears."""
    for _ in range(lifts):
        higher = walk(triangle, books, fill.final_amount / (1.0 + min_roi))
        if not _clears(higher, min_roi) or higher.start_notional <= fill.start_notional:
            break
        fill = higher
    return fill


def _bisect_at_min_roi(triangle: Triangle, books: Mapping[str, Book], min_roi: float, high: float) -> CycleFill | None:
    """A walk that clears ``min_roi``, found by bisecting ``(0, high]`` (None if no midpoint clears). Rounding
    makes "clears" flicker near the boundary, so this finds *a* boundary, not necessarily the last."""
    low, cleared = 0.0, None
    for _ in range(SEARCH_STEPS):
        middle = (low + high) / 2
        fill = walk(triangle, books, middle)
        if _clears(fill, min_roi):
            low, cleared = middle, fill
        else:
            high = middle
    return cleared


def _past_capacity(
    triangle: Triangle, books: Mapping[str, Book], min_roi: float, curve: Sequence[Knot], notional: float
) -> float:
    """``notional`` clears at the visible capacity. A little more can stay feasible: an earlier leg's rounding
    shaves the excess off before it reaches the leg whose depth ran out (and loses it), and the walk may still
    clear. The excess is under an increment, so the search starts at the coarsest increment relative to its
    leg's size, doubles while it clears, then halves back to 1e-10 relative."""
    if not _clears(walk(triangle, books, notional * (1 + 1e-10)), min_roi):
        return notional
    relative = max((leg.market.size_increment / size for leg, size in zip(triangle.legs, curve[-1].sizes,
                                                                          strict=True) if size > 0), default=0.0)
    low, step = notional, notional * max(relative, 1e-10)
    while step < notional and _clears(walk(triangle, books, low + step), min_roi):
        low, step = low + step, step * 2
    while step > notional * 1e-10:
        step /= 2
        if _clears(walk(triangle, books, low + step), min_roi):
            low += step
    return low
