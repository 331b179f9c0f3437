"""Opportunity episodes (``strategy.episode``): one record per dislocation of a cycle instead of one row per
book tick. An episode opens with the first evaluation of a cycle that clears ``min_roi``, is updated (rate
limited, on material change only) while the cycle keeps paying, and closes when an evaluation no longer pays
or its legs go stale. Every event carries the whole episode so far, so the newest event of an id is its state."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import EpochMs, ExchangeName, WireModel


class EpisodeEvent(StrEnum):
    OPEN = "open"
    UPDATE = "update"
    CLOSE = "close"


class CloseReason(StrEnum):
    BELOW_MIN_ROI = "below_min_roi"
    """an evaluation of fresh legs no longer clears ``min_roi`` (or nothing is executable)"""
    STALE = "stale"
    """a leg was not updated within ``max_age_ms`` (or the legs drifted apart in venue time)"""


class Episode(WireModel):
    """One event of an episode; ``seq`` counts the episode's events (0 is ``open``), so ``(id, seq)`` is
    written once."""

    v: Literal[1] = 1
    id: str = Field(min_length=1, description="derived from the cycle and its first opportunity's id")
    event: EpisodeEvent
    seq: int = Field(ge=0)
    exchange: ExchangeName
    cycle_id: str = Field(min_length=1)
    start_asset: str = Field(min_length=1)
    opened_ms: EpochMs = Field(description="detection time of the first paying evaluation")
    ts: EpochMs = Field(description="when this event happened; for a stale close, when the legs went stale")
    duration_ms: int = Field(ge=0, description="ts - opened_ms")
    roi_net: float = Field(description="the latest paying evaluation's net ROI at its start notional")
    peak_roi_net: float = Field(description="the highest roi_net of the episode")
    peak_ms: EpochMs
    best_notional: float = Field(ge=0, description="profit-maximising notional of the most profitable evaluation")
    best_profit: float = Field(description="the episode's highest best_profit, in the start asset")
    opportunities: int = Field(ge=1, description="paying evaluations (distinct book states) so far")
    first_opportunity_id: str = Field(min_length=1)
    opportunity_id: str = Field(min_length=1, description="the latest paying evaluation")
    close_reason: CloseReason | None = None


def episode_id_for(cycle_id: str, first_opportunity_id: str) -> str:
    """Deterministic, so the backtest and the live stack name the same episode alike."""
    return hashlib.sha1(f"{cycle_id}@{first_opportunity_id}".encode()).hexdigest()[:20]
