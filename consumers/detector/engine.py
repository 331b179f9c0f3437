"""The detector's core, shared by the live service and the backtest: updated books in, opportunities out.

Given the markets that changed and the latest snapshot of every book, it screens only the triangles that
touch those markets at top of book net of fees (``screen.py``: a sum of three log-rates each), and takes
the few that pass through the full evaluation: freshness and skew guards (skips counted by reason), the
largest notional that still clears ``min_roi``, the depth walk for the configured start notional (capped
at that), and the profit-maximising notional. The sizes cost one rounding-free depth curve plus a handful
of walks, paid only by triangles that clear ``min_roi`` at top of book.
Opportunity ids hash the cycle and its legs' book
versions, so a redelivery or another worker evaluating the same books produces the same id.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from consumers.detector.evaluate import Book, CycleFill, top_of_book, walk
from consumers.detector.graph import Triangle, index_by_market
from consumers.detector.screen import TopOfBookScreen
from consumers.detector.sizes import depth_curve, max_notional_at_min_roi, most_profitable_fill
from schemas import Leg, Opportunity, Snapshot

SKIP_REASONS = ("below_threshold", "not_executable", "empty_side", "stale", "skewed", "missing_book")
"""Why an evaluated triangle has no opportunity (:meth:`TriangleDetector.assess`; ``skips`` counts them)."""


@dataclass(frozen=True, slots=True)
class DetectorRules:
    min_roi: float = 0.0
    max_age_ms: int = 1_000
    max_skew_ms: int = 500
    start_notional: Mapping[str, float] = field(default_factory=lambda: {
        "USD": 1_000.0, "USDT": 1_000.0, "USDC": 1_000.0, "EUR": 1_000.0, "BTC": 0.02})


def opportunity_id(triangle: Triangle, snapshots: Sequence[Snapshot]) -> str:
    """Deterministic: the cycle plus each leg's (book_seq, ts_event), hashed."""
    versions = "|".join(f"{s.symbol}:{s.book_seq}:{s.ts_event}" for s in snapshots)
    return hashlib.sha1(f"{triangle.cycle_id}#{versions}".encode()).hexdigest()[:20]


def freshness_problem(snapshots: Sequence[Snapshot], now_ms: int, rules: DetectorRules) -> str | None:
    """Why these legs cannot be traded together now, or None: too old (by our receive time) or too far apart
    in venue time. Aging uses ``ts_ingest`` so replayed sessions with old venue clocks still work."""
    if any(now_ms - s.ts_ingest > rules.max_age_ms for s in snapshots):
        return "stale"
    events = [s.ts_event for s in snapshots]
    if max(events) - min(events) > rules.max_skew_ms:
        return "skewed"
    return None


class TriangleDetector:
    """Evaluates ``triangles`` incrementally; ``skips`` counts why candidates were passed over."""

    def __init__(self, triangles: Sequence[Triangle], rules: DetectorRules) -> None:
        self.triangles = list(triangles)
        self.rules = rules
        self.index = index_by_market(self.triangles)
        self.screen = TopOfBookScreen(self.triangles)
        self._min_log_return = math.log1p(rules.min_roi) if rules.min_roi > -1 else -math.inf
        self.skips: Counter[str] = Counter()
        self.evaluations = 0

    def symbols(self) -> list[str]:
        """Every market some triangle needs (published to ``strategy.ctrl.symbols``)."""
        return sorted(self.index)

    def affected(self, updated: Iterable[str]) -> list[Triangle]:
        positions = sorted({p for symbol in updated for p in self.index.get(symbol, ())})
        return [self.triangles[p] for p in positions]

    def observe(self, snapshot: Snapshot) -> None:
        """Feed a book's best prices to the screen (every book a triangle reads must pass through here)."""
        self.screen.update(snapshot.symbol, snapshot.bids[0][0] if snapshot.bids else None,
                           snapshot.asks[0][0] if snapshot.asks else None)

    def evaluate(self, updated: Iterable[str], books: Mapping[str, Snapshot], now_ms: int) -> list[Opportunity]:
        """Screen the triangles of the ``updated`` markets; fully evaluate those that pass."""
        symbols = [s for s in updated if s in books]
        for symbol in symbols:
            self.observe(books[symbol])
        rows: set[int] = set()
        for symbol in symbols:
            passed = self.screen.candidates(symbol, self._min_log_return)
            self.skips["below_threshold"] += self.screen.affected_count(symbol) - len(passed)
            rows.update(passed)
        found: list[Opportunity] = []
        for row in sorted(rows):
            opportunity = self.evaluate_one(self.triangles[row], books, now_ms)
            if opportunity is not None:
                found.append(opportunity)
        return found

    def evaluate_one(self, triangle: Triangle, books: Mapping[str, Snapshot], now_ms: int) -> Opportunity | None:
        """The triangle's opportunity now, or None (and the reason counted in ``skips``)."""
        outcome = self.assess(triangle, books, now_ms)
        if isinstance(outcome, str):
            self.skips[outcome] += 1
            return None
        return outcome

    def assess(self, triangle: Triangle, books: Mapping[str, Snapshot], now_ms: int) -> Opportunity | str:
        """The triangle's opportunity now, or the reason it has none (a ``skips`` key; not counted here)."""
        self.evaluations += 1
        snapshots = [books.get(symbol) for symbol in triangle.symbols]
        if any(s is None for s in snapshots):
            return "missing_book"
        legs_snapshots = [s for s in snapshots if s is not None]
        problem = freshness_problem(legs_snapshots, now_ms, self.rules)
        if problem is not None:
            return problem
        levels: dict[str, Book] = {s.symbol: (s.bids, s.asks) for s in legs_snapshots}
        screened = top_of_book(triangle, levels)
        if screened is None:
            return "empty_side"
        if screened[1] - 1.0 < self.rules.min_roi:
            return "below_threshold"
        curve = depth_curve(triangle, levels)
        largest = max_notional_at_min_roi(triangle, levels, self.rules.min_roi, curve)
        fill = walk(triangle, levels, min(self.rules.start_notional.get(triangle.start_asset, 1.0), largest))
        best = most_profitable_fill(triangle, levels, curve) if largest > 0 and fill.feasible else None
        if best is None:
            return "not_executable"
        best = max(best, fill, key=lambda f: f.profit)  # rounding can make the published walk the better one
        return build_opportunity(triangle, legs_snapshots, fill, best, largest, now_ms)


def build_opportunity(
    triangle: Triangle, snapshots: Sequence[Snapshot], fill: CycleFill, best: CycleFill,
    max_notional_at_min_roi: float, now_ms: int,
) -> Opportunity:
    """ROI (net and gross), legs and fees all describe ``fill``, the walk at the published start notional."""
    legs = [
        Leg(symbol=f.symbol, side=f.side, price=f.average_price, size=f.size, fee=f.fee, ts_event=s.ts_event)
        for f, s in zip(fill.legs, snapshots, strict=True)
    ]
    return Opportunity(
        id=opportunity_id(triangle, snapshots), cycle_id=triangle.cycle_id, exchange=triangle.venue,
        roi_net=fill.roi, roi_gross=fill.roi_gross, start_asset=triangle.start_asset,
        start_notional=fill.start_notional, max_notional_at_min_roi=max_notional_at_min_roi,
        best_notional=best.start_notional, best_profit=best.profit, legs=legs,
        fees_total=fill.fees_in_start_asset, ts_detect=now_ms, ts_publish=now_ms,
    )
