"""The control subject: which symbols each venue's producer holds books for.

Every entry on ``strategy.ctrl.symbols`` is one change from one source:

- ``op``: ``set`` replaces the source's set for each venue it names, ``add``/``remove`` edit it; venues the
  entry does not name are untouched, so no single message can empty another venue.
- ``source``: ``user`` (``triarb symbols``, ``POST /api/symbols``) or ``detector`` (the books its triangles
  need, announced at start). A producer holds the **union** of both for its venue; until a user ``set``
  arrives the user's part is the producer's configured symbols. So a user can add books for watching but
  cannot starve the detector, and a restarted detector cannot drop what the user asked for.

The entry is checked here for shape and limits (a known venue, canonical symbols, at most
``MAX_SYMBOLS_PER_VENUE`` per venue, no empty change); the producer of each venue then checks the symbols
against its discovered markets. An entry that fails either check changes nothing and is dead-lettered.
:class:`SymbolState` is the fold every reader applies, so producers, the CLI and the dashboard agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.base import VENUES, CanonicalSymbol, EpochMs, WireModel

MAX_SYMBOLS_PER_VENUE = 1_000
"""Symbols one entry may name per venue (Kraken lists ~1,000 streamable pairs; more is a mistake)."""

MAX_ENTRY_BYTES = 64 * 1024
"""Upper bound of one encoded control entry (and of a ``POST /api/symbols`` body)."""


class ControlOp(StrEnum):
    SET = "set"
    ADD = "add"
    REMOVE = "remove"


class ControlSource(StrEnum):
    USER = "user"
    DETECTOR = "detector"


class SymbolControl(WireModel):
    """One change to the symbol sets, for the venues named in ``symbols`` only."""

    v: Literal[1] = 1
    op: ControlOp = ControlOp.SET
    source: ControlSource = ControlSource.USER
    symbols: dict[str, list[CanonicalSymbol]] = Field(
        description="venue → symbols; only these venues change", min_length=1)
    ts: EpochMs = 0
    issued_by: str = Field(default="cli", min_length=1, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _no_all_venue_lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("symbols"), list):
            raise ValueError("symbols must name each venue, e.g. {\"coinbase\": [\"BTC-USD\"]}; a flat list "
                             "(once meaning every venue) is no longer accepted")
        return data

    @field_validator("symbols")
    @classmethod
    def _known_venues_bounded_lists(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for venue, symbols in value.items():
            if venue not in VENUES:
                raise ValueError(f"unknown venue {venue[:40]!r} (known: {', '.join(VENUES)})")
            if not symbols:
                raise ValueError(f"{venue}: names no symbols (to stop holding books, remove them by name)")
            if len(symbols) > MAX_SYMBOLS_PER_VENUE:
                raise ValueError(f"{venue}: {len(symbols)} symbols, more than the limit of {MAX_SYMBOLS_PER_VENUE}")
        return {venue: list(dict.fromkeys(symbols)) for venue, symbols in value.items()}


@dataclass
class SymbolState:
    """The symbol sets in force, folded from control entries in stream order.

    ``defaults`` is a venue's user set until a user ``set`` names that venue (a producer's configured
    symbols). :meth:`wanted` is what that venue's producer holds: user ∪ detector, user's order first.
    """

    defaults: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[tuple[ControlSource, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.defaults = {venue: list(dict.fromkeys(symbols)) for venue, symbols in self.defaults.items()}

    def current(self, source: ControlSource, venue: str) -> list[str]:
        if (source, venue) in self.sets:
            return list(self.sets[source, venue])
        return list(self.defaults.get(venue, [])) if source is ControlSource.USER else []

    def apply(self, control: SymbolControl, venues: Iterable[str] | None = None) -> None:
        """Fold one valid entry in (only for ``venues`` when given: a producer folds its own)."""
        for venue, symbols in control.symbols.items():
            if venues is not None and venue not in venues:
                continue
            before = self.current(control.source, venue)
            if control.op is ControlOp.SET:
                after = list(symbols)
            elif control.op is ControlOp.ADD:
                after = before + [s for s in symbols if s not in before]
            else:
                after = [s for s in before if s not in symbols]
            self.sets[control.source, venue] = after

    def wanted(self, venue: str) -> list[str]:
        user = self.current(ControlSource.USER, venue)
        return user + [s for s in self.current(ControlSource.DETECTOR, venue) if s not in user]

    def venues(self) -> list[str]:
        return sorted({venue for _, venue in self.sets} | set(self.defaults))
