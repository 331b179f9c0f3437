"""The discovery cache both components share: what markets a venue lists, as a file under ``var/discovery/``.

Producers write it (``producers/discovery.py`` fetches and parses the venues' lists); the detector reads it
to build its market graph, so neither needs the network at test or replay time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """One market; increments and minimums stay decimal text (exact rounding happens where it is used)."""

    venue: str
    symbol: str
    base: str
    quote: str
    venue_symbol: str
    price_increment: str
    size_increment: str
    min_size: str
    tradable: bool
    alias_of: str | None = None


def cache_path(var_dir: Path, venue: str) -> Path:
    return var_dir / "discovery" / f"{venue}.json"


def save_markets(path: Path, markets: list[MarketInfo]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps([asdict(m) for m in markets], option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def load_markets(path: Path) -> list[MarketInfo]:
    data: list[dict[str, Any]] = orjson.loads(path.read_bytes())
    return [MarketInfo(**item) for item in data]
