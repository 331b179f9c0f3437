"""Detected triangular-arbitrage opportunities and their simulated fills, on ``strategy.opportunity``."""

from __future__ import annotations

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


class Opportunity(WireModel):
    """A fee-aware cycle that cleared ``min_roi``. ``id`` derives from the cycle and its legs' book versions,
    so a redelivery or a second worker produces the same id and readers can de-duplicate."""

    v: Literal[1] = 1
    id: str = Field(min_length=1)
    cycle_id: str = Field(min_length=1, description="venue + the three markets and directions")
    exchange: ExchangeName
    roi_net: float
    roi_gross: float
    start_asset: str = Field(min_length=1)
    start_notional: float = Field(ge=0)
    executable_notional: float = Field(ge=0, description="largest start notional that still clears min_roi")
    legs: list[Leg] = Field(min_length=3, max_length=3)
    fees_total: float = Field(ge=0, description="in the start asset")
    ts_detect: EpochMs
    ts_publish: EpochMs
    sim_id: str | None = None
    fill: FillTrace | None = None
