"""The top-of-book screen: after a book update, which of its triangles might clear ``min_roi`` net of fees?

Each market keeps two log-rates, one per direction: buying pays the ask (``-ln ask``), selling receives the
bid (``ln bid``), each plus ``ln(1 - taker fee)``. A triangle's net log return is the sum of its three legs'
rates, so an update costs two writes plus one sum per affected triangle; only triangles whose sum clears the
threshold go on to the full evaluation (freshness, depth walk). Few triangles: a Python loop over a list
(no array overhead); many (a hub market such as USDT-USD): one NumPy gather-and-sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from consumers.detector.graph import Triangle
from schemas.market import Side

VECTOR_THRESHOLD = 48
"""Affected triangles above which one NumPy call beats a Python loop."""


class TopOfBookScreen:
    def __init__(self, triangles: Sequence[Triangle]) -> None:
        positions: dict[str, int] = {}
        fees: list[float] = []
        legs: list[tuple[int, int, int]] = []
        for triangle in triangles:
            leg_slots = []
            for leg in triangle.legs:
                market = positions.setdefault(leg.market.symbol, len(positions))
                if market == len(fees):
                    fees.append(math.log1p(-leg.market.taker_fee))
                leg_slots.append(2 * market + (0 if leg.side is Side.BUY else 1))
            legs.append((leg_slots[0], leg_slots[1], leg_slots[2]))
        self.positions = positions
        self._log_fee = fees
        self._legs = legs
        self._legs_array = np.array(legs, dtype=np.int64).reshape(-1, 3)
        self._rates = [-math.inf] * (2 * len(positions))
        self._rates_array = np.full(2 * len(positions), -np.inf)
        by_market: dict[int, list[int]] = {}
        for row, triple in enumerate(legs):
            for market in {slot // 2 for slot in triple}:
                by_market.setdefault(market, []).append(row)
        # per market: its triangle rows, and (for the vector path) their leg slots gathered once, up front
        self._rows = {m: (rows, np.array(rows, dtype=np.int64), self._legs_array[np.array(rows, dtype=np.int64)])
                      for m, rows in by_market.items()}

    def update(self, symbol: str, best_bid: float | None, best_ask: float | None) -> None:
        """Record a market's new best prices (``None`` for an empty side: no triangle can use that leg)."""
        market = self.positions.get(symbol)
        if market is None:
            return
        fee = self._log_fee[market]
        buy = fee - math.log(best_ask) if best_ask else -math.inf
        sell = fee + math.log(best_bid) if best_bid else -math.inf
        self._rates[2 * market] = self._rates_array[2 * market] = buy
        self._rates[2 * market + 1] = self._rates_array[2 * market + 1] = sell

    def affected_count(self, symbol: str) -> int:
        market = self.positions.get(symbol)
        return len(self._rows[market][0]) if market is not None and market in self._rows else 0

    def candidates(self, symbol: str, min_log_return: float) -> list[int]:
        """Rows of the triangles touching ``symbol`` whose top-of-book net log return clears the threshold."""
        market = self.positions.get(symbol)
        if market is None or market not in self._rows:
            return []
        rows, rows_array, slots = self._rows[market]
        if len(rows) <= VECTOR_THRESHOLD:
            rates, legs = self._rates, self._legs
            hits = []
            for row in rows:
                a, b, c = legs[row]
                if rates[a] + rates[b] + rates[c] >= min_log_return:
                    hits.append(row)
            return hits
        sums = self._rates_array[slots].sum(axis=1)
        passed: list[int] = rows_array[sums >= min_log_return].tolist()
        return passed
