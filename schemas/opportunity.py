"""Detected triangular-arbitrage opportunities (``strategy.opportunity``) and their paper fills
(``strategy.fill``), joined by ``sim_id``."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import CanonicalSymbol, EpochMs, ExchangeName, WireModel
from schemas.market import Side


class FillStatus(StrEnum):
    FILLED = "filled"
    PARTIAL = "partial"
    FAILED = "failed"


class Leg(WireModel):
    """One leg as evaluated: buy pays the ask, sell receives the bid; ``fee`` in the leg's output asset."""

    symbol: CanonicalSymbol
    side: Side
    price: float = Field(gt=0)
    size: float = Field(ge=0, description="base-asset amount")
    fee: float = Field(ge=0)
    ts_event: EpochMs


class FillLeg(WireModel):
    """One leg as the paper broker filled it, after the configured latency."""

    symbol: CanonicalSymbol
    side: Side
    expected_price: float = Field(gt=0)
    fill_price: float = Field(ge=0)
    size: float = Field(ge=0)
    fee: float = Field(ge=0)
    slippage_bps: float
    ts: EpochMs


class FillTrace(WireModel):
    """A simulated execution of the whole cycle; PnL in the start asset."""

    sim_id: str
    status: FillStatus
    legs: list[FillLeg]
    expected_pnl: float
    realized_pnl: float
    detail: str | None = Field(default=None, max_length=200, description="why a fill stopped short")


class Opportunity(WireModel):
    """A fee-aware cycle that cleared ``min_roi``. ``id`` derives from the cycle and its legs' book versions,
    so a redelivery or a second worker produces the same id and readers can de-duplicate."""

    v: Literal[2] = 2  # 2: sizes and fees of one depth walk (v1 had executable_notional)
    id: str = Field(min_length=1)
    cycle_id: str = Field(min_length=1, description="venue + the three markets and directions")
    exchange: ExchangeName
    roi_net: float = Field(description="average ROI of the depth walk at start_notional, net of fees and rounding")
    roi_gross: float = Field(description="the same walk before fees: roi_gross - roi_net = fees_total / start_notional")
    start_asset: str = Field(min_length=1)
    start_notional: float = Field(ge=0, description="the configured notional, capped at max_notional_at_min_roi")
    max_notional_at_min_roi: float = Field(
        ge=0, description="largest start notional whose walk's average net ROI is still >= min_roi (break-even "
                          "size when min_roi = 0); not the most profitable size")
    best_notional: float = Field(ge=0, description="start notional that maximises profit walking the depth")
    best_profit: float = Field(description="profit at best_notional, in the start asset, net of fees and rounding")
    legs: list[Leg] = Field(min_length=3, max_length=3)
    fees_total: float = Field(
        ge=0, description="fees of the walk at start_notional, each carried into the start asset through the "
                          "later legs' executed rates")
    ts_detect: EpochMs
    ts_publish: EpochMs
    sim_id: str | None = Field(default=None, description="the paper fill's id on strategy.fill (see sim_id_for)")
    fill: FillTrace | None = Field(default=None, description="only in backtest output; live fills are on strategy.fill")


class Fill(WireModel):
    """The paper broker's execution of one opportunity, on ``strategy.fill``; ``trace.sim_id`` equals the
    opportunity's ``sim_id``."""

    v: Literal[1] = 1
    opportunity_id: str = Field(min_length=1)
    exchange: ExchangeName
    cycle_id: str = Field(min_length=1)
    start_asset: str = Field(min_length=1)
    start_notional: float = Field(ge=0)
    latency_ms: int = Field(ge=0, description="the wait before each leg")
    ts_start: EpochMs
    ts_done: EpochMs
    trace: FillTrace


def sim_id_for(opportunity_id: str, latency_ms: int) -> str:
    """The id of the paper fill of ``opportunity_id`` at ``latency_ms`` per leg: the detector names it when it
    publishes, the paper broker uses it, so the two records join without a lookup."""
    return hashlib.sha1(f"{opportunity_id}@{latency_ms}".encode()).hexdigest()[:16]
