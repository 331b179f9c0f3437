"""The control subject: which symbols each venue's producer should hold books for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.base import CanonicalSymbol, EpochMs, WireModel

ALL_VENUES = "*"
"""Key under which a flat symbol list is stored: it applies to every venue."""


class SymbolControl(WireModel):
    """Desired symbol set per venue on ``strategy.ctrl.symbols``; the latest entry wins.

    ``symbols`` may be given as a flat list, which applies to all venues (stored under ``"*"``).
    """

    v: Literal[1] = 1
    symbols: dict[str, list[CanonicalSymbol]]
    ts: EpochMs = 0
    issued_by: str = Field(default="cli", min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _flat_list_means_all_venues(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("symbols"), list):
            return {**data, "symbols": {ALL_VENUES: data["symbols"]}}
        return data

    @model_validator(mode="after")
    def _venue_names_are_lower_case(self) -> SymbolControl:
        for venue in self.symbols:
            if venue != ALL_VENUES and (not venue.isidentifier() or venue != venue.lower()):
                raise ValueError(f"venue {venue!r} must be a lower-case name such as 'coinbase', or '*'")
        return self

    def for_venue(self, venue: str) -> list[str]:
        """The symbols ``venue`` should subscribe to: its own list, else the all-venues list, else none."""
        if venue in self.symbols:
            return list(self.symbols[venue])
        return list(self.symbols.get(ALL_VENUES, []))
