"""The paper broker: executes an opportunity's legs one after another, each after a latency, against the
books as they stand at that moment, and records what it would have earned. No order ever leaves the process.

A simulation is a small state machine so the same code runs live (books from the hot cache after sleeping)
and in the backtest (books from the capture's timeline at the due time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consumers.detector.evaluate import Book, Infeasible, fill_leg
from consumers.detector.graph import Triangle
from schemas import FillLeg, FillTrace, Opportunity, sim_id_for
from schemas.opportunity import FillStatus


class LiveTradingDisabled(RuntimeError):
    """v1 is simulation-only."""


class LiveBroker:
    """The interface a live broker would implement; constructing one refuses, by design, in v1."""

    def __init__(self, *_: object, **__: object) -> None:
        raise LiveTradingDisabled("live trading is not available in triarb v1: use the paper broker")


@dataclass
class PaperSimulation:
    """One opportunity being filled leg by leg; ``due_ms`` is when the next leg executes."""

    opportunity: Opportunity
    triangle: Triangle
    latency_ms: int
    due_ms: int
    amount: float = 0.0
    legs: list[FillLeg] = field(default_factory=list)
    failure: str | None = None

    @classmethod
    def start(cls, opportunity: Opportunity, triangle: Triangle, now_ms: int, latency_ms: int) -> PaperSimulation:
        return cls(opportunity, triangle, latency_ms, now_ms + latency_ms, opportunity.start_notional)

    @property
    def sim_id(self) -> str:
        return sim_id_for(self.opportunity.id, self.latency_ms)

    @property
    def done(self) -> bool:
        return self.failure is not None or len(self.legs) == 3

    def step(self, books: Mapping[str, Book], now_ms: int) -> None:
        """Execute the next leg against ``books`` (as they are at ``now_ms``)."""
        index = len(self.legs)
        leg = self.triangle.legs[index]
        expected = self.opportunity.legs[index]
        try:
            fill = fill_leg(leg, books[leg.market.symbol], self.amount)
        except (Infeasible, KeyError) as exc:
            self.failure = getattr(exc, "reason", f"no book for {leg.market.symbol}")
            return
        sign = 1 if leg.side.value == "buy" else -1  # paying more (buy) or receiving less (sell) is slippage
        slippage_bps = sign * (fill.average_price - expected.price) / expected.price * 10_000
        self.legs.append(FillLeg(
            symbol=fill.symbol, side=fill.side, expected_price=expected.price, fill_price=fill.average_price,
            size=fill.size, fee=fill.fee, slippage_bps=slippage_bps, ts=now_ms,
        ))
        self.amount = fill.amount_out
        self.due_ms = now_ms + self.latency_ms

    def trace(self) -> FillTrace:
        start = self.opportunity.start_notional
        expected = start * self.opportunity.roi_net
        if self.failure is not None:
            # stuck in an intermediate asset: counted as nothing recovered (conservative)
            status = FillStatus.PARTIAL if self.legs else FillStatus.FAILED
            realized = -start
        else:
            status, realized = FillStatus.FILLED, self.amount - start
        return FillTrace(sim_id=self.sim_id, status=status, legs=self.legs, expected_pnl=expected,
                         realized_pnl=realized, detail=self.failure[:200] if self.failure else None)
